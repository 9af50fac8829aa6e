//! The matcher against known_hosts files written the ways OpenSSH writes and reads them.

use super::*;
use std::os::unix::fs::PermissionsExt;

const A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN4XcbBb1G1UkZfNJJTi6ugGv7zRXUS4KT8xtgsfy9vp";
const B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGSclxZSme9Nl0Am5lTMsFSKL8Nug9Qq/6/E4ftm2Gq3";
const C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDEAjfSZpAfIaIGTB9LI5l2Cccfn/n6HiHQMEDsmXFMfZMIEc6XHdlKxuCDz1AYWPHxPYQKkpPRZ5pOeA1sH1k8=";
const D: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1X5ihrEZWHF0O9wY2qM/kyDFy7P+TqaQOOElDR7+Z7sE7AVcfFFdO1vhtYVnlpJxWuKdJa5JoyHfVUZ9XzTFgrl4kRhpP2yfxswdOgVLjo9oaaC/k6PXbZwyedklLbYG4fuqRpIOKCEQ6X+gjj6VJByEWrf7827SXW4Faoa+skQ==";

fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).unwrap()
}

fn kh(text: &str) -> KnownHosts {
    let mut k = KnownHosts::default();
    k.add_text(Path::new("/kh"), text);
    k
}

fn changed(line: usize) -> Verdict {
    Verdict::Changed {
        path: "/kh".into(),
        line,
    }
}

fn revoked(line: usize) -> Verdict {
    Verdict::Revoked {
        path: "/kh".into(),
        line,
    }
}

#[test]
fn plain_entries_and_ports() {
    let k = kh(&format!(
        "example.com {A}\n[example.com]:2222 {B} a comment\n"
    ));
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 2222, &key(B)), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 2222, &key(A)), changed(2));
    assert_eq!(k.verify("example.com", 22, &key(B)), changed(1));
    // Not recorded for port 2223: OpenSSH falls back to the bare name.
    assert_eq!(k.verify("example.com", 2223, &key(A)), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 2223, &key(B)), Verdict::Unknown);
    assert_eq!(k.verify("other.com", 22, &key(A)), Verdict::Unknown);
    // `[name]:22` is never looked up: port 22 means the bare name.
    let k = kh(&format!("[example.com]:22 {A}\n"));
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Unknown);
}

#[test]
fn whitespace_comments_and_line_numbers() {
    let k = kh(&format!(
        "# comment\n\n   \t\n  # indented comment\n\t example.com\t \t{}\t\t{} trailing comment\r\nexample.com {B}\n",
        A.split(' ').next().unwrap(),
        A.split(' ').nth(1).unwrap(),
    ));
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
    let k = kh(&format!("# comment\n\nexample.com {B}\n"));
    assert_eq!(k.verify("example.com", 22, &key(A)), changed(3));
}

#[test]
fn wildcards() {
    let k = kh(&format!(
        "*.example.com {A}\nhost?.farm {A}\n[10.0.0.*]:2222 {A}\n*:3333 {A}\n[10.1.0.1]:* {A}\n"
    ));
    let a = key(A);
    for (name, port) in [
        ("build.example.com", 22),
        ("a.b.example.com", 22),
        ("host1.farm", 22),
        ("10.0.0.7", 2222),
        ("anything", 3333),
        ("10.1.0.1", 4444),
    ] {
        assert_eq!(k.verify(name, port, &a), Verdict::Trusted, "{name}:{port}");
    }
    for (name, port) in [
        ("example.com", 22),
        ("host12.farm", 22),
        ("host.farm", 22),
        ("10.0.0.7", 22),
        ("10.0.1.7", 2222),
        ("anything", 22),
        ("10.1.0.1", 22),
    ] {
        assert_eq!(k.verify(name, port, &a), Verdict::Unknown, "{name}:{port}");
    }
    assert!(glob(b"", b"*"));
    assert!(glob(b"abc", b"a**c"));
    assert!(glob(b"abcbc", b"*bc"));
    assert!(!glob(b"abcbd", b"*bc"));
    assert!(glob(b"aXbXc", b"a*b*c"));
    assert!(!glob(b"ab", b"a?b"));
    assert!(glob(b"[h]:1", b"[h]:?"));
}

