//! The box's directory: where each of its files lives, where the directory itself is
//! made, and reading sshd's log from it.

use std::fs;
use std::path::{Path, PathBuf};

/// The `Host` alias the generated client `ssh_config` defines.
pub(super) const HOST_ALIAS: &str = "box";

#[derive(Debug)]
pub(super) struct BoxPaths {
    pub(super) dir: PathBuf,
    pub(super) host_key: PathBuf,
    pub(super) client_key: PathBuf,
    pub(super) authorized_keys: PathBuf,
    pub(super) sshd_config: PathBuf,
    pub(super) known_hosts: PathBuf,
    pub(super) ssh_config: PathBuf,
    pub(super) log: PathBuf,
}

impl BoxPaths {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            host_key: dir.join("host_ed25519_key"),
            client_key: dir.join("client_ed25519_key"),
            authorized_keys: dir.join("authorized_keys"),
            sshd_config: dir.join("sshd_config"),
            known_hosts: dir.join("known_hosts"),
            ssh_config: dir.join("ssh_config"),
            log: dir.join("sshd.log"),
        }
    }
}

pub(super) fn read_log(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// `$TMPDIR` unless it contains whitespace: every path of the box ends up in
/// `DISTCC_SSH`, which distcc splits at spaces.
pub(super) fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    if base.to_string_lossy().contains(char::is_whitespace) {
        PathBuf::from("/tmp")
    } else {
        base
    }
}
