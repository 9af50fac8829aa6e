//! An authenticated russh connection to one box, trusting exactly what OpenSSH would.
//!
//! Host keys are checked against the user's known_hosts with our own matcher (strict by
//! default; `accept-new` when the user's config says so; `no` only for hosts the user
//! also named to sshcc), host certificates against the `@cert-authority` keys there,
//! and the algorithms already known for the host are negotiated first. Authentication
//! tries the configured identity files (with their certificates), then the agent,
//! never prompting: a build cannot answer.
//!
//! A bastion's connection is shared by every box behind it (and by every connection
//! to one box), so a build pays the bastion's handshake once, not once per box.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use russh::client;

use super::config::{ClientOptions, SshTarget};
use super::known_hosts::KnownHosts;
use auth::authenticate;
use host_key::{HostKeyCheck, SharedVerdict, prefer_known_algorithms};

mod auth;
mod host_key;

/// Used when the config sets no ConnectTimeout: long enough for a slow VPN, short
/// enough that a dead box does not stall a build for long.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive when the config sets no ServerAliveInterval, and the longest one used, so
/// a vanished box is noticed within a minute and its jobs move elsewhere. OpenSSH's
/// intervals are made for interactive sessions: Debian's client defaults to 300 s in
/// BatchMode, which would leave a pooled connection to a rebooted box looking alive
/// for a quarter of an hour.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// How many ProxyJump hops (including hops of hops) a connection may take.
const MAX_JUMPS: usize = 8;

/// An authenticated connection; channels are opened on it concurrently.
pub struct SshConnection {
    handle: client::Handle<HostKeyCheck>,
    label: String,
    /// How we authenticated, e.g. `key /home/u/.ssh/id_ed25519` (for `sshcc check`).
    auth_method: String,
    /// Why the host key was trusted, e.g. `known_hosts` (for `sshcc check`).
    host_key: String,
    /// What carries the connection when it is not a direct TCP connection: the jump
    /// host's connection, or the ProxyCommand process. Kept alive with it.
    _carrier: Option<Carrier>,
}

/// Held only to keep the carrier alive for as long as the connection.
enum Carrier {
    Jump { _connection: Arc<SshConnection> },
    Command { _process: tokio::process::Child },
}

/// Jump connections by the ProxyJump list that reaches them and the options they were
/// resolved with. Weak, so a bastion's connection closes with the last box behind it;
/// the async lock makes boxes connecting at once wait for one handshake.
type JumpPool = HashMap<(String, ClientOptions), Arc<tokio::sync::Mutex<Weak<SshConnection>>>>;
static JUMPS: LazyLock<Mutex<JumpPool>> = LazyLock::new(Default::default);

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
            let (config, check, verdict) = client_config(&target, &options);
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
                        let hop = Self::shared_jump(jumps, &options, depth + 1).await?;
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
                        Ok((handle, Some(Carrier::Jump { _connection: hop })))
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
                    if let Some(Err(refusal)) = verdict.lock().expect("verdict lock").take() {
                        bail!("{refusal}");
                    }
                    return Err(anyhow!(err).context(format!("cannot connect to {label}")));
                }
            };
            let auth_method = tokio::time::timeout(timeout, authenticate(&mut handle, &target))
                .await
                .map_err(|_| anyhow!("timed out after {timeout:?} authenticating to {label}"))??;
            let host_key = match verdict.lock().expect("verdict lock").take() {
                Some(Ok(trusted)) => trusted,
                _ => bail!("{label}: connected without a host key check"),
            };
            Ok(SshConnection {
                handle,
                label,
                auth_method,
                host_key,
                _carrier: carrier,
            })
        })
    }

    /// The live connection to the last host of `jumps`, made if there is none.
    async fn shared_jump(
        jumps: &str,
        options: &ClientOptions,
        depth: usize,
    ) -> anyhow::Result<Arc<SshConnection>> {
        let cell = JUMPS
            .lock()
            .expect("jump pool lock")
            .entry((jumps.to_owned(), options.clone()))
            .or_default()
            .clone();
        let mut shared = cell.lock().await;
        if let Some(connection) = shared.upgrade().filter(|c| !c.is_closed()) {
            tracing::debug!("reusing the connection to {}", connection.label);
            return Ok(connection);
        }
        let hop = jump_host(jumps, options)?;
        let connection = Arc::new(Self::connect_hop(hop, options.clone(), depth).await?);
        *shared = Arc::downgrade(&connection);
        Ok(connection)
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How this connection authenticated: `key PATH`, `certificate PATH`, `agent key
    /// COMMENT`, `agent certificate COMMENT`, or `certificate PATH (key in the agent)`.
    pub fn auth_method(&self) -> &str {
        &self.auth_method
    }

    /// Why the host key was trusted: `known_hosts`, `host certificate (CA …)`,
    /// `learned (accept-new) …`, or `unchecked (allowed) …`.
    pub fn host_key_decision(&self) -> &str {
        &self.host_key
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

/// How often to probe a silent connection: `ServerAliveInterval`, at most
/// [`DEFAULT_KEEPALIVE`], and never off (a pooled connection must notice a dead box).
fn keepalive_interval(server_alive_interval: Option<Duration>) -> Duration {
    server_alive_interval.map_or(DEFAULT_KEEPALIVE, |interval| {
        interval.min(DEFAULT_KEEPALIVE)
    })
}

/// russh settings and the host-key check for `target`, with the slot that receives
/// the check's verdict.
fn client_config(
    target: &SshTarget,
    options: &ClientOptions,
) -> (Arc<client::Config>, HostKeyCheck, SharedVerdict) {
    let known_hosts = KnownHosts::load(&target.known_hosts_files());
    let name = target.host_key_name().to_string();
    let key_port = target.host_key_port();
    let mut config = client::Config {
        nodelay: true,
        keepalive_interval: Some(keepalive_interval(target.server_alive_interval)),
        keepalive_max: target.server_alive_count_max.max(1) as usize,
        window_size: 8 << 20,
        ..Default::default()
    };
    prefer_known_algorithms(&mut config, &known_hosts, &name, key_port);
    if known_hosts.has_certificate_authority(&name, key_port) {
        // Only then, like OpenSSH's ordering: a certificate nobody vouches for would
        // be judged by its plain key anyway.
        config.preferred.host_key_certificates = config.preferred.key.clone();
    }
    let verdict = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        known_hosts,
        name,
        port: key_port,
        policy: target.strict_host_key_checking,
        unchecked_allowed: options.allows_unchecked_host_key(&target.alias),
        alias: target.alias.clone(),
        learn_file: target.user_known_hosts_files.first().cloned(),
        hash: target.hash_known_hosts,
        verdict: verdict.clone(),
    };
    (Arc::new(config), check, verdict)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_probes_at_least_every_15_seconds_and_is_never_off() {
        assert_eq!(keepalive_interval(None), DEFAULT_KEEPALIVE);
        assert_eq!(
            keepalive_interval(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        // Debian's BatchMode default.
        assert_eq!(
            keepalive_interval(Some(Duration::from_secs(300))),
            DEFAULT_KEEPALIVE
        );
    }
}
