//! How to reach a build box, resolved with OpenSSH's own semantics.
//!
//! Rather than re-implementing `ssh_config(5)` (first-value-wins, `Host` patterns with
//! negation, `Match`, `Include`, `%` tokens, `CanonicalizeHostname`, …) we ask the
//! installed OpenSSH client: `ssh -G [-F FILE] [-l USER] [-p PORT] ALIAS` prints the
//! fully resolved configuration as flat `key value` lines in about 5 ms, and we parse
//! that. A fallback parser for machines without an `ssh` binary is a later addition;
//! until then [`resolve`] fails with a clear error there.
//!
//! What `ssh -G` leaves to the connecting client, and this module therefore does itself:
//! `~` and `%` tokens / `${VAR}` in `IdentityFile` (OpenSSH only expands them when it
//! loads the keys). `ProxyCommand` is returned unexpanded, as `ssh -G` prints it.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use sha1::{Digest, Sha1};

/// OpenSSH's `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown and changed host keys (`yes`; `ssh -G` prints `true`).
    Yes,
    /// Learn unknown host keys, refuse changed ones (`accept-new`).
    AcceptNew,
    /// Accept anything (`no` / `off`; `ssh -G` prints `false`). Changed keys are still
    /// reported by OpenSSH, which then disables some features; we treat it as "trust all".
    No,
    /// Ask the user (`ask`, OpenSSH's default). Without a terminal, OpenSSH refuses
    /// unknown keys, so treat it like [`Yes`](Self::Yes) in a daemon.
    Ask,
}

impl StrictHostKeyChecking {
    fn parse(value: &str) -> Option<Self> {
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
    /// (pass to [`known_hosts::learn`](super::known_hosts::learn)).
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

/// How sshcc runs `ssh -G`, the way the user runs `ssh`: an ssh_config file
/// (`SSHCC_SSH_CONFIG`, like `ssh -F`) and command-line options taken from distcc's
/// `DISTCC_SSH` (`-p`, `-i`, `-o Key=Value`, `-J`, …, which OpenSSH itself interprets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientOptions {
    pub config_file: Option<PathBuf>,
    pub extra: Vec<String>,
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
        extra: Vec::new(),
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
    cmd.args(&options.extra);
    // After the extra options: ssh uses the last -F, and SSHCC_SSH_CONFIG wins.
    if let Some(file) = &options.config_file {
        cmd.arg("-F").arg(file);
    }
    if let Some(user) = user {
        cmd.arg("-l").arg(user);
    }
    if let Some(port) = port {
        cmd.arg("-p").arg(port.to_string());
    }
    // `--` keeps an alias starting with '-' from being taken for an option.
    cmd.arg("--").arg(alias);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot resolve SSH host `{alias}`: OpenSSH's client (`{}`) is not on PATH; \
             sshcc currently needs it (`ssh -G`) to read the SSH configuration",
            ssh.to_string_lossy()
        ),
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

/// Facts about the local side that `%` tokens refer to.
#[derive(Debug, Clone)]
struct LocalInfo {
    /// `%u`
    user: String,
    /// `%d`, and what `~` expands to (OpenSSH uses the passwd entry, not `$HOME`).
    home: String,
    /// `%i`
    uid: u32,
    /// `%l` (`%L` is its part before the first dot).
    hostname: String,
}

impl LocalInfo {
    fn current() -> Self {
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
}

/// Parses `ssh -G` output for `alias`.
fn parse_ssh_g(alias: &str, output: &str, local: &LocalInfo) -> Result<SshTarget> {
    let mut hostname = None;
    let mut port = None;
    let mut user = None;
    let mut raw_identity_files = Vec::new();
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
        host_key_alias: host_key_alias.as_deref(),
        proxy_jump: proxy_jump.as_deref(),
    };
    let mut identity_files = Vec::new();
    for raw in &raw_identity_files {
        if raw.eq_ignore_ascii_case("none") {
            continue;
        }
        let path = tilde(raw);
        let path = tokens
            .expand(&path.to_string_lossy())
            .with_context(|| format!("expanding IdentityFile {raw:?}"))?;
        identity_files.push(PathBuf::from(path));
    }

