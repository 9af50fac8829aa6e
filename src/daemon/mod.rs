//! The per-user daemon: owns the [`Dispatcher`] (slots, backoff, pooled SSH
//! connections) and serves wrappers on a Unix socket in a private runtime directory.
//!
//! Started on demand by the first wrapper (see [`client`]), it exits after
//! `SSHCC_IDLE_TIMEOUT` seconds (default 600) without a wrapper, or on `sshcc --stop`.
//! It answers `sshcc status` from what its dispatcher tracks, and adds what it counted
//! to the stats file ([`stats_file`]) every few seconds and when it exits.

pub mod client;
pub mod ipc;
pub mod runtime_dir;
pub mod session;
pub mod stats_file;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::dispatch::Dispatcher;
use crate::dispatch::tracker::LocalReason;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::status::{Stats, Status};
use ipc::{Acquire, RemoteRequest, kind};
use runtime_dir::RuntimeDir;
use session::Session;

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often counts are added to the stats file (when there are any).
const STATS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What the daemon's tasks share.
struct Shared {
    dispatcher: Arc<Dispatcher>,
    started: Instant,
    /// Wrappers with a job connected right now (not `sshcc status` and the like, which
    /// must not keep an idle daemon alive).
    active: AtomicUsize,
    /// Woken when a wrapper leaves (to restart the idle clock) or asks us to stop.
    activity: Notify,
    stop: Notify,
}

/// Runs the daemon until it is idle for too long or told to stop.
pub async fn run(dir: RuntimeDir) -> anyhow::Result<()> {
    hold_alive_lock(&dir).await?;
    let socket = dir.socket();
    // Only a wrapper holding the start lock starts a daemon, so a socket file here is a
    // leftover of one that died.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let idle_timeout = std::env::var("SSHCC_IDLE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_IDLE_TIMEOUT, Duration::from_secs);
    tracing::info!(socket = %socket.display(), ?idle_timeout, "daemon started");
    let shared = Arc::new(Shared {
        dispatcher: Dispatcher::new(),
        started: Instant::now(),
        active: AtomicUsize::new(0),
        activity: Notify::new(),
        stop: Notify::new(),
    });
    let flusher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATS_FLUSH_INTERVAL).await;
                flush_stats(&shared.dispatcher, false).await;
            }
        })
    };
    loop {
        let idle = async {
            loop {
                let activity = shared.activity.notified();
                if shared.active.load(Ordering::SeqCst) == 0 {
                    tokio::select! {
                        () = tokio::time::sleep(idle_timeout) => return,
                        () = activity => {}
                    }
                } else {
                    activity.await;
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve_wrapper(stream, &shared).await {
                            tracing::debug!("wrapper connection: {err:#}");
                        }
                    });
                }
                Err(err) => tracing::warn!("accept failed: {err}"),
            },
            () = idle => {
                tracing::info!("idle for {idle_timeout:?}; exiting");
                break;
            }
            () = shared.stop.notified() => {
                tracing::info!("stop requested; exiting");
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&socket);
    flusher.abort();
    flush_stats(&shared.dispatcher, true).await;
    if let Some(summary) = summary(&shared.dispatcher.tracker().life()) {
        tracing::info!("{summary}");
    }
    Ok(())
}

/// Takes the runtime directory's alive lock for the rest of the process's life, first
/// waiting for a daemon that is still on its way out (it removed its socket, so a
/// wrapper started this one, but it may still be writing its stats).
async fn hold_alive_lock(dir: &RuntimeDir) -> anyhow::Result<()> {
    let path = dir.alive_lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let file = tokio::task::spawn_blocking(move || {
        crate::system::flock(&file, true, crate::system::LockWait::Block).map(|_| file)
    })
    .await?
    .with_context(|| format!("cannot lock {}", path.display()))?;
    // Never closed: the kernel releases the lock when the process exits, which is
    // what `sshcc --stop` waits for.
    std::mem::forget(file);
    Ok(())
}

