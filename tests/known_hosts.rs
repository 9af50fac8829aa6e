//! `sshcc::ssh::known_hosts` against OpenSSH itself: for a range of known_hosts files,
//! our [`KnownHosts::verify`] must reach the decision that OpenSSH's client reaches when
//! it connects to a real sshd (a throwaway box on 127.0.0.1) with strict checking.
//!
//! The config-driven cases also run `sshcc::ssh::config::resolve` on the same ssh_config
//! that OpenSSH uses, so HostKeyAlias and several UserKnownHostsFiles are covered end to
//! end.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use russh::keys::PublicKey;
use sshcc::ssh::config::{self, ClientOptions};
use sshcc::ssh::connection::SshConnection;
use sshcc::ssh::known_hosts::{KnownHosts, Verdict, learn};
use sshcc::throwaway_box::{CertificateRequest, ThrowawayBox};

/// What a verdict looks like from OpenSSH's side: its messages name the offending line
/// of a changed key, but not the line of a revoked one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Trusted,
    Unknown,
    Changed { path: PathBuf, line: usize },
    Revoked,
}

impl From<Verdict> for Decision {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Trusted => Decision::Trusted,
            Verdict::Unknown => Decision::Unknown,
            Verdict::Changed { path, line } => Decision::Changed { path, line },
            Verdict::Revoked { .. } => Decision::Revoked,
        }
    }
}

struct Env {
    b: ThrowawayBox,
    dir: tempfile::TempDir,
    /// The box's host key as `ssh-ed25519 BASE64`.
    host: String,
    host_key: PublicKey,
    /// Other keys: two more ed25519 keys and an ECDSA one.
    other: String,
    other2: String,
    ecdsa: String,
}

impl Env {
    fn new() -> Env {
        let b = ThrowawayBox::builder()
            .start()
            .expect("starting the throwaway box");
        let line = fs::read_to_string(b.known_hosts()).unwrap();
        let mut fields = line.split_whitespace();
        let host_field = fields.next().unwrap();
        assert_eq!(host_field, format!("[127.0.0.1]:{}", b.port()));
        let host = format!("{} {}", fields.next().unwrap(), fields.next().unwrap());
        let host_key = PublicKey::from_openssh(&host).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other = keygen(dir.path(), "other", "ed25519");
        let other2 = keygen(dir.path(), "other2", "ed25519");
        let ecdsa = keygen(dir.path(), "ecdsa", "ecdsa");
        Env {
            b,
            dir,
            host,
            host_key,
            other,
            other2,
            ecdsa,
        }
    }

