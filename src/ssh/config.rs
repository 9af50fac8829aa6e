//! How to reach a build box, resolved with OpenSSH's own semantics.
//!
//! Rather than re-implementing `ssh_config(5)` (first-value-wins, `Host` patterns with
//! negation, `Match`, `Include`, `%` tokens, `CanonicalizeHostname`, …) we ask the
//! installed OpenSSH client: `ssh -G [-F FILE] [-l USER] [-p PORT] ALIAS` prints the
//! fully resolved configuration as flat `key value` lines in about 5 ms, and we parse
//! that. On machines without an `ssh` binary a small fallback parser (see
//! [`resolve_without_ssh`]) handles the common subset — `Host`, `Match` (`exec` and
//! `final` included), `Include`, but not `CanonicalizeHostname` — and produces the
//! same `key value` lines, so both paths share [`parse_ssh_g`].
//!
//! What `ssh -G` leaves to the connecting client, and this module therefore does itself:
//! `~` and `%` tokens / `${VAR}` in `IdentityFile` (OpenSSH only expands them when it
//! loads the keys). `ProxyCommand` is returned unexpanded, as `ssh -G` prints it.

use std::ffi::{OsStr, OsString};
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
    /// Learn unknown keys and connect despite changed ones (`no` / `off`; `ssh -G`
    /// prints `false`), as OpenSSH does; revoked keys are still refused. sshcc honours
    /// it only for hosts in [`ClientOptions::unchecked_host_keys`].
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

// ---------------------------------------------------------------------------------
// Fallback for machines without OpenSSH's client.
//
// A small ssh_config(5) reader for the subset sshcc relies on: `Host` patterns (`*`,
// `?`, `!`), `Match` as in OpenSSH 9.2 (`all`, `canonical`, `final`, `host`,
// `originalhost`, `user`, `localuser`, `exec`, `!` negation), options before the first
// `Host`, first value wins (`IdentityFile` accumulates), `Include` (globs, relative to
// ~/.ssh or /etc/ssh), `Key=Value`, quoting, case-insensitive keywords, and the `ssh`
// options `-F -p -l -i -o -J`. It prints what `ssh -G` would print for the options
// sshcc reads, then hands that to [`parse_ssh_g`], so both paths share one mapping.
//
// `Match final` makes OpenSSH read the configuration a second time, matching `Host`
// and `Match host` against the hostname the first pass resolved; the reader does the
// same. OpenSSH also makes that second pass for `CanonicalizeHostname`, which is not
// supported here: so `Match canonical`, which OpenSSH 9.2 treats like `final`, only
// matches when some `Match final` asked for the second pass. Also not supported:
// unknown or invalid options (ignored rather than rejected), and `Port` given as a
// service name.
// ---------------------------------------------------------------------------------

/// `ssh` options that take an argument (OpenSSH 9.2's getopt string).
const SSH_OPTIONS_WITH_ARGUMENT: &str = "bceilmopBDEFIJLOPQRSwW";

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

/// Where `Include` nesting stops, as in OpenSSH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// The configuration values the fallback collects, raw as written (first one wins).
#[derive(Debug, Default)]
struct RawConfig {
    /// Lowercased keyword → first value.
    single: std::collections::HashMap<String, String>,
    identity_files: KeyFiles,
    certificate_files: KeyFiles,
    user_known_hosts_files: Option<String>,
    global_known_hosts_files: Option<String>,
    proxy_jump: Option<String>,
    proxy_command: Option<String>,
}

/// Which kind of file is being read: relative `Include`s resolve against `~/.ssh` for
/// user files (including `-F`) and `/etc/ssh` for the system one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigKind {
    User,
    System,
}

/// `IdentityFile`s or `CertificateFile`s in order, each with its source: `-i` (`None`),
/// or the kind of configuration file (`-o` counts as a user file). OpenSSH ignores a
/// path already listed from the same source, which keeps the final pass, reading
/// everything again, from listing files twice.
#[derive(Debug, Default)]
struct KeyFiles(Vec<(Option<ConfigKind>, String)>);

impl KeyFiles {
    fn add(&mut self, source: Option<ConfigKind>, path: &str) {
        if !self.0.iter().any(|(s, p)| *s == source && p == path) {
            self.0.push((source, path.to_owned()));
        }
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, path)| path.as_str())
    }
}

struct ConfigReader<'a> {
    alias: &'a str,
    local: &'a LocalInfo,
    raw: RawConfig,
    /// Set for OpenSSH's final pass: the hostname the first pass resolved, which `Host`
    /// and `Match host` then match instead of the alias and later `HostName`s cannot
    /// change.
    final_hostname: Option<String>,
    /// Whether a `Match final` asked for that pass.
    want_final_pass: bool,
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

