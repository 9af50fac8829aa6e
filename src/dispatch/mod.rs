//! Choosing where a job runs and getting it there: per-host slots, least-loaded
//! placement, backoff of failed hosts, and the pool of connections.
//!
//! The [`Dispatcher`] lives in the per-user daemon (shared by every wrapper of every
//! build) or, with `SSHCC_NO_DAEMON=1`, inside a single wrapper. Wrappers describe the
//! hosts they may use with each request, as distcc re-reads its host list per job, so
//! builds with different `DISTCC_HOSTS` can share one daemon.

pub mod link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::hosts::{HostKind, HostSpec};
use crate::ssh::config::{self, ClientOptions};
use link::{Flavour, HostLink, LinkError};

/// The remote command when the host entry names none.
pub const DEFAULT_REMOTE_COMMAND: &str = "sshcc";

/// Where a wrapper may send one job.
#[derive(Debug, Clone)]
pub struct Route {
    pub hosts: Vec<HostSpec>,
    /// How to run `ssh` for SSH hosts (`SSHCC_SSH_CONFIG`, `DISTCC_SSH`'s options).
    pub ssh: ClientOptions,
    /// `DISTCC_BACKOFF_PERIOD`: how long a failed host is avoided.
    pub backoff: Duration,
    /// Host entries (by [`HostSpec::text`]) that already failed this job.
    pub excluded: Vec<String>,
}

/// The outcome of asking for a slot.
#[derive(Debug)]
pub enum Assignment {
    /// Run the job on this box.
    Remote(RemoteSlot),
    /// A `localhost` entry won: run the job here.
    Local(LocalSlot),
    /// No usable host (none configured, all backed off or failed); the message says why.
    NoHosts(String),
}

/// Shared state of one host entry (keyed by its text and the ssh config in use).
#[derive(Debug)]
struct HostState {
    key: String,
    spec: HostSpec,
    ssh: ClientOptions,
    busy: Mutex<u32>,
    backoff_until: Mutex<Option<Instant>>,
    /// Serialises connecting, so 64 concurrent first jobs open one connection.
    link: tokio::sync::Mutex<Option<Arc<HostLink>>>,
}

/// A held slot on a box; released when dropped.
#[derive(Debug)]
pub struct RemoteSlot {
    host: Arc<HostState>,
    link: Arc<HostLink>,
    dispatcher: Arc<Dispatcher>,
}

impl RemoteSlot {
    /// The host entry's text, as the user wrote it.
    pub fn host(&self) -> &str {
        &self.host.spec.text
    }

    pub fn flavour(&self) -> Flavour {
        self.link.flavour()
    }

    /// Runs an encoded job on the box within `io_timeout` (`DISTCC_IO_TIMEOUT`); see
    /// [`HostLink::run`].
    pub async fn run(
        &self,
        job_payload: Vec<u8>,
        io_timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        match tokio::time::timeout(io_timeout, self.link.run(job_payload, self.host.spec.lzo)).await
        {
            Ok(result) => result,
            Err(_) => Err(LinkError(format!(
                "{}: no answer within {}s (DISTCC_IO_TIMEOUT)",
                self.link.label(),
                io_timeout.as_secs()
            ))),
        }
    }

    /// Records that the host failed this job, so it is avoided for `backoff`.
    pub fn mark_failed(&self, backoff: Duration) {
        self.dispatcher.back_off(&self.host, backoff);
    }
}

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        self.dispatcher.release(&self.host);
    }
}

/// A held `localhost` slot; released when dropped.
#[derive(Debug)]
pub struct LocalSlot {
    host: Arc<HostState>,
    dispatcher: Arc<Dispatcher>,
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        self.dispatcher.release(&self.host);
    }
}

/// Slots, backoff and connections for every host any wrapper has named.
#[derive(Debug, Default)]
pub struct Dispatcher {
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
    /// Woken whenever a slot is released.
    released: Notify,
}

