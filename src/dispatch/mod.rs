//! Choosing where a job runs and getting it there: per-host slots, least-loaded
//! placement, backoff of failed hosts, and the pool of connections.
//!
//! The [`Dispatcher`] lives in the per-user daemon (shared by every wrapper of every
//! build) or, with `SSHCC_NO_DAEMON=1`, inside a single wrapper. Wrappers describe the
//! hosts they may use with each request, as distcc re-reads its host list per job, so
//! builds with different `DISTCC_HOSTS` can share one daemon.

pub mod link;
pub mod remote;
pub mod tracker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::hosts::{HostKind, HostSpec};
use crate::inputs::InputCache;
use crate::mux::client::Observer;
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::ssh::config::{self, ClientOptions};
use crate::status::{self, HostStatus, JobStatus};
use crate::toolchain::{Fingerprint, FingerprintCache, Policy};
use link::{Flavour, HostLink, LinkError, LinkMeter, RemoteIdentity};
use remote::{JobBlobs, JobFailure, KnownBlobs};
use tracker::Tracker;

/// The remote command when the host entry names none.
pub const DEFAULT_REMOTE_COMMAND: &str = "sshcc";

/// How old a round-trip time may be before `sshcc status` has it measured again.
const RTT_MAX_AGE: Duration = Duration::from_secs(5);

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
    /// The compiler whose toolchain a box must share; `None` skips the check.
    pub toolchain: Option<ToolchainCheck>,
}

/// A job's compiler, to be matched against each box's before the box gets the job.
#[derive(Debug, Clone)]
pub struct ToolchainCheck {
    /// The compiler name the box is asked to run.
    pub compiler: String,
    /// The compiler a local compile would run (symlinks and ccache resolved).
    pub local: PathBuf,
    /// How strict to be, by host name as written in the host list (`*`: the rest).
    pub policies: Vec<(String, Policy)>,
}

impl ToolchainCheck {
    fn policy_for(&self, spec: &HostSpec) -> Policy {
        let name = match &spec.kind {
            HostKind::Ssh { host, .. } | HostKind::Tcp { host, .. } => host.as_str(),
            HostKind::Local => "localhost",
        };
        let named = |wanted: &str| {
            self.policies
                .iter()
                .find(|(host, _)| host == wanted)
                .map(|(_, policy)| *policy)
        };
        named(name).or_else(|| named("*")).unwrap_or_default()
    }
}