/// What `ssh -G ARGS -- ALIAS` would print, restricted to the options sshcc reads.
fn ssh_g_output_without_ssh(alias: &str, args: &[OsString], local: &LocalInfo) -> Result<String> {
    let mut reader = ConfigReader {
        alias,
        local,
        raw: RawConfig::default(),
        final_hostname: None,
        want_final_pass: false,
    };
    let mut config_file: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            continue;
        };
        if text == "--" {
            break;
        }
        let Some(flags) = text.strip_prefix('-').filter(|f| !f.is_empty()) else {
            continue;
        };
        for (i, flag) in flags.char_indices() {
            if !SSH_OPTIONS_WITH_ARGUMENT.contains(flag) {
                continue;
            }
            let attached = &flags[i + flag.len_utf8()..];
            let value: OsString = if attached.is_empty() {
                args.next()
                    .cloned()
                    .with_context(|| format!("ssh option -{flag} needs an argument"))?
            } else {
                attached.into()
            };
            let value_str = value.to_string_lossy();
            match flag {
                'F' => config_file = Some(PathBuf::from(value)),
                'p' => reader.set_first("port", &value_str),
                'l' => reader.set_first("user", &value_str),
                'i' => {
                    // OpenSSH drops (with a warning) `-i` files it cannot stat.
                    let path = local.tilde(&value_str);
                    if path.exists() {
                        reader.raw.identity_files.add(None, &path.to_string_lossy());
                    } else {
                        tracing::warn!("identity file {} not accessible", path.display());
                    }
                }
                'J' => reader.set_proxy_jump(&value_str),
                'o' => {
                    if let Some((keyword, _)) = split_keyword(&value_str) {
                        ensure!(
                            !["host", "match", "include"]
                                .contains(&keyword.to_ascii_lowercase().as_str()),
                            "{keyword} is not supported as a command-line option (-o)"
                        );
                    }
                    reader.line(
                        &value_str,
                        Path::new("command-line"),
                        0,
                        true,
                        ConfigKind::User,
                        0,
                    )?
                }
                _ => {}
            }
            break;
        }
    }

    let must_exist = config_file.is_some();
    let files = match config_file {
        Some(file) if file.as_os_str() == "none" => Vec::new(),
        Some(file) => vec![(file, ConfigKind::User)],
        None => vec![
            (local.tilde("~/.ssh/config"), ConfigKind::User),
            (PathBuf::from("/etc/ssh/ssh_config"), ConfigKind::System),
        ],
    };
    reader.read_files(&files, must_exist)?;
    if reader.want_final_pass {
        reader.final_hostname = Some(reader.hostname()?);
        reader.read_files(&files, must_exist)?;
    }
    reader.output()
}

impl LocalInfo {
    /// `~` and `~/…` expanded with the passwd home, as OpenSSH does.
    fn tilde(&self, path: &str) -> PathBuf {
        PathBuf::from(shellexpand::tilde_with_context(path, || Some(&self.home)).as_ref())
    }
}

