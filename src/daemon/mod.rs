//! The per-user daemon: owns the [`Dispatcher`] (slots, backoff, pooled SSH
//! connections) and serves wrappers on a Unix socket in a private runtime directory.
//!
//! Started on demand by the first wrapper (see [`client`]), it exits after
//! `SSHCC_IDLE_TIMEOUT` seconds (default 600) without a wrapper, or on `sshcc --stop`.

pub mod client;
pub mod ipc;
pub mod report;
pub mod runtime_dir;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::dispatch::Dispatcher;
use crate::mux::frame::{self, Compression, Frame};
use ipc::{Acquire, kind};
use runtime_dir::RuntimeDir;
use session::Session;

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

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
    Ok(())
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
            kind::REFUSED => {
                session.refused(&String::from_utf8_lossy(&request.payload));
                continue;
            }
            kind::STATUS => {
                let status = status_of(shared);
                Frame::new(kind::STATUS_REPLY, 0, serde_json::to_vec(&status)?)
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
fn status_of(shared: &Shared) -> crate::status::Status {
    crate::status::Status {
        schema: crate::status::SCHEMA,
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        daemon_pid: Some(std::process::id()),
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        hosts: Vec::new(),
        jobs: Vec::new(),
    }
}