#[test]
fn negation_vetoes_the_line() {
    let a = key(A);
    for hosts in [
        "*.example.com,!bad.example.com",
        "!bad.example.com,*.example.com",
    ] {
        let k = kh(&format!("{hosts} {A}\n"));
        assert_eq!(k.verify("good.example.com", 22, &a), Verdict::Trusted);
        assert_eq!(k.verify("bad.example.com", 22, &a), Verdict::Unknown);
    }
    // A negation alone never matches anything.
    let k = kh(&format!("!bad.example.com {A}\n"));
    assert_eq!(k.verify("good.example.com", 22, &a), Verdict::Unknown);
    // A negated line is no evidence of a change either; another line still counts.
    let k = kh(&format!("*,!bad.example.com {B}\nbad.example.com {A}\n"));
    assert_eq!(k.verify("bad.example.com", 22, &a), Verdict::Trusted);
    assert_eq!(k.verify("good.example.com", 22, &a), changed(1));
}

#[test]
fn case_insensitive() {
    let k = kh(&format!("Build.Example.COM,[MiXeD]:2222 {A}\n"));
    let a = key(A);
    assert_eq!(k.verify("build.example.com", 22, &a), Verdict::Trusted);
    assert_eq!(k.verify("BUILD.example.com", 22, &a), Verdict::Trusted);
    assert_eq!(k.verify("mixed", 2222, &a), Verdict::Trusted);
}

#[test]
fn hashed_entries() {
    // Generated independently (Python's hmac) with the salt 0x00..0x13.
    let k = kh(&format!(
        "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|nnUK16ANsXd3hL31YfAkGOluSjU= {A}\n\
         |1|AAECAwQFBgcICQoLDA0ODxAREhM=|Wgcx+Fm+LmaWwC7rQ80eIf2uHe0= {B}\n"
    ));
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
    assert_eq!(k.verify("Example.COM", 22, &key(A)), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 2222, &key(B)), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 2222, &key(A)), changed(2));
    assert_eq!(k.verify("example.org", 22, &key(A)), Verdict::Unknown);
    assert_eq!(
        hash_host("example.com", &(0u8..20).collect::<Vec<_>>()),
        "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|nnUK16ANsXd3hL31YfAkGOluSjU="
    );
}

#[test]
fn bad_lines_are_skipped() {
    let good = format!("example.com {A}");
    let bad_lines = [
        "example.com ssh-ed25519 AAAA!!!notbase64".to_string(),
        "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5".to_string(),
        format!("example.com ssh-rsa {}", A.split(' ').nth(1).unwrap()),
        format!("example.com ssh-foo {}", A.split(' ').nth(1).unwrap()),
        "example.com".to_string(),
        "example.com ssh-ed25519".to_string(),
        format!("example.com # {A}"),
        format!("@bogus example.com {A}"),
        format!("@revoked @revoked example.com {A}"),
        "@revoked".to_string(),
        format!("|1|AAECAwQ=|nnUK16ANsXd3hL31YfAkGOluSjU= {A}"),
        format!("|1|!!!|nnUK16ANsXd3hL31YfAkGOluSjU= {A}"),
        format!("|2|AAECAwQFBgcICQoLDA0ODxAREhM=|x {A}"),
        format!("|1|AAECAwQFBgcICQoLDA0ODxAREhM= {A}"),
    ];
    for bad in &bad_lines {
        assert!(parse_line(bad).is_err(), "{bad}");
    }
    // Bad lines before and after a good one do not hide it.
    let text = format!(
        "{}\n{good}\n{}\n",
        bad_lines.join("\n"),
        bad_lines.join("\n")
    );
    let k = kh(&text);
    assert_eq!(k.entries.len(), 1);
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
    // rsa-sha2-* names are accepted for RSA keys, as OpenSSH does.
    let blob = D.split(' ').nth(1).unwrap();
    let k = kh(&format!("example.com rsa-sha2-512 {blob}\n"));
    assert_eq!(k.verify("example.com", 22, &key(D)), Verdict::Trusted);
}