impl Dispatcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self, spec: &HostSpec, ssh: &ClientOptions) -> Arc<HostState> {
        // Different ssh settings may reach a different machine under the same name.
        let key = format!("{}\u{0}{ssh:?}", spec.text);
        self.hosts
            .lock()
            .expect("hosts lock")
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(HostState {
                    key,
                    spec: spec.clone(),
                    ssh: ssh.clone(),
                    busy: Mutex::new(0),
                    backoff_until: Mutex::new(None),
                    link: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// Waits for a slot on the least-loaded usable host of `route`, connecting to it if
    /// needed. A host that cannot be reached is backed off and the next one tried.
    pub async fn acquire(self: &Arc<Self>, route: &Route) -> Assignment {
        let mut unreachable: Vec<String> = Vec::new();
        loop {
            let candidates: Vec<Arc<HostState>> = route
                .hosts
                .iter()
                .filter(|spec| {
                    !spec.down
                        && !route.excluded.contains(&spec.text)
                        && !unreachable.contains(&spec.text)
                })
                .map(|spec| self.state(spec, &route.ssh))
                .filter(|host| !self.backed_off(host))
                .collect();
            if candidates.is_empty() {
                return Assignment::NoHosts(if unreachable.is_empty() {
                    "no usable hosts (none listed, all backed off, or all failed this job)"
                        .to_string()
                } else {
                    format!("cannot reach {}", unreachable.join(", "))
                });
            }
            // Register for the wake-up before looking, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let Some(host) = self.take_least_loaded(&candidates) else {
                released.await;
                continue;
            };
            if matches!(host.spec.kind, HostKind::Local) {
                return Assignment::Local(LocalSlot {
                    host,
                    dispatcher: self.clone(),
                });
            }
            match self.link(&host).await {
                Ok(link) => {
                    return Assignment::Remote(RemoteSlot {
                        host,
                        link,
                        dispatcher: self.clone(),
                    });
                }
                Err(err) => {
                    tracing::warn!("{}: {err:#}", host.spec.text);
                    self.back_off(&host, route.backoff);
                    self.release(&host);
                    unreachable.push(host.spec.text.clone());
                }
            }
        }
    }

    fn backed_off(&self, host: &HostState) -> bool {
        let mut until = host.backoff_until.lock().expect("backoff lock");
        match *until {
            Some(deadline) if Instant::now() < deadline => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Takes a slot on the host with the lowest busy/limit ratio (earlier entries win
    /// ties, as in distcc), or `None` when all are full.
    fn take_least_loaded(&self, candidates: &[Arc<HostState>]) -> Option<Arc<HostState>> {
        let _guard = self.hosts.lock().expect("hosts lock");
        let mut best: Option<(&Arc<HostState>, f64)> = None;
        for host in candidates {
            let busy = *host.busy.lock().expect("busy lock");
            if busy >= host.spec.slots {
                continue;
            }
            let load = f64::from(busy) / f64::from(host.spec.slots.max(1));
            if best.is_none_or(|(_, best_load)| load < best_load) {
                best = Some((host, load));
            }
        }
        let (host, _) = best?;
        *host.busy.lock().expect("busy lock") += 1;
        Some(host.clone())
    }

    fn release(&self, host: &HostState) {
        {
            let _guard = self.hosts.lock().expect("hosts lock");
            let mut busy = host.busy.lock().expect("busy lock");
            *busy = busy.saturating_sub(1);
        }
        self.released.notify_waiters();
    }

    fn back_off(&self, host: &HostState, period: Duration) {
        if !period.is_zero() {
            *host.backoff_until.lock().expect("backoff lock") = Some(Instant::now() + period);
        }
        // Drop a connection that failed so the next job after the backoff reconnects.
        if let Ok(mut link) = host.link.try_lock()
            && link.as_ref().is_some_and(|link| link.is_closed())
        {
            *link = None;
        }
        tracing::debug!(host = %host.key, "backing off for {period:?}");
    }

    /// The live connection to `host`, opened on first use and replaced when it died.
    async fn link(&self, host: &HostState) -> anyhow::Result<Arc<HostLink>> {
        let mut link = host.link.lock().await;
        if let Some(existing) = link.as_ref()
            && !existing.is_closed()
        {
            return Ok(existing.clone());
        }
        // Jobs that queued behind a connection attempt that just failed must not each
        // try again, one connect timeout after another.
        if self.backed_off(host) {
            anyhow::bail!("connecting failed moments ago; backing off");
        }
        let opened = match &host.spec.kind {
            HostKind::Ssh {
                user,
                host: name,
                command,
            } => {
                let target = config::resolve_with(name, user.as_deref(), None, &host.ssh)?;
                let command = command.as_deref().unwrap_or(DEFAULT_REMOTE_COMMAND);
                Arc::new(HostLink::open(&target, &host.ssh, command).await?)
            }
            HostKind::Tcp { host: name, port } => Arc::new(HostLink::tcp(name, *port)),
            HostKind::Local => anyhow::bail!("{} runs locally", host.spec.text),
        };
        *link = Some(opened.clone());
        Ok(opened)
    }
}
