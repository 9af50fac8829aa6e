//! What the fallback prints once the files are read: the `key value` lines `ssh -G`
//! would print for the options sshcc reads, with OpenSSH's defaults filled in and the
//! expansions `ssh -G` performs itself (`UserKnownHostsFile`, `IdentityAgent`, the
//! normal form of `ProxyJump`).

use anyhow::{Context, Result};

use super::reader::ConfigReader;
use crate::ssh::config::ssh_g::parse_flag;
use crate::ssh::config::tokens::Tokens;

/// OpenSSH's default `IdentityFile`s, in the order `ssh -G` prints them.
const DEFAULT_IDENTITY_FILES: [&str; 7] = [
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

impl ConfigReader<'_> {
    /// The `ssh -G` lines for what was collected, with OpenSSH's defaults and the
    /// expansions `ssh -G` performs itself.
    pub(super) fn output(self) -> Result<String> {
        let hostname = self.hostname()?;
        let raw = self.raw;
        let local = self.local;
        let get = |key: &str| raw.single.get(key).map(String::as_str);

        let port: u16 = match get("port") {
            Some(port) => port.parse().with_context(|| format!("bad port {port:?}"))?,
            None => 22,
        };
        let user = get("user").unwrap_or(&local.user).to_owned();
        let host_key_alias = get("hostkeyalias")
            .filter(|a| !a.eq_ignore_ascii_case("none"))
            .map(str::to_lowercase);
        let proxy_jump = raw
            .proxy_jump
            .as_deref()
            .filter(|j| !j.eq_ignore_ascii_case("none"))
            .map(normalize_jump);
        let tokens = Tokens {
            local,
            alias: self.alias,
            hostname: &hostname,
            port,
            user: &user,
            key_alias: host_key_alias.as_deref().unwrap_or(self.alias),
            proxy_jump: proxy_jump.as_deref(),
        };
        let expand = |value: &str| tokens.expand(&local.tilde(value).to_string_lossy());

        let mut out = String::new();
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            out.push(' ');
            out.push_str(value);
            out.push('\n');
        };
        line("host", self.alias);
        line("hostname", &hostname);
        line("port", &port.to_string());
        line("user", &user);
        if raw.identity_files.paths().next().is_none() {
            for file in DEFAULT_IDENTITY_FILES {
                line("identityfile", file);
            }
        }
        for file in raw.identity_files.paths() {
            line("identityfile", file);
        }
        for file in raw.certificate_files.paths() {
            line("certificatefile", &local.tilde(file).to_string_lossy());
        }
        let user_files = raw
            .user_known_hosts_files
            .as_deref()
            .unwrap_or("~/.ssh/known_hosts ~/.ssh/known_hosts2");
        let user_files = user_files
            .split_whitespace()
            .map(|f| expand(f).with_context(|| format!("expanding UserKnownHostsFile {f:?}")))
            .collect::<Result<Vec<_>>>()?;
        line("userknownhostsfile", &user_files.join(" "));
        line(
            "globalknownhostsfile",
            raw.global_known_hosts_files
                .as_deref()
                .unwrap_or("/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"),
        );
        if let Some(agent) = get("identityagent") {
            let agent =
                expand(agent).with_context(|| format!("expanding IdentityAgent {agent:?}"))?;
            line("identityagent", &agent);
        }
        if let Some(alias) = &host_key_alias {
            line("hostkeyalias", alias);
        }
        if let Some(jump) = &proxy_jump {
            line("proxyjump", jump);
        }
        if let Some(command) = raw
            .proxy_command
            .as_deref()
            .filter(|c| !c.eq_ignore_ascii_case("none"))
        {
            line("proxycommand", command);
        }
        line(
            "stricthostkeychecking",
            get("stricthostkeychecking").unwrap_or("ask"),
        );
        line("identitiesonly", get("identitiesonly").unwrap_or("no"));
        line("connecttimeout", get("connecttimeout").unwrap_or("none"));
        // Debian's OpenSSH (keepalive-extensions patch) defaults ServerAliveInterval
        // to 300 seconds in BatchMode.
        let batch_mode =
            get("batchmode").is_some_and(|v| parse_flag("BatchMode", v).unwrap_or(false));
        let default_interval = if batch_mode { "300" } else { "0" };
        line(
            "serveraliveinterval",
            get("serveraliveinterval").unwrap_or(default_interval),
        );
        line(
            "serveralivecountmax",
            get("serveralivecountmax").unwrap_or("3"),
        );
        line("batchmode", get("batchmode").unwrap_or("no"));
        line("hashknownhosts", get("hashknownhosts").unwrap_or("no"));
        Ok(out)
    }
}

/// `ProxyJump` as `ssh -G` prints it: earlier hops verbatim, the last one as
/// `[user@]host[:port]` (an `ssh://` URI loses its scheme).
fn normalize_jump(jump: &str) -> String {
    let (extra, last) = match jump.rsplit_once(',') {
        Some((extra, last)) => (Some(extra), last),
        None => (None, jump),
    };
    let last = last.strip_prefix("ssh://").unwrap_or(last);
    let last = last.strip_suffix('/').unwrap_or(last);
    match extra {
        Some(extra) => format!("{extra},{last}"),
        None => last.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_proxy_jump() {
        assert_eq!(normalize_jump("ssh://u@h:2"), "u@h:2");
        assert_eq!(normalize_jump("ssh://a@b,ssh://u@h"), "ssh://a@b,u@h");
    }
}