impl ConfigReader<'_> {
    fn set_first(&mut self, key: &str, value: &str) {
        self.raw
            .single
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }

    /// `ProxyJump` applies only if neither it nor `ProxyCommand` is set yet, and then
    /// disables any later `ProxyCommand`.
    fn set_proxy_jump(&mut self, value: &str) {
        if self.raw.proxy_jump.is_some() || self.raw.proxy_command.is_some() {
            return;
        }
        self.raw.proxy_jump = Some(value.to_owned());
        if !value.eq_ignore_ascii_case("none") {
            self.raw.proxy_command = Some("none".to_owned());
        }
    }

    /// One pass over the configuration `files`; a missing file is an error only when
    /// `must_exist` (`-F`).
    fn read_files(&mut self, files: &[(PathBuf, ConfigKind)], must_exist: bool) -> Result<()> {
        for (file, kind) in files {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(err) if !must_exist && err.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(err) => {
                    return Err(anyhow!(err)
                        .context(format!("cannot read SSH config file {}", file.display())));
                }
            };
            self.file(&text, file, true, *kind, 0)?;
        }
        Ok(())
    }

    /// Reads one file's `text`; `can_match` says whether the surrounding context applies
    /// (an `Include` in a non-matching `Host` block can never match).
    fn file(
        &mut self,
        text: &str,
        path: &Path,
        can_match: bool,
        kind: ConfigKind,
        depth: usize,
    ) -> Result<()> {
        let mut active = can_match;
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let Some((keyword, rest)) = split_keyword(line) else {
                continue;
            };
            let location = || format!("{}:{number}", path.display());
            match keyword.to_ascii_lowercase().as_str() {
                "host" => {
                    let patterns = split_args(rest).with_context(location)?;
                    let host = self.final_hostname.as_deref().unwrap_or(self.alias);
                    active = can_match
                        && pattern_list_matches(patterns.iter().map(String::as_str), host);
                }
                "match" => {
                    // OpenSSH checks the quoting of every line like this before
                    // splitting the criteria differently (see `MatchWords`).
                    split_args(rest).with_context(location)?;
                    // Evaluated even where it cannot apply: OpenSSH runs its `exec`
                    // commands and notes `final` there too.
                    let matched = self
                        .match_condition(rest)
                        .with_context(|| format!("{}: bad Match condition", location()))?;
                    active = can_match && matched;
                }
                _ => self.line(line, path, number, active, kind, depth)?,
            }
        }
        Ok(())
    }

    /// Whether all criteria of a `Match` line hold, as OpenSSH 9.2's `match_cfg_line`
    /// decides it, errors included.
    fn match_condition(&mut self, condition: &str) -> Result<bool> {
        let host = self.host_so_far()?;
        let mut words = MatchWords(Some(condition));
        let mut result = true;
        let mut criteria = 0;
        while let Some(word) = words.next().filter(|w| !w.is_empty()) {
            if word.starts_with('#') {
                break;
            }
            let (negate, name) = match word.strip_prefix('!') {
                Some(name) => (true, name.to_ascii_lowercase()),
                None => (false, word.to_ascii_lowercase()),
            };
            if name == "all" {
                // OpenSSH's check: tolerated after at most one other criterion, but
                // nothing may follow it.
                let next = words.next();
                ensure!(
                    criteria <= 1 && next.is_none_or(|w| w.is_empty() || w.starts_with('#')),
                    "`{word}` cannot be combined with other Match criteria"
                );
                return Ok(result && !negate);
            }
            criteria += 1;
            let matched = if name == "canonical" || name == "final" {
                self.want_final_pass |= name == "final";
                self.final_hostname.is_some()
            } else {
                let arg = words
                    .next()
                    .filter(|a| !a.is_empty() && !a.starts_with('#'))
                    .with_context(|| format!("missing argument for Match {word}"))?;
                let user = self.raw.single.get("user").unwrap_or(&self.local.user);
                match name.as_str() {
                    "host" => hostname_matches(&arg, &host),
                    "originalhost" => hostname_matches(&arg, self.alias),
                    "user" => pattern_list_matches(arg.split(','), user),
                    "localuser" => pattern_list_matches(arg.split(','), &self.local.user),
                    "exec" => {
                        let command = self.match_exec_command(&arg, &host, user)?;
                        // As OpenSSH: expanded (and so checked) regardless, but not run
                        // once the line cannot match any more.
                        if !result {
                            continue;
                        }
                        run_match_exec(&command)?
                    }
                    _ => bail!("unsupported Match attribute `{word}`"),
                }
            };
            if matched == negate {
                result = false;
            }
        }
        ensure!(criteria > 0, "Match needs at least one criterion");
        Ok(result)
    }

    /// A `Match exec` command with the `%` tokens OpenSSH 9.2 expands there, from the
    /// configuration read so far; `host` is what `Match host` compares and `user` the
    /// remote user.
    fn match_exec_command(&self, command: &str, host: &str, user: &str) -> Result<String> {
        let port = match self.raw.single.get("port") {
            Some(port) => port.parse().with_context(|| format!("bad port {port:?}"))?,
            None => 22,
        };
        let tokens = Tokens {
            local: self.local,
            alias: self.alias,
            hostname: host,
            port,
            user,
            key_alias: self
                .raw
                .single
                .get("hostkeyalias")
                .map_or(host, String::as_str),
            proxy_jump: None,
        };
        tokens.expand_percent(command, TokenSet::MatchExec)
    }

    /// The host name the configuration read so far leads to, as `Match host` sees it:
    /// the final pass's, else `HostName` with `%h` expanded, else the alias.
    fn host_so_far(&self) -> Result<String> {
        if let Some(hostname) = &self.final_hostname {
            return Ok(hostname.clone());
        }
        match self.raw.single.get("hostname") {
            Some(name) => expand_hostname(name, self.alias),
            None => Ok(self.alias.to_owned()),
        }
    }

    /// The host name to connect to, as `ssh -G` prints it.
    fn hostname(&self) -> Result<String> {
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

    /// One option line (not `Host`/`Match`).
    fn line(
        &mut self,
        line: &str,
        path: &Path,
        number: usize,
        active: bool,
        kind: ConfigKind,
        depth: usize,
    ) -> Result<()> {
        let Some((keyword, rest)) = split_keyword(line) else {
            return Ok(());
        };
        let key = keyword.to_ascii_lowercase();
        let args = split_args(rest).with_context(|| format!("{}:{number}", path.display()))?;
        if key == "include" {
            ensure!(
                depth < MAX_INCLUDE_DEPTH,
                "{}:{number}: Include nested too deeply",
                path.display()
            );
            for pattern in args {
                let pattern = self.local.tilde(&pattern);
                let pattern = if pattern.is_absolute() {
                    pattern
                } else if kind == ConfigKind::User {
                    self.local.tilde("~/.ssh").join(pattern)
                } else {
                    Path::new("/etc/ssh").join(pattern)
                };
                for file in glob(&pattern) {
                    let Ok(text) = std::fs::read_to_string(&file) else {
                        continue;
                    };
                    self.file(&text, &file, active, kind, depth + 1)?;
                }
            }
            return Ok(());
        }
        if !active {
            return Ok(());
        }
        if key == "proxycommand" {
            // The rest of the line, verbatim, as OpenSSH keeps it.
            if self.raw.proxy_command.is_none() {
                self.raw.proxy_command = Some(rest.to_owned());
            }
            return Ok(());
        }
        let Some(first) = args.first() else {
            bail!(
                "{}:{number}: missing argument for {keyword}",
                path.display()
            );
        };
        match key.as_str() {
            "identityfile" => self.raw.identity_files.add(Some(kind), first),
            "certificatefile" => self.raw.certificate_files.add(Some(kind), first),
            "userknownhostsfile" if self.raw.user_known_hosts_files.is_none() => {
                self.raw.user_known_hosts_files = Some(args.join(" "));
            }
            "globalknownhostsfile" if self.raw.global_known_hosts_files.is_none() => {
                self.raw.global_known_hosts_files = Some(args.join(" "));
            }
            "proxyjump" => self.set_proxy_jump(first),
            // `none` leaves these unset, so a later value still applies.
            "connecttimeout" | "serveraliveinterval" if first.eq_ignore_ascii_case("none") => {}
            "connecttimeout" | "serveraliveinterval" => {
                let secs = convtime(first).with_context(|| {
                    format!("{}:{number}: bad {keyword} {first:?}", path.display())
                })?;
                self.set_first(&key, &secs.to_string());
            }
            "hostname"
            | "port"
            | "user"
            | "identitiesonly"
            | "identityagent"
            | "stricthostkeychecking"
            | "hostkeyalias"
            | "serveralivecountmax"
            | "batchmode"
            | "hashknownhosts" => self.set_first(&key, first),
            _ => {}
        }
        Ok(())
    }

    /// The `ssh -G` lines for what was collected, with OpenSSH's defaults and the
    /// expansions `ssh -G` performs itself.
    fn output(self) -> Result<String> {
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

/// Splits a config line into its keyword and the rest (after whitespace and at most
/// one `=`, as OpenSSH's `strdelim`); `None` for blank lines and comments.
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((keyword, rest))
}

/// Splits arguments like OpenSSH's `argv_split`: whitespace-separated, `"`/`'`
/// quoting, `\` escaping quotes, backslash and space, and a `#` starting a word ends
/// the line. An unterminated quote is an error, as in OpenSSH, whatever the keyword.
fn split_args(text: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) if matches!(chars.peek(), Some('\\' | '"' | '\'' | ' ')) => {
                    arg.extend(chars.next());
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => arg.push(c),
            }
        }
        ensure!(quote.is_none(), "invalid quotes");
        args.push(arg);
    }
    Ok(args)
}

