//! Plain known_hosts files: our verdict against OpenSSH's on each of a range of files.

use std::fs;
use std::process::{Command, Stdio};

use crate::oracle::*;

#[test]
fn verify_agrees_with_openssh() {
    let env = Env::new();
    let p = env.port();
    let h = &env.host;
    let o = &env.other;
    let o2 = &env.other2;
    let e = &env.ecdsa;
    let here = format!("[127.0.0.1]:{p}");

    // (name, known_hosts text, what we expect both to decide).
    let mut cases: Vec<(&str, String, Decision)> = Vec::new();
    let changed_at = |name: &str, line: usize| Decision::Changed {
        path: env.dir.path().join(name),
        line,
    };
    let mut add = |name: &'static str, text: String, want: Decision| cases.push((name, text, want));

    add("plain", format!("{here} {h}\n"), Decision::Trusted);
    add(
        "box_file",
        fs::read_to_string(env.b.known_hosts()).unwrap(),
        Decision::Trusted,
    );
    add(
        "wildcard_ip",
        format!("[127.0.0.*]:{p} {h}\n"),
        Decision::Trusted,
    );
    add(
        "question_mark",
        format!("[127.0.0.?]:{p} {h}\n"),
        Decision::Trusted,
    );
    add(
        "wildcard_port",
        format!("[127.0.0.1]:* {h}\n"),
        Decision::Trusted,
    );
    add("star_colon_port", format!("*:{p} {h}\n"), Decision::Trusted);
    add("star", format!("* {h}\n"), Decision::Trusted);
    add(
        "pattern_list",
        format!("a.example,{here},b.example {h}\n"),
        Decision::Trusted,
    );
    add(
        "wrong_port",
        format!("[127.0.0.1]:{} {h}\n", p + 1),
        Decision::Unknown,
    );
    // Nothing for [127.0.0.1]:PORT: OpenSSH falls back to the bare name, where only a
    // trusting (or revoking) line counts.
    add("no_port", format!("127.0.0.1 {h}\n"), Decision::Trusted);
    add(
        "no_port_changed",
        format!("127.0.0.1 {o}\n"),
        Decision::Unknown,
    );
    add(
        "no_port_revoked",
        format!("@revoked 127.0.0.1 {h}\n127.0.0.1 {h}\n"),
        Decision::Revoked,
    );
    add(
        "changed_plus_bare",
        format!("{here} {o}\n127.0.0.1 {h}\n"),
        changed_at("changed_plus_bare", 1),
    );
    add(
        "trusted_plus_bare_revoked",
        format!("{here} {h}\n@revoked 127.0.0.1 {h}\n"),
        Decision::Trusted,
    );
    add(
        "cert_authority_plus_bare",
        format!("@cert-authority {here} {h}\n127.0.0.1 {h}\n"),
        Decision::Trusted,
    );
    add(
        "negation",
        format!("[127.0.0.*]:{p},!{here} {h}\n"),
        Decision::Unknown,
    );
    // The negation vetoes the line for [127.0.0.1]:PORT, but the bare-name fallback
    // then matches `*`.
    add(
        "negation_first",
        format!("!{here},* {h}\n"),
        Decision::Trusted,
    );
    add(
        "negation_of_both_names",
        format!("!{here},!127.0.0.1,* {h}\n"),
        Decision::Unknown,
    );
    add(
        "negation_of_other_host",
        format!("![10.0.0.1]:{p},{here} {h}\n"),
        Decision::Trusted,
    );
    add(
        "tabs",
        format!("{here}\tssh-ed25519\t{}\n", blob(h)),
        Decision::Trusted,
    );
    add(
        "whitespace_runs",
        format!(" \t {here} \t\t ssh-ed25519  \t {}   a comment\n", blob(h)),
        Decision::Trusted,
    );
    add("crlf", format!("{here} {h}\r\n"), Decision::Trusted);
    add(
        "comments_and_blank_lines",
        format!("# first\n\n   # indented\n{here} {h} comment\n"),
        Decision::Trusted,
    );
    add(
        "revoked",
        format!("{here} {h}\n@revoked {here} {h}\n"),
        Decision::Revoked,
    );
    add(
        "revoked_wildcard_first",
        format!("@revoked * {h}\n{here} {h}\n"),
        Decision::Revoked,
    );
    add(
        "revoked_other_key",
        format!("@revoked * {o}\n{here} {h}\n"),
        Decision::Trusted,
    );
    add(
        "revoked_other_host",
        format!("@revoked 10.0.0.1 {h}\n{here} {h}\n"),
        Decision::Trusted,
    );
    add(
        "revoked_only",
        format!("@revoked {here} {h}\n"),
        Decision::Revoked,
    );
    add(
        "changed",
        format!("# comment\n\n{here} {o}\n"),
        changed_at("changed", 3),
    );
    add(
        "changed_via_wildcard",
        format!("[127.0.0.*]:* {o}\n"),
        changed_at("changed_via_wildcard", 1),
    );
    add(
        "changed_then_trusted",
        format!("{here} {o}\n{here} {h}\n"),
        Decision::Trusted,
    );
    add(
        "cert_authority_only",
        format!("@cert-authority {here} {h}\n"),
        Decision::Unknown,
    );
    add(
        "cert_authority_and_changed",
        format!("@cert-authority * {h}\n{here} {o}\n"),
        changed_at("cert_authority_and_changed", 2),
    );
    // OpenSSH calls any other recorded key a change, whatever its algorithm.
    add(
        "other_algorithm_only",
        format!("{here} {e}\n"),
        changed_at("other_algorithm_only", 1),
    );
    add(
        "other_algorithm_plus_bare",
        format!("{here} {e}\n127.0.0.1 {h}\n"),
        changed_at("other_algorithm_plus_bare", 1),
    );
    add(
        "other_algorithm_and_trusted",
        format!("{here} {e}\n{here} {h}\n"),
        Decision::Trusted,
    );
    add("empty", String::new(), Decision::Unknown);
    add(
        "garbage_then_good",
        format!(
            "{here} ssh-ed25519 AAAA!!!garbage\n{here} ssh-rsa {}\n{here} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n\
             @bogus {here} {h}\n|1|AAAA|BBBB {h}\n{here}\n{here} {h}\n",
            blob(h)
        ),
        Decision::Trusted,
    );
    add(
        "garbage_only",
        format!(
            "{here} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n{here} ssh-rsa {}\n",
            blob(h)
        ),
        Decision::Unknown,
    );

    let mut report = Report::default();
    for (name, text, want) in &cases {
        let file = env.write(name, text);
        let ours = env.ours(&file);
        let theirs = env.openssh(&file);
        report.record(name, &ours, &theirs, want);
    }

    // Hashed copies (ssh-keygen -H) of some of the cases above.
    for (name, text, want) in [
        ("hashed", format!("{here} {h}\n"), Decision::Trusted),
        (
            "hashed_changed",
            format!("{here} {o}\n"),
            Decision::Changed {
                path: env.dir.path().join("hashed_changed"),
                line: 1,
            },
        ),
        (
            "hashed_other_port",
            format!("[127.0.0.1]:{} {h}\n", p + 1),
            Decision::Unknown,
        ),
        (
            "hashed_revoked",
            format!("{here} {h}\n@revoked {here} {h}\n"),
            Decision::Revoked,
        ),
    ] {
        let file = env.write(name, &text);
        let status = Command::new("ssh-keygen")
            .arg("-q")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen -H failed");
        let hashed = fs::read_to_string(&file).unwrap();
        assert!(hashed.starts_with("|1|"), "{hashed}");
        let ours = env.ours(&file);
        let theirs = env.openssh(&file);
        report.record(name, &ours, &theirs, &want);
    }

    report.assert_agreement();

    // Where OpenSSH and we deliberately differ.
    //
    // OpenSSH finds the end of a marker with strchr(' ') before trying '\t', so a
    // tab-separated `@revoked` line that contains a space later (e.g. in the comment)
    // is an unparseable marker to it and silently ignored: it trusts the revoked key.
    // We honour the revocation.
    let file = env.write(
        "revoked_tab_marker",
        &format!(
            "@revoked\t{here}\tssh-ed25519\t{} revoked key\n{here} {h}\n",
            blob(h)
        ),
    );
    assert_eq!(env.ours(&file), Decision::Revoked);
    assert_eq!(env.openssh(&file), Decision::Trusted);
    // With tabs only, OpenSSH does honour it.
    let file = env.write(
        "revoked_tab_marker_no_space",
        &format!("@revoked\t{here}\tssh-ed25519\t{}\n{here} {h}\n", blob(h)),
    );
    assert_eq!(env.ours(&file), Decision::Revoked);
    assert_eq!(env.openssh(&file), Decision::Revoked);

    // OpenSSH names the *last* offending line of a changed key; we name the first one
    // with the presented key's algorithm.
    let file = env.write(
        "two_changed",
        &format!("{here} {e}\n{here} {o}\n{here} {o2}\n"),
    );
    assert_eq!(
        env.ours(&file),
        Decision::Changed {
            path: file.clone(),
            line: 2
        }
    );
    assert_eq!(
        env.openssh(&file),
        Decision::Changed {
            path: file.clone(),
            line: 3
        }
    );
}
