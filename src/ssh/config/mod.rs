//! How to reach a build box, resolved with OpenSSH's own semantics.
//!
//! Rather than re-implementing `ssh_config(5)` (first-value-wins, `Host` patterns with
//! negation, `Match`, `Include`, `%` tokens, `CanonicalizeHostname`, …) we ask the
//! installed OpenSSH client: `ssh -G [-F FILE] [-l USER] [-p PORT] ALIAS` prints the
//! fully resolved configuration as flat `key value` lines in about 5 ms, and we parse
//! that. On machines without an `ssh` binary a small fallback parser ([`fallback`],
//! entered through [`resolve_without_ssh`]) handles the common subset — `Host`, `Match`
//! (`exec` and `final` included), `Include`, but not `CanonicalizeHostname` — and
//! produces the same `key value` lines, so both paths share [`parse_ssh_g`] ([`ssh_g`]).
//!
//! What `ssh -G` leaves to the connecting client, and this module therefore does itself
//! ([`tokens`]): `~` and `%` tokens / `${VAR}` in `IdentityFile` (OpenSSH only expands
//! them when it loads the keys). `ProxyCommand` is returned unexpanded, as `ssh -G`
//! prints it.
//!
//! This file holds what the rest of sshcc uses: [`SshTarget`], [`ClientOptions`], the
//! `resolve*` functions and running `ssh -G`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};

mod fallback;
mod ssh_g;
mod target;
#[cfg(test)]
mod test_fixtures;
mod tokens;

use fallback::ssh_g_output_without_ssh;
use ssh_g::parse_ssh_g;
use tokens::LocalInfo;

pub use target::{SshTarget, StrictHostKeyChecking};

/// How sshcc runs `ssh -G`, the way the user runs `ssh`: an ssh_config file
/// (`SSHCC_SSH_CONFIG`, like `ssh -F`) and command-line options taken from distcc's
/// `DISTCC_SSH` (`-p`, `-i`, `-o Key=Value`, `-J`, …, which OpenSSH itself interprets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientOptions {
    pub config_file: Option<PathBuf>,
    pub extra: Vec<String>,
    /// Host aliases (`*` for all) whose `StrictHostKeyChecking no` is honoured;
    /// for every other host sshcc refuses it, so a stray `Host *` stanza cannot
    /// silently switch off host authentication for a build.
    pub unchecked_host_keys: Vec<String>,
}

impl ClientOptions {
    /// Whether the user told sshcc itself (not only ssh_config) that `alias` may
    /// connect without checking its host key.
    pub fn allows_unchecked_host_key(&self, alias: &str) -> bool {
        self.unchecked_host_keys
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(alias))
    }
}

/// Resolves `alias` through OpenSSH's configuration (`config_file`, or else
/// `~/.ssh/config` and `/etc/ssh/ssh_config`), optionally overriding the login user.
pub fn resolve(alias: &str, user: Option<&str>, config_file: Option<&Path>) -> Result<SshTarget> {
    resolve_with_port(alias, user, None, config_file)
}

/// Resolves `alias` with `options`, optionally overriding the login user and port.
pub fn resolve_with(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    options: &ClientOptions,
) -> Result<SshTarget> {
    resolve_using(OsStr::new("ssh"), alias, user, port, options)
}

/// Like [`resolve`], also overriding the port (`ssh -p`), which like `-l` takes
/// precedence over the configuration files.
pub fn resolve_with_port(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    config_file: Option<&Path>,
) -> Result<SshTarget> {
    let options = ClientOptions {
        config_file: config_file.map(Path::to_path_buf),
        ..ClientOptions::default()
    };
    resolve_using(OsStr::new("ssh"), alias, user, port, &options)
}

