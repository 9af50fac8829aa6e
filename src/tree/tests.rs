//! Tests of `crate::tree`'s build and walk: trees checked against Python's protobuf,
//! build → walk round trips, and every refusal of bad paths and untrusted blobs. The
//! helpers here are shared with `wire_tests`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::*;

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(super) fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

pub(super) fn file(content: &[u8], seconds: i64, nanos: i32) -> Entry {
    Entry::File {
        digest: Digest::of(content),
        executable: false,
        mtime: Timestamp { seconds, nanos },
    }
}

pub(super) fn node(
    name: &str,
    content: &[u8],
    executable: bool,
    mtime: Option<(i64, i32)>,
) -> FileNode {
    FileNode {
        name: name.to_owned(),
        digest: Digest::of(content),
        is_executable: executable,
        mtime: mtime.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
    }
}

pub(super) fn fetcher(tree: &InputTree) -> impl FnMut(&Digest) -> Option<Vec<u8>> + '_ {
    move |digest: &Digest| tree.directory(digest).map(<[u8]>::to_vec)
}

/// A raw length-delimited protobuf field, for blobs the encoder would never write.
pub(super) fn field(number: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2];
    let mut len = payload.len();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(payload);
    out
}

pub(super) fn digest_message(digest: &Digest) -> Vec<u8> {
    let mut out = field(1, digest.hash_hex().as_bytes());
    if digest.size_bytes != 0 {
        assert!(digest.size_bytes < 128);
        out.extend([0x10, digest.size_bytes as u8]);
    }
    out
}

pub(super) const ABC_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
pub(super) const EMPTY_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// From Python: the tree of `python_tree`, its root and its `/home/a/p` directory.
const PY_V3_ROOT: &str = "fcf70b8c79e8e4e2775fcda0785fbbbf9ed43c269b2b3f9341ea4f2e8a3306fe/156";
const PY_V3_P: &str = "0a5b0a03782e6812440a4062336164663130366439356238393334663639303934336632393231333038623930626535623736366334633862613235306337393264653536343030323031100d320e120c0880e2cfaa061080cab5ee0112490a0373756212420a40653362306334343239386663316331343961666266346338393936666239323432376165343165343634396239333463613439353939316237383532623835351a0d0a066c696e6b2e681203782e68";

fn python_tree() -> InputTree {
    let cc = Entry::File {
        digest: Digest::of(b"\x7fELF"),
        executable: true,
        mtime: Timestamp {
            seconds: 1_600_000_001,
            nanos: 1,
        },
    };
    InputTree::build([
        ("/usr/bin/cc", cc),
        (
            "/home/a/p/x.h",
            file(b"#pragma once\n", 1_700_000_000, 500_000_000),
        ),
        ("/home/a/p/sub", Entry::Directory),
        (
            "/home/a/p/link.h",
            Entry::Symlink {
                target: "x.h".into(),
            },
        ),
        (
            "/usr/include/stdio.h",
            file(b"int printf(const char *, ...);\n", 1_600_000_000, 0),
        ),
    ])
    .unwrap()
}

#[test]
fn built_tree_matches_python_protobuf() {
    let tree = python_tree();
    assert_eq!(tree.root().to_string(), PY_V3_ROOT);
    let p = unhex(PY_V3_P);
    assert_eq!(tree.directory(&Digest::of(&p)), Some(&p[..]));
    // root, home, a, p, sub (empty), usr, bin, include.
    assert_eq!(tree.directories().len(), 8);
    for (digest, blob) in tree.directories() {
        assert_eq!(Digest::of(blob), *digest);
        Directory::decode(blob).unwrap();
    }
    assert_eq!(tree.files().len(), 3);
}

#[test]
fn build_then_walk_round_trips() {
    let tree = python_tree();
    let walked = walk(&tree.root(), fetcher(&tree)).unwrap();
    let paths: Vec<&str> = walked
        .iter()
        .map(|(path, _)| path.to_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "home",
            "home/a",
            "home/a/p",
            "home/a/p/link.h",
            "home/a/p/sub",
            "home/a/p/x.h",
            "usr",
            "usr/bin",
            "usr/bin/cc",
            "usr/include",
            "usr/include/stdio.h",
        ]
    );
    let entries: HashMap<&str, &WalkEntry> = walked
        .iter()
        .map(|(path, entry)| (path.to_str().unwrap(), entry))
        .collect();
    assert_eq!(
        entries["home/a/p/x.h"],
        &WalkEntry::File {
            digest: Digest::of(b"#pragma once\n"),
            executable: false,
            mtime: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            }),
        }
    );
    assert!(matches!(
        entries["usr/bin/cc"],
        WalkEntry::File {
            executable: true,
            ..
        }
    ));
    assert_eq!(
        entries["home/a/p/link.h"],
        &WalkEntry::Symlink {
            target: "x.h".into()
        }
    );
    assert_eq!(entries["home/a/p/sub"], &WalkEntry::Directory);
}

