//! Section 6's second box: a bastion in front of the build box, and the client
//! configuration that reaches the box through it.
//!
//! The client's ssh_config names two hosts: `bastion` (127.0.0.1, the port of a delay
//! proxy in front of the bastion's sshd) and `target` (127.0.0.1, the port of a delay
//! proxy in front of the build box's sshd, `ProxyJump bastion`). With ProxyJump it is
//! the bastion that opens the TCP connection to the target's `HostName:Port`, so the
//! second proxy sits between the bastion and the box; on loopback the bastion reaches
//! it. Each host logs in with its own box's client key, and a known_hosts file holds
//! each box's real host key under the name each hop checks, `[127.0.0.1]:<its proxy
//! port>`, with `StrictHostKeyChecking yes`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sshcc::throwaway_box::ThrowawayBox;

/// The `Host` names of the client's ssh_config.
pub const BASTION_HOST: &str = "bastion";
pub const TARGET_HOST: &str = "target";

/// Starts the bastion: a plain [`ThrowawayBox`] (sshd's defaults, so TCP forwarding is
/// allowed), logged into as `login_user` when given.
pub fn start(login_user: Option<&str>) -> Result<ThrowawayBox> {
    let mut builder = ThrowawayBox::builder();
    if let Some(user) = login_user {
        builder = builder.login_user(user);
    }
    builder.start().context("starting the bastion box")
}

/// The host key (`type base64`) in a box's own known_hosts.
pub fn host_key(a_box: &ThrowawayBox) -> Result<String> {
    let known = fs::read_to_string(a_box.known_hosts()).context("reading known_hosts")?;
    known
        .lines()
        .find_map(|line| line.split_once(' ').map(|(_, key)| key.trim().to_owned()))
        .context("the box's known_hosts is empty")
}

/// Writes `ssh_config-bastion-<name>` and its known_hosts into `dir`: `bastion` on
/// `bastion_port`, `target` on `target_port` through it.
pub fn ssh_config(
    bastion: &ThrowawayBox,
    target: &ThrowawayBox,
    dir: &Path,
    name: &str,
    bastion_port: u16,
    target_port: u16,
    user: &str,
) -> Result<PathBuf> {
    let known_hosts = dir.join(format!("known_hosts-bastion-{name}"));
    fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{bastion_port} {}\n[127.0.0.1]:{target_port} {}\n",
            host_key(bastion)?,
            host_key(target)?
        ),
    )?;
    let host = |alias: &str, port: u16, key: &Path, jump: &str| {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n{jump}  User {user}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
            key = key.display(),
            known_hosts = known_hosts.display(),
        )
    };
    let config = dir.join(format!("ssh_config-bastion-{name}"));
    fs::write(
        &config,
        format!(
            "{}{}",
            host(BASTION_HOST, bastion_port, bastion.client_key(), ""),
            host(
                TARGET_HOST,
                target_port,
                target.client_key(),
                &format!("  ProxyJump {BASTION_HOST}\n")
            ),
        ),
    )?;
    Ok(config)
}