fn resolve_using(
    ssh: &OsStr,
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    options: &ClientOptions,
) -> Result<SshTarget> {
    ensure!(!alias.is_empty(), "empty SSH host name");
    let mut cmd = Command::new(ssh);
    // -T only silences "Pseudo-terminal will not be allocated" on stderr.
    cmd.arg("-G").arg("-T");
    cmd.args(command_line(user, port, options));
    // `--` keeps an alias starting with '-' from being taken for an option.
    cmd.arg("--").arg(alias);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(
                "`{}` not found; reading the SSH configuration with sshcc's own parser",
                ssh.to_string_lossy()
            );
            return resolve_without_ssh(alias, user, port, options, &LocalInfo::current())
                .with_context(|| {
                    format!(
                        "cannot resolve SSH host `{alias}` (OpenSSH's client `{}` is not on \
                         PATH; used sshcc's fallback ssh_config parser)",
                        ssh.to_string_lossy()
                    )
                });
        }
        Err(err) => {
            return Err(anyhow!(err).context(format!(
                "cannot resolve SSH host `{alias}`: running `{} -G` failed",
                ssh.to_string_lossy()
            )));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "cannot resolve SSH host `{alias}`: `ssh -G` exited with {}: {}",
        output.status,
        stderr.trim()
    );
    let stdout = String::from_utf8(output.stdout).map_err(|_| {
        anyhow!("cannot resolve SSH host `{alias}`: `ssh -G` printed non-UTF-8 output")
    })?;
    parse_ssh_g(alias, &stdout, &LocalInfo::current())
        .with_context(|| format!("cannot resolve SSH host `{alias}` from `ssh -G` output"))
}

/// The `ssh` command-line options (before `--` and the alias) that express `user`,
/// `port` and `options`, in the order [`resolve_using`] passes them; the fallback
/// parser interprets the same list, so both paths see the same precedence.
fn command_line(user: Option<&str>, port: Option<u16>, options: &ClientOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = options.extra.iter().map(OsString::from).collect();
    // After the extra options: ssh uses the last -F, and SSHCC_SSH_CONFIG wins.
    if let Some(file) = &options.config_file {
        args.push("-F".into());
        args.push(file.into());
    }
    if let Some(user) = user {
        args.push("-l".into());
        args.push(user.into());
    }
    if let Some(port) = port {
        args.push("-p".into());
        args.push(port.to_string().into());
    }
    args
}

