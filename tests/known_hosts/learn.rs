//! Lines sshcc learns satisfy OpenSSH, and lines OpenSSH writes satisfy sshcc.

use std::fs;
use std::process::{Command, Stdio};

use crate::oracle::*;
use sshcc::ssh::config;
use sshcc::ssh::known_hosts::{KnownHosts, Verdict, learn};

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
