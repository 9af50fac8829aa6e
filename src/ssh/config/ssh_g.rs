//! The `ssh -G` mapping: OpenSSH's fully resolved `key value` lines (from `ssh -G` itself
//! or from the [`fallback`](super::fallback) parser) into an [`SshTarget`], expanding
//! what `ssh -G` leaves unexpanded (`IdentityFile`, `CertificateFile`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::target::{SshTarget, StrictHostKeyChecking};
use super::tokens::{LocalInfo, Tokens};

/// Parses `ssh -G` output for `alias`.
pub(super) fn parse_ssh_g(alias: &str, output: &str, local: &LocalInfo) -> Result<SshTarget> {
    let mut hostname = None;
    let mut port = None;
    let mut user = None;
    let mut raw_identity_files = Vec::new();
    let mut raw_certificate_files = Vec::new();
    let mut identities_only = false;
    let mut identity_agent = None;
    let mut user_known_hosts_files = Vec::new();
    let mut global_known_hosts_files = Vec::new();
    let mut strict_host_key_checking = StrictHostKeyChecking::Ask;
    let mut host_key_alias = None;
    let mut connect_timeout = None;
    let mut server_alive_interval = None;
    let mut server_alive_count_max = 3;
    let mut proxy_jump = None;
    let mut proxy_command = None;
    let mut batch_mode = false;
    let mut hash_known_hosts = false;

    let home = local.home.clone();
    let tilde =
        |s: &str| PathBuf::from(shellexpand::tilde_with_context(s, || Some(&home)).as_ref());
    let none_is_absent = |v: &str| (!v.eq_ignore_ascii_case("none")).then(|| v.to_owned());

    for line in output.lines() {
        let line = line.trim_end_matches('\r');
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = value.trim();
        match key.to_ascii_lowercase().as_str() {
            "hostname" => hostname = Some(value.to_owned()),
            "port" => {
                port = Some(
                    value
                        .parse::<u16>()
                        .with_context(|| format!("bad port {value:?}"))?,
                )
            }
            "user" => user = Some(value.to_owned()),
            "identityfile" => raw_identity_files.push(value.to_owned()),
            "certificatefile" => raw_certificate_files.push(value.to_owned()),
            "identitiesonly" => identities_only = parse_flag(key, value)?,
            "identityagent" => identity_agent = Some(value.to_owned()),
            "userknownhostsfile" => {
                user_known_hosts_files = value.split_whitespace().map(tilde).collect()
            }
            "globalknownhostsfile" => {
                global_known_hosts_files = value.split_whitespace().map(tilde).collect()
            }
            "stricthostkeychecking" => {
                strict_host_key_checking = StrictHostKeyChecking::parse(value)
                    .with_context(|| format!("unknown StrictHostKeyChecking value {value:?}"))?
            }
            "hostkeyalias" => host_key_alias = none_is_absent(value),
            "connecttimeout" => connect_timeout = parse_seconds(key, value)?,
            "serveraliveinterval" => server_alive_interval = parse_seconds(key, value)?,
            "serveralivecountmax" => {
                server_alive_count_max = value
                    .parse()
                    .with_context(|| format!("bad ServerAliveCountMax {value:?}"))?
            }
            "proxyjump" => proxy_jump = none_is_absent(value),
            "proxycommand" => proxy_command = none_is_absent(value),
            "batchmode" => batch_mode = parse_flag(key, value)?,
            "hashknownhosts" => hash_known_hosts = parse_flag(key, value)?,
            _ => {}
        }
    }

    let hostname = hostname.context("`ssh -G` printed no hostname")?;
    let port = port.context("`ssh -G` printed no port")?;
    let user = user.context("`ssh -G` printed no user")?;

    let tokens = Tokens {
        local,
        alias,
        hostname: &hostname,
        port,
        user: &user,
        key_alias: host_key_alias.as_deref().unwrap_or(alias),
        proxy_jump: proxy_jump.as_deref(),
    };
    let expand_paths = |raw_paths: &[String], keyword: &str| -> Result<Vec<PathBuf>> {
        raw_paths
            .iter()
            .filter(|raw| !raw.eq_ignore_ascii_case("none"))
            .map(|raw| {
                let path = tilde(raw);
                tokens
                    .expand(&path.to_string_lossy())
                    .map(PathBuf::from)
                    .with_context(|| format!("expanding {keyword} {raw:?}"))
            })
            .collect()
    };
    let identity_files = expand_paths(&raw_identity_files, "IdentityFile")?;
    let certificate_files = expand_paths(&raw_certificate_files, "CertificateFile")?;

    Ok(SshTarget {
        alias: alias.to_owned(),
        hostname,
        port,
        user,
        identity_files,
        certificate_files,
        identities_only,
        identity_agent,
        user_known_hosts_files,
        global_known_hosts_files,
        strict_host_key_checking,
        host_key_alias,
        connect_timeout,
        server_alive_interval,
        server_alive_count_max,
        proxy_jump,
        proxy_command,
        batch_mode,
        hash_known_hosts,
    })
}

pub(super) fn parse_flag(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => bail!("bad {key} value {value:?}"),
    }
}

/// Seconds; `none` and `0` mean "not set".
fn parse_seconds(key: &str, value: &str) -> Result<Option<Duration>> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let secs: u64 = value
        .parse()
        .with_context(|| format!("bad {key} value {value:?}"))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::local;
    use super::*;

    #[test]
    fn parses_flat_output() {
        let out = "host b\nhostname b.example\nport 22\nuser u\n\
                   identityfile none\nidentityfile ~/.ssh/k_%h\n\
                   stricthostkeychecking true\nconnecttimeout none\nserveraliveinterval 0\n\
                   proxyjump none\nproxycommand none\nhashknownhosts yes\nbatchmode yes\n\
                   userknownhostsfile ~/a /b\nglobalknownhostsfile /etc/x\n";
        let t = parse_ssh_g("b", out, &local()).unwrap();
        assert_eq!(
            t.identity_files,
            vec![PathBuf::from("/home/me/.ssh/k_b.example")]
        );
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert_eq!(t.connect_timeout, None);
        assert_eq!(t.server_alive_interval, None);
        assert_eq!(t.proxy_jump, None);
        assert_eq!(t.proxy_command, None);
        assert!(t.hash_known_hosts);
        assert!(t.batch_mode);
        assert_eq!(
            t.user_known_hosts_files,
            vec![PathBuf::from("/home/me/a"), PathBuf::from("/b")]
        );
        assert_eq!(t.global_known_hosts_files, vec![PathBuf::from("/etc/x")]);

        for (value, want) in [
            ("false", StrictHostKeyChecking::No),
            ("accept-new", StrictHostKeyChecking::AcceptNew),
            ("ask", StrictHostKeyChecking::Ask),
        ] {
            let out = format!("hostname h\nport 1\nuser u\nstricthostkeychecking {value}\n");
            let t = parse_ssh_g("h", &out, &local()).unwrap();
            assert_eq!(t.strict_host_key_checking, want);
        }
        assert!(parse_ssh_g("h", "port 1\nuser u\n", &local()).is_err());
        assert!(parse_ssh_g("h", "hostname h\nport x\nuser u\n", &local()).is_err());
    }
}
