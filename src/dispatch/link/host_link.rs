//! The [`HostLink`]: a connection to one box and its transport, what it says about
//! itself (flavour, whether it is closed or connected, the box's compilers and whether
//! it takes remote-preprocessed jobs), round-trip probes, and retiring a stalled link.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::meter::LinkMeter;
use crate::config::ReapiConfig;
use crate::mux::client::MuxClient;
use crate::reapi::ReapiClient;
use crate::ssh::connection::SshConnection;
use crate::toolchain::Fingerprint;

/// How long a box's answer about a compiler is trusted before it is asked again, so a
/// compiler upgraded on the box is noticed while the connection stays up. Asking again
/// costs one round trip: the box re-hashes only files that changed.
const IDENTITY_TTL: Duration = Duration::from_secs(60);
/// How long a round-trip probe may take before it is given up (the box is busy or the
/// link is stalling; the next probe tries again).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What runs on the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `sshcc --mux`: multiplexed, and it understands `-fdirectives-only` input.
    Sshcc,
    /// A stock distccd: one `--inetd` exec channel per job, classic `-E` input.
    Distccd,
    /// A REAPI engine: each job an action, classic `-E` input.
    Reapi,
}

/// Why a job got no answer from the box (as opposed to a compile error, which is an
/// answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// What a box says about the compiler a job names.
#[derive(Debug, Clone)]
pub enum RemoteIdentity {
    /// The toolchain the box's allowlist maps the name to.
    Known(Fingerprint),
    /// The box has no usable compiler under that name; it says why.
    Missing(String),
    /// The box cannot say (a stock distccd, or an sshcc too old to be asked).
    Unverifiable(&'static str),
}

/// A connection to one box and the way jobs use it.
#[derive(Debug)]
pub struct HostLink {
    pub(super) label: String,
    pub(super) transport: Transport,
    pub(super) meter: Arc<LinkMeter>,
    /// Jobs running on the link now (TCP: connections open now).
    pub(super) in_flight: AtomicUsize,
    /// Answers about compilers, by compiler name, with when they were given. The lock
    /// is held while asking, so concurrent first jobs ask (and the box hashes) once.
    pub(super) identities: tokio::sync::Mutex<HashMap<String, (Instant, RemoteIdentity)>>,
    /// Set when a job got no answer in time: the connection may be stalled, so no new
    /// job is given to it (see [`HostLink::retire`]).
    pub(super) retired: AtomicBool,
}

#[derive(Debug)]
pub(super) enum Transport {
    Mux {
        ssh: SshConnection,
        client: MuxClient,
    },
    Distccd {
        ssh: SshConnection,
        command: String,
        channels: Semaphore,
    },
    /// A stock `distccd --daemon` over plain TCP: one connection per job, as distcc's
    /// protocol has no way to reuse one.
    Tcp { host: String, port: u16 },
    /// A REAPI engine: one gRPC channel, each job an action.
    Reapi(Box<ReapiEndpoint>),
}

/// An open REAPI endpoint.
#[derive(Debug)]
pub(super) struct ReapiEndpoint {
    /// The client and how many times its token was fetched again (see
    /// `HostLink::run_reapi`).
    pub(super) client: std::sync::RwLock<(u64, ReapiClient)>,
    /// Held while the credential helper runs again, so that jobs refused together
    /// fetch one new token.
    pub(super) refreshing: tokio::sync::Mutex<()>,
    /// The settings it was opened with, so changed ones open it again.
    pub(super) config: ReapiConfig,
    /// Properties a worker must match, the toolchain's added per job.
    pub(super) platform: Vec<(String, String)>,
}

impl HostLink {
    /// Which toolchain the box would run for `compiler`, asked over the link at most
    /// once per [`IDENTITY_TTL`].
    pub async fn identity(&self, compiler: &str) -> Result<RemoteIdentity, LinkError> {
        let client = match &self.transport {
            Transport::Mux { client, .. } => client,
            // Its workers are matched on the toolchain property of each action instead.
            Transport::Reapi(_) => {
                return Ok(RemoteIdentity::Unverifiable(
                    "a REAPI engine's workers are chosen by the action's toolchain property",
                ));
            }
            _ => {
                return Ok(RemoteIdentity::Unverifiable(
                    "a stock distccd cannot report its compiler",
                ));
            }
        };
        let mut identities = self.identities.lock().await;
        if let Some((asked, identity)) = identities.get(compiler)
            && asked.elapsed() < IDENTITY_TTL
        {
            return Ok(identity.clone());
        }
        let identity = match client.identify(compiler).await {
            Ok(Some(Ok(fingerprint))) => RemoteIdentity::Known(fingerprint),
            Ok(Some(Err(why))) => RemoteIdentity::Missing(why),
            Ok(None) => RemoteIdentity::Unverifiable(
                "its sshcc is too old to report compilers (protocol 1)",
            ),
            Err(err) => return Err(LinkError(format!("{}: {err}", self.label))),
        };
        identities.insert(compiler.to_string(), (Instant::now(), identity.clone()));
        Ok(identity)
    }

