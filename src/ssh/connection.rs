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
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{self, Certificate, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::config::{ClientOptions, SshTarget, StrictHostKeyChecking};
use super::known_hosts::{self, KnownHosts, Verdict};

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

/// The host-key check's verdict, shared with the connecting code: why the key was
/// trusted, or why it was refused (russh itself only says "unknown key").
type SharedVerdict = Arc<Mutex<Option<Result<String, String>>>>;

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
    /// The user named this host to sshcc as one whose `StrictHostKeyChecking no` counts.
    unchecked_allowed: bool,
    /// The host as the user wrote it, for messages.
    alias: String,
    learn_file: Option<PathBuf>,
    /// Whether learned keys are written hashed (`HashKnownHosts`).
    hash: bool,
    verdict: SharedVerdict,
}

impl HostKeyCheck {
    /// `host` or `[host]:port`, as known_hosts and OpenSSH's messages write it.
    fn shown(&self) -> String {
        if self.port == 22 {
            self.name.clone()
        } else {
            format!("[{}]:{}", self.name, self.port)
        }
    }

    /// Whether `StrictHostKeyChecking no` is in force: configured, and allowed.
    fn unchecked(&self) -> bool {
        self.policy == StrictHostKeyChecking::No && self.unchecked_allowed
    }

    /// Whether to trust `key`: `Ok` says why, `Err` why not.
    fn decide(&self, key: &keys::PublicKey) -> Result<String, String> {
        let shown = self.shown();
        let fingerprint = key.fingerprint(keys::HashAlg::Sha256);
        match self.known_hosts.verify(&self.name, self.port, key) {
            Verdict::Trusted => Ok("known_hosts".to_string()),
            Verdict::Revoked { path, line } => Err(format!(
                "host key for {shown} ({fingerprint}) is marked as revoked in {}:{line}; refusing to connect",
                path.display()
            )),
            Verdict::Changed { path, line } if self.unchecked() => {
                tracing::warn!(
                    "the host key for {shown} ({} {fingerprint}) differs from {}:{line}; connecting anyway \
                     because StrictHostKeyChecking is no and sshcc was told to allow that for {}",
                    key.algorithm(),
                    path.display(),
                    self.alias
                );
                Ok(format!(
                    "unchecked (allowed): it differs from {}:{line}",
                    path.display()
                ))
            }
            Verdict::Changed { path, line } => Err(format!(
                "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {shown}: it now offers {} key {fingerprint}, \
                 which differs from {}:{line}. Someone could be eavesdropping (man-in-the-middle), or the host key \
                 has just been changed; refusing to connect",
                key.algorithm(),
                path.display()
            )),
            Verdict::Unknown => {
                let learn = self.policy == StrictHostKeyChecking::AcceptNew || self.unchecked();
                match (&self.learn_file, learn) {
                    (Some(file), true) => {
                        let learned =
                            known_hosts::learn(file, &self.name, self.port, key, self.hash)
                                .map_err(|err| {
                                    format!("cannot record the new host key for {shown}: {err:#}")
                                });
                        let how = if self.unchecked() {
                            "unchecked (allowed)"
                        } else {
                            "learned (accept-new)"
                        };
                        match learned {
                            Ok(()) => {
                                tracing::warn!(
                                    "permanently added {shown} ({} {fingerprint}) to {}",
                                    key.algorithm(),
                                    file.display()
                                );
                                Ok(format!("{how}: new key recorded in {}", file.display()))
                            }
                            // OpenSSH connects anyway under `no`, only warning.
                            Err(err) if self.unchecked() => {
                                tracing::warn!("{err}");
                                Ok(format!("{how}: new key, not recorded"))
                            }
                            Err(err) => Err(err),
                        }
                    }
                    (None, true) if self.unchecked() => {
                        Ok("unchecked (allowed): new key, not recorded".to_string())
                    }
                    _ if self.policy == StrictHostKeyChecking::No => Err(format!(
                        "no matching host key for {shown} ({} {fingerprint}) in known_hosts; ssh_config says \
                         StrictHostKeyChecking no for {alias}, which sshcc honours only when \
                         SSHCC_ALLOW_UNCHECKED_HOST_KEYS or config.toml's allow_unchecked_host_keys names \
                         {alias}; run `ssh {alias}` once to check and record the key instead",
                        key.algorithm(),
                        alias = self.alias
                    )),
                    _ => Err(format!(
                        "no matching host key for {shown} ({} {fingerprint}) in known_hosts and strict host key \
                         checking is on; run `ssh {}` once to check and record it",
                        key.algorithm(),
                        self.alias
                    )),
                }
            }
        }
    }