    Ok(SshTarget {
        alias: alias.to_owned(),
        hostname,
        port,
        user,
        identity_files,
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

fn parse_flag(key: &str, value: &str) -> Result<bool> {
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

/// The connection facts OpenSSH's `%` tokens in `IdentityFile` refer to.
struct Tokens<'a> {
    local: &'a LocalInfo,
    alias: &'a str,
    hostname: &'a str,
    port: u16,
    user: &'a str,
    host_key_alias: Option<&'a str>,
    proxy_jump: Option<&'a str>,
}

impl Tokens<'_> {
    /// OpenSSH's `default_client_percent_dollar_expand`: `${VAR}` first, then `%` tokens.
    /// Unknown tokens and undefined variables are errors, as in OpenSSH.
    fn expand(&self, input: &str) -> Result<String> {
        let input = expand_env(input)?;
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
                'k' => out.push_str(self.host_key_alias.unwrap_or(self.alias)),
                'l' => out.push_str(&self.local.hostname),
                'n' => out.push_str(self.alias),
                'p' => {
                    let _ = write!(out, "{}", self.port);
                }
                'd' => out.push_str(&self.local.home),
                'h' => out.push_str(self.hostname),
                'r' => out.push_str(self.user),
                'u' => out.push_str(&self.local.user),
                'j' => out.push_str(self.proxy_jump.map(jump_host).unwrap_or("")),
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
    use super::*;
    use std::fs;

    fn local() -> LocalInfo {
        LocalInfo {
            user: "me".into(),
            home: "/home/me".into(),
            uid: 1000,
            hostname: "dev.example.org".into(),
        }
    }

    /// Writes `text` as an ssh_config in a fresh temp dir (plus any extra files) and
    /// resolves `alias` through the real `ssh -G`.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes `name` with `{dir}` replaced by the temp dir.
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.path(name);
            fs::write(
                &path,
                text.replace("{dir}", &self.dir.path().to_string_lossy()),
            )
            .unwrap();
            path
        }

        fn resolve(&self, alias: &str) -> SshTarget {
            resolve(alias, None, Some(&self.path("config"))).unwrap()
        }
    }

    fn home() -> String {
        LocalInfo::current().home
    }

    const CONFIG: &str = "\
# Options before the first Host apply to every host.
User globaluser
ConnectTimeout 7
ServerAliveInterval 20
Include {dir}/included.conf

Host build-* !build-bad
    HostName %h.farm.example
    IdentityFile ~/.ssh/id_build
    IdentityFile {dir}/keys/%h/%r_%p
    IdentitiesOnly yes
    StrictHostKeyChecking accept-new
    UserKnownHostsFile ~/.ssh/farm_hosts {dir}/second_hosts
    HostKeyAlias Farm-Alias
    ProxyJump jumper@bastion.example:2200

Match host *.farm.example
    Port 2201
    ServerAliveCountMax 5

Host build-bad
    HostName quarantine.example
    StrictHostKeyChecking yes
    BatchMode yes

Host proxied
    ProxyCommand nc %h %p
    IdentityAgent none

Host *
    StrictHostKeyChecking no
    ConnectTimeout 30
";

    const INCLUDED: &str = "\
Host included
    HostName inc.example.com
    Port 2222
    User incuser
    ConnectTimeout none
";

    fn fixture() -> Fixture {
        let f = Fixture::new();
        f.write("config", CONFIG);
        f.write("included.conf", INCLUDED);
        f
    }

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
        let pattern = "~/x/%d/%u/%l/%L/%h/%r/%p/%n/%k/%i/%C/%%/${HOME}";
        f.write(
            "config",
            &format!(
                "Host tok\n  HostName Tok.Example.NET\n  Port 2022\n  User someone\n  \
                 IdentityFile {pattern}\n  UserKnownHostsFile {pattern}\n\
                 Host tok2\n  HostKeyAlias KeyAlias\n  IdentityFile %k/%n\n  UserKnownHostsFile %k/%n\n"
            ),
        );
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
    fn missing_ssh_is_a_clear_error() {
        let err = resolve_using(
            OsStr::new("/nonexistent/sshcc-no-ssh"),
            "box",
            None,
            None,
            &ClientOptions::default(),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("box"), "{msg}");
        assert!(msg.contains("OpenSSH"), "{msg}");
        assert!(msg.contains("not on PATH"), "{msg}");
    }

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

    #[test]
    fn token_expansion_details() {
        let l = local();
        let t = Tokens {
            local: &l,
            alias: "Alias",
            hostname: "h.example",
            port: 22,
            user: "r",
            host_key_alias: None,
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
}