#[test]
fn bare_name_fallback_for_other_ports() {
    let a = key(A);
    // Only a trusting line under the bare name counts…
    let k = kh(&format!("example.com {A}\n"));
    assert_eq!(k.verify("example.com", 2222, &a), Verdict::Trusted);
    let k = kh(&format!("example.com {B}\n"));
    assert_eq!(k.verify("example.com", 2222, &a), Verdict::Unknown);
    // …or a revoking one (OpenSSH warns, then treats the key as unknown).
    let k = kh(&format!("@revoked example.com {A}\nexample.com {A}\n"));
    assert_eq!(k.verify("example.com", 2222, &a), revoked(1));
    // Anything recorded for the port itself decides without the fallback.
    let k = kh(&format!("[example.com]:2222 {B}\nexample.com {A}\n"));
    assert_eq!(k.verify("example.com", 2222, &a), changed(1));
    let k = kh(&format!(
        "[example.com]:2222 {A}\n@revoked example.com {A}\n"
    ));
    assert_eq!(k.verify("example.com", 2222, &a), Verdict::Trusted);
    // A negated port-specific pattern does not stop the fallback.
    let k = kh(&format!("![example.com]:2222,* {A}\n"));
    assert_eq!(k.verify("example.com", 2222, &a), Verdict::Trusted);
    // A CA line alone is "nothing found" for the port.
    let k = kh(&format!(
        "@cert-authority [example.com]:2222 {A}\nexample.com {A}\n"
    ));
    assert_eq!(k.verify("example.com", 2222, &a), Verdict::Trusted);
}

#[test]
fn revoked_wins() {
    let a = key(A);
    let k = kh(&format!("example.com {A}\n@revoked * {A}\n"));
    assert_eq!(k.verify("example.com", 22, &a), revoked(2));
    assert_eq!(k.verify("anything", 2222, &a), revoked(2));
    // Revoking another key, or the key for other hosts only, changes nothing.
    let k = kh(&format!(
        "example.com {A}\n@revoked example.com {B}\n@revoked\tother.com\t{A}\n"
    ));
    assert_eq!(k.verify("example.com", 22, &a), Verdict::Trusted);
    assert_eq!(k.verify("example.com", 22, &key(B)), revoked(2));
    // A revoked line is not a plain line: it is no evidence of a changed key.
    let k = kh(&format!("@revoked example.com {B}\n"));
    assert_eq!(k.verify("example.com", 22, &a), Verdict::Unknown);
}

#[test]
fn cert_authority_lines_never_trust_plain_keys() {
    let a = key(A);
    let k = kh(&format!("@cert-authority example.com {A}\n"));
    assert_eq!(k.verify("example.com", 22, &a), Verdict::Unknown);
    let k = kh(&format!("@cert-authority * {B}\n"));
    assert_eq!(k.verify("example.com", 22, &a), Verdict::Unknown);
    let k = kh(&format!("@cert-authority * {A}\nexample.com {B}\n"));
    assert_eq!(k.verify("example.com", 22, &a), changed(2));
    let k = kh(&format!("@cert-authority * {A}\nexample.com {C}\n"));
    assert_eq!(k.verify("example.com", 22, &a), changed(2));
    assert!(k.known_algorithms("other", 22).is_empty());
}

#[test]
fn certificate_authorities_are_looked_up_by_host_and_can_be_revoked() {
    let (a, b) = (key(A), key(B));
    let k = kh(&format!("@cert-authority *.example.com {A}\n"));
    assert_eq!(
        k.verify_certificate_authority("build.example.com", 22, &a),
        Verdict::Trusted
    );
    assert_eq!(
        k.verify_certificate_authority("build.example.com", 2222, &a),
        Verdict::Trusted
    );
    assert_eq!(
        k.verify_certificate_authority("build.example.com", 22, &b),
        Verdict::Unknown
    );
    assert_eq!(
        k.verify_certificate_authority("example.org", 22, &a),
        Verdict::Unknown
    );
    assert!(k.has_certificate_authority("build.example.com", 22));
    assert!(!k.has_certificate_authority("example.org", 22));
    let k = kh(&format!(
        "@cert-authority * {A}\n@revoked build.example.com {A}\n"
    ));
    assert_eq!(
        k.verify_certificate_authority("build.example.com", 22, &a),
        revoked(2)
    );
    assert_eq!(
        k.verify_certificate_authority("other.example.com", 22, &a),
        Verdict::Trusted
    );
}

