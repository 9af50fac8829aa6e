//! `~/.config/sshcc/config.toml` (or `$SSHCC_CONFIG`): defaults for what distcc's
//! environment variables set, and per-host settings. Environment variables win, so a
//! distcc user's existing setup behaves the same with or without the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::toolchain::Policy;

/// The file's contents; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A host list in distcc's grammar, used when neither `SSHCC_HOSTS` nor
    /// `DISTCC_HOSTS` is set (before the hosts files).
    pub hosts: Option<String>,
    /// An ssh_config file (`SSHCC_SSH_CONFIG`).
    pub ssh_config: Option<PathBuf>,
    /// Compile locally when distribution fails (`DISTCC_FALLBACK`).
    pub fallback: Option<bool>,
    /// Seconds a failed host is avoided (`DISTCC_BACKOFF_PERIOD`).
    pub backoff_period: Option<u32>,
    /// Seconds to wait for a box's answer (`DISTCC_IO_TIMEOUT`).
    pub io_timeout: Option<u32>,
    /// ssh host aliases (`"*"` for all) whose ssh_config `StrictHostKeyChecking no`
    /// sshcc honours (`SSHCC_ALLOW_UNCHECKED_HOST_KEYS`); elsewhere it is refused.
    #[serde(default)]
    pub allow_unchecked_host_keys: Vec<String>,
    /// How strictly a box's compiler must match the local one
    /// (`SSHCC_TOOLCHAIN_CHECK`): strict (default), version, off.
    pub toolchain_check: Option<Policy>,
    /// Per-host settings, by the host name used in the host list.
    #[serde(default)]
    pub host: BTreeMap<String, HostConfig>,
    /// Per-endpoint settings of REAPI hosts (`reapi://HOST:PORT`), by `HOST:PORT`.
    #[serde(default)]
    pub reapi: BTreeMap<String, ReapiConfig>,
}

/// Settings for one REAPI endpoint. Secrets are never in the file or the host list:
/// the authorization header's token comes from an environment variable of the build
/// (the wrapper reads it and hands it to the daemon with each job, so a token
/// exported after the daemon started, or changed, is the one used) or a credential
/// helper's output, read when the daemon connects (and the helper run again when the
/// engine refuses its token, which may have expired).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReapiConfig {
    /// REAPI's instance name (default: the engine's default instance, "").
    pub instance_name: Option<String>,
    /// PEM file of the CAs to trust for `reapis://` instead of the system's roots.
    pub ca_certificates: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry, if not the host's.
    pub tls_server_name: Option<String>,
    /// An environment variable holding the token sent as `authorization: Bearer …`.
    pub authorization_env: Option<String>,
    /// That variable's value in the build's environment ([`ReapiConfig::read_environment`]);
    /// never read from or written to TOML.
    #[serde(skip)]
    pub authorization_env_value: Option<Secret>,
    /// A command (run by `sh -c`) whose output is that token, for credential helpers.
    pub authorization_command: Option<String>,
    /// Platform properties a worker must match; default `OSFamily` and `ISA` of this
    /// machine.
    #[serde(default)]
    pub platform: BTreeMap<String, String>,
    /// How the engine's shared action cache is used (`SSHCC_REAPI_CACHE` wins).
    pub cache: Option<ReapiCache>,
    /// Whether the engine's workers preprocess (the action's input root is the
    /// job's own files, as for an sshcc box) instead of compiling text preprocessed
    /// here. Off by default: the action then names the client's paths and file
    /// times, so the shared cache answers only the same checkout.
    #[serde(default)]
    pub remote_preprocessing: bool,
}

impl ReapiConfig {
    /// Takes `authorization_env`'s value from `environment` (a variable's value, if
    /// set): the build's, where the daemon serves it.
    pub fn read_environment(&mut self, environment: impl Fn(&str) -> Option<String>) {
        self.authorization_env_value = (self.authorization_env.as_deref())
            .and_then(environment)
            .map(Secret);
    }
}

/// A value that must not reach a log: Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How jobs use a REAPI engine's action cache (`SSHCC_REAPI_CACHE`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReapiCache {
    /// Look results up; what runs is not cached (`do_not_cache`).
    Read,
    /// Look results up, and let the engine cache what runs (the default; the
    /// cluster's own policy still decides who may write).
    #[default]
    ReadWrite,
    /// Neither: every job runs.
    Off,
}

impl ReapiCache {
    pub fn parse(value: &str) -> Option<ReapiCache> {
        Some(match value {
            "read" => ReapiCache::Read,
            "readwrite" | "" => ReapiCache::ReadWrite,
            "off" => ReapiCache::Off,
            _ => return None,
        })
    }
}