    /// A host certificate, like OpenSSH's `check_host_key`: a CA that a
    /// `@cert-authority` line trusts for this host must have signed it, and
    /// [`certificate_problem`] must find nothing wrong with it. A revoked CA or key
    /// is refused; any other shortfall (no trusted CA, expired, another host's
    /// certificate) makes OpenSSH judge the plain key inside instead, and so do we.
    fn decide_certificate(&self, certificate: &Certificate) -> Result<String, String> {
        let shown = self.shown();
        let ca = keys::PublicKey::from(certificate.signature_key().clone());
        let key = keys::PublicKey::from(certificate.public_key().clone());
        match self
            .known_hosts
            .verify_certificate_authority(&self.name, self.port, &ca)
        {
            Verdict::Revoked { path, line } => Err(format!(
                "the CA key ({}) that signed the host certificate of {shown} is marked as revoked in {}:{line}; \
                 refusing to connect",
                ca.fingerprint(keys::HashAlg::Sha256),
                path.display()
            )),
            Verdict::Trusted => match certificate_problem(certificate, &self.name) {
                None => match self.known_hosts.verify(&self.name, self.port, &key) {
                    Verdict::Revoked { path, line } => Err(format!(
                        "host key for {shown} is marked as revoked in {}:{line}; refusing to connect",
                        path.display()
                    )),
                    _ => Ok(format!(
                        "host certificate (CA {})",
                        ca.fingerprint(keys::HashAlg::Sha256)
                    )),
                },
                Some(problem) => {
                    tracing::warn!(
                        "the host certificate of {shown} (id {:?}) is not valid: {problem}; judging its plain key",
                        certificate.key_id()
                    );
                    self.decide(&key)
                }
            },
            Verdict::Unknown | Verdict::Changed { .. } => {
                tracing::debug!(
                    "no @cert-authority for {shown} signed its certificate; judging its plain key"
                );
                self.decide(&key)
            }
        }
    }
}

/// What is wrong with a host certificate from a trusted CA, checked as OpenSSH's
/// `check_host_cert` does: a host (not user) certificate, a CA signature that
/// verifies, valid now, `name` among its principals (an empty list means any host),
/// no critical options.
fn certificate_problem(certificate: &Certificate, name: &str) -> Option<String> {
    if certificate.cert_type() != CertType::Host {
        return Some("it is a user certificate".into());
    }
    if certificate.verify_signature().is_err() {
        return Some("its CA signature does not verify".into());
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if now < certificate.valid_after() {
        return Some("it is not valid yet".into());
    }
    if now >= certificate.valid_before() {
        return Some("it has expired".into());
    }
    let principals = certificate.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == name) {
        return Some(format!(
            "{name} is not among its principals ({})",
            principals.join(", ")
        ));
    }
    if !certificate.critical_options().is_empty() {
        return Some("it has critical options".into());
    }
    None
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = match server_key {
            PublicKeyOrCertificate::Certificate(certificate) => {
                self.decide_certificate(certificate)
            }
            PublicKeyOrCertificate::PublicKey { .. } => self.decide(&server_key.public_key()),
        };
        let trusted = decision.is_ok();
        *self.verdict.lock().expect("verdict lock") = Some(decision);
        Ok(trusted)
    }
}

