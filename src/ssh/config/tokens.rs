//! `~`, `%` tokens and `${VAR}`, expanded as OpenSSH expands them in paths
//! (`IdentityFile`, `UserKnownHostsFile`, `IdentityAgent`, …), in `Match exec` commands
//! and in `HostName`; and [`LocalInfo`], the facts about this machine the tokens refer to.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use sha1::{Digest, Sha1};

/// Facts about the local side that `%` tokens refer to.
#[derive(Debug, Clone)]
pub(super) struct LocalInfo {
    /// `%u`
    pub(super) user: String,
    /// `%d`, and what `~` expands to (OpenSSH uses the passwd entry, not `$HOME`).
    pub(super) home: String,
    /// `%i`
    pub(super) uid: u32,
    /// `%l` (`%L` is its part before the first dot).
    pub(super) hostname: String,
}

impl LocalInfo {
    pub(super) fn current() -> Self {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let (user, home) = crate::system::passwd_entry(uid).unwrap_or_else(|| {
            (
                std::env::var("USER").unwrap_or_default(),
                std::env::var("HOME").unwrap_or_default(),
            )
        });
        Self {
            user,
            home,
            uid,
            hostname: crate::system::hostname(),
        }
    }

    /// `~` and `~/…` expanded with the passwd home, as OpenSSH does.
    pub(super) fn tilde(&self, path: &str) -> PathBuf {
        PathBuf::from(shellexpand::tilde_with_context(path, || Some(&self.home)).as_ref())
    }
}

/// `HostName` expansion: OpenSSH allows only `%h` (the alias) and `%%` there.
pub(super) fn expand_hostname(name: &str, alias: &str) -> Result<String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(alias),
            Some(other) => bail!("unknown token `%{other}` in HostName {name:?}"),
            None => bail!("`%` at the end of HostName {name:?}"),
        }
    }
    Ok(out)
}

/// The connection facts OpenSSH's `%` tokens in `IdentityFile` refer to.
pub(super) struct Tokens<'a> {
    pub(super) local: &'a LocalInfo,
    pub(super) alias: &'a str,
    pub(super) hostname: &'a str,
    pub(super) port: u16,
    pub(super) user: &'a str,
    /// `%k`: `HostKeyAlias`, else (depending on the setting) the alias or the hostname.
    pub(super) key_alias: &'a str,
    pub(super) proxy_jump: Option<&'a str>,
}

/// Which `%` tokens a setting knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenSet {
    /// `IdentityFile`, `UserKnownHostsFile`, `IdentityAgent`, …
    Paths,
    /// `Match exec`, which in OpenSSH 9.2 has no `%j`.
    MatchExec,
}

impl Tokens<'_> {
    /// OpenSSH's `default_client_percent_dollar_expand`: `${VAR}` first, then `%` tokens.
    /// Unknown tokens and undefined variables are errors, as in OpenSSH.
    pub(super) fn expand(&self, input: &str) -> Result<String> {
        self.expand_percent(&expand_env(input)?, TokenSet::Paths)
    }

    /// `%` tokens only; unknown ones are errors.
    pub(super) fn expand_percent(&self, input: &str, set: TokenSet) -> Result<String> {
        let mut out = String::with_capacity(input.len());
        let mut chars = input.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(token) = chars.next() else {
                bail!("`%` at the end of {input:?}");
            };
            match token {
                '%' => out.push('%'),
                'C' => out.push_str(&self.connection_hash()),
                'L' => out.push_str(short_host(&self.local.hostname)),
                'i' => {
                    let _ = write!(out, "{}", self.local.uid);
                }
                'k' => out.push_str(self.key_alias),
                'l' => out.push_str(&self.local.hostname),
                'n' => out.push_str(self.alias),
                'p' => {
                    let _ = write!(out, "{}", self.port);
                }
                'd' => out.push_str(&self.local.home),
                'h' => out.push_str(self.hostname),
                'r' => out.push_str(self.user),
                'u' => out.push_str(&self.local.user),
                'j' if set == TokenSet::Paths => {
                    out.push_str(self.proxy_jump.map(jump_host).unwrap_or(""));
                }
                other => bail!("unknown token `%{other}` in {input:?}"),
            }
        }
        Ok(out)
    }

    /// `%C`: hex SHA-1 of `%l%h%p%r`, as OpenSSH 9.2 computes it.
    fn connection_hash(&self) -> String {
        let mut sha = Sha1::new();
        sha.update(self.local.hostname.as_bytes());
        sha.update(self.hostname.as_bytes());
        sha.update(self.port.to_string().as_bytes());
        sha.update(self.user.as_bytes());
        let mut hex = String::with_capacity(40);
        for byte in sha.finalize() {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

fn short_host(hostname: &str) -> &str {
    hostname.split('.').next().unwrap_or(hostname)
}

/// The host of the last hop of a `ProxyJump` list (`[user@]host[:port]`), OpenSSH's `%j`.
fn jump_host(jump: &str) -> &str {
    let last = jump.rsplit(',').next().unwrap_or(jump);
    let last = last.strip_prefix("ssh://").unwrap_or(last);
    let host_port = last.rsplit_once('@').map_or(last, |(_, hp)| hp);
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// OpenSSH's `dollar_expand`: `${NAME}` becomes the environment variable, which must
/// exist; a `$` not followed by `{` stays.
fn expand_env(input: &str) -> Result<String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .with_context(|| format!("`${{` without closing `}}` in {input:?}"))?;
        let name = &after[..end];
        ensure!(!name.is_empty(), "empty `${{}}` in {input:?}");
        let value = std::env::var(name).with_context(|| {
            format!("environment variable `{name}` used in {input:?} is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::local;
    use super::*;

    #[test]
    fn token_expansion_details() {
        let l = local();
        let t = Tokens {
            local: &l,
            alias: "Alias",
            hostname: "h.example",
            port: 22,
            user: "r",
            key_alias: "Alias",
            proxy_jump: Some("a@first:1,ssh://b@[fe80::1]:2"),
        };
        assert_eq!(
            t.expand("%L-%l-%k-%j-%%-%i").unwrap(),
            "dev-dev.example.org-Alias-fe80::1-%-1000"
        );
        assert!(t.expand("%x").is_err());
        assert!(t.expand("trailing%").is_err());
        assert!(t.expand("${SSHCC_SURELY_UNSET_VARIABLE}").is_err());
        assert!(t.expand("${HOME").is_err());
        assert_eq!(t.expand("$HOME").unwrap(), "$HOME");
        assert_eq!(jump_host("bastion"), "bastion");
        assert_eq!(jump_host("u@b1:22,u2@b2.example:2200"), "b2.example");
    }

    #[test]
    fn hostname_tokens() {
        assert_eq!(expand_hostname("%h.x%%", "a").unwrap(), "a.x%");
        assert!(expand_hostname("%p", "a").is_err());
    }
}