/// `HostName` expansion: OpenSSH allows only `%h` (the alias) and `%%` there.
fn expand_hostname(name: &str, alias: &str) -> Result<String> {
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

/// OpenSSH's `convtime`: a sequence of numbers each with an optional unit
/// (`s`, `m`, `h`, `d`, `w`; seconds without one).
fn convtime(text: &str) -> Result<u64> {
    ensure!(!text.is_empty(), "empty time");
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            if chars.peek().is_some() {
                continue;
            }
        }
        ensure!(!number.is_empty(), "no number before {c:?}");
        let multiplier = if c.is_ascii_digit() {
            1
        } else {
            match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 604800,
                _ => bail!("unknown time unit {c:?}"),
            }
        };
        let value: u64 = number.parse()?;
        total = value
            .checked_mul(multiplier)
            .and_then(|v| total.checked_add(v))
            .context("time too large")?;
        number.clear();
    }
    Ok(total)
}

/// OpenSSH's `match_pattern_list`: whether some pattern matches `text` and no
/// `!`-negated one does. `Host` gives its patterns as separate words, `Match` as one
/// comma-separated list.
fn pattern_list_matches<'p>(patterns: impl IntoIterator<Item = &'p str>, text: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, text) {
                return false;
            }
        } else if wildcard_match(pattern, text) {
            matched = true;
        }
    }
    matched
}

/// OpenSSH's `match_hostname`: a comma-separated pattern list matched ignoring ASCII
/// case.
fn hostname_matches(patterns: &str, host: &str) -> bool {
    let patterns = patterns.to_ascii_lowercase();
    // OpenSSH's list parser ends at a trailing comma rather than reading an empty
    // pattern after it.
    let patterns = patterns.strip_suffix(',').unwrap_or(&patterns);
    pattern_list_matches(patterns.split(','), &host.to_ascii_lowercase())
}

/// The words of a `Match` line, split like OpenSSH's `strdelim` rather than like other
/// options' arguments: whitespace or a single `=` separates, `"` quotes (also inside a
/// word) without escapes, and an unterminated quote ends the line.
struct MatchWords<'a>(Option<&'a str>);

