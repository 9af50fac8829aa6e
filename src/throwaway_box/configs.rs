//! The files a box's sshd and its clients read: `sshd_config`, the client's
//! `ssh_config` and `known_hosts`, and the client key's `authorized_keys` line with the
//! sessions' environment (and, once the box works, its forced command).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::builder::BoxBuilder;
use super::keys::certify;
use super::layout::{BoxPaths, HOST_ALIAS};

impl BoxBuilder {
    /// Renders the `environment="K=V",` prefix of the authorized_keys line.
    pub(super) fn authorized_key_options(&self) -> Result<String> {
        let mut options = String::new();
        for (key, value) in &self.env {
            // sshd silently drops names it considers invalid; fail loudly instead.
            ensure!(
                key.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "invalid environment variable name {key:?}"
            );
            ensure!(
                !value.contains(['\n', '\r', '\0']),
                "environment value for {key} contains a line break or NUL, which authorized_keys cannot carry"
            );
            // sshd's option parser knows one escape, \" for a quote, and takes
            // every other backslash literally, so a trailing backslash would
            // swallow the closing quote.
            ensure!(
                !value.ends_with('\\'),
                "environment value for {key} ends with a backslash, which authorized_keys cannot carry"
            );
            let _ = write!(
                options,
                "environment=\"{key}={}\",",
                value.replace('"', "\\\"")
            );
        }
        if options.is_empty() {
            return Ok(options);
        }
        options.pop();
        options.push(' ');
        Ok(options)
    }

    pub(super) fn write_configs(
        &self,
        paths: &BoxPaths,
        user: &str,
        host_pub: &str,
        port: u16,
    ) -> Result<()> {
        let address = self.address();
        let mut sshd_config = format!(
            "ListenAddress {address}\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             UsePAM no\n\
             # The box lives under /tmp, whose permissions StrictModes rejects.\n\
             StrictModes no\n\
             PermitUserEnvironment yes\n\
             # ~/.ssh/rc belongs to the real user, not to the box.\n\
             PermitUserRC no\n\
             PidFile none\n\
             PermitRootLogin prohibit-password\n\
             # MaxSessions and MaxStartups keep sshd's defaults: sshcc must work\n\
             # against a box nobody has tuned.\n\
             LogLevel VERBOSE\n",
            host_key = paths.host_key.display(),
            authorized_keys = paths.authorized_keys.display(),
        );
        if let Some(n) = self.max_sessions {
            let _ = writeln!(sshd_config, "MaxSessions {n}");
        }
        if let Some(request) = &self.host_certificate {
            let mut public = paths.host_key.clone().into_os_string();
            public.push(".pub");
            let certificate = certify(Path::new(&public), "sshcc-throwaway-host", true, request)?;
            let _ = writeln!(sshd_config, "HostCertificate {}", certificate.display());
        }
        if let Some(ca) = &self.trusted_user_ca_keys {
            let _ = writeln!(sshd_config, "TrustedUserCAKeys {}", ca.display());
            // A certificate login never reads authorized_keys and its environment=
            // options, so the box's environment comes from sshd itself: all on one
            // line, because sshd uses only its first SetEnv line.
            if !self.env.is_empty() {
                sshd_config.push_str("SetEnv");
                for (key, value) in &self.env {
                    // Quoted, with sshd's escapes for a quote and a backslash.
                    let word = format!("{key}={value}")
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"");
                    let _ = write!(sshd_config, " \"{word}\"");
                }
                sshd_config.push('\n');
            }
        }
        fs::write(&paths.sshd_config, sshd_config).context("writing sshd_config")?;

        fs::write(
            &paths.known_hosts,
            format!("[{address}]:{port} {host_pub}\n"),
        )
        .context("writing known_hosts")?;

        let ssh_config = format!(
            "Host {HOST_ALIAS}\n  \
               HostName {address}\n  \
               Port {port}\n  \
               User {user}\n  \
               IdentityFile {client_key}\n  \
               IdentitiesOnly yes\n  \
               UserKnownHostsFile {known_hosts}\n  \
               StrictHostKeyChecking yes\n  \
               BatchMode yes\n  \
               LogLevel ERROR\n",
            client_key = paths.client_key.display(),
            known_hosts = paths.known_hosts.display(),
        );
        fs::write(&paths.ssh_config, ssh_config).context("writing ssh_config")?;
        Ok(())
    }
}

/// Prefixes the client key's authorized_keys line with `command="…",restrict`; sshd
/// reads the file afresh for every login.
pub(super) fn restrict_client_key(paths: &BoxPaths, command: &str) -> Result<()> {
    ensure!(
        !command.contains(['"', '\\', '\n']),
        "forced command {command:?} needs quoting authorized_keys cannot express"
    );
    let line = fs::read_to_string(&paths.authorized_keys).context("reading authorized_keys")?;
    let restricted = match line.strip_prefix("environment=") {
        Some(_) => format!("command=\"{command}\",restrict,{line}"),
        None => format!("command=\"{command}\",restrict {line}"),
    };
    fs::write(&paths.authorized_keys, restricted).context("restricting authorized_keys")
}
