//! An authenticated russh connection to one box, trusting exactly what OpenSSH would.
//!
//! Host keys are checked against the user's known_hosts with our own matcher (strict by
//! default; `accept-new` when the user's config says so; `no` is not honoured), the
//! algorithms already known for the host are negotiated first, and authentication tries
//! the configured identity files, then the agent, never prompting: a build cannot answer.

use std::future::Future;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use russh::client;
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::config::{ClientOptions, SshTarget, StrictHostKeyChecking};
use super::known_hosts::{self, KnownHosts, Verdict};

/// Used when the config sets no ConnectTimeout: long enough for a slow VPN, short
/// enough that a dead box does not stall a build for long.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive when the config sets no ServerAliveInterval, so a vanished box is noticed
/// and its jobs move elsewhere.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// How many ProxyJump hops (including hops of hops) a connection may take.
const MAX_JUMPS: usize = 8;

/// An authenticated connection; channels are opened on it concurrently.
pub struct SshConnection {
    handle: client::Handle<HostKeyCheck>,
    label: String,
    /// What carries the connection when it is not a direct TCP connection: the jump
    /// host's connection, or the ProxyCommand process. Kept alive with it.
    _carrier: Option<Carrier>,
}

/// Held only to keep the carrier alive for as long as the connection.
enum Carrier {
    Jump { _connection: Box<SshConnection> },
    Command { _process: tokio::process::Child },
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("label", &self.label)
            .finish()
    }
}

impl SshConnection {
    /// Connects and authenticates to `target`, through its ProxyJump hosts or
    /// ProxyCommand if it has them. `options` are those the target was resolved with,
    /// from, to resolve jump hosts the same way.
    pub async fn connect(target: &SshTarget, options: &ClientOptions) -> anyhow::Result<Self> {
        Self::connect_hop(target.clone(), options.clone(), 0).await
    }

    fn connect_hop(
        target: SshTarget,
        options: ClientOptions,
        depth: usize,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Self>> + Send>> {
        Box::pin(async move {
            let label = format!("{}@{}:{}", target.user, target.hostname, target.port);
            let timeout = target.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let (config, check, refusal) = client_config(&target);
            let jumps = target
                .proxy_jump
                .as_deref()
                .filter(|jumps| *jumps != "none");
            let proxy_command = target
                .proxy_command
                .as_deref()
                .filter(|command| *command != "none");
            let connecting = async {
                match (jumps, proxy_command) {
                    (Some(jumps), _) => {
                        anyhow::ensure!(
                            depth < MAX_JUMPS,
                            "more than {MAX_JUMPS} ProxyJump hops to reach {label}"
                        );
                        let hop = jump_host(jumps, &options)?;
                        let hop = Self::connect_hop(hop, options.clone(), depth + 1).await?;
                        let channel = hop
                            .handle
                            .channel_open_direct_tcpip(
                                target.hostname.as_str(),
                                target.port.into(),
                                "127.0.0.1",
                                0,
                            )
                            .await
                            .with_context(|| format!("{} cannot forward to {label}", hop.label))?;
                        let handle =
                            client::connect_stream(config, channel.into_stream(), check).await;
                        Ok((
                            handle,
                            Some(Carrier::Jump {
                                _connection: Box::new(hop),
                            }),
                        ))
                    }
                    (None, Some(command)) => {
                        let mut child = spawn_proxy_command(command, &target)?;
                        let stream = tokio::io::join(
                            child.stdout.take().expect("piped stdout"),
                            child.stdin.take().expect("piped stdin"),
                        );
                        let handle = client::connect_stream(config, stream, check).await;
                        Ok((handle, Some(Carrier::Command { _process: child })))
                    }
                    (None, None) => {
                        let handle =
                            client::connect(config, (target.hostname.as_str(), target.port), check)
                                .await;
                        Ok((handle, None))
                    }
                }
            };
            let (handle, carrier) = match tokio::time::timeout(timeout, connecting).await {
                Err(_) => bail!("timed out after {timeout:?} connecting to {label}"),
                Ok(result) => result?,
            };
            let mut handle = match handle {
                Ok(handle) => handle,
                Err(err) => {
                    if let Some(refusal) = refusal.lock().expect("verdict lock").take() {
                        bail!("{refusal}");
                    }
                    return Err(anyhow!(err).context(format!("cannot connect to {label}")));
                }
            };
            tokio::time::timeout(timeout, authenticate(&mut handle, &target))
                .await
                .map_err(|_| anyhow!("timed out after {timeout:?} authenticating to {label}"))??;
            Ok(SshConnection {
                handle,
                label,
                _carrier: carrier,
            })
        })
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Opens a session channel running `command`.
    pub async fn exec(&self, command: &str) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        Ok(channel)
    }

    /// Whether the connection has died (keepalive expired, box gone).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

/// russh settings and the host-key check for `target`; the shared slot receives the
/// reason when the key is refused (russh itself only says "unknown key").
fn client_config(
    target: &SshTarget,
) -> (
    Arc<client::Config>,
    HostKeyCheck,
    Arc<Mutex<Option<String>>>,
) {
    let known_hosts = KnownHosts::load(&target.known_hosts_files());
    let name = target.host_key_name().to_string();
    let key_port = target.host_key_port();
    let mut config = client::Config {
        nodelay: true,
        keepalive_interval: Some(target.server_alive_interval.unwrap_or(DEFAULT_KEEPALIVE)),
        keepalive_max: target.server_alive_count_max.max(1) as usize,
        window_size: 8 << 20,
        ..Default::default()
    };
    prefer_known_algorithms(&mut config, &known_hosts, &name, key_port);
    let refusal = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        known_hosts,
        name,
        port: key_port,
        policy: target.strict_host_key_checking,
        learn_file: target.user_known_hosts_files.first().cloned(),
        hash: target.hash_known_hosts,
        refusal: refusal.clone(),
    };
    (Arc::new(config), check, refusal)
}

/// The host a ProxyJump list makes us connect through: its last entry, reached itself
/// through the entries before it (as `ssh -J a,b target` does), or through its own
/// configuration when it is the first.
fn jump_host(jumps: &str, options: &ClientOptions) -> anyhow::Result<SshTarget> {
    let hops: Vec<&str> = jumps
        .split(',')
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let (last, earlier) = hops.split_last().context("empty ProxyJump")?;
    let spec = last.strip_prefix("ssh://").unwrap_or(last);
    let (user, host_port) = match spec.rsplit_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, spec),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed
                .split_once(']')
                .context("unclosed [ in ProxyJump")?;
            (host, rest.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .with_context(|| format!("bad port in ProxyJump {last:?}"))
        })
        .transpose()?;
    let mut target = super::config::resolve_with(host, user, port, options)?;
    if !earlier.is_empty() {
        target.proxy_jump = Some(earlier.join(","));
        target.proxy_command = None;
    }
    Ok(target)
}