impl Iterator for MatchWords<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        const WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];
        let text = self.0?;
        let Some(end) = text.find(|c| WHITESPACE.contains(&c) || c == '"' || c == '=') else {
            self.0 = None;
            return Some(text.to_owned());
        };
        let (word, rest) = text.split_at(end);
        // Every delimiter is one ASCII byte.
        let (delimiter, after) = rest.split_at(1);
        if delimiter == "\"" {
            let Some(close) = after.find('"') else {
                self.0 = None;
                return None;
            };
            self.0 = Some(after[close + 1..].trim_start_matches(WHITESPACE));
            return Some(format!("{word}{}", &after[..close]));
        }
        let after = after.trim_start_matches(WHITESPACE);
        self.0 = Some(match after.strip_prefix('=') {
            // Whitespace, then the one `=` allowed.
            Some(after_equals) if delimiter != "=" => after_equals.trim_start_matches(WHITESPACE),
            _ => after,
        });
        Some(word.to_owned())
    }
}

/// Runs a `Match exec` command as OpenSSH does (`$SHELL -c`, stdin and stdout on
/// /dev/null); whether it exited with status 0.
fn run_match_exec(command: &str) -> Result<bool> {
    let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
    // stderr is captured because `ssh -G`'s is too, and would disturb the output of
    // the compiler sshcc runs for.
    let output = Command::new(&shell)
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| {
            format!(
                "cannot run Match exec command {command:?} with {}",
                shell.to_string_lossy()
            )
        })?;
    let code = output.status.code().with_context(|| {
        format!(
            "Match exec command {command:?} exited abnormally ({})",
            output.status
        )
    })?;
    tracing::debug!(
        "Match exec {command:?} exited with {code}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(code == 0)
}

/// `*` / `?` wildcard match, case-sensitive, as OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Expands `*` / `?` in any component of `pattern` (hidden files only match a
/// pattern starting with `.`), sorted like glob(3); a path without wildcards is
/// returned as is, whether or not it exists.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if !part.contains(['*', '?']) {
            for path in &mut paths {
                path.push(component);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &paths {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| {
                    (!name.starts_with('.') || part.starts_with('.')) && wildcard_match(&part, name)
                })
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| dir.join(name)));
        }
        paths = next;
    }
    paths
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
    /// `%k`: `HostKeyAlias`, else (depending on the setting) the alias or the hostname.
    key_alias: &'a str,
    proxy_jump: Option<&'a str>,
}

/// Which `%` tokens a setting knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSet {
    /// `IdentityFile`, `UserKnownHostsFile`, `IdentityAgent`, …
    Paths,
    /// `Match exec`, which in OpenSSH 9.2 has no `%j`.
    MatchExec,
}