#[test]
fn empty_trees_and_directories() {
    let fetched = RefCell::new(0);
    let count = |_: &Digest| -> Option<Vec<u8>> {
        *fetched.borrow_mut() += 1;
        None
    };
    let empty = InputTree::build(Vec::<(PathBuf, Entry)>::new()).unwrap();
    assert_eq!(empty.root(), Digest::EMPTY);
    assert_eq!(
        empty.directories().collect::<Vec<_>>(),
        [(&Digest::EMPTY, &b""[..])]
    );
    // The empty directory is never fetched.
    assert_eq!(walk(&empty.root(), count), Ok(vec![]));
    assert_eq!(*fetched.borrow(), 0);

    let root_only = InputTree::build([("/", Entry::Directory)]).unwrap();
    assert_eq!(root_only.root(), Digest::EMPTY);

    let tree = InputTree::build([("/a/b", Entry::Directory), ("/a", Entry::Directory)]).unwrap();
    let walked = walk(&tree.root(), fetcher(&tree)).unwrap();
    assert_eq!(
        walked,
        [
            (PathBuf::from("a"), WalkEntry::Directory),
            (PathBuf::from("a/b"), WalkEntry::Directory),
        ]
    );
    assert!(tree.files().next().is_none());
}

#[test]
fn identical_subtrees_share_a_blob_and_are_walked_at_each_path() {
    let tree = InputTree::build([
        ("/a/x/f.h", file(b"f", 1, 0)),
        ("/b/x/f.h", file(b"f", 1, 0)),
        ("/b/x/f.h", file(b"f", 1, 0)), // the same entry twice is fine
    ])
    .unwrap();
    // root, then a and b (one blob), then x.
    assert_eq!(tree.directories().len(), 3);
    assert_eq!(tree.files().collect::<Vec<_>>(), [&Digest::of(b"f")]);

    let fetches = RefCell::new(Vec::new());
    let walked = walk(&tree.root(), |digest| {
        fetches.borrow_mut().push(*digest);
        tree.directory(digest).map(<[u8]>::to_vec)
    })
    .unwrap();
    let paths: Vec<_> = walked
        .iter()
        .map(|(path, _)| path.to_str().unwrap())
        .collect();
    assert_eq!(paths, ["a", "a/x", "a/x/f.h", "b", "b/x", "b/x/f.h"]);
    assert_eq!(
        fetches.borrow().len(),
        3,
        "each distinct blob is fetched once"
    );
}

#[test]
fn build_refuses_bad_paths() {
    let deep = format!("{}/f", "/d".repeat(MAX_DEPTH));
    let deep_ok = format!("{}/f", "/d".repeat(MAX_DEPTH - 1));
    let long = format!("/{}", "n".repeat(MAX_NAME_BYTES + 1));
    let not_utf8 = PathBuf::from(<std::ffi::OsStr as OsStrExt>::from_bytes(b"/a/\xff"));
    for bad in [
        PathBuf::from("a/b"),
        PathBuf::from(""),
        PathBuf::from("/a//b"),
        PathBuf::from("/a/"),
        PathBuf::from("/a/./b"),
        PathBuf::from("/a/../b"),
        PathBuf::from("/.."),
        PathBuf::from("/a/b\0c"),
        PathBuf::from(&long),
        PathBuf::from(&deep),
        not_utf8,
    ] {
        let result = InputTree::build([(&bad, file(b"x", 0, 0))]);
        assert!(
            matches!(result, Err(TreeError::BadPath { ref path, .. }) if *path == bad),
            "{bad:?}: {result:?}"
        );
    }
    // The deepest path build accepts is one the default walk accepts.
    let tree = InputTree::build([(deep_ok, file(b"x", 0, 0))]).unwrap();
    assert_eq!(walk(&tree.root(), fetcher(&tree)).unwrap().len(), MAX_DEPTH);
}

