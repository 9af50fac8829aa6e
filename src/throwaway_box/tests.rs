//! The throwaway box against real OpenSSH: the environment and private directories
//! reaching sessions (key and certificate logins), several boxes at once, stop and drop.

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::keys::keygen;
use super::start::current_user_name;
use super::{CertificateRequest, ThrowawayBox, certify};

fn remote_stdout(b: &ThrowawayBox, command: &str) -> String {
    let out = b.ssh().arg(command).output().expect("running ssh");
    assert!(
        out.status.success(),
        "ssh {command:?} failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn env_reaches_the_session() {
    let started = Instant::now();
    let b = ThrowawayBox::builder()
        .env("SSHCC_TEST_VAR", "hello world")
        .env("SSHCC_TRICKY", r#"say "hi" \ C:\dir\"x"#)
        .start()
        .expect("starting box");
    eprintln!("box started in {:?}", started.elapsed());
    assert_eq!(remote_stdout(&b, "echo $SSHCC_TEST_VAR"), "hello world\n");
    assert_eq!(
        remote_stdout(&b, r#"printf '%s\n' "$SSHCC_TRICKY""#),
        "say \"hi\" \\ C:\\dir\\\"x\n"
    );

    // Exactly what distcc will run with DISTCC_SSH.
    let mut words = b.ssh_command();
    words.push_str(" box echo ok");
    let mut words = words.split(' ');
    let out = Command::new(words.next().unwrap())
        .args(words)
        .output()
        .expect("running ssh_command");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn two_boxes_run_at_once() {
    let a = ThrowawayBox::builder().env("WHICH", "a").start().unwrap();
    let b = ThrowawayBox::builder()
        .env("WHICH", "b")
        .max_sessions(3)
        .start()
        .unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(remote_stdout(&a, "echo $WHICH"), "a\n");
    assert_eq!(remote_stdout(&b, "echo $WHICH"), "b\n");
    assert!(
        fs::read_to_string(b.dir().join("sshd_config"))
            .unwrap()
            .contains("MaxSessions 3\n")
    );
}

#[test]
fn stop_drops_running_sessions() {
    let mut b = ThrowawayBox::builder().start().unwrap();
    let mut session = b
        .ssh()
        .arg("echo started; sleep 30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Pull the plug only once the remote command is really running.
    let mut started = [0u8; 8];
    session
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut started)
        .unwrap();
    assert_eq!(&started, b"started\n");
    let stopped_at = Instant::now();
    b.stop();
    b.stop();
    let status = session.wait().unwrap();
    assert!(!status.success());
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    assert!(
        b.ssh()
            .arg("true")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| !s.success())
    );
}

#[test]
fn drop_removes_the_directory() {
    let b = ThrowawayBox::builder().start().unwrap();
    let dir = b.dir().to_path_buf();
    assert!(dir.join("sshd_config").exists());
    drop(b);
    assert!(!dir.exists());
}

#[test]
fn env_and_private_dirs_reach_certificate_logins() {
    // A key the box's authorized_keys does not list, certified by a CA it trusts:
    // only sshd_config's SetEnv can give such a session its environment.
    let keys = tempfile::tempdir().unwrap();
    let (ca, key) = (keys.path().join("ca"), keys.path().join("user"));
    keygen(&ca, "ca").unwrap();
    keygen(&key, "user").unwrap();
    let b = ThrowawayBox::builder()
        .trusted_user_ca_keys(keys.path().join("ca.pub"))
        .env("SSHCC_FIRST", "1")
        .env("SSHCC_TRICKY", r#"say "hi" \ C:\dir\"x"#)
        .start()
        .unwrap();
    let request = CertificateRequest {
        ca_key: ca,
        principals: Some(current_user_name().unwrap()),
        validity: "always:forever".into(),
    };
    certify(&keys.path().join("user.pub"), "user", false, &request).unwrap();
    let config = keys.path().join("ssh_config");
    let text = fs::read_to_string(b.ssh_config()).unwrap().replace(
        &b.client_key().display().to_string(),
        &key.display().to_string(),
    );
    fs::write(&config, text).unwrap();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args([
            "box",
            r#"printf '%s|%s|%s\n' "$SSHCC_FIRST" "$SSHCC_TRICKY" "$XDG_CACHE_HOME""#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "1|say \"hi\" \\ C:\\dir\\\"x|{}\n",
            b.dir().join("cache").display()
        )
    );
}

#[test]
fn rejects_unrepresentable_env() {
    assert!(ThrowawayBox::builder().env("A B", "x").start().is_err());
    assert!(ThrowawayBox::builder().env("A", "x\ny").start().is_err());
    assert!(ThrowawayBox::builder().env("A", "x\\").start().is_err());
}