/// Starts a ProxyCommand (with OpenSSH's `%h`, `%p`, `%r`, `%n` and `%%`) whose stdio
/// carries the connection.
fn spawn_proxy_command(command: &str, target: &SshTarget) -> anyhow::Result<tokio::process::Child> {
    let mut expanded = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => expanded.push_str(&target.hostname),
            Some('p') => expanded.push_str(&target.port.to_string()),
            Some('r') => expanded.push_str(&target.user),
            Some('n') => expanded.push_str(&target.alias),
            Some('%') => expanded.push('%'),
            other => bail!(
                "unsupported token %{} in ProxyCommand {command:?}",
                other.unwrap_or(' ')
            ),
        }
    }
    tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {expanded}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run ProxyCommand {expanded:?}"))
}

/// Puts the host-key algorithms known_hosts already has for this host first, as OpenSSH
/// does; otherwise a box offering ed25519 and ECDSA, known only by its ECDSA key, would
/// be refused as unknown.
fn prefer_known_algorithms(
    config: &mut client::Config,
    known_hosts: &KnownHosts,
    name: &str,
    port: u16,
) {
    let known = known_hosts.known_algorithms(name, port);
    if known.is_empty() {
        return;
    }
    let mut order: Vec<keys::Algorithm> = known.clone();
    order.extend(
        config
            .preferred
            .key
            .iter()
            .filter(|alg| !known.contains(alg))
            .cloned(),
    );
    config.preferred.key = order.into();
}