#[test]
fn build_refuses_conflicts_and_bad_entries() {
    let conflict = |entries: Vec<(&str, Entry)>, at: &str| {
        let result = InputTree::build(entries);
        assert_eq!(result.unwrap_err(), TreeError::Conflict(at.into()));
    };
    let link = || Entry::Symlink {
        target: "elsewhere".into(),
    };
    conflict(
        vec![("/a", file(b"x", 0, 0)), ("/a/b", file(b"y", 0, 0))],
        "/a",
    );
    conflict(
        vec![("/a/b", file(b"y", 0, 0)), ("/a", file(b"x", 0, 0))],
        "/a",
    );
    conflict(vec![("/a/b", file(b"y", 0, 0)), ("/a", link())], "/a");
    conflict(vec![("/a", link()), ("/a/b", file(b"y", 0, 0))], "/a");
    conflict(
        vec![("/a", Entry::Directory), ("/a", file(b"x", 0, 0))],
        "/a",
    );
    conflict(
        vec![("/a", file(b"x", 0, 0)), ("/a", file(b"y", 0, 0))],
        "/a",
    );
    conflict(
        vec![("/a", file(b"x", 0, 0)), ("/a", file(b"x", 0, 1))],
        "/a",
    );
    conflict(
        vec![
            ("/a", link()),
            ("/a", Entry::Symlink { target: "x".into() }),
        ],
        "/a",
    );
    conflict(vec![("/", file(b"x", 0, 0))], "/");

    let bad_time = InputTree::build([("/a", file(b"x", 0, 1_000_000_000))]);
    assert!(matches!(bad_time, Err(TreeError::BadTimestamp { .. })));
    for target in ["", "a\0b"] {
        let result = InputTree::build([(
            "/a",
            Entry::Symlink {
                target: target.into(),
            },
        )]);
        assert_eq!(result.unwrap_err(), TreeError::BadTarget(target.into()));
    }
}

/// A Directory holding `entries` (already-encoded Directory fields), as raw bytes.
pub(super) fn raw(entries: &[Vec<u8>]) -> Vec<u8> {
    entries.concat()
}

pub(super) fn raw_file(name: &str) -> Vec<u8> {
    field(
        1,
        &[
            field(1, name.as_bytes()),
            field(2, &digest_message(&Digest::of(b"abc"))),
        ]
        .concat(),
    )
}

pub(super) fn raw_dir(name: &str) -> Vec<u8> {
    field(
        2,
        &[
            field(1, name.as_bytes()),
            field(2, &digest_message(&Digest::EMPTY)),
        ]
        .concat(),
    )
}

pub(super) fn raw_link(name: &str, target: &[u8]) -> Vec<u8> {
    field(3, &[field(1, name.as_bytes()), field(2, target)].concat())
}

/// A store of the blobs given, for walks over hand-made trees.
fn store(blobs: &[&Directory]) -> HashMap<Digest, Vec<u8>> {
    blobs
        .iter()
        .map(|dir| (dir.digest(), dir.encode()))
        .collect()
}

fn dirs(names: &[(&str, Digest)]) -> Directory {
    Directory {
        directories: names
            .iter()
            .map(|(name, digest)| DirectoryNode {
                name: (*name).into(),
                digest: *digest,
            })
            .collect(),
        ..Directory::default()
    }
}

#[test]
fn walk_reports_every_missing_blob() {
    let tree = InputTree::build([
        ("/a/x/f", file(b"f", 0, 0)),
        ("/b/y/g", file(b"g", 0, 0)),
        ("/c/z/h", file(b"h", 0, 0)),
    ])
    .unwrap();
    let root = Directory::decode(tree.directory(&tree.root()).unwrap()).unwrap();
    let a = root.directories[0].digest;
    let c = root.directories[2].digest;
    let walked = walk(&tree.root(), |digest| {
        (*digest != a && *digest != c).then(|| tree.directory(digest).unwrap().to_vec())
    });
    assert_eq!(walked, Err(WalkError::Missing(vec![a, c])));

    let nothing = walk(&tree.root(), |_| None);
    assert_eq!(nothing, Err(WalkError::Missing(vec![tree.root()])));
}

