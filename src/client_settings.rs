//! The client's settings, resolved once per process: distcc's and sshcc's environment
//! variables over `config.toml` ([`ClientSettings`]), and the host list in sshcc's order
//! of sources with the config file's per-host commands filled in.
//!
//! The wrapper, the daemon's clients and `sshcc check` all read them here, so every
//! role sees a host exactly as a build would.

use std::path::{Path, PathBuf};

use crate::config::{Config, ReapiCache};
use crate::exit_code::ExitCode;
use crate::hosts::{self, HostKind, HostList, HostsError};
use crate::toolchain::Policy;

/// distcc's client settings, read from the environment once per job.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `DISTCC_FALLBACK` (default 1): compile locally when distribution fails.
    pub fallback: bool,
    /// `DISTCC_SKIP_LOCAL_RETRY` (any value): report a remote failure instead of
    /// recompiling locally.
    pub skip_local_retry: bool,
    /// `DISTCC_BACKOFF_PERIOD` (default 60): how long a failed host is left alone.
    pub backoff_secs: u32,
    /// `DISTCC_IO_TIMEOUT` (default 300): how long a job may wait on the network.
    pub io_timeout_secs: u32,
    /// `SSHCC_SSH_CONFIG` or the config file's `ssh_config`: what `ssh -F` would read.
    pub ssh_config: Option<PathBuf>,
    /// `ssh` options from distcc's `DISTCC_SSH`, for `ssh -G`.
    pub ssh_options: Vec<String>,
    /// Hosts allowed to connect with `StrictHostKeyChecking no`.
    pub unchecked_host_keys: Vec<String>,
    /// How strictly boxes' compilers must match (None: config/default per host).
    pub toolchain_check: Option<Policy>,
    /// `SSHCC_NO_DAEMON=1`: the wrapper dispatches its job itself.
    pub no_daemon: bool,
    /// `DISTCC_NO_REWRITE_CROSS`: send `gcc` as named, not as the target-prefixed name.
    pub no_rewrite_cross: bool,
    /// `SSHCC_PREPROCESS`: where sources are preprocessed.
    pub preprocess: Preprocess,
    /// `SSHCC_REAPI_CACHE`: how REAPI engines' action caches are used (None: each
    /// endpoint's config, default readwrite).
    pub reapi_cache: Option<ReapiCache>,
}

/// Where a job's sources are preprocessed (`SSHCC_PREPROCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preprocess {
    /// On boxes that can (sshcc with a content store), else here (the default).
    Auto,
    /// On boxes that can; a job that must be preprocessed here says why.
    Remote,
    /// Here, with `-fdirectives-only` towards sshcc boxes (exact diagnostics and `-g`
    /// columns), classic `-E` towards stock distccd.
    DirectivesOnly,
    /// Here, with classic `-E` towards every box: less to send and less for the box
    /// to do, at the price of diagnostics and `-g` columns that differ from a local
    /// compile's.
    Classic,
}

impl Preprocess {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "" | "auto" => Preprocess::Auto,
            "remote" => Preprocess::Remote,
            "directives-only" => Preprocess::DirectivesOnly,
            "classic" => Preprocess::Classic,
            _ => return None,
        })
    }

    /// Whether jobs go to boxes unpreprocessed where the box can take them.
    pub fn remote(self) -> bool {
        matches!(self, Preprocess::Auto | Preprocess::Remote)
    }
}