struct HostKeyCheck {
    known_hosts: KnownHosts,
    name: String,
    port: u16,
    policy: StrictHostKeyChecking,
    learn_file: Option<std::path::PathBuf>,
    /// Whether learned keys are written hashed (`HashKnownHosts`).
    hash: bool,
    /// Why the key was refused: russh only reports "unknown key".
    refusal: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn decide(&self, key: &keys::PublicKey) -> Result<(), String> {
        let shown = if self.port == 22 {
            self.name.clone()
        } else {
            format!("[{}]:{}", self.name, self.port)
        };
        let fingerprint = key.fingerprint(keys::HashAlg::Sha256);
        match self.known_hosts.verify(&self.name, self.port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked { path, line } => Err(format!(
                "host key for {shown} ({fingerprint}) is marked as revoked in {}:{line}; refusing to connect",
                path.display()
            )),
            Verdict::Changed { path, line } => Err(format!(
                "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {shown}: it now offers {} key {fingerprint}, \
                 which differs from {}:{line}. Someone could be eavesdropping (man-in-the-middle), or the host key \
                 has just been changed; refusing to connect",
                key.algorithm(),
                path.display()
            )),
            Verdict::Unknown => match (self.policy, &self.learn_file) {
                (StrictHostKeyChecking::AcceptNew, Some(file)) => {
                    known_hosts::learn(file, &self.name, self.port, key, self.hash).map_err(
                        |err| format!("cannot record the new host key for {shown}: {err:#}"),
                    )?;
                    tracing::warn!(
                        "permanently added {shown} ({} {fingerprint}) to {}",
                        key.algorithm(),
                        file.display()
                    );
                    Ok(())
                }
                _ => Err(format!(
                    "no matching host key for {shown} ({} {fingerprint}) in known_hosts and strict host key \
                     checking is on; run `ssh {}` once to check and record it",
                    key.algorithm(),
                    self.name
                )),
            },
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.decide(&server_key.public_key()) {
            Ok(()) => Ok(true),
            Err(reason) => {
                *self.refusal.lock().expect("verdict lock") = Some(reason);
                Ok(false)
            }
        }
    }
}

/// Tries the identity files, then the agent, like OpenSSH; the error lists what was
/// tried so the user can tell a missing key from a refused one.
async fn authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
) -> anyhow::Result<()> {
    let mut tried = Vec::new();
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(keys::Error::KeyIsEncrypted) => {
                tried.push(format!(
                    "{} (encrypted: load it into ssh-agent)",
                    path.display()
                ));
                continue;
            }
            Err(err) => {
                tried.push(format!("{} (unreadable: {err})", path.display()));
                continue;
            }
        };
        let hash = rsa_hash(handle, key.algorithm()).await?;
        let result = handle
            .authenticate_publickey(
                &target.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .with_context(|| format!("authenticating with {}", path.display()))?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("{} (refused)", path.display()));
    }
    if !target.identities_only && target.identity_agent.as_deref() != Some("none") {
        match agent_authenticate(handle, target, &mut tried).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => tried.push(format!("ssh-agent ({err:#})")),
        }
    }
    if tried.is_empty() {
        tried.push("no identity file exists and no agent is available".to_string());
    }
    bail!(
        "authentication to {}@{}:{} failed; tried: {}",
        target.user,
        target.hostname,
        target.port,
        tried.join(", ")
    )
}

/// The signature hash for an RSA key: OpenSSH ≥ 8.8 refuses SHA-1 (`ssh-rsa`), and
/// asking the server costs up to a second, so only RSA keys ask.
async fn rsa_hash(
    handle: &client::Handle<HostKeyCheck>,
    algorithm: keys::Algorithm,
) -> Result<Option<keys::HashAlg>, russh::Error> {
    if algorithm.is_rsa() {
        Ok(handle.best_supported_rsa_hash().await?.flatten())
    } else {
        Ok(None)
    }
}

async fn agent_authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
    tried: &mut Vec<String>,
) -> anyhow::Result<bool> {
    let socket = match target.identity_agent.as_deref() {
        Some("SSH_AUTH_SOCK") | None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(socket) => std::path::PathBuf::from(socket),
            None => return Ok(false),
        },
        Some(path) => std::path::PathBuf::from(shellexpand::tilde(path).into_owned()),
    };
    let mut agent = keys::agent::client::AgentClient::connect_uds(&socket)
        .await
        .with_context(|| format!("cannot reach the agent at {}", socket.display()))?;
    for identity in agent.request_identities().await? {
        let keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        let hash = rsa_hash(handle, key.algorithm()).await?;
        let result = handle
            .authenticate_publickey_with(&target.user, key, hash, &mut agent)
            .await?;
        if result.success() {
            return Ok(true);
        }
        tried.push(format!("agent key {comment} (refused)"));
    }
    Ok(false)
}