/// Resolves `alias` like `ssh -G` with the options [`command_line`] builds, without
/// running `ssh`.
fn resolve_without_ssh(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    options: &ClientOptions,
    local: &LocalInfo,
) -> Result<SshTarget> {
    ensure!(!alias.is_empty(), "empty SSH host name");
    let output = ssh_g_output_without_ssh(alias, &command_line(user, port, options), local)?;
    parse_ssh_g(alias, &output, local)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_fixtures::*;
    use super::*;

    #[test]
    fn host_pattern_match_include_and_tokens() {
        let f = fixture();
        let dir = f.dir.path().to_string_lossy().into_owned();
        let t = f.resolve("build-7");
        assert_eq!(t.alias, "build-7");
        assert_eq!(t.hostname, "build-7.farm.example");
        // From `Match host`, which sees the HostName set earlier.
        assert_eq!(t.port, 2201);
        assert_eq!(t.server_alive_count_max, 5);
        // Global option before the first Host.
        assert_eq!(t.user, "globaluser");
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(t.server_alive_interval, Some(Duration::from_secs(20)));
        assert_eq!(
            t.identity_files,
            vec![
                PathBuf::from(format!("{}/.ssh/id_build", home())),
                PathBuf::from(format!("{dir}/keys/build-7.farm.example/globaluser_2201")),
            ]
        );
        assert!(t.identities_only);
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert_eq!(
            t.user_known_hosts_files,
            vec![
                PathBuf::from(format!("{}/.ssh/farm_hosts", home())),
                PathBuf::from(format!("{dir}/second_hosts")),
            ]
        );
        // OpenSSH lowercases the alias.
        assert_eq!(t.host_key_alias.as_deref(), Some("farm-alias"));
        assert_eq!(t.host_key_name(), "farm-alias");
        assert_eq!(t.host_key_port(), 22);
        assert_eq!(t.proxy_jump.as_deref(), Some("jumper@bastion.example:2200"));
        // ProxyJump and ProxyCommand exclude each other; the first one set wins.
        assert_eq!(t.proxy_command, None);
        assert!(!t.batch_mode);
    }

    #[test]
    fn negated_pattern_excludes_host() {
        let f = fixture();
        let t = f.resolve("build-bad");
        assert_eq!(t.hostname, "quarantine.example");
        assert_eq!(t.port, 22);
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert!(t.batch_mode);
        assert_eq!(t.host_key_alias, None);
        assert_eq!(t.host_key_name(), "quarantine.example");
        assert_eq!(t.host_key_port(), 22);
        assert_eq!(t.proxy_jump, None);
        // No IdentityFile configured: OpenSSH's defaults.
        assert!(
            t.identity_files
                .contains(&PathBuf::from(format!("{}/.ssh/id_ed25519", home())))
        );
        assert!(!t.identities_only);
        // Defaults for the known_hosts files.
        assert_eq!(
            t.user_known_hosts_files,
            vec![
                PathBuf::from(format!("{}/.ssh/known_hosts", home())),
                PathBuf::from(format!("{}/.ssh/known_hosts2", home())),
            ]
        );
        assert_eq!(
            t.global_known_hosts_files,
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ]
        );
    }

    #[test]
    fn included_file_and_first_value_wins() {
        let f = fixture();
        let t = f.resolve("included");
        assert_eq!(t.hostname, "inc.example.com");
        assert_eq!(t.port, 2222);
        // The global `User` came first.
        assert_eq!(t.user, "globaluser");
        // Global ConnectTimeout 7 came before the included `none`.
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::No);
    }

    #[test]
    fn proxy_command_and_agent() {
        let f = fixture();
        let t = f.resolve("proxied");
        assert_eq!(t.proxy_command.as_deref(), Some("nc %h %p"));
        assert_eq!(t.proxy_jump, None);
        assert_eq!(t.identity_agent.as_deref(), Some("none"));
        assert_eq!(t.server_alive_count_max, 3);
    }

    #[test]
    fn command_line_user_and_port_win() {
        let f = fixture();
        let t = resolve_with_port(
            "build-1",
            Some("override"),
            Some(4000),
            Some(&f.path("config")),
        )
        .unwrap();
        assert_eq!(t.user, "override");
        assert_eq!(t.port, 4000);
        let dir = f.dir.path().to_string_lossy().into_owned();
        assert_eq!(
            t.identity_files[1],
            PathBuf::from(format!("{dir}/keys/build-1.farm.example/override_4000"))
        );
        let t = resolve("build-1", Some("bob"), Some(&f.path("config"))).unwrap();
        assert_eq!(t.user, "bob");
        assert_eq!(t.port, 2201);
    }

    #[test]
    fn unmatched_host_gets_defaults() {
        let f = Fixture::new();
        f.write("config", "");
        let t = f.resolve("Plain.Example");
        assert_eq!(t.alias, "Plain.Example");
        assert_eq!(t.hostname, "plain.example");
        assert_eq!(t.port, 22);
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::Ask);
        assert_eq!(t.connect_timeout, None);
        assert_eq!(t.server_alive_interval, None);
        assert_eq!(t.server_alive_count_max, 3);
        assert!(!t.hash_known_hosts);
    }

    /// Our `%` token expansion of IdentityFile agrees with OpenSSH's own expansion of
    /// UserKnownHostsFile, which `ssh -G` does perform with the same token set.
    #[test]
    fn identity_file_tokens_agree_with_openssh() {
        let f = Fixture::new();
        f.write("config", &token_config());
        for alias in ["tok", "tok2"] {
            let t = f.resolve(alias);
            assert_eq!(t.identity_files.len(), 1);
            assert_eq!(t.identity_files, t.user_known_hosts_files, "{alias}");
        }
    }

    #[test]
    fn errors_name_the_alias_and_stderr() {
        let f = Fixture::new();
        f.write("config", "Host x\n  NoSuchOption yes\n");
        let err = resolve("some-alias", None, Some(&f.path("config"))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("some-alias"), "{msg}");
        assert!(msg.contains("Bad configuration option"), "{msg}");

        // An alias that looks like an option is still only a host name.
        f.write("config", "");
        let err = resolve("-oProxyCommand=evil", None, Some(&f.path("config"))).unwrap_err();
        assert!(format!("{err:#}").contains("-oProxyCommand=evil"));
    }

    #[test]
    fn missing_ssh_falls_back_to_the_parser() {
        let f = Fixture::new();
        f.write("config", CONFIG);
        f.write("included.conf", INCLUDED);
        let options = with_config(&f, &[]);
        let t = resolve_using(
            OsStr::new("/nonexistent/sshcc-no-ssh"),
            "included",
            None,
            None,
            &options,
        )
        .unwrap();
        assert_eq!(t.hostname, "inc.example.com");
        assert_eq!(t.port, 2222);
        assert_eq!(t, f.resolve("included"));

        // Errors from the fallback still name the alias and say why ssh was not used.
        let options = ClientOptions {
            config_file: Some(f.path("missing")),
            extra: Vec::new(),
            ..ClientOptions::default()
        };
        let err = resolve_using(
            OsStr::new("/nonexistent/sshcc-no-ssh"),
            "box",
            None,
            None,
            &options,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("box"), "{msg}");
        assert!(msg.contains("not on PATH"), "{msg}");
    }
}
