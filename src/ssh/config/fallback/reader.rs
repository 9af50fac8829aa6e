//! What the fallback reader collects while it reads: the raw values (first one wins,
//! key files accumulate), where it stands in OpenSSH's final pass, and the host name the
//! values read so far lead to.

use anyhow::Result;

use crate::ssh::config::tokens::{LocalInfo, expand_hostname};

/// The configuration values the fallback collects, raw as written (first one wins).
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    /// Lowercased keyword → first value.
    pub(super) single: std::collections::HashMap<String, String>,
    pub(super) identity_files: KeyFiles,
    pub(super) certificate_files: KeyFiles,
    pub(super) user_known_hosts_files: Option<String>,
    pub(super) global_known_hosts_files: Option<String>,
    pub(super) proxy_jump: Option<String>,
    pub(super) proxy_command: Option<String>,
}

/// Which kind of file is being read: relative `Include`s resolve against `~/.ssh` for
/// user files (including `-F`) and `/etc/ssh` for the system one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConfigKind {
    User,
    System,
}

/// `IdentityFile`s or `CertificateFile`s in order, each with its source: `-i` (`None`),
/// or the kind of configuration file (`-o` counts as a user file). OpenSSH ignores a
/// path already listed from the same source, which keeps the final pass, reading
/// everything again, from listing files twice.
#[derive(Debug, Default)]
pub(super) struct KeyFiles(Vec<(Option<ConfigKind>, String)>);

impl KeyFiles {
    pub(super) fn add(&mut self, source: Option<ConfigKind>, path: &str) {
        if !self.0.iter().any(|(s, p)| *s == source && p == path) {
            self.0.push((source, path.to_owned()));
        }
    }

    pub(super) fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, path)| path.as_str())
    }
}

/// The fallback's state while it reads one host's configuration.
pub(super) struct ConfigReader<'a> {
    pub(super) alias: &'a str,
    pub(super) local: &'a LocalInfo,
    pub(super) raw: RawConfig,
    /// Set for OpenSSH's final pass: the hostname the first pass resolved, which `Host`
    /// and `Match host` then match instead of the alias and later `HostName`s cannot
    /// change.
    pub(super) final_hostname: Option<String>,
    /// Whether a `Match final` asked for that pass.
    pub(super) want_final_pass: bool,
}

impl ConfigReader<'_> {
    pub(super) fn set_first(&mut self, key: &str, value: &str) {
        self.raw
            .single
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }

    /// `ProxyJump` applies only if neither it nor `ProxyCommand` is set yet, and then
    /// disables any later `ProxyCommand`.
    pub(super) fn set_proxy_jump(&mut self, value: &str) {
        if self.raw.proxy_jump.is_some() || self.raw.proxy_command.is_some() {
            return;
        }
        self.raw.proxy_jump = Some(value.to_owned());
        if !value.eq_ignore_ascii_case("none") {
            self.raw.proxy_command = Some("none".to_owned());
        }
    }

    /// The host name the configuration read so far leads to, as `Match host` sees it:
    /// the final pass's, else `HostName` with `%h` expanded, else the alias.
    pub(super) fn host_so_far(&self) -> Result<String> {
        if let Some(hostname) = &self.final_hostname {
            return Ok(hostname.clone());
        }
        match self.raw.single.get("hostname") {
            Some(name) => expand_hostname(name, self.alias),
            None => Ok(self.alias.to_owned()),
        }
    }

    /// The host name to connect to, as `ssh -G` prints it.
    pub(super) fn hostname(&self) -> Result<String> {
        let hostname = self.host_so_far()?;
        // OpenSSH lowercases names but leaves addresses alone, and (as OpenSSH 9.2
        // on glibc does) anything with a `%`, which the numeric-address check takes
        // for a scope id.
        Ok(
            if hostname.parse::<std::net::IpAddr>().is_ok() || hostname.contains('%') {
                hostname
            } else {
                hostname.to_lowercase()
            },
        )
    }
}
