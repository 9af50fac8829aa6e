//! Tests of `crate::tree`'s encoding: vectors derived by hand from the protobuf rules and
//! vectors produced by Python's protobuf 7.36.2 from the real remote_execution.proto
//! (`SerializeToString(deterministic=True)`), and every refusal of the strict decoder.

use super::tests::*;
use super::*;

#[test]
fn hand_derived_encodings() {
    assert_eq!(Directory::default().encode(), b"");
    assert_eq!(Directory::default().digest(), Digest::EMPTY);

    // DirectoryNode "d" of the empty directory, as field 2 of a Directory:
    // 12 47 | 0a 01 'd' | 12 42 { 0a 40 <64 hex digits> } (size 0 is omitted).
    let dir = Directory {
        directories: vec![DirectoryNode {
            name: "d".into(),
            digest: Digest::EMPTY,
        }],
        ..Directory::default()
    };
    assert_eq!(
        hex(&dir.encode()),
        format!(
            concat!("1247", "0a0164", "1242", "0a40{}"),
            hex(EMPTY_HEX.as_bytes())
        )
    );

    // FileNode "f" of "abc", executable, mtime 1 s 2 ns, as field 1:
    // 0a 53 | 0a 01 'f' | 12 44 { 0a 40 <hex> 10 03 } | 20 01 | 32 06 { 12 04 { 08 01 10 02 } }
    let file = Directory {
        files: vec![node("f", b"abc", true, Some((1, 2)))],
        ..Directory::default()
    };
    assert_eq!(
        hex(&file.encode()),
        format!(
            concat!(
                "0a53",
                "0a0166",
                "1244",
                "0a40{}1003",
                "2001",
                "3206",
                "1204",
                "08011002"
            ),
            hex(ABC_HEX.as_bytes())
        )
    );

    // SymlinkNode "l" → "t", as field 3: 1a 06 | 0a 01 'l' | 12 01 't'.
    let link = Directory {
        symlinks: vec![SymlinkNode {
            name: "l".into(),
            target: "t".into(),
        }],
        ..Directory::default()
    };
    assert_eq!(hex(&link.encode()), "1a060a016c120174");
}

/// From Python: one node of each kind; a zero mtime still writes an (empty) Timestamp,
/// because a set message field is present whatever its content.
const PY_V1: &str = "0a5a0a03612e6812440a40626137383136626638663031636665613431343134306465356461653232323362303033363161333936313737613963623431306666363166323030313561641003320d120b0880e2cfaa0610959aef3a0a520a0672756e2e736812420a406533623063343432393866633163313439616662663463383939366662393234323761653431653436343962393334636134393539393162373835326238353520013202120012490a0373756212420a40653362306334343239386663316331343961666266346338393936666239323432376165343165343634396239333463613439353939316237383532623835351a0b0a017a12062e2e2f612e68";
const PY_V1_DIGEST: &str = "9de93ecaed32c4fe771604331d99729d6797458e6b8daab7aae25544ac938c66/264";
/// From Python: a 2⁴⁰-byte and a 300-byte size, no mtime, and a negative mtime (-1 s
/// is a 10-byte varint).
const PY_V2: &str = "0a500a0362696712490a4062613738313662663866303163666561343134313430646535646165323232336230303336316133393631373761396362343130666636316632303031356164108080808080200a5d0a036e656712450a406261373831366266386630316366656134313431343064653564616532323233623030333631613339363137376139636234313066663631663230303135616410ac02320f120d08ffffffffffffffffff011005";

#[test]
fn encodings_match_python_protobuf() {
    let v1 = Directory {
        files: vec![
            node("a.h", b"abc", false, Some((1_700_000_000, 123_456_789))),
            node("run.sh", b"", true, Some((0, 0))),
        ],
        directories: vec![DirectoryNode {
            name: "sub".into(),
            digest: Digest::EMPTY,
        }],
        symlinks: vec![SymlinkNode {
            name: "z".into(),
            target: "../a.h".into(),
        }],
    };
    assert_eq!(hex(&v1.encode()), PY_V1);
    assert_eq!(v1.digest().to_string(), PY_V1_DIGEST);
    assert_eq!(Directory::decode(&unhex(PY_V1)).unwrap(), v1);

    let abc = Digest::of(b"abc");
    let v2 = Directory {
        files: vec![
            FileNode {
                name: "big".into(),
                digest: Digest {
                    size_bytes: 1 << 40,
                    ..abc
                },
                is_executable: false,
                mtime: None,
            },
            FileNode {
                name: "neg".into(),
                digest: Digest {
                    size_bytes: 300,
                    ..abc
                },
                is_executable: false,
                mtime: Some(Timestamp {
                    seconds: -1,
                    nanos: 5,
                }),
            },
        ],
        ..Directory::default()
    };
    assert_eq!(hex(&v2.encode()), PY_V2);
    assert_eq!(Directory::decode(&unhex(PY_V2)).unwrap(), v2);
}