/// Whether a box may take a job for a compiler, and what to tell the user.
enum ToolchainVerdict {
    Use,
    Avoid(String),
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
    /// Order of first use, for `sshcc status`.
    seq: u64,
    spec: HostSpec,
    ssh: ClientOptions,
    busy: Mutex<u32>,
    /// Jobs the host answered, and jobs it failed, since the daemon started.
    done: AtomicU64,
    failed: AtomicU64,
    meter: Arc<LinkMeter>,
    /// The connection jobs use now (a copy of `link` that status reads without waiting
    /// for a connection attempt).
    current: Mutex<Option<Arc<HostLink>>>,
    backoff_until: Mutex<Option<Instant>>,
    /// Why the host was last backed off, for the messages of jobs that cannot use it.
    last_failure: Mutex<String>,
    /// Serialises connecting, so 64 concurrent first jobs open one connection.
    link: tokio::sync::Mutex<Option<Arc<HostLink>>>,
    /// Blobs the box's content store holds, as far as this daemon knows.
    known_blobs: KnownBlobs,
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
    /// `observer` hears of the job's progress on the link.
    pub async fn run(
        &self,
        job_payload: Vec<u8>,
        io_timeout: Duration,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        let running = self.link.run(job_payload, self.host.spec.lzo, observer);
        match tokio::time::timeout(io_timeout, running).await {
            Ok(result) => {
                if result.is_ok() {
                    self.host.done.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            Err(_) => {
                self.link.retire();
                Err(LinkError(format!(
                    "{}: no answer within {}s (DISTCC_IO_TIMEOUT)",
                    self.link.label(),
                    io_timeout.as_secs()
                )))
            }
        }
    }

    /// Why this box cannot take remote-preprocessed jobs, or `None` when it can.
    pub fn no_remote_preprocessing(&self) -> Option<String> {
        self.link.no_remote_preprocessing()
    }

    /// Runs a remote-preprocessed job (uploading what the box lacks of `blobs` first)
    /// within `io_timeout`; see [`remote::run`].
    pub async fn run_remote(
        &self,
        job: &RemoteJob,
        blobs: &JobBlobs,
        io_timeout: Duration,
        observer: Option<Observer>,
    ) -> Result<RemoteCompile, JobFailure> {
        let running = self
            .link
            .run_remote(job, blobs, &self.host.known_blobs, observer);
        match tokio::time::timeout(io_timeout, running).await {
            Ok(result) => {
                if result.is_ok() {
                    self.host.done.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            Err(_) => {
                self.link.retire();
                Err(JobFailure::Box(format!(
                    "{}: no answer within {}s (DISTCC_IO_TIMEOUT)",
                    self.link.label(),
                    io_timeout.as_secs()
                )))
            }
        }
    }

    /// Records that the host failed this job (`why`), so it is avoided for `backoff`.
    pub fn mark_failed(&self, backoff: Duration, why: &str) {
        self.dispatcher.back_off(&self.host, backoff, why);
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
    /// Local compilers' fingerprints, kept in memory for the daemon's life (each lookup
    /// still checks the files' size and mtime).
    local_toolchains: Arc<FingerprintCache>,
    /// Notices already given, so each is given once per daemon life.
    told: Mutex<HashSet<String>>,
    /// Jobs in flight and counts for `sshcc status` and `sshcc stats`.
    tracker: Tracker,
    next_seq: AtomicU64,
    /// What remote-preprocessed jobs read, found and hashed for the daemon's life.
    inputs: Inputs,
}

/// The input discovery's caches, shared by every job.
#[derive(Default)]
struct Inputs(InputCache);

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputCache")
    }
}

impl Dispatcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The daemon's input discovery for remote-preprocessed jobs.
    pub fn inputs(&self) -> &InputCache {
        &self.inputs.0
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Every host entry used so far (remote hosts in order of first use, then one row
    /// for this machine), and the jobs in flight. Has round-trip times older than a few
    /// seconds measured again in the background (so it must be called within a tokio
    /// runtime), so a monitor sees fresh ones.
    pub fn status(&self) -> (Vec<HostStatus>, Vec<JobStatus>) {
        let mut hosts = self.host_states();
        hosts.sort_by_key(|host| host.seq);
        let (local, remote): (Vec<_>, Vec<_>) = hosts
            .into_iter()
            .partition(|host| matches!(host.spec.kind, HostKind::Local));
        let mut rows: Vec<HostStatus> = remote.iter().map(|host| self.host_status(host)).collect();
        let local_name = local
            .first()
            .map_or_else(|| "localhost".to_string(), |host| host.spec.text.clone());
        rows.push(HostStatus {
            host: local_name.clone(),
            kind: status::HostKind::Local,
            slots_total: local.iter().map(|host| host.spec.slots).sum(),
            slots_busy: self.tracker.local_busy(),
            jobs_done: self.tracker.local_done(),
            connected: true,
            ..HostStatus::default()
        });
        (rows, self.tracker.jobs(&local_name))
    }

    fn host_status(&self, host: &HostState) -> HostStatus {
        let link = host.current.lock().expect("current lock").clone();
        if let Some(link) = &link {
            link.refresh_rtt(RTT_MAX_AGE);
        }
        let traffic = host.meter.traffic.counts();
        let backoff = (*host.backoff_until.lock().expect("backoff lock"))
            .and_then(|until| until.checked_duration_since(Instant::now()));
        let last_error = host.last_failure.lock().expect("failure lock").clone();
        let store = &host.known_blobs.counts;
        HostStatus {
            host: host.spec.text.clone(),
            kind: match host.spec.kind {
                HostKind::Tcp { .. } => status::HostKind::Tcp,
                HostKind::Ssh { .. } => status::HostKind::Ssh,
                HostKind::Local => status::HostKind::Local,
            },
            slots_total: host.spec.slots,
            slots_busy: *host.busy.lock().expect("busy lock"),
            jobs_done: host.done.load(Ordering::Relaxed),
            jobs_failed: host.failed.load(Ordering::Relaxed),
            backoff_remaining_ms: backoff.map(|left| left.as_millis().max(1) as u64),
            last_error: (!last_error.is_empty()).then_some(last_error),
            connected: link.as_ref().is_some_and(|link| link.is_connected()),
            rtt_ms: host.meter.rtt().map(|(rtt, _)| rtt.as_secs_f64() * 1000.0),
            bytes_sent: traffic.wire_sent,
            bytes_received: traffic.wire_received,
            compression_ratio: traffic.compression_ratio(),
            preprocessing: link.as_ref().map(|link| {
                match link.no_remote_preprocessing() {
                    None => "remote",
                    Some(_) => "local",
                }
                .to_string()
            }),
            preprocessing_note: link
                .as_ref()
                .and_then(|link| link.no_remote_preprocessing()),
            remote_jobs: store.jobs.load(Ordering::Relaxed),
            blobs_looked_up: store.looked_up.load(Ordering::Relaxed),
            blobs_missing: store.missing.load(Ordering::Relaxed),
            blobs_sent: store.sent.load(Ordering::Relaxed),
            blob_bytes_sent: store.bytes_sent.load(Ordering::Relaxed),
        }
    }

    /// Every host used so far, without holding the lock.
    fn host_states(&self) -> Vec<Arc<HostState>> {
        self.hosts
            .lock()
            .expect("hosts lock")
            .values()
            .cloned()
            .collect()
    }

    /// Moves the bytes every host sent and received since the last call into the
    /// tracker's counts (before they are written to the stats file).
    pub fn book_traffic(&self) {
        for host in self.host_states() {
            let (sent, received) = host.meter.traffic.take_unbooked();
            self.tracker.bytes(&host.spec.text, sent, received);
        }
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
                    seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                    spec: spec.clone(),
                    ssh: ssh.clone(),
                    busy: Mutex::new(0),
                    done: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    meter: Arc::default(),
                    current: Mutex::new(None),
                    backoff_until: Mutex::new(None),
                    last_failure: Mutex::new(String::new()),
                    link: tokio::sync::Mutex::new(None),
                    known_blobs: KnownBlobs::default(),
                })
            })
            .clone()
    }