    fn port(&self) -> u16 {
        self.b.port()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// `ssh … 127.0.0.1 true` with strict checking against `file` only.
    fn openssh(&self, file: &Path) -> Decision {
        let out = Command::new("ssh")
            .args(["-F", "/dev/null"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", file.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "UpdateHostKeys=no"])
            .args(["-o", "IdentitiesOnly=yes"])
            .arg("-i")
            .arg(self.b.client_key())
            .arg("-p")
            .arg(self.port().to_string())
            .args(["127.0.0.1", "true"])
            .stdin(Stdio::null())
            .output()
            .expect("running ssh");
        classify(&out)
    }

    fn ours(&self, file: &Path) -> Decision {
        KnownHosts::load(&[file.to_path_buf()])
            .verify("127.0.0.1", self.port(), &self.host_key)
            .into()
    }

    /// An ssh_config for alias `kbox` reaching the box with `extra` options.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        self.write(name, &kbox_config(&self.b, extra))
    }

    fn openssh_with_config(&self, config: &Path) -> Decision {
        openssh_with_config(config)
    }

    fn ours_with_config(&self, config: &Path) -> Decision {
        let target = config::resolve("kbox", None, Some(config)).unwrap();
        KnownHosts::load(&target.known_hosts_files())
            .verify(
                target.host_key_name(),
                target.host_key_port(),
                &self.host_key,
            )
            .into()
    }
}

/// An ssh_config for alias `kbox` reaching `b` with `extra` options.
fn kbox_config(b: &ThrowawayBox, extra: &str) -> String {
    format!(
        "Host kbox\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  \
         IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
         GlobalKnownHostsFile /dev/null\n  UpdateHostKeys no\n{extra}",
        port = b.port(),
        key = b.client_key().display(),
    )
}

/// `ssh -F config kbox true`.
fn openssh_with_config(config: &Path) -> Decision {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["kbox", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("running ssh");
    classify(&out)
}

/// sshcc connecting to `kbox` of `config` for real, its outcome read from its error;
/// `unchecked` may connect with `StrictHostKeyChecking no`.
fn ours_connecting(config: &Path, unchecked: &[&str]) -> Decision {
    let target = config::resolve("kbox", None, Some(config)).unwrap();
    let options = ClientOptions {
        config_file: Some(config.to_path_buf()),
        unchecked_host_keys: unchecked.iter().map(|s| s.to_string()).collect(),
        ..ClientOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = match runtime.block_on(SshConnection::connect(&target, &options)) {
        Ok(_) => return Decision::Trusted,
        Err(err) => format!("{err:#}"),
    };
    if err.contains("revoked") {
        Decision::Revoked
    } else if let Some((_, rest)) = err.split_once("which differs from ") {
        let location = rest.split_once(". ").unwrap().0;
        let (path, line) = location.rsplit_once(':').unwrap();
        Decision::Changed {
            path: PathBuf::from(path),
            line: line.parse().unwrap(),
        }
    } else if err.contains("no matching host key") {
        Decision::Unknown
    } else {
        panic!("unexpected sshcc outcome: {err}");
    }
}

fn keygen(dir: &Path, name: &str, kind: &str) -> String {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "x", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = fs::read_to_string(path.with_extension("pub")).unwrap();
    let mut fields = text.split_whitespace();
    format!("{} {}", fields.next().unwrap(), fields.next().unwrap())
}

/// OpenSSH's decision from its exit status and messages.
fn classify(out: &Output) -> Decision {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Decision::Trusted;
    }
    if stderr.contains("REVOKED HOST KEY DETECTED") {
        return Decision::Revoked;
    }
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        // "Offending ED25519 key in /path/file:3"
        let offending = stderr
            .lines()
            .find_map(|l| l.split_once("Offending ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no offending line in:\n{stderr}"));
        let location = offending.split_once(" key in ").unwrap().1.trim();
        let (path, line) = location.rsplit_once(':').unwrap();
        return Decision::Changed {
            path: PathBuf::from(path),
            line: line.parse().unwrap(),
        };
    }
    if stderr.contains("host key is known for") && stderr.contains("requested strict checking") {
        return Decision::Unknown;
    }
    panic!("unexpected ssh outcome {}:\n{stderr}", out.status);
}

/// One row per case of our decision against OpenSSH's and the expected one; a test
/// asserts at the end that every row agreed, so one run shows every disagreement.
#[derive(Default)]
struct Report {
    rows: String,
    mismatches: usize,
}

impl Report {
    fn record(&mut self, name: &str, ours: &Decision, theirs: &Decision, want: &Decision) {
        let ok = ours == theirs && ours == want;
        if !ok {
            self.mismatches += 1;
        }
        let _ = writeln!(
            self.rows,
            "{} {name:28} ours={ours:?} openssh={theirs:?} expected={want:?}",
            if ok { "  " } else { "!!" }
        );
    }

    fn assert_agreement(&self) {
        eprintln!("{}", self.rows);
        assert_eq!(
            self.mismatches, 0,
            "disagreement with OpenSSH:\n{}",
            self.rows
        );
    }
}

fn blob(key: &str) -> &str {
    key.split(' ').nth(1).unwrap()
}

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

#[test]
fn resolved_targets_agree_with_openssh() {
    let env = Env::new();
    let p = env.port();
    let h = &env.host;
    let o = &env.other;
    let here = format!("[127.0.0.1]:{p}");
    let path = |name: &str| env.dir.path().join(name);

    let mut report = Report::default();
    // Files whose text is `None` are not created.
    let mut check = |name: &str, files: &[(&str, Option<String>)], extra: &str, want: Decision| {
        let mut names = Vec::new();
        for (file, text) in files {
            let path = match text {
                Some(text) => env.write(file, text),
                None => path(file),
            };
            names.push(path.display().to_string());
        }
        let config = env.config(
            &format!("{name}.config"),
            &format!("  UserKnownHostsFile {}\n{extra}", names.join(" ")),
        );
        let ours = env.ours_with_config(&config);
        let theirs = env.openssh_with_config(&config);
        report.record(name, &ours, &theirs, &want);
    };

    check(
        "config_plain",
        &[("c_plain", Some(format!("{here} {h}\n")))],
        "",
        Decision::Trusted,
    );
    // HostKeyAlias is looked up verbatim, without the port, and case-insensitively.
    check(
        "alias",
        &[("c_alias", Some(format!("buildbox {h}\n")))],
        "  HostKeyAlias BuildBox\n",
        Decision::Trusted,
    );
    check(
        "alias_mixed_case_file",
        &[("c_alias_case", Some(format!("BuildBox {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Trusted,
    );
    check(
        "alias_with_port_form",
        &[("c_alias_port", Some(format!("[buildbox]:{p} {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Unknown,
    );
    check(
        "alias_ignores_hostname",
        &[("c_alias_host", Some(format!("{here} {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Unknown,
    );
    check(
        "alias_changed",
        &[("c_alias_changed", Some(format!("buildbox {o}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Changed {
            path: path("c_alias_changed"),
            line: 1,
        },
    );
    // Several UserKnownHostsFiles are consulted together.
    check(
        "two_files_second_trusts",
        &[
            ("c_two_a", Some(format!("{here} {o}\n"))),
            ("c_two_b", Some(format!("{here} {h}\n"))),
        ],
        "",
        Decision::Trusted,
    );
    check(
        "two_files_changed_in_second",
        &[
            ("c_two_c", Some(String::new())),
            ("c_two_d", Some(format!("# x\n{here} {o}\n"))),
        ],
        "",
        Decision::Changed {
            path: path("c_two_d"),
            line: 2,
        },
    );
    check(
        "two_files_revoked_in_second",
        &[
            ("c_two_e", Some(format!("{here} {h}\n"))),
            ("c_two_f", Some(format!("@revoked * {h}\n"))),
        ],
        "",
        Decision::Revoked,
    );
    check(
        "missing_file_then_good",
        &[
            ("c_missing", None),
            ("c_two_g", Some(format!("{here} {h}\n"))),
        ],
        "",
        Decision::Trusted,
    );

    report.assert_agreement();
}

#[test]
fn learned_lines_satisfy_openssh_and_vice_versa() {
    let env = Env::new();
    let p = env.port();

    // Ours, plain and hashed, in a directory that does not exist yet.
    for hash in [false, true] {
        let file = env
            .dir
            .path()
            .join(format!("learned-{hash}/sub/known_hosts"));
        learn(&file, "127.0.0.1", p, &env.host_key, hash).unwrap();
        learn(&file, "127.0.0.1", p, &env.host_key, hash).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.starts_with("|1|"), hash, "{text}");
        assert_eq!(env.openssh(&file), Decision::Trusted, "{text}");
    }

    // OpenSSH's own accept-new (HashKnownHosts yes), read back by us.
    let file = env.dir.path().join("openssh-learned");
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=accept-new"])
        .args(["-o", "HashKnownHosts=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", file.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "UpdateHostKeys=no",
        ])
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(env.b.client_key())
        .args(["-p", &p.to_string(), "127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    assert_eq!(env.ours(&file), Decision::Trusted, "{text}");
    // …and learning it again is a no-op.
    learn(&file, "127.0.0.1", p, &env.host_key, false).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), text);

    // A resolved target finds the box's key in its own known_hosts.
    let target = config::resolve(env.b.host_alias(), None, Some(env.b.ssh_config())).unwrap();
    assert_eq!(target.hostname, "127.0.0.1");
    assert_eq!(target.port, p);
    assert_eq!(
        target.identity_files,
        vec![env.b.client_key().to_path_buf()]
    );
    assert_eq!(
        target.user_known_hosts_files,
        vec![env.b.known_hosts().to_path_buf()]
    );
    assert_eq!(
        target.strict_host_key_checking,
        config::StrictHostKeyChecking::Yes
    );
    let known = KnownHosts::load(&target.known_hosts_files());
    assert_eq!(
        known.verify(
            target.host_key_name(),
            target.host_key_port(),
            &env.host_key
        ),
        Verdict::Trusted
    );
    assert_eq!(
        known.known_algorithms(target.host_key_name(), target.host_key_port()),
        vec![russh::keys::Algorithm::Ed25519]
    );
}

#[test]
fn host_certificates_agree_with_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let ca = keygen(dir.path(), "ca", "ed25519");
    let other_ca = keygen(dir.path(), "other_ca", "ed25519");
    let request = |principals: Option<&str>, validity: &str| CertificateRequest {
        ca_key: dir.path().join("ca"),
        principals: principals.map(str::to_owned),
        validity: validity.to_owned(),
    };
    let start = |request: CertificateRequest| {
        ThrowawayBox::builder()
            .host_certificate(request)
            .start()
            .expect("starting a box with a host certificate")
    };
    let certified = start(request(Some("127.0.0.1,build.example"), "always:forever"));
    let anyone = start(request(None, "always:forever"));
    let expired = start(request(Some("127.0.0.1"), "-3d:-1d"));
    let plain_line = |b: &ThrowawayBox| fs::read_to_string(b.known_hosts()).unwrap();

    let mut report = Report::default();
    let mut check =
        |name: &str, b: &ThrowawayBox, known_hosts: String, extra: &str, want: Decision| {
            let file = dir.path().join(format!("{name}.known_hosts"));
            fs::write(&file, known_hosts).unwrap();
            let config = dir.path().join(format!("{name}.config"));
            let extra = format!("  UserKnownHostsFile {}\n{extra}", file.display());
            fs::write(&config, kbox_config(b, &extra)).unwrap();
            let ours = ours_connecting(&config, &[]);
            let theirs = openssh_with_config(&config);
            report.record(name, &ours, &theirs, &want);
        };
    let here = |b: &ThrowawayBox| format!("[127.0.0.1]:{}", b.port());
    let c = &certified;

    check(
        "ca_for_host",
        c,
        format!("@cert-authority {} {ca}\n", here(c)),
        "",
        Decision::Trusted,
    );
    check(
        "ca_wildcard",
        c,
        format!("@cert-authority * {ca}\n"),
        "",
        Decision::Trusted,
    );
    check(
        "ca_other_host",
        c,
        format!("@cert-authority 10.* {ca}\n"),
        "",
        Decision::Unknown,
    );
    check(
        "other_ca",
        c,
        format!("@cert-authority * {other_ca}\n"),
        "",
        Decision::Unknown,
    );
    check(
        "other_ca_plain_known",
        c,
        format!("@cert-authority * {other_ca}\n{}", plain_line(c)),
        "",
        Decision::Trusted,
    );
    check(
        "ca_revoked",
        c,
        format!("@cert-authority * {ca}\n@revoked * {ca}\n"),
        "",
        Decision::Revoked,
    );
    check(
        "alias_is_principal",
        c,
        format!("@cert-authority * {ca}\n"),
        "  HostKeyAlias build.example\n",
        Decision::Trusted,
    );
    // A certificate for other names: judged by its plain key, as OpenSSH does.
    check(
        "alias_not_principal",
        c,
        format!("@cert-authority * {ca}\n"),
        "  HostKeyAlias elsewhere.example\n",
        Decision::Unknown,
    );
    let anywhere = format!("@cert-authority * {ca}\n");
    check(
        "no_principals",
        &anyone,
        anywhere.clone(),
        "  HostKeyAlias x.example\n",
        Decision::Trusted,
    );
    check("expired", &expired, anywhere.clone(), "", Decision::Unknown);
    check(
        "expired_plain_known",
        &expired,
        format!("{anywhere}{}", plain_line(&expired)),
        "",
        Decision::Trusted,
    );
    report.assert_agreement();
}

#[test]
fn strict_host_key_checking_no_counts_only_where_sshcc_was_told() {
    let env = Env::new();
    let file = env.dir.path().join("learned");
    let config = env.write(
        "no.config",
        &kbox_config(
            &env.b,
            &format!("  UserKnownHostsFile {}\n", file.display()),
        )
        .replace("StrictHostKeyChecking yes", "StrictHostKeyChecking no"),
    );
    // ssh_config alone does not switch host authentication off.
    assert_eq!(ours_connecting(&config, &[]), Decision::Unknown);
    assert_eq!(ours_connecting(&config, &["otherbox"]), Decision::Unknown);
    assert!(!file.exists());
    // Named to sshcc, `no` behaves as in OpenSSH: an unknown key is learned ...
    assert_eq!(ours_connecting(&config, &["kbox"]), Decision::Trusted);
    assert_eq!(env.ours(&file), Decision::Trusted);
    assert_eq!(openssh_with_config(&config), Decision::Trusted);
    // ... a changed one is let through ...
    let changed = format!("[127.0.0.1]:{} {}\n", env.port(), env.other);
    fs::write(&file, &changed).unwrap();
    assert_eq!(ours_connecting(&config, &["*"]), Decision::Trusted);
    assert_eq!(openssh_with_config(&config), Decision::Trusted);
    // ... but a revoked one is refused, where OpenSSH under `no` connects anyway
    // after its warning: a revocation is a decision someone made about this key.
    fs::write(&file, format!("@revoked * {}\n", env.host)).unwrap();
    assert_eq!(ours_connecting(&config, &["kbox"]), Decision::Revoked);
    assert_eq!(openssh_with_config(&config), Decision::Trusted);
}