#[test]
fn walk_refuses_forged_and_invalid_blobs() {
    let tree = python_tree();
    let other = InputTree::build([("/x", file(b"x", 0, 0))]).unwrap();
    let forged = walk(&tree.root(), |_| {
        other.directory(&other.root()).map(<[u8]>::to_vec)
    });
    assert!(
        matches!(forged, Err(WalkError::Corrupt { ref path, .. }) if path.as_os_str().is_empty())
    );

    // Right size, wrong content; right content but the digest claims another size.
    let blob = tree.directory(&tree.root()).unwrap();
    let mut flipped = blob.to_vec();
    flipped[5] ^= 1;
    assert!(matches!(
        walk(&tree.root(), |_| Some(flipped.clone())),
        Err(WalkError::Corrupt { .. })
    ));
    let resized = Digest {
        size_bytes: blob.len() as u64 + 1,
        ..tree.root()
    };
    assert!(matches!(
        walk(&resized, |_| Some(blob.to_vec())),
        Err(WalkError::Corrupt { .. })
    ));

    // Genuine digest, invalid content: reported with the path it was met at.
    let unsorted = raw(&[raw_file("b"), raw_file("a")]);
    let bad = Digest::of(&unsorted);
    let parent = dirs(&[("sub", bad)]);
    let mut blobs = store(&[&parent]);
    blobs.insert(bad, unsorted);
    let walked = walk(&parent.digest(), |digest| blobs.get(digest).cloned());
    assert_eq!(
        walked,
        Err(WalkError::Invalid {
            digest: bad,
            path: "sub".into(),
            source: TreeError::NotSorted("a".into())
        })
    );

    // A declared size over the limit is refused before anything is fetched.
    let big = Digest {
        size_bytes: MAX_DIRECTORY_BYTES + 1,
        ..Digest::EMPTY
    };
    let parent = dirs(&[("big", big)]);
    let blobs = store(&[&parent]);
    let walked = walk(&parent.digest(), |digest| {
        assert_ne!(*digest, big);
        blobs.get(digest).cloned()
    });
    assert_eq!(
        walked,
        Err(WalkError::TooLarge {
            digest: big,
            path: "big".into()
        })
    );
}

#[test]
fn walk_bounds_depth_entries_and_path_bytes() {
    // A chain /d/d/d/f: 4 levels.
    let chain = InputTree::build([("/d/d/d/f", file(b"f", 0, 0))]).unwrap();
    let limits = |max_entries, max_depth, max_path_bytes| WalkLimits {
        max_entries,
        max_depth,
        max_path_bytes,
    };
    assert_eq!(
        walk_with_limits(&chain.root(), &limits(100, 4, 100), fetcher(&chain))
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        walk_with_limits(&chain.root(), &limits(100, 3, 100), fetcher(&chain)),
        Err(WalkError::Limit {
            what: "levels",
            limit: 3
        })
    );
    assert_eq!(
        walk_with_limits(&chain.root(), &limits(3, 4, 100), fetcher(&chain)),
        Err(WalkError::Limit {
            what: "entries",
            limit: 3
        })
    );
    // Paths d, d/d, d/d/d, d/d/d/f: 1 + 3 + 5 + 7 bytes.
    assert!(walk_with_limits(&chain.root(), &limits(100, 4, 16), fetcher(&chain)).is_ok());
    assert_eq!(
        walk_with_limits(&chain.root(), &limits(100, 4, 15), fetcher(&chain)),
        Err(WalkError::Limit {
            what: "bytes of paths",
            limit: 15
        })
    );

    // A DAG of 40 blobs, each level holding the next twice: 2⁴⁰ paths, stopped by the
    // entry limit after 40 fetches.
    let mut levels = vec![Directory {
        files: vec![node("f", b"f", false, Some((0, 0)))],
        ..Directory::default()
    }];
    for _ in 0..40 {
        let below = levels.last().unwrap().digest();
        levels.push(dirs(&[("a", below), ("b", below)]));
    }
    let blobs = store(&levels.iter().collect::<Vec<_>>());
    let fetches = RefCell::new(0);
    let walked = walk_with_limits(
        &levels.last().unwrap().digest(),
        &limits(10_000, 64, 1 << 20),
        |digest| {
            *fetches.borrow_mut() += 1;
            blobs.get(digest).cloned()
        },
    );
    assert_eq!(
        walked,
        Err(WalkError::Limit {
            what: "entries",
            limit: 10_000
        })
    );
    assert_eq!(*fetches.borrow(), 41);
}

#[test]
fn timestamps() {
    let metadata = std::fs::metadata("/").unwrap();
    assert!(Timestamp::mtime_of(&metadata).is_valid());
    assert!(
        Timestamp {
            seconds: -1,
            nanos: 999_999_999
        }
        .is_valid()
    );
    assert!(
        !Timestamp {
            seconds: 0,
            nanos: -1
        }
        .is_valid()
    );
    assert!(
        !Timestamp {
            seconds: 253_402_300_800,
            nanos: 0
        }
        .is_valid()
    );
}