/// Settings for one host.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The remote command when the host entry names none (default `sshcc` on the
    /// box's PATH).
    pub command: Option<String>,
    /// This host's `toolchain_check`, over the global one.
    pub toolchain_check: Option<Policy>,
}

impl Config {
    /// Reads `$SSHCC_CONFIG`, else `$XDG_CONFIG_HOME/sshcc/config.toml` (default
    /// `~/.config/sshcc/config.toml`); a missing file is an empty config.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let path = match lookup("SSHCC_CONFIG").filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => {
                let base = lookup("XDG_CONFIG_HOME")
                    .filter(|v| v.starts_with('/'))
                    .map(PathBuf::from)
                    .or_else(|| lookup("HOME").map(|home| Path::new(&home).join(".config")));
                match base {
                    Some(base) => base.join("sshcc/config.toml"),
                    None => return Ok(Config::default()),
                }
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        config.ssh_config = config
            .ssh_config
            .map(|path| PathBuf::from(shellexpand::tilde(&path.to_string_lossy()).into_owned()));
        Ok(config)
    }

    /// `[reapi]` tables as TOML, for the daemon (empty when there are none).
    pub fn reapi_to_toml(reapi: &BTreeMap<String, ReapiConfig>) -> String {
        if reapi.is_empty() {
            return String::new();
        }
        toml::to_string(reapi).expect("plain strings and paths serialize")
    }

    /// [`Config::reapi_to_toml`]'s text read back, each endpoint's
    /// `authorization_env` value taken from `environment` (`NAME=VALUE` pairs: the
    /// build's, which the wrapper sends along).
    pub fn reapi_from_toml(
        text: &str,
        environment: &[Secret],
    ) -> anyhow::Result<BTreeMap<String, ReapiConfig>> {
        if text.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut reapi: BTreeMap<String, ReapiConfig> =
            toml::from_str(text).context("REAPI settings from the wrapper")?;
        let environment: BTreeMap<&str, &str> = (environment.iter())
            .filter_map(|pair| pair.0.split_once('='))
            .collect();
        for endpoint in reapi.values_mut() {
            endpoint.read_environment(|name| environment.get(name).map(|value| value.to_string()));
        }
        Ok(reapi)
    }

    /// The remote command configured for `host`, if any.
    pub fn command_for(&self, host: &str) -> Option<&str> {
        self.host
            .get(host)
            .and_then(|settings| settings.command.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../config/config.toml");
        let config = Config::parse(text).unwrap();
        assert_eq!(
            config.command_for("buildbox"),
            Some("/home/build/.local/bin/sshcc")
        );
        assert_eq!(config.backoff_period, Some(60));
    }

    #[test]
    fn reapi_settings_travel_as_toml() {
        let config = Config::parse(
            "[reapi.\"sched:8980\"]\ninstance_name = \"main\"\nauthorization_env = \"TOKEN\"\n\
             platform = { OSFamily = \"linux\" }\n",
        )
        .unwrap();
        let text = Config::reapi_to_toml(&config.reapi);
        assert_eq!(Config::reapi_from_toml(&text, &[]).unwrap(), config.reapi);
        assert_eq!(config.reapi["sched:8980"].platform["OSFamily"], "linux");
        assert!(Config::parse("[reapi.x]\ntoken = \"secret\"").is_err());
        // The token's value comes from the build's environment, never from TOML.
        let environment = [Secret("OTHER=x".into()), Secret("TOKEN=a=b".into())];
        let read = Config::reapi_from_toml(&text, &environment).unwrap();
        let value = read["sched:8980"].authorization_env_value.as_ref();
        assert_eq!(value.map(|secret| secret.0.as_str()), Some("a=b"));
        assert!(!format!("{read:?}").contains("a=b"), "{read:?}");
        assert!(!Config::reapi_to_toml(&read).contains("a=b"));
        assert!(Config::parse("[reapi.x]\nauthorization_env_value = \"a\"").is_err());
    }

    #[test]
    fn typos_are_errors_and_missing_files_are_empty() {
        assert!(Config::parse("hostz = \"@a\"").is_err());
        assert!(Config::parse("[host.a]\ncomand = \"x\"").is_err());
        let config = Config::load(|name| {
            (name == "SSHCC_CONFIG").then(|| "/nonexistent/config.toml".to_string())
        })
        .unwrap();
        assert_eq!(config, Config::default());
    }
}