    /// Waits for a slot on the least-loaded usable host of `route`, connecting to it if
    /// needed. A host that cannot be reached is backed off and the next one tried; a
    /// host whose compiler differs from the local one is passed over for this compiler.
    /// Also returns what the user should be told (each notice once per daemon life).
    pub async fn acquire(self: &Arc<Self>, route: &Route) -> (Assignment, Vec<String>) {
        let mut notices = Vec::new();
        let assignment = self.place(route, &mut notices).await;
        (assignment, notices)
    }

    async fn place(self: &Arc<Self>, route: &Route, notices: &mut Vec<String>) -> Assignment {
        let mut unreachable: Vec<String> = Vec::new();
        // Each unreachable host with the error, for the message when no host is left.
        let mut unreachable_why: Vec<String> = Vec::new();
        let mut mismatched: Vec<String> = Vec::new();
        loop {
            let candidates: Vec<Arc<HostState>> = route
                .hosts
                .iter()
                .filter(|spec| {
                    !spec.down
                        && !route.excluded.contains(&spec.text)
                        && !unreachable.contains(&spec.text)
                        && !mismatched.contains(&spec.text)
                })
                .map(|spec| self.state(spec, &route.ssh))
                .filter(|host| !self.backed_off(host))
                .collect();
            if candidates.is_empty() {
                let mut why = Vec::new();
                if !unreachable_why.is_empty() {
                    why.push(format!("cannot reach {}", unreachable_why.join("; ")));
                }
                if !mismatched.is_empty() {
                    why.push(format!("the compiler differs on {}", mismatched.join(", ")));
                }
                why.extend(self.backed_off_hosts(route, &unreachable));
                return Assignment::NoHosts(if why.is_empty() {
                    "no usable hosts (none listed, or all failed this job)".to_string()
                } else {
                    why.join("; ")
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
                    if let Some(check) = &route.toolchain
                        && let ToolchainVerdict::Avoid(why) =
                            self.check_toolchain(&host, &link, check, notices).await
                    {
                        self.release(&host);
                        tracing::debug!("{}: {why}", host.spec.text);
                        mismatched.push(host.spec.text.clone());
                        continue;
                    }
                    return Assignment::Remote(RemoteSlot {
                        host,
                        link,
                        dispatcher: self.clone(),
                    });
                }
                Err(err) => {
                    tracing::warn!("{}: {err:#}", host.spec.text);
                    self.back_off(&host, route.backoff, &format!("{err:#}"));
                    self.release(&host);
                    unreachable.push(host.spec.text.clone());
                    unreachable_why.push(format!("{}: {err:#}", host.spec.text));
                }
            }
        }
    }

    /// Compares the box's toolchain for the job's compiler with the local one.
    async fn check_toolchain(
        &self,
        host: &HostState,
        link: &HostLink,
        check: &ToolchainCheck,
        notices: &mut Vec<String>,
    ) -> ToolchainVerdict {
        let policy = check.policy_for(&host.spec);
        if policy == Policy::Off {
            return ToolchainVerdict::Use;
        }
        let name = &host.spec.text;
        let compiler = &check.compiler;
        let mut tell = |key: String, notice: String| {
            if self.told.lock().expect("told lock").insert(key) {
                tracing::info!("{notice}");
                notices.push(notice);
            }
        };
        let local = match self.local_fingerprint(&check.local).await {
            Ok(local) => local,
            Err(err) => {
                tell(
                    format!("local\0{}", check.local.display()),
                    format!(
                        "cannot fingerprint the local compiler ({err:#}); its jobs go to boxes unchecked"
                    ),
                );
                return ToolchainVerdict::Use;
            }
        };
        let remote = match link.identity(compiler).await {
            Ok(RemoteIdentity::Known(remote)) => remote,
            Ok(RemoteIdentity::Unverifiable(why)) => {
                // Not worth a warning on every build of a distcc user who switched only
                // the client; `sshcc check` shows it.
                tracing::debug!("{name}: cannot check that its compilers match: {why}");
                return ToolchainVerdict::Use;
            }
            Ok(RemoteIdentity::Missing(why)) => {
                let notice = format!("{name}: not sending {compiler} jobs there: {why}");
                tell(format!("missing\0{}\0{compiler}", host.key), notice.clone());
                return ToolchainVerdict::Avoid(notice);
            }
            Err(err) => return ToolchainVerdict::Avoid(err.to_string()),
        };
        match local.difference(&remote, policy == Policy::Version) {
            None => ToolchainVerdict::Use,
            Some(difference) => {
                let notice = format!(
                    "{name}: not sending {compiler} jobs there: its compiler is not the local one: \
                     {difference} (here {}, there {}){}",
                    local.compiler.display(),
                    remote.compiler.display(),
                    if policy == Policy::Strict {
                        "; toolchain_check = \"version\" in config.toml accepts the same version string"
                    } else {
                        ""
                    }
                );
                tell(
                    format!("mismatch\0{}\0{compiler}\0{}", host.key, remote.digest()),
                    notice.clone(),
                );
                ToolchainVerdict::Avoid(notice)
            }
        }
    }

    /// The local compiler's fingerprint, from the caches when its files have not
    /// changed since they were hashed.
    async fn local_fingerprint(&self, compiler: &std::path::Path) -> anyhow::Result<Fingerprint> {
        let (cache, compiler) = (self.local_toolchains.clone(), compiler.to_path_buf());
        tokio::task::spawn_blocking(move || cache.fingerprint(&compiler))
            .await?
            .map(|lookup| lookup.fingerprint)
    }

    /// Why each host of `route` that is backed off (and not in `skip`) cannot be used.
    fn backed_off_hosts(&self, route: &Route, skip: &[String]) -> Vec<String> {
        route
            .hosts
            .iter()
            .filter(|spec| !skip.contains(&spec.text))
            .filter_map(|spec| {
                let host = self.state(spec, &route.ssh);
                let until = (*host.backoff_until.lock().expect("backoff lock"))?;
                let left = until.checked_duration_since(Instant::now())?;
                Some(format!(
                    "{} is avoided for another {}s (DISTCC_BACKOFF_PERIOD) after: {}",
                    spec.text,
                    left.as_secs_f64().ceil(),
                    host.last_failure.lock().expect("failure lock")
                ))
            })
            .collect()
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

    fn back_off(&self, host: &HostState, period: Duration, why: &str) {
        host.failed.fetch_add(1, Ordering::Relaxed);
        self.tracker.host_failed(&host.spec.text);
        if !period.is_zero() {
            *host.backoff_until.lock().expect("backoff lock") = Some(Instant::now() + period);
        }
        *host.last_failure.lock().expect("failure lock") = why.to_string();
        // Drop a connection that failed so the next job after the backoff reconnects.
        if let Ok(mut link) = host.link.try_lock()
            && link.as_ref().is_some_and(|link| link.is_closed())
        {
            *link = None;
            *host.current.lock().expect("current lock") = None;
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
            anyhow::bail!(
                "{} (moments ago; backing off)",
                host.last_failure.lock().expect("failure lock")
            );
        }
        let opened = match &host.spec.kind {
            HostKind::Ssh {
                user,
                host: name,
                command,
            } => {
                let target = config::resolve_with(name, user.as_deref(), None, &host.ssh)?;
                let command = command.as_deref().unwrap_or(DEFAULT_REMOTE_COMMAND);
                Arc::new(HostLink::open(&target, &host.ssh, command, host.meter.clone()).await?)
            }
            HostKind::Tcp { host: name, port } => {
                Arc::new(HostLink::tcp(name, *port, host.meter.clone()))
            }
            HostKind::Local => anyhow::bail!("{} runs locally", host.spec.text),
        };
        *link = Some(opened.clone());
        *host.current.lock().expect("current lock") = Some(opened.clone());
        // The channel-open time measured while connecting includes sshd's set-up of a
        // new login; one request over the open link is the round trip jobs will see.
        opened.refresh_rtt(Duration::ZERO);
        Ok(opened)
    }
}
