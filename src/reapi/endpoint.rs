//! Where a REAPI engine is and how to reach it: its URL (`grpc://host:port`,
//! `grpcs://host:port`, or the host list's `reapi://` / `reapis://` spellings of the
//! same), the instance name, TLS settings (a private CA, a client certificate for
//! mTLS, the name to verify), the `authorization` header value, and timeouts; and the
//! tonic channel built from them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::config::ReapiConfig;

/// A REAPI engine and how to talk to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// TLS settings; `None` is plaintext gRPC (`grpc://`, `reapi://`).
    pub tls: Option<TlsSettings>,
    /// REAPI's instance name ("" for the default instance).
    pub instance_name: String,
    /// The value of the `authorization` header sent with every call (for instance
    /// `Bearer <token>`); the caller gets it from the environment or a credential
    /// helper.
    pub authorization: Option<Authorization>,
    /// How long establishing the connection (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long one call may take, except Execute's wait for the action to run and
    /// blob transfers, which get this much per [`TRANSFER_BYTES_PER_CALL_TIMEOUT`].
    pub call_timeout: Duration,
}

/// ByteStream transfers get one call timeout per this many bytes (and at least one).
pub const TRANSFER_BYTES_PER_CALL_TIMEOUT: u64 = 16 << 20;

/// A connection silent this long is probed (by the kernel: TCP keepalive, which no
/// gRPC server counts against its ping policy)…
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// …every this often…
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// …and given up after this many probes go unanswered: a dead engine or path is
/// noticed within about 90 s, and a NAT on the way keeps the connection's mapping.
const TCP_KEEPALIVE_PROBES: u32 = 3;

/// TLS for `grpcs://`: whom to trust, what to present, which name to verify.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM file of the CA certificates to trust instead of the system's roots.
    pub ca_certificates: Option<PathBuf>,
    /// A client certificate for mutual TLS.
    pub client_identity: Option<ClientIdentity>,
    /// The name to verify the server's certificate against, if not `host`.
    pub domain_name: Option<String>,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// An `authorization` header value: a [`crate::config::Secret`], which Debug never shows.
pub use crate::config::Secret as Authorization;

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("REAPI endpoint {url:?}: {reason}")]
pub struct EndpointError {
    pub url: String,
    pub reason: &'static str,
}

impl Endpoint {
    /// Default connect timeout.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default call timeout.
    pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

    /// Parses `SCHEME://HOST:PORT[/INSTANCE]`: `grpc` or `reapi` for plaintext,
    /// `grpcs` or `reapis` for TLS (system roots; port 443 if none is given). A path,
    /// if any, is the instance name (`reapis://re.example.com/main` is instance
    /// `main`). Timeouts are the defaults, there is no authorization header, and TLS
    /// settings other than the roots are left for the caller.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let bad = |reason| EndpointError {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not of the form grpc://HOST:PORT or grpcs://HOST:PORT"))?;
        let tls = match scheme {
            "grpc" | "reapi" => false,
            "grpcs" | "reapis" => true,
            _ => return Err(bad("has a scheme other than grpc, grpcs, reapi or reapis")),
        };
        let (authority, instance_name) = rest.split_once('/').unwrap_or((rest, ""));
        if instance_name.ends_with('/') || instance_name.contains("//") {
            return Err(bad("has an instance name with an empty component"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("has no valid host"))?;
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| bad("has a port that is not a number from 1 to 65535"))?,
            None if tls => 443,
            None => return Err(bad("has no port (only grpcs:// defaults to 443)")),
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            tls: tls.then(TlsSettings::default),
            instance_name: instance_name.to_owned(),
            authorization: None,
            connect_timeout: Endpoint::CONNECT_TIMEOUT,
            call_timeout: Endpoint::CALL_TIMEOUT,
        })
    }

    /// The endpoint of a host-list entry's `url` with its config.toml settings: the
    /// instance, the TLS files, and the token from `authorization_env` or
    /// `authorization_command` (run now; the dispatcher runs it again when the engine
    /// refuses the token), sent as `Bearer …`.
    pub fn configured(url: &str, config: &ReapiConfig) -> anyhow::Result<Endpoint> {
        let mut endpoint = Endpoint::parse(url)?;
        if !endpoint.instance_name.is_empty() {
            // `/N` is the slot count in a host list; the instance is config's.
            anyhow::bail!("{url}: the instance name goes in config.toml, not the host list");
        }
        endpoint.instance_name = config.instance_name.clone().unwrap_or_default();
        let wants_tls = config.ca_certificates.is_some()
            || config.client_certificate.is_some()
            || config.client_key.is_some()
            || config.tls_server_name.is_some();
        match &mut endpoint.tls {
            Some(tls) => {
                tls.ca_certificates = config.ca_certificates.clone();
                tls.domain_name = config.tls_server_name.clone();
                tls.client_identity = match (&config.client_certificate, &config.client_key) {
                    (Some(certificate), Some(key)) => Some(ClientIdentity {
                        certificate: certificate.clone(),
                        key: key.clone(),
                    }),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "{url}: client_certificate and client_key go together (mutual TLS)"
                    ),
                };
            }
            None if wants_tls => {
                anyhow::bail!("{url}: TLS settings for a plaintext endpoint (use reapis://)")
            }
            None => {}
        }
        endpoint.authorization = Endpoint::authorization(url, config)?;
        Ok(endpoint)
    }

    /// The `authorization` value `config` asks for: `Bearer ` and the token from
    /// `authorization_env` (its value as [`ReapiConfig::read_environment`] found it)
    /// or the output of `authorization_command` (run now; blocking).
    pub fn authorization(url: &str, config: &ReapiConfig) -> anyhow::Result<Option<Authorization>> {
        let token = match (&config.authorization_env, &config.authorization_command) {
            (Some(_), Some(_)) => {
                anyhow::bail!("{url}: authorization_env and authorization_command are alternatives")
            }
            (Some(name), None) => Some(
                (config.authorization_env_value.as_ref())
                    .map(|value| value.0.clone())
                    .with_context(|| {
                        format!(
                            "{url}: authorization_env names {name}, which is not set \
                             (as UTF-8) in the build's environment"
                        )
                    })?,
            ),
            (None, Some(command)) => Some(credential_helper(url, command)?),
            (None, None) => None,
        };
        match token.as_deref().map(str::trim) {
            Some("") => anyhow::bail!("{url}: the authorization token is empty"),
            Some(token) => Ok(Some(Authorization(format!("Bearer {token}")))),
            None => Ok(None),
        }
    }

    /// The URL tonic connects to.
    fn uri(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// A channel to the engine. It connects on first use (so an engine that is down
    /// shows as a retryable UNAVAILABLE from the first call, not here) and again
    /// after a connection is lost. TCP keepalive notices a peer that is gone (its host
    /// or the path to it), idle or during a long Execute; an engine that hangs behind a
    /// live kernel or proxy is the job's `DISTCC_IO_TIMEOUT`'s to catch. No HTTP/2 pings: gRPC servers by default take one without a
    /// call in flight every two hours and one during a call every five minutes, and
    /// answer the third too early with GOAWAY "too_many_pings", which closes the
    /// connection and breaks the streams on it. Fails only on bad settings:
    /// unreadable PEM files, an invalid URL.
    pub(super) fn channel(&self) -> anyhow::Result<Channel> {
        let uri = self.uri();
        let mut endpoint = Channel::from_shared(uri.clone())
            .with_context(|| format!("REAPI endpoint URL {uri}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(TCP_KEEPALIVE_IDLE))
            .tcp_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
            .tcp_keepalive_retries(Some(TCP_KEEPALIVE_PROBES));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.client_config(self.connect_timeout)?)
                .with_context(|| format!("TLS settings for {uri}"))?;
        }
        Ok(endpoint.connect_lazy())
    }
}

