//! What resolving a host gives: [`SshTarget`], everything sshcc needs to connect to it,
//! and OpenSSH's [`StrictHostKeyChecking`] policy for its host key.

use std::path::PathBuf;
use std::time::Duration;

/// OpenSSH's `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown and changed host keys (`yes`; `ssh -G` prints `true`).
    Yes,
    /// Learn unknown host keys, refuse changed ones (`accept-new`).
    AcceptNew,
    /// Learn unknown keys and connect despite changed ones (`no` / `off`; `ssh -G`
    /// prints `false`), as OpenSSH does; revoked keys are still refused. sshcc honours
    /// it only for hosts in [`ClientOptions::unchecked_host_keys`](super::ClientOptions::unchecked_host_keys).
    No,
    /// Ask the user (`ask`, OpenSSH's default). Without a terminal, OpenSSH refuses
    /// unknown keys, so treat it like [`Yes`](Self::Yes) in a daemon.
    Ask,
}

impl StrictHostKeyChecking {
    pub(super) fn parse(value: &str) -> Option<Self> {
        Some(match value.to_ascii_lowercase().as_str() {
            "true" | "yes" => Self::Yes,
            "false" | "no" | "off" => Self::No,
            "accept-new" => Self::AcceptNew,
            "ask" => Self::Ask,
            _ => return None,
        })
    }
}

/// Everything sshcc needs to know to connect to one host, as OpenSSH resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The name we were asked about (what `%n` expands to).
    pub alias: String,
    /// The real host to connect to (`HostName`, lowercased by OpenSSH).
    pub hostname: String,
    pub port: u16,
    /// The remote login name.
    pub user: String,
    /// `IdentityFile`s in order, `~`, `${VAR}` and `%` tokens expanded; `none` entries
    /// dropped. Without any `IdentityFile` in the configuration these are OpenSSH's
    /// defaults (`~/.ssh/id_rsa`, `id_ecdsa`, …), which need not exist.
    pub identity_files: Vec<PathBuf>,
    /// `CertificateFile`s in order, expanded like identity files. OpenSSH also tries
    /// `<identity file>-cert.pub` beside each identity file, which callers do.
    pub certificate_files: Vec<PathBuf>,
    pub identities_only: bool,
    /// `IdentityAgent` as OpenSSH printed it (already expanded): a socket path, or
    /// `none` (agent disabled), or `SSH_AUTH_SOCK` (use the environment variable).
    pub identity_agent: Option<String>,
    /// `UserKnownHostsFile`s in order, expanded (`ssh -G` prints them space-separated,
    /// so paths containing spaces cannot be represented).
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`s in order.
    pub global_known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// `HostKeyAlias` (lowercased by OpenSSH).
    pub host_key_alias: Option<String>,
    /// `ConnectTimeout`; `none` → `None`.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`; `0` (OpenSSH's default, disabled) → `None`.
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: u32,
    /// `ProxyJump` as printed by `ssh -G` (comma-separated hops, `ssh://` URIs
    /// normalised to `user@host:port`); `none` → `None`.
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`, unexpanded (`%h`, `%p`, … still in it); `none` → `None`.
    pub proxy_command: Option<String>,
    pub batch_mode: bool,
    /// `HashKnownHosts`: whether OpenSSH would hash a host name it learns
    /// (pass to [`known_hosts::learn`](crate::ssh::known_hosts::learn)).
    pub hash_known_hosts: bool,
}

impl SshTarget {
    /// The name to look the host key up under, as OpenSSH does: `HostKeyAlias` if set,
    /// else the hostname. Pair it with [`host_key_port`](Self::host_key_port).
    pub fn host_key_name(&self) -> &str {
        self.host_key_alias.as_deref().unwrap_or(&self.hostname)
    }

    /// The port to look the host key up under. OpenSSH uses a `HostKeyAlias` verbatim,
    /// without `[…]:port` even on a non-standard port, so this is 22 when an alias is
    /// set and [`port`](Self::port) otherwise.
    pub fn host_key_port(&self) -> u16 {
        if self.host_key_alias.is_some() {
            22
        } else {
            self.port
        }
    }

    /// All known_hosts files in the order OpenSSH consults them: user files, then
    /// global ones.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        self.user_known_hosts_files
            .iter()
            .chain(&self.global_known_hosts_files)
            .cloned()
            .collect()
    }
}