/// Tries the identity files, then the agent, like OpenSSH; each key's certificates
/// (`CertificateFile`s and `<identity file>-cert.pub` that certify it) go before the
/// key itself. Returns what authenticated (see [`SshConnection::auth_method`]); the
/// error lists what was tried so the user can tell a missing key from a refused one.
async fn authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
) -> anyhow::Result<String> {
    let mut tried = Vec::new();
    let certificates = certificates_for(target);
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(key) => Arc::new(key),
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
        for (cert_path, certificate) in certifying(&certificates, key.public_key()) {
            let result = handle
                .authenticate_openssh_cert(&target.user, key.clone(), certificate.clone())
                .await
                .with_context(|| format!("authenticating with {}", cert_path.display()))?;
            if result.success() {
                return Ok(format!("certificate {}", cert_path.display()));
            }
            tried.push(format!("{} (refused)", cert_path.display()));
        }
        let hash = rsa_hash(handle, key.algorithm()).await?;
        let result = handle
            .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .with_context(|| format!("authenticating with {}", path.display()))?;
        if result.success() {
            return Ok(format!("key {}", path.display()));
        }
        tried.push(format!("{} (refused)", path.display()));
    }
    if target.identity_agent.as_deref() != Some("none") {
        match agent_authenticate(handle, target, &certificates, &mut tried).await {
            Ok(Some(method)) => return Ok(method),
            Ok(None) => {}
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

/// Whether an agent identity is one of the configured ones: the public half of an
/// `IdentityFile` (`<file>.pub`, or the file itself when it is a public key) or a
/// configured certificate.
fn configured(
    target: &SshTarget,
    certificates: &[(PathBuf, Certificate)],
    identity: &keys::agent::AgentIdentity,
) -> bool {
    let key_data = match identity {
        keys::agent::AgentIdentity::PublicKey { key, .. } => key.key_data(),
        keys::agent::AgentIdentity::Certificate { certificate, .. } => certificate.public_key(),
    };
    let public_halves = target.identity_files.iter().flat_map(|path| {
        let mut beside = path.clone().into_os_string();
        beside.push(".pub");
        [PathBuf::from(beside), path.clone()]
    });
    certificates
        .iter()
        .any(|(_, certificate)| certificate.public_key() == key_data)
        || public_halves
            .filter_map(|path| keys::PublicKey::read_openssh_file(&path).ok())
            .any(|public| public.key_data() == key_data)
}

/// Those of `certificates` that certify `key`.
fn certifying<'a>(
    certificates: &'a [(PathBuf, Certificate)],
    key: &keys::PublicKey,
) -> impl Iterator<Item = &'a (PathBuf, Certificate)> {
    certificates
        .iter()
        .filter(move |(_, certificate)| certificate.public_key() == key.key_data())
}

/// The certificates OpenSSH would offer: `CertificateFile`s, then `-cert.pub` beside
/// each identity file. Unreadable ones are skipped with a note, as OpenSSH does.
fn certificates_for(target: &SshTarget) -> Vec<(PathBuf, Certificate)> {
    let beside_identities = target.identity_files.iter().map(|path| {
        let mut name = path.clone().into_os_string();
        name.push("-cert.pub");
        PathBuf::from(name)
    });
    target
        .certificate_files
        .iter()
        .cloned()
        .chain(beside_identities)
        .filter(|path| path.exists())
        .filter_map(|path| match Certificate::read_file(&path) {
            Ok(certificate) => Some((path, certificate)),
            Err(err) => {
                tracing::warn!("skipping certificate {}: {err}", path.display());
                None
            }
        })
        .collect()
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

/// Authenticates with the agent's keys; `Some` names the one that worked.
async fn agent_authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
    certificates: &[(PathBuf, Certificate)],
    tried: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    let socket = match target.identity_agent.as_deref() {
        Some("SSH_AUTH_SOCK") | None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(socket) => PathBuf::from(socket),
            None => return Ok(None),
        },
        Some(path) => PathBuf::from(shellexpand::tilde(path).into_owned()),
    };
    let mut agent = keys::agent::client::AgentClient::connect_uds(&socket)
        .await
        .with_context(|| format!("cannot reach the agent at {}", socket.display()))?;
    for identity in agent.request_identities().await? {
        // A key's certificates on disk go first, then the key; certificates the agent
        // holds are offered as they come.
        let (key, offers) = match identity {
            // As in OpenSSH: with IdentitiesOnly the agent may still sign, but only
            // for the configured keys (say, an encrypted key file the agent holds).
            identity if target.identities_only && !configured(target, certificates, &identity) => {
                continue;
            }
            keys::agent::AgentIdentity::PublicKey { key, comment } => {
                let mut offers: Vec<(Option<Certificate>, String)> = certifying(certificates, &key)
                    .map(|(path, certificate)| {
                        (
                            Some(certificate.clone()),
                            format!("certificate {} (key in the agent)", path.display()),
                        )
                    })
                    .collect();
                offers.push((None, format!("agent key {comment}")));
                (key, offers)
            }
            keys::agent::AgentIdentity::Certificate {
                certificate,
                comment,
            } => {
                let key = keys::PublicKey::from(certificate.public_key().clone());
                (
                    key,
                    vec![(Some(certificate), format!("agent certificate {comment}"))],
                )
            }
        };
        let hash = rsa_hash(handle, key.algorithm()).await?;
        for (certificate, what) in offers {
            let result = match certificate {
                Some(certificate) => {
                    handle
                        .authenticate_certificate_with(&target.user, certificate, hash, &mut agent)
                        .await?
                }
                None => {
                    handle
                        .authenticate_publickey_with(&target.user, key.clone(), hash, &mut agent)
                        .await?
                }
            };
            if result.success() {
                return Ok(Some(what));
            }
            tried.push(format!("{what} (refused)"));
        }
    }
    Ok(None)
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