/// The token a credential helper prints on stdout.
fn credential_helper(url: &str, command: &str) -> anyhow::Result<String> {
    let ran = std::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{url}: cannot run the credential helper `{command}`"))?;
    if !ran.status.success() {
        anyhow::bail!(
            "{url}: the credential helper `{command}` failed ({}): {}",
            ran.status,
            String::from_utf8_lossy(&ran.stderr).trim()
        );
    }
    String::from_utf8(ran.stdout)
        .with_context(|| format!("{url}: the credential helper's token is not UTF-8"))
}

impl TlsSettings {
    fn client_config(&self, handshake_timeout: Duration) -> anyhow::Result<ClientTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
        };
        let mut config = ClientTlsConfig::new().timeout(handshake_timeout);
        config = match &self.ca_certificates {
            Some(path) => {
                config.ca_certificate(Certificate::from_pem(read(path, "CA certificates")?))
            }
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.client_identity {
            config = config.identity(Identity::from_pem(
                read(&identity.certificate, "client certificate")?,
                read(&identity.key, "client key")?,
            ));
        }
        if let Some(name) = &self.domain_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, split; None for an empty host or
/// anything else malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        if !host.contains(':') {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    (!host.is_empty() && host.chars().all(valid)).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        let plain = Endpoint::parse("grpc://127.0.0.1:50051").unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 50051));
        assert!(plain.tls.is_none());
        assert_eq!(plain.instance_name, "");
        assert_eq!(plain.uri(), "http://127.0.0.1:50051");

        let host_list = Endpoint::parse("reapi://build:8980/main/x86").unwrap();
        assert_eq!((host_list.host.as_str(), host_list.port), ("build", 8980));
        assert_eq!(host_list.instance_name, "main/x86");

        let secure = Endpoint::parse("grpcs://re.example.com").unwrap();
        assert_eq!(secure.port, 443);
        assert!(secure.tls.is_some());
        assert_eq!(secure.uri(), "https://re.example.com:443");

        let v6 = Endpoint::parse("reapis://[::1]:9092").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9092));
        assert_eq!(v6.uri(), "https://[::1]:9092");
    }

    #[test]
    fn refuses_malformed_urls() {
        for url in [
            "127.0.0.1:50051",
            "http://127.0.0.1:50051",
            "grpc://127.0.0.1",
            "grpc://:50051",
            "grpc://host:0",
            "grpc://host:65536",
            "grpc://host:port",
            "grpc://host:1/a//b",
            "grpc://host:1/a/",
            "grpc://[::1",
            "grpc://[host]:1",
            "grpc://ho st:1",
            "grpc://user@host:1",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn debug_hides_the_authorization_value() {
        let mut endpoint = Endpoint::parse("grpc://h:1").unwrap();
        endpoint.authorization = Some(Authorization("Bearer s3cret".into()));
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