impl Tokens<'_> {
    /// OpenSSH's `default_client_percent_dollar_expand`: `${VAR}` first, then `%` tokens.
    /// Unknown tokens and undefined variables are errors, as in OpenSSH.
    fn expand(&self, input: &str) -> Result<String> {
        self.expand_percent(&expand_env(input)?, TokenSet::Paths)
    }

    /// `%` tokens only; unknown ones are errors.
    fn expand_percent(&self, input: &str, set: TokenSet) -> Result<String> {
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

    /// Every `%` token in IdentityFile and UserKnownHostsFile, for `tok` and `tok2`.
    fn token_config() -> String {
        let pattern = "~/x/%d/%u/%l/%L/%h/%r/%p/%n/%k/%i/%C/%%/${HOME}";
        format!(
            "Host tok\n  HostName Tok.Example.NET\n  Port 2022\n  User someone\n  \
             IdentityFile {pattern}\n  UserKnownHostsFile {pattern}\n\
             Host tok2\n  HostKeyAlias KeyAlias\n  IdentityFile %k/%n\n  UserKnownHostsFile %k/%n\n"
        )
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

    /// Resolves through `ssh -G` and through the fallback parser and insists on the
    /// same result.
    fn assert_same(alias: &str, user: Option<&str>, port: Option<u16>, options: &ClientOptions) {
        let via_ssh = resolve_using(OsStr::new("ssh"), alias, user, port, options).unwrap();
        let via_parser =
            resolve_without_ssh(alias, user, port, options, &LocalInfo::current()).unwrap();
        assert_eq!(via_parser, via_ssh, "{alias} {user:?} {port:?} {options:?}");
    }

    fn with_config(f: &Fixture, extra: &[&str]) -> ClientOptions {
        ClientOptions {
            config_file: Some(f.path("config")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..ClientOptions::default()
        }
    }

    #[test]
    fn fallback_agrees_with_ssh_g_on_fixtures() {
        let f = Fixture::new();
        f.write("config", CONFIG);
        f.write("included.conf", INCLUDED);
        let options = with_config(&f, &[]);
        for alias in [
            "build-7",
            "build-bad",
            "included",
            "proxied",
            "elsewhere",
            "Mixed.Case",
        ] {
            assert_same(alias, None, None, &options);
        }
        assert_same("build-1", Some("override"), Some(4000), &options);
        assert_same("build-1", Some("bob"), None, &options);

        f.write("config", &token_config());
        assert_same("tok", None, None, &options);
        assert_same("tok2", None, None, &options);

        f.write("config", "");
        assert_same("Plain.Example", None, None, &options);
    }

    #[test]
    fn fallback_agrees_with_ssh_g_on_syntax_details() {
        let f = Fixture::new();
        fs::create_dir(f.path("conf.d")).unwrap();
        f.write(
            "conf.d/10-a.conf",
            "Host glob*\n  Port 1010\n  User first\n",
        );
        f.write(
            "conf.d/20-b.conf",
            "Host glob*\n  Port 2020\n  BatchMode yes\n",
        );
        f.write("conf.d/.hidden.conf", "Host glob*\n  HashKnownHosts yes\n");
        f.write(
            "config",
            "\
# comment
Include {dir}/conf.d/*.conf
Host eq
  Port=3333
  User = \"Some One\"
  HostName=%h.X.%%
  ConnectTimeout none
  ConnectTimeout 1m30s
  ServerAliveInterval 2h
  ServerAliveCountMax=9
  IDENTITYFILE none
  identitiesonly Yes
Host kh ?h2 !nope
  UserKnownHostsFile ~/a %h
  UserKnownHostsFile /never
  GlobalKnownHostsFile /g1 /g2
  IdentityAgent ~/%h/sock
  StrictHostKeyChecking off
Host pj
  ProxyJump ssh://U@Bast:22,a@b:3,ssh://x@Last.Example:5
  ProxyCommand nc %h
Host pj1
  ProxyJump ssh://U@Bast
Host pc
  ProxyCommand   nc  \"%h\"   %p  # not a comment
  ProxyJump a@b
Host v6
  HostName FE80::AB
Host *
  IdentityFile ~/.ssh/id_%r
  IdentityFile {dir}/second
  IdentityAgent SSH_AUTH_SOCK
  HashKnownHosts no
",
        );
        let options = with_config(&f, &[]);
        for alias in [
            "eq", "kh", "xh2", "nope", "pj", "pj1", "pc", "v6", "glob1", "FE80::AB",
        ] {
            assert_same(alias, None, None, &options);
        }
        // Include inside a non-matching Host block contributes nothing.
        f.write(
            "config",
            "Host other\n  Include {dir}/conf.d/*.conf\nHost *\n  Port 7\n",
        );
        assert_same("glob1", None, None, &options);
    }

    #[test]
    fn fallback_agrees_with_ssh_g_on_command_line_options() {
        let f = fixture();
        f.write("config", CONFIG);
        let key = f.write("key", "");
        let key = key.to_str().unwrap();
        let other = f.write("other_config", "Host *\n  Port 5555\n");
        let other = other.to_str().unwrap();
        for extra in [
            vec!["-p", "2300", "-l", "cli"],
            vec!["-oPort=5", "-p", "7", "-o", "User x", "-l", "y"],
            vec![
                "-i",
                key,
                "-o",
                "IdentityFile=/k0",
                "-i",
                "/nonexistent/key",
            ],
            vec!["-J", "j@h:99"],
            vec!["-4", "-C", "-J", "ssh://j@h", "-o", "ProxyCommand=none"],
            vec![
                "-Tq",
                "-oStrictHostKeyChecking=yes",
                "-vp2400",
                "-oConnectTimeout=3",
            ],
            vec!["-o", "UserKnownHostsFile=/u1 /u2", "-o", "HostKeyAlias=CLI"],
        ] {
            let options = with_config(&f, &extra);
            for alias in ["build-3", "build-bad", "proxied"] {
                assert_same(alias, None, None, &options);
                assert_same(alias, Some("arg"), Some(4242), &options);
            }
        }
        // `-F` in the extra options, with SSHCC_SSH_CONFIG unset, and `-F none`.
        for file in [other, "none"] {
            let options = ClientOptions {
                config_file: None,
                extra: vec!["-F".into(), file.into()],
                ..ClientOptions::default()
            };
            assert_same("build-3", None, None, &options);
        }
    }

    /// With no `-F`: the user's ~/.ssh/config and the system ssh_config (Debian's
    /// includes ssh_config.d/*.conf and sets HashKnownHosts).
    #[test]
    fn fallback_agrees_with_ssh_g_on_default_config_files() {
        assert_same("some-host.example", None, None, &ClientOptions::default());
    }

    #[test]
    fn fallback_applies_match_blocks() {
        let f = fixture();
        let options = with_config(&f, &[]);
        let t =
            resolve_without_ssh("build-7", None, None, &options, &LocalInfo::current()).unwrap();
        // From `Match host *.farm.example`, which sees the HostName set earlier.
        assert_eq!(t.port, 2201);
        assert_eq!(t.server_alive_count_max, 5);
        assert_eq!(t, f.resolve("build-7"));
    }

    /// `Match` criteria, negation, pattern lists, `all` and OpenSSH's word splitting,
    /// each observed through the options its block sets.
    #[test]
    fn fallback_agrees_with_ssh_g_on_match() {
        let me = LocalInfo::current().user;
        let f = Fixture::new();
        f.write(
            "config",
            &format!(
                "\
Host *.farm.example !bad.farm.example
  HostName %h.Build.Example
Host plain*
  HostName Plain.Example
Match host *.build.example
  Port 1001
Match originalhost *.farm.example,!*.build.example
  ServerAliveCountMax 11
Match Host \"plain.example\" originalhost=PLAIN*
  ConnectTimeout 12
Match !host *.example
  IdentityFile ~/.ssh/not_example
Match host nothing*,!plain* !originalhost x
  HostKeyAlias NeverSet
Match user {me}
  IdentityFile ~/.ssh/as_{me}
Match !user {me},other
  User fromrule
  IdentityFile ~/.ssh/not_{me}
Match localuser {me},nobody user fromrule # a comment
  BatchMode yes
Match LOCALUSER !{me}
  HashKnownHosts yes
Match host *.build.example all
  IdentitiesOnly yes
Match !all
  Port 1002
Match all # everything from here on
  StrictHostKeyChecking accept-new
  IdentityFile ~/.ssh/last
"
            ),
        );
        for extra in [vec![], vec!["-l", "other"], vec!["-o", "User=someone"]] {
            let options = with_config(&f, &extra);
            for alias in [
                "box.farm.example",
                "BOX.Farm.Example",
                "bad.farm.example",
                "plain",
                "plainer",
                "Plain.Example",
                "elsewhere",
                "1.2.3.4",
            ] {
                assert_same(alias, None, None, &options);
                assert_same(alias, Some("fromrule"), Some(9), &options);
            }
        }
        // Spot checks that the blocks really applied.
        let options = with_config(&f, &[]);
        let local = LocalInfo::current();
        let t = resolve_without_ssh("box.farm.example", None, None, &options, &local).unwrap();
        assert_eq!(t.hostname, "box.farm.example.build.example");
        assert_eq!((t.port, t.server_alive_count_max), (1001, 11));
        assert!(t.identities_only && !t.batch_mode);
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        let t = resolve_without_ssh("plainer", None, None, &options, &local).unwrap();
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(12)));
        assert!(!t.identities_only);
        let t = resolve_without_ssh("plain", Some("fromrule"), None, &options, &local).unwrap();
        assert!(t.batch_mode);
        let t = resolve_without_ssh("plain", Some("x"), None, &options, &local).unwrap();
        assert_eq!(t.user, "x");
        assert!(!t.batch_mode);
    }

    /// `Match exec`: which commands run, with which `%` tokens, and what their exit
    /// status selects. Every command appends to a log, which must read the same after
    /// `ssh -G` and after the fallback.
    #[test]
    fn fallback_agrees_with_ssh_g_on_match_exec() {
        let f = Fixture::new();
        let log = f.path("exec.log");
        let log = log.to_str().unwrap();
        f.write(
            "never.conf",
            "Match exec \"echo never.conf %n >> {dir}/exec.log\"\n  Port 1\n",
        );
        f.write(
            "config",
            "\
Host *
  HostName %h.Example
Host keyed
  HostKeyAlias Key.Alias
  User keyuser
  Port 2022
Host nomatch
  Include {dir}/never.conf
Match exec \"echo tokens %h %p %r %n %u %L %l %d %C %k %i %%%% >> {dir}/exec.log\"
  ServerAliveCountMax 21
Match exec \"test %n = keyed\"
  ConnectTimeout 22
Match !exec false
  ServerAliveInterval 23
Match host nothing exec \"echo skipped >> {dir}/exec.log\"
  BatchMode yes
Match exec \"echo ran >> {dir}/exec.log; false\" exec \"echo not run >> {dir}/exec.log\"
  BatchMode yes
Match exec=true exec \"echo second %r >> {dir}/exec.log\"
  IdentityFile ~/.ssh/second_%r
",
        );
        for alias in ["keyed", "other"] {
            for (user, port) in [(None, None), (Some("cli"), Some(3000))] {
                let options = with_config(&f, &[]);
                let _ = fs::remove_file(log);
                let via_ssh = resolve_using(OsStr::new("ssh"), alias, user, port, &options);
                let ssh_log = fs::read_to_string(log).unwrap();
                fs::remove_file(log).unwrap();
                let via_parser =
                    resolve_without_ssh(alias, user, port, &options, &LocalInfo::current());
                let parser_log = fs::read_to_string(log).unwrap();
                assert_eq!(via_parser.unwrap(), via_ssh.unwrap(), "{alias} {user:?}");
                assert_eq!(parser_log, ssh_log, "{alias} {user:?}");
                assert!(parser_log.contains("never.conf"), "{parser_log}");
                assert!(!parser_log.contains("skipped"), "{parser_log}");
                assert!(!parser_log.contains("not run"), "{parser_log}");
            }
        }
        let t = resolve_without_ssh(
            "keyed",
            None,
            None,
            &with_config(&f, &[]),
            &LocalInfo::current(),
        )
        .unwrap();
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(22)));
        assert_eq!(t.server_alive_interval, Some(Duration::from_secs(23)));
        assert!(!t.batch_mode);
    }

    /// `Match final` (and `canonical` with it) makes a second pass in which `Host` and
    /// `Match host` see the resolved hostname and nothing is listed twice.
    #[test]
    fn fallback_agrees_with_ssh_g_on_final_pass() {
        let f = Fixture::new();
        f.write(
            "config",
            "\
Host short
  HostName Real.Example
  IdentityFile ~/.ssh/short
  CertificateFile ~/.ssh/short-cert.pub
Host pct
  HostName %h.%%x
Host real.example pct.%x
  Port 2000
Match final host real.example
  User finaluser
Match canonical
  ServerAliveCountMax 31
Match !final
  ConnectTimeout 32
Match host short
  HostName never.example
Match exec \"test %h = real.example\"
  IdentitiesOnly yes
Host *
  IdentityFile ~/.ssh/all
  CertificateFile ~/.ssh/short-cert.pub
",
        );
        let options = with_config(&f, &[]);
        for alias in ["short", "pct", "real.example", "Real.Example", "other"] {
            assert_same(alias, None, None, &options);
            assert_same(alias, Some("u"), Some(5), &options);
        }
        let t = resolve_without_ssh("short", None, None, &options, &LocalInfo::current()).unwrap();
        assert_eq!(t.hostname, "real.example");
        assert_eq!((t.port, t.user.as_str()), (2000, "finaluser"));
        assert_eq!(t.identity_files.len(), 2);
        assert_eq!(t.certificate_files.len(), 1);
        assert_eq!(t.server_alive_count_max, 31);
        // `test %h = real.example` holds on the final pass only: the first pass's `%h`
        // is `Real.Example`.
        assert!(t.identities_only);

        // Without `Match final` (or canonicalization, which the fallback does not do)
        // there is no final pass, so `canonical` never matches.
        f.write("config", "Match canonical\n  Port 4000\n");
        assert_same("short", None, None, &options);
        assert_eq!(f.resolve("short").port, 22);
    }

    /// Malformed `Match` lines make `ssh -G` fail; the fallback fails too, naming the
    /// file and line.
    #[test]
    fn fallback_rejects_bad_match_lines_like_ssh_g() {
        let f = Fixture::new();
        let local = LocalInfo::current();
        for line in [
            "Match hots x",
            "Match host",
            "Match host x user",
            "Match all host x",
            "Match final canonical all",
            "Match !final host # x",
            "Match # only a comment",
            "Match exec \"echo %j\"",
            "Match host %h exec \"echo %z\"",
            "Match host \"x",
            "Match host x \"y",
        ] {
            let config = f.write("config", &format!("Host *\n  Port 7\n\n{line}\n  Port 8\n"));
            let options = with_config(&f, &[]);
            assert!(
                resolve_using(OsStr::new("ssh"), "h", None, None, &options).is_err(),
                "ssh -G accepted {line:?}"
            );
            let err = resolve_without_ssh("h", None, None, &options, &local).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!("{}:4: ", config.display())),
                "{line:?}: {msg}"
            );
        }
        // Not on the command line either.
        f.write("config", "");
        for option in ["Match=all", "Host *"] {
            let options = with_config(&f, &["-o", option]);
            assert!(resolve_using(OsStr::new("ssh"), "h", None, None, &options).is_err());
            assert!(resolve_without_ssh("h", None, None, &options, &local).is_err());
        }
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

    #[test]
    fn fallback_helpers() {
        assert_eq!(
            split_args(r#"a "b c"  'd e' f\ g h#i # rest"#).unwrap(),
            ["a", "b c", "d e", "f g", "h#i"]
        );
        assert!(split_args("a 'b").is_err());
        assert_eq!(
            MatchWords(Some(r#"host=a  =  b"c d"e x= "q""#)).collect::<Vec<_>>(),
            ["host", "a", "bc d", "e", "x", "q", ""]
        );
        assert_eq!(MatchWords(Some(r#"exec "x"#)).collect::<Vec<_>>(), ["exec"]);
        assert_eq!(split_keyword("  Port=22 "), Some(("Port", "22")));
        assert_eq!(split_keyword("Port = 22"), Some(("Port", "22")));
        assert_eq!(split_keyword(" # x"), None);
        assert_eq!(convtime("90").unwrap(), 90);
        assert_eq!(convtime("1h2m3S").unwrap(), 3723);
        assert!(convtime("5x").is_err());
        assert!(convtime("m").is_err());
        assert!(wildcard_match("b*-?", "build-7"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("B*", "build"));
        assert!(!wildcard_match("b?", "b"));
        assert_eq!(normalize_jump("ssh://u@h:2"), "u@h:2");
        assert_eq!(normalize_jump("ssh://a@b,ssh://u@h"), "ssh://a@b,u@h");
        assert_eq!(expand_hostname("%h.x%%", "a").unwrap(), "a.x%");
        assert!(expand_hostname("%p", "a").is_err());
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
}
