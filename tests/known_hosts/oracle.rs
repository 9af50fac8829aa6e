//! What the known_hosts tests share: a box and a scratch directory ([`Env`]), OpenSSH's
//! decision on a file or config (read from `ssh`'s outcome), ours, and a [`Report`] that
//! shows every disagreement of a run at once.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use russh::keys::PublicKey;
use sshcc::ssh::config::{self, ClientOptions};
use sshcc::ssh::connection::SshConnection;
use sshcc::ssh::known_hosts::{KnownHosts, Verdict};
use sshcc::throwaway_box::ThrowawayBox;

/// What a verdict looks like from OpenSSH's side: its messages name the offending line
/// of a changed key, but not the line of a revoked one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
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

pub struct Env {
    pub b: ThrowawayBox,
    pub dir: tempfile::TempDir,
    /// The box's host key as `ssh-ed25519 BASE64`.
    pub host: String,
    pub host_key: PublicKey,
    /// Other keys: two more ed25519 keys and an ECDSA one.
    pub other: String,
    pub other2: String,
    pub ecdsa: String,
}

impl Env {
    pub fn new() -> Env {
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

    pub fn port(&self) -> u16 {
        self.b.port()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// `ssh … 127.0.0.1 true` with strict checking against `file` only.
    pub fn openssh(&self, file: &Path) -> Decision {
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

    pub fn ours(&self, file: &Path) -> Decision {
        KnownHosts::load(&[file.to_path_buf()])
            .verify("127.0.0.1", self.port(), &self.host_key)
            .into()
    }

    /// An ssh_config for alias `kbox` reaching the box with `extra` options.
    pub fn config(&self, name: &str, extra: &str) -> PathBuf {
        self.write(name, &kbox_config(&self.b, extra))
    }

    pub fn openssh_with_config(&self, config: &Path) -> Decision {
        openssh_with_config(config)
    }

    pub fn ours_with_config(&self, config: &Path) -> Decision {
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
pub fn kbox_config(b: &ThrowawayBox, extra: &str) -> String {
    format!(
        "Host kbox\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  \
         IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
         GlobalKnownHostsFile /dev/null\n  UpdateHostKeys no\n{extra}",
        port = b.port(),
        key = b.client_key().display(),
    )
}

/// `ssh -F config kbox true`.
pub fn openssh_with_config(config: &Path) -> Decision {
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
pub fn ours_connecting(config: &Path, unchecked: &[&str]) -> Decision {
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

pub fn keygen(dir: &Path, name: &str, kind: &str) -> String {
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
pub fn classify(out: &Output) -> Decision {
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
pub struct Report {
    pub rows: String,
    pub mismatches: usize,
}

impl Report {
    pub fn record(&mut self, name: &str, ours: &Decision, theirs: &Decision, want: &Decision) {
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

    pub fn assert_agreement(&self) {
        eprintln!("{}", self.rows);
        assert_eq!(
            self.mismatches, 0,
            "disagreement with OpenSSH:\n{}",
            self.rows
        );
    }
}

pub fn blob(key: &str) -> &str {
    key.split(' ').nth(1).unwrap()
}