/// Adds what the dispatcher counted since the last call to the stats file and
/// returns the file's counts, or, with `reset`, also starts them over. Counts that
/// cannot be written are kept for the next try.
async fn save_stats(dispatcher: &Arc<Dispatcher>, reset: bool) -> anyhow::Result<Stats> {
    dispatcher.book_traffic();
    let pending = dispatcher.tracker().take_pending();
    let delta = pending.clone();
    let written = tokio::task::spawn_blocking(move || {
        stats_file::merge_and_maybe_reset(
            &stats_file::path(),
            &delta,
            reset,
            crate::system::now_unix(),
        )
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|result| result);
    if written.is_err() {
        dispatcher.tracker().restore_pending(&pending);
    }
    written
}

/// The periodic (and the final) save, when something was counted.
async fn flush_stats(dispatcher: &Arc<Dispatcher>, last: bool) {
    dispatcher.book_traffic();
    if !dispatcher.tracker().has_pending() {
        return;
    }
    if let Err(err) = save_stats(dispatcher, false).await {
        if last {
            tracing::warn!("cannot save the build counts: {err:#}");
        } else {
            tracing::debug!("cannot save the build counts (trying again later): {err:#}");
        }
    }
}

/// One line about what this daemon did, for its log when it exits; `None` if nothing.
fn summary(life: &Stats) -> Option<String> {
    let remote: u64 = life.hosts.iter().map(|host| host.remote_jobs).sum();
    if remote + life.local_jobs + life.fallback_jobs + life.errors == 0 {
        return None;
    }
    let per_host: Vec<String> = life
        .hosts
        .iter()
        .filter(|host| host.remote_jobs > 0 || host.failures > 0)
        .map(|host| {
            format!(
                "{} {} ({} failed, {} sent, {} received)",
                host.host,
                host.remote_jobs,
                host.failures,
                crate::status::bytes(host.bytes_sent),
                crate::status::bytes(host.bytes_received)
            )
        })
        .collect();
    Some(format!(
        "build summary: {remote} jobs remote [{}], {} local, {} fallback, {} errors; \
         about {} of compiling taken off this machine",
        per_host.join(", "),
        life.local_jobs,
        life.fallback_jobs,
        life.errors,
        crate::status::duration(life.time_saved_ms)
    ))
}

/// Counts a connection as a wrapper at work (for the idle clock) while it lives.
struct Active<'a>(&'a Shared);

impl<'a> Active<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        shared.activity.notify_waiters();
        Active(shared)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.activity.notify_waiters();
    }
}

async fn serve_wrapper(stream: UnixStream, shared: &Shared) -> anyhow::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut session = Session::new(shared.dispatcher.clone());
    let mut active = None;
    while let Some(request) = frame::read_frame(&mut reader).await? {
        let reply = match request.kind {
            kind::ACQUIRE => {
                active.get_or_insert_with(|| Active::new(shared));
                let acquire = Acquire::decode(&request.payload)?;
                // A wrapper killed while it waits for a slot must not get one later.
                let mut probe = [0u8; 1];
                let assigned = tokio::select! {
                    assigned = session.acquire(&acquire) => assigned,
                    _ = reader.read(&mut probe) => return Ok(()),
                };
                Frame::new(kind::ASSIGNED, 0, assigned.encode())
            }
            kind::JOB => {
                // The payload goes to the box as it came, and the answer back likewise:
                // the daemon never decodes or copies sources and objects.
                // A wrapper that goes away (Ctrl-C) must not leave its compile running.
                let mut probe = [0u8; 1];
                let outcome = tokio::select! {
                    outcome = session.run(request.payload) => outcome,
                    _ = reader.read(&mut probe) => return Ok(()),
                };
                match outcome {
                    Ok(response) => Frame::new(kind::RESULT, 0, response),
                    Err(why) => Frame::new(kind::FAILED, 0, why.into_bytes()),
                }
            }
            kind::REMOTE_JOB => {
                let remote = RemoteRequest::decode(&request.payload)?;
                let mut probe = [0u8; 1];
                let outcome = tokio::select! {
                    outcome = session.run_remote(remote) => outcome,
                    _ = reader.read(&mut probe) => return Ok(()),
                };
                match outcome {
                    Ok(reply) => Frame::new(kind::REMOTE_REPLY, 0, reply.encode()),
                    Err(why) => Frame::new(kind::FAILED, 0, why.into_bytes()),
                }
            }
            kind::REFUSED => {
                session.refused(&String::from_utf8_lossy(&request.payload));
                continue;
            }
            kind::LOCAL => {
                let reason = request
                    .payload
                    .first()
                    .and_then(|code| LocalReason::from_code(*code))
                    .unwrap_or(LocalReason::Fallback);
                session.local(reason);
                continue;
            }
            kind::DONE => {
                session.done(request.payload.first().copied().unwrap_or(0));
                continue;
            }
            kind::STATUS => {
                let status = status_of(shared);
                Frame::new(kind::STATUS_REPLY, 0, serde_json::to_vec(&status)?)
            }
            kind::STATS => {
                let reset = request.payload.first() == Some(&1);
                match save_stats(&shared.dispatcher, reset).await {
                    Ok(stats) => Frame::new(kind::STATS_REPLY, 0, serde_json::to_vec(&stats)?),
                    Err(err) => Frame::new(kind::STATS_FAILED, 0, format!("{err:#}").into_bytes()),
                }
            }
            kind::STOP => {
                frame::write_frame(
                    &mut writer,
                    &Frame::new(kind::STOPPING, 0, Vec::new()),
                    Compression::None,
                )
                .await?;
                shared.stop.notify_one();
                return Ok(());
            }
            other => anyhow::bail!("unexpected frame kind {other} from a wrapper"),
        };
        frame::write_frame(&mut writer, &reply, Compression::None).await?;
    }
    Ok(())
}

/// What `sshcc status` shows.
fn status_of(shared: &Shared) -> Status {
    let (hosts, jobs) = shared.dispatcher.status();
    Status {
        schema: crate::status::SCHEMA,
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        daemon_pid: Some(std::process::id()),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        hosts,
        jobs,
    }
}