#[test]
fn any_other_key_means_changed() {
    // Like OpenSSH: keys of other algorithms on record count as a change too.
    let k = kh(&format!("example.com {C}\nexample.com {D}\n"));
    assert_eq!(k.verify("example.com", 22, &key(A)), changed(1));
    // The line named prefers the presented key's algorithm.
    let k = kh(&format!(
        "example.com {C}\nexample.com {B}\nexample.com {B}\n"
    ));
    assert_eq!(k.verify("example.com", 22, &key(A)), changed(2));
    // Any line with the right key trusts it, wherever it is.
    let k = kh(&format!("example.com {B}\nexample.com {A}\n"));
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
}

#[test]
fn several_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    let unreadable = dir.path().join("a-directory");
    fs::create_dir(&unreadable).unwrap();
    fs::write(&first, format!("other.com {A}\nexample.com {B}\n")).unwrap();
    fs::write(&second, format!("example.com {B}\nexample.com {A}\n")).unwrap();
    let files = [
        dir.path().join("missing"),
        unreadable.clone(),
        first.clone(),
        second.clone(),
    ];
    let k = KnownHosts::load(&files);
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Trusted);
    let k = KnownHosts::load(&files[..3]);
    assert_eq!(
        k.verify("example.com", 22, &key(A)),
        Verdict::Changed {
            path: first.clone(),
            line: 2
        }
    );
    let k = KnownHosts::load(&[]);
    assert_eq!(k.verify("example.com", 22, &key(A)), Verdict::Unknown);
}

#[test]
fn known_algorithms_in_file_order() {
    let k = kh(&format!(
        "example.com {C}\n@revoked example.com {A}\n@cert-authority example.com {A}\n\
         other.com {A}\nexample.com {D}\nexample.com {C}\n*.com {B}\nexample.com,!example.com {A}\n"
    ));
    assert_eq!(
        k.known_algorithms("example.com", 22),
        vec![
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256)
            },
            Algorithm::Ed25519,
        ]
    );
    assert_eq!(k.known_algorithms("x.com", 22), vec![Algorithm::Ed25519]);
    assert_eq!(k.known_algorithms("y.org", 22), vec![]);
    // Other ports: the port's own lines first, then the bare name's.
    let k = kh(&format!("example.com {C}\n[example.com]:2222 {A}\n"));
    assert_eq!(
        k.known_algorithms("example.com", 2222),
        vec![
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            },
        ]
    );
}

#[test]
fn learn_plain_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new/dir/known_hosts");
    learn(
        &file,
        "Box.Example",
        2222,
        &key(&format!("{A} comment")),
        false,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("[box.example]:2222 {A}\n")
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir.path().join("new")), 0o700);

    // Already known: nothing written.
    learn(&file, "box.example", 2222, &key(A), true).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap().lines().count(), 1);

    // Hashed, on port 22, after a last line without newline.
    fs::write(&file, format!("[box.example]:2222 {A}")).unwrap();
    learn(&file, "box.example", 22, &key(B), true).unwrap();
    let text = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].starts_with("|1|"), "{text}");
    assert!(lines[1].ends_with(B), "{text}");
    assert!(text.ends_with('\n'));
    let k = KnownHosts::load(std::slice::from_ref(&file));
    assert_eq!(k.verify("box.example", 22, &key(B)), Verdict::Trusted);
    assert_eq!(k.verify("box.example", 2222, &key(A)), Verdict::Trusted);

    // A different key of the same type on record: refuse.
    let err = learn(&file, "box.example", 22, &key(A), false).unwrap_err();
    assert!(format!("{err:#}").contains("different"), "{err:#}");
    // A revoked key: refuse.
    fs::write(&file, format!("@revoked * {C}\n")).unwrap();
    assert!(learn(&file, "box.example", 22, &key(C), false).is_err());
    // Another algorithm is fine.
    learn(&file, "box.example", 22, &key(D), false).unwrap();
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("@revoked * {C}\nbox.example {D}\n")
    );
}

#[test]
fn concurrent_learners_write_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_hosts");
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let file = file.clone();
            std::thread::spawn(move || learn(&file, "box", 2222, &key(A), i % 2 == 0))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(
        KnownHosts::load(&[file]).verify("box", 2222, &key(A)),
        Verdict::Trusted
    );
}