#[test]
fn decode_refuses_non_canonical_trees() {
    use TreeError::*;
    let cases: Vec<(Vec<u8>, TreeError)> = vec![
        (raw(&[raw_file("b"), raw_file("a")]), NotSorted("a".into())),
        (raw(&[raw_file("a"), raw_file("a")]), NotSorted("a".into())),
        (raw(&[raw_dir("b"), raw_dir("a")]), NotSorted("a".into())),
        (raw(&[raw_file("x"), raw_dir("x")]), NotSorted("x".into())),
        (
            raw(&[raw_dir("x"), raw_link("x", b"t")]),
            NotSorted("x".into()),
        ),
        (raw(&[raw_file("..")]), BadName("..".into())),
        (raw(&[raw_dir(".")]), BadName(".".into())),
        (raw(&[raw_dir("a/b")]), BadName("a/b".into())),
        (raw(&[raw_link("/", b"t")]), BadName("/".into())),
        (raw(&[raw_file("a\0")]), BadName("a\0".into())),
        (raw(&[raw_dir("")]), BadName("".into())),
        (raw(&[raw_link("l", b"")]), BadTarget("".into())),
        (raw(&[raw_link("l", b"a\0")]), BadTarget("a\0".into())),
        (
            raw(&[raw_link("l", b"\xff")]),
            Malformed("string not UTF-8"),
        ),
        // Lists interleaved, fields within a node out of order.
        (raw(&[raw_dir("a"), raw_file("b")]), NotCanonical),
        (
            field(
                2,
                &[field(2, &digest_message(&Digest::EMPTY)), field(1, b"a")].concat(),
            ),
            NotCanonical,
        ),
    ];
    for (blob, expected) in cases {
        assert_eq!(Directory::decode(&blob), Err(expected), "{}", hex(&blob));
    }

    let long = "n".repeat(MAX_NAME_BYTES + 1);
    assert_eq!(Directory::decode(&raw_dir(&long)), Err(BadName(long)));
    let longest = "n".repeat(MAX_NAME_BYTES);
    assert!(Directory::decode(&raw_dir(&longest)).is_ok());
}

#[test]
fn decode_refuses_malformed_and_unsupported_fields() {
    use TreeError::*;
    let name = field(1, b"f");
    let digest = field(2, &digest_message(&Digest::of(b"abc")));
    let file_with = |extra: &[u8]| field(1, &[&name[..], &digest[..], extra].concat());
    let cases: Vec<(Vec<u8>, TreeError)> = vec![
        (vec![0x0a], Malformed("bad or truncated varint")),
        (vec![0x0a, 0x05, 0x0a], Malformed("truncated field")),
        (vec![0x08, 0x01], Malformed("wrong wire type")),
        (vec![0x02, 0x00], Malformed("bad field number")),
        (
            vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            Malformed("bad or truncated varint"),
        ),
        (field(1, &name), Malformed("file without a digest")),
        (
            field(4, b""),
            UnsupportedField {
                message: "Directory",
                field: 4,
            },
        ),
        (
            field(5, b""),
            UnsupportedField {
                message: "Directory",
                field: 5,
            },
        ),
        (
            file_with(&field(3, b"")),
            UnsupportedField {
                message: "FileNode",
                field: 3,
            },
        ),
        // NodeProperties.properties and .unix_mode, refused rather than dropped.
        (
            file_with(&field(6, &field(1, b""))),
            UnsupportedField {
                message: "NodeProperties",
                field: 1,
            },
        ),
        (
            file_with(&field(6, &[0x1a, 0x02, 0x08, 0x01])),
            UnsupportedField {
                message: "NodeProperties",
                field: 3,
            },
        ),
        (
            field(3, &[field(1, b"l"), field(2, b"t"), field(4, b"")].concat()),
            UnsupportedField {
                message: "SymlinkNode",
                field: 4,
            },
        ),
        // Written-out defaults and overlong encodings.
        (file_with(&[0x20, 0x00]), NotCanonical),
        (file_with(&[0x20, 0x02]), NotCanonical),
        (file_with(&field(6, b"")), NotCanonical),
        (file_with(&field(6, &field(2, &[0x08, 0x00]))), NotCanonical),
        (
            field(
                1,
                &[
                    &name[..],
                    &[0x12, 0xc2, 0x00],
                    &digest_message(&Digest::EMPTY)[..],
                ]
                .concat(),
            ),
            NotCanonical,
        ),
        (
            file_with(&field(6, &field(2, &[0x10, 0x80, 0x94, 0xeb, 0xdc, 0x03]))),
            BadTimestamp {
                seconds: 0,
                nanos: 1_000_000_000,
            },
        ),
        (
            file_with(&field(
                6,
                &field(
                    2,
                    &[
                        0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
                    ],
                ),
            )),
            BadTimestamp {
                seconds: i64::MIN,
                nanos: 0,
            },
        ),
    ];
    for (blob, expected) in cases {
        assert_eq!(Directory::decode(&blob), Err(expected), "{}", hex(&blob));
    }

    let bad_digest = |digest: &[u8]| field(2, &[field(1, b"d"), field(2, digest)].concat());
    let upper = field(1, ABC_HEX.to_uppercase().as_bytes());
    let short = field(1, &ABC_HEX.as_bytes()[2..]);
    let negative = [
        &field(1, ABC_HEX.as_bytes())[..],
        &[
            0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    ]
    .concat();
    for digest in [upper, short, negative, vec![]] {
        assert_eq!(
            Directory::decode(&bad_digest(&digest)),
            Err(BadDigest("d".into()))
        );
    }

    let huge = vec![0u8; MAX_DIRECTORY_BYTES as usize + 1];
    assert_eq!(Directory::decode(&huge), Err(TooLarge(huge.len() as u64)));
}
