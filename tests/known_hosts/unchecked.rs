//! `StrictHostKeyChecking no` counts only for the hosts sshcc was told about.

use std::fs;

use crate::oracle::*;

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