impl ClientSettings {
    /// The environment, falling back to `config` for what it does not set.
    pub fn from_env(config: &Config) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok();
        let seconds =
            |name: &str, default: Option<u32>, fallback: u32, allow_zero: bool| match var(name) {
                None => Ok(default.unwrap_or(fallback)),
                Some(text) => match text.trim().parse::<u32>() {
                    Ok(0) if !allow_zero => Err(format!(
                        "{name}={text:?} must be a positive number of seconds"
                    )),
                    Ok(value) => Ok(value),
                    Err(_) => Err(format!("{name}={text:?} is not a number of seconds")),
                },
            };
        Ok(ClientSettings {
            // distcc recognises only "0" as false.
            fallback: match var("DISTCC_FALLBACK") {
                Some(value) => value != "0",
                None => config.fallback.unwrap_or(true),
            },
            skip_local_retry: var("DISTCC_SKIP_LOCAL_RETRY").is_some(),
            backoff_secs: seconds("DISTCC_BACKOFF_PERIOD", config.backoff_period, 60, true)?,
            io_timeout_secs: seconds("DISTCC_IO_TIMEOUT", config.io_timeout, 300, false)?,
            ssh_config: var("SSHCC_SSH_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| config.ssh_config.clone()),
            ssh_options: match var("DISTCC_SSH") {
                Some(command) => ssh_options_from(&command)?,
                None => Vec::new(),
            },
            unchecked_host_keys: match var("SSHCC_ALLOW_UNCHECKED_HOST_KEYS") {
                Some(list) => list
                    .split([',', ' '])
                    .filter(|host| !host.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => config.allow_unchecked_host_keys.clone(),
            },
            toolchain_check: match var("SSHCC_TOOLCHAIN_CHECK") {
                Some(value) => Some(Policy::parse(&value).ok_or_else(|| {
                    format!("SSHCC_TOOLCHAIN_CHECK={value:?}: use strict, version or off")
                })?),
                None => config.toolchain_check,
            },
            no_daemon: var("SSHCC_NO_DAEMON").is_some_and(|v| v != "0" && !v.is_empty()),
            no_rewrite_cross: var("DISTCC_NO_REWRITE_CROSS").is_some(),
            preprocess: match var("SSHCC_PREPROCESS") {
                None => Preprocess::Auto,
                Some(value) => Preprocess::parse(&value).ok_or_else(|| {
                    format!(
                        "SSHCC_PREPROCESS={value:?}: use auto, remote, directives-only or classic"
                    )
                })?,
            },
            reapi_cache: match var("SSHCC_REAPI_CACHE") {
                None => None,
                Some(value) => Some(ReapiCache::parse(&value).ok_or_else(|| {
                    format!("SSHCC_REAPI_CACHE={value:?}: use read, readwrite or off")
                })?),
            },
        })
    }
}

/// The options of distcc's `DISTCC_SSH` (`ssh -p 2222 -i key -o Opt=val`), split like a
/// shell would (quotes, backslashes) without touching the variable, to hand to `ssh -G`
/// so OpenSSH interprets them. A program other than `ssh` cannot be used: sshcc makes
/// its own connections.
fn ssh_options_from(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let quoted: String = chars.by_ref().take_while(|&c| c != '\'').collect();
                word.get_or_insert_with(String::new).push_str(&quoted);
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => current.extend(chars.next()),
                        Some(c) => current.push(c),
                        None => {
                            return Err(format!("DISTCC_SSH={command:?} has an unclosed quote"));
                        }
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    let Some((program, options)) = words.split_first() else {
        return Ok(Vec::new());
    };
    if Path::new(program)
        .file_name()
        .is_none_or(|name| name != "ssh")
    {
        tracing::warn!(
            "DISTCC_SSH program {program:?} is not ssh; sshcc makes its own SSH connections and ignores it"
        );
        return Ok(Vec::new());
    }
    Ok(options.to_vec())
}

/// The host list, in sshcc's order: `SSHCC_HOSTS`, `DISTCC_HOSTS`, the config file's
/// `hosts`, then the hosts files (see [`hosts::load`]); `--randomize` applied.
pub fn load_hosts(config: &Config) -> Result<Option<HostList>, HostsError> {
    let from_env = ["SSHCC_HOSTS", "DISTCC_HOSTS"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    let mut list = match (&config.hosts, from_env) {
        (Some(text), false) => hosts::parse(text)?,
        _ => match hosts::load(hosts::process_env)? {
            Some((list, _)) => list,
            None => return Ok(None),
        },
    };
    if list.randomize {
        list.shuffle(u64::from(std::process::id()));
    }
    Ok(Some(list))
}

/// The entries as sent to the dispatcher, with the config file's per-host command
/// filled in where an SSH entry names none.
pub fn entries_for_dispatch(list: &HostList, config: &Config) -> Vec<String> {
    list.hosts
        .iter()
        .map(|spec| match (&spec.kind, &spec.text.find('@')) {
            (
                HostKind::Ssh {
                    host,
                    command: None,
                    ..
                },
                Some(at),
            ) => match config.command_for(host) {
                Some(command) => {
                    let insert = at + spec.text[*at..].find(',').unwrap_or(spec.text.len() - at);
                    format!("{}:{command}{}", &spec.text[..insert], &spec.text[insert..])
                }
                None => spec.text.clone(),
            },
            _ => spec.text.clone(),
        })
        .collect()
}

/// The config file and the host list as the wrapper reads them; on failure, says why
/// on stderr and returns distcc's exit status for it.
pub fn config_and_hosts() -> Result<(Config, HostList), std::process::ExitCode> {
    let config = Config::load(crate::hosts::process_env).map_err(|err| {
        eprintln!("sshcc: {err:#}");
        std::process::ExitCode::from(ExitCode::BadArguments)
    })?;
    match load_hosts(&config) {
        Ok(Some(list)) => Ok((config, list)),
        Ok(None) => {
            eprintln!(
                "sshcc: no hosts configured (SSHCC_HOSTS, DISTCC_HOSTS, ~/.config/sshcc/hosts, ~/.distcc/hosts)"
            );
            Err(ExitCode::NoHosts.into())
        }
        Err(err) => {
            eprintln!("sshcc: Failed to get host list: {err}");
            Err(ExitCode::BadHostSpec.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_supplies_commands_for_ssh_entries_without_one() {
        let config = Config::parse("[host.box]\ncommand = \"/opt/sshcc\"\n").unwrap();
        let list = hosts::parse("@box/8,lzo u@box @box:/x other/2 @elsewhere localhost").unwrap();
        assert_eq!(
            entries_for_dispatch(&list, &config),
            [
                "@box/8:/opt/sshcc,lzo",
                "u@box:/opt/sshcc",
                "@box:/x",
                "other/2",
                "@elsewhere",
                "localhost"
            ]
        );
    }

    #[test]
    fn distcc_ssh_options_are_split_like_a_shell_would() {
        assert_eq!(
            ssh_options_from("ssh -p 2222  -o 'ProxyJump=a b' -i \"/k e y\" -F\\ x").unwrap(),
            ["-p", "2222", "-o", "ProxyJump=a b", "-i", "/k e y", "-F x"]
        );
        assert!(ssh_options_from("/usr/bin/ssh").unwrap().is_empty());
        assert!(ssh_options_from("fakessh -x").unwrap().is_empty());
        assert!(ssh_options_from("ssh -o \"x").is_err());
    }
}