    /// Why the box cannot take remote-preprocessed jobs, or `None` when it can.
    pub fn no_remote_preprocessing(&self) -> Option<String> {
        match &self.transport {
            Transport::Mux { client, .. } => client.hello().no_remote_preprocessing.clone(),
            Transport::Reapi(endpoint) if endpoint.config.remote_preprocessing => None,
            Transport::Reapi(_) => Some(
                "a REAPI engine gets jobs preprocessed here unless its config.toml section \
                 sets remote_preprocessing = true"
                    .to_string(),
            ),
            _ => Some("a stock distccd preprocesses nothing".to_string()),
        }
    }

    pub fn flavour(&self) -> Flavour {
        match self.transport {
            Transport::Mux { .. } => Flavour::Sshcc,
            Transport::Distccd { .. } | Transport::Tcp { .. } => Flavour::Distccd,
            Transport::Reapi(_) => Flavour::Reapi,
        }
    }

    /// Whether the connection or its worker is gone, or the link was retired (then the
    /// pool opens a new one).
    pub fn is_closed(&self) -> bool {
        if self.retired.load(Ordering::SeqCst) {
            return true;
        }
        match &self.transport {
            Transport::Mux { ssh, client } => ssh.is_closed() || client.is_closed(),
            Transport::Distccd { ssh, .. } => ssh.is_closed(),
            // tonic reconnects by itself; a dead engine fails its calls instead.
            Transport::Tcp { .. } | Transport::Reapi(_) => false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The settings a REAPI link was opened with (`None` for other links).
    pub fn reapi_config(&self) -> Option<&crate::config::ReapiConfig> {
        match &self.transport {
            Transport::Reapi(endpoint) => Some(&endpoint.config),
            _ => None,
        }
    }

    /// Whether the box is connected now: the SSH connection is up, or (TCP) a job's
    /// connection is open.
    pub fn is_connected(&self) -> bool {
        match &self.transport {
            Transport::Tcp { .. } => self.in_flight.load(Ordering::Relaxed) > 0,
            _ => !self.is_closed(),
        }
    }

    /// Measures the round-trip time again if the last measure is older than `max_age`
    /// and no probe is under way (only an `sshcc --mux` link can be probed: see
    /// [`MuxClient::round_trip`]); returns at once, the probe runs in the background.
    pub fn refresh_rtt(self: &Arc<Self>, max_age: Duration) {
        let Transport::Mux { client, .. } = &self.transport else {
            return;
        };
        if client.hello().protocol < 2
            || self.is_closed()
            || self
                .meter
                .rtt()
                .is_some_and(|(_, measured)| measured.elapsed() < max_age)
            || self.meter.probing.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            if let Transport::Mux { client, .. } = &link.transport
                && let Ok(Ok(Some(rtt))) =
                    tokio::time::timeout(PROBE_TIMEOUT, client.round_trip()).await
            {
                link.meter.record_rtt(rtt);
            }
            link.meter.probing.store(false, Ordering::SeqCst);
        });
    }

    /// Takes the link out of service after a job got no answer within
    /// `DISTCC_IO_TIMEOUT`. A connection that went silent without closing (a stalled
    /// network path, a hung or rebooted box) stays open until the SSH keepalive gives up
    /// on it, which takes minutes; the next job opens a new connection instead. Jobs
    /// still running on this link finish on it, and it closes with the last of them.
    pub fn retire(&self) {
        if !self.retired.swap(true, Ordering::SeqCst) {
            tracing::info!(
                "{}: no answer in time; later jobs use a new connection",
                self.label
            );
        }
    }
}
