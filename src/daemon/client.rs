//! The wrapper's side of the daemon socket: connect, starting the daemon first if none
//! runs, then ask for slots and run jobs.
//!
//! Start-up is serialised with an exclusive lock on `start.lock`, so when 64 wrappers
//! of a `make -j64` start at once exactly one daemon is spawned and the others connect
//! to it.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::ipc::{Acquire, Placement, RemoteReply, RemoteRequest, kind};
use super::runtime_dir::RuntimeDir;
use crate::dispatch::tracker::LocalReason;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::status::{Stats, Status};

/// How long a freshly spawned daemon may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `--stop` waits for an acknowledged stop to end the daemon's process
/// (it saves its counts on the way out).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the daemon, for one compile.
#[derive(Debug)]
pub struct DaemonClient {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
}

impl DaemonClient {
    /// Connects to the running daemon, or starts one and connects.
    pub async fn connect_or_start(dir: &RuntimeDir) -> anyhow::Result<Self> {
        if let Ok(stream) = UnixStream::connect(dir.socket()).await {
            return Ok(Self::from_stream(stream));
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.start_lock())
            .with_context(|| format!("cannot open {}", dir.start_lock().display()))?;
        // Released when `lock` is closed.
        let lock = tokio::task::spawn_blocking(move || {
            crate::system::flock(&lock, true, crate::system::LockWait::Block).map(|_| lock)
        })
        .await?
        .context("cannot lock the daemon start lock")?;
        // Another wrapper may have started it while we waited for the lock.
        if let Ok(stream) = UnixStream::connect(dir.socket()).await {
            return Ok(Self::from_stream(stream));
        }
        spawn_daemon(dir)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match UnixStream::connect(dir.socket()).await {
                Ok(stream) => {
                    drop(lock);
                    return Ok(Self::from_stream(stream));
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(err) => bail!(
                    "the sshcc daemon did not start within {START_TIMEOUT:?} ({err}); see {}",
                    dir.log().display()
                ),
            }
        }
    }

    /// Connects to a running daemon only (for `sshcc --stop`).
    pub async fn connect(dir: &RuntimeDir) -> std::io::Result<Self> {
        Ok(Self::from_stream(UnixStream::connect(dir.socket()).await?))
    }

    fn from_stream(stream: UnixStream) -> Self {
        let (reader, writer) = stream.into_split();
        DaemonClient { reader, writer }
    }

    async fn exchange(&mut self, request: Frame) -> anyhow::Result<Frame> {
        frame::write_frame(&mut self.writer, &request, Compression::None).await?;
        frame::read_frame(&mut self.reader)
            .await?
            .context("the sshcc daemon closed the connection")
    }

    /// Asks for a slot.
    pub async fn acquire(&mut self, acquire: &Acquire) -> anyhow::Result<Placement> {
        let reply = self
            .exchange(Frame::new(kind::ACQUIRE, 0, acquire.encode()))
            .await?;
        anyhow::ensure!(
            reply.kind == kind::ASSIGNED,
            "unexpected reply kind {}",
            reply.kind
        );
        Ok(Placement::decode(&reply.payload)?)
    }

    /// Runs an encoded job on the slot and returns the encoded protocol-1 response;
    /// the inner `Err` says why the host failed.
    pub async fn run(&mut self, job_payload: Vec<u8>) -> anyhow::Result<Result<Vec<u8>, String>> {
        let reply = self.exchange(Frame::new(kind::JOB, 0, job_payload)).await?;
        match reply.kind {
            kind::RESULT => Ok(Ok(reply.payload)),
            kind::FAILED => Ok(Err(String::from_utf8_lossy(&reply.payload).into_owned())),
            other => bail!("unexpected reply kind {other}"),
        }
    }

    /// Runs a remote-preprocessed job on the held slot; `Err(why)` when the host failed.
    pub async fn run_remote(
        &mut self,
        request: &RemoteRequest,
    ) -> anyhow::Result<Result<RemoteReply, String>> {
        let reply = self
            .exchange(Frame::new(kind::REMOTE_JOB, 0, request.encode()))
            .await?;
        match reply.kind {
            kind::REMOTE_REPLY => Ok(Ok(RemoteReply::decode(&reply.payload)?)),
            kind::FAILED => Ok(Err(String::from_utf8_lossy(&reply.payload).into_owned())),
            other => bail!("unexpected reply kind {other}"),
        }
    }

    /// Reports that the box refused the job, and why.
    pub async fn refused(&mut self, why: &str) -> anyhow::Result<()> {
        self.send(Frame::new(kind::REFUSED, 0, why.as_bytes().to_vec()))
            .await
    }

    /// Tells the daemon the job compiles here now, and why.
    pub async fn local(&mut self, reason: LocalReason) -> anyhow::Result<()> {
        self.send(Frame::new(kind::LOCAL, 0, vec![reason.code()]))
            .await
    }

    /// Tells the daemon the job's exit status.
    pub async fn done(&mut self, status: u8) -> anyhow::Result<()> {
        self.send(Frame::new(kind::DONE, 0, vec![status])).await
    }

    async fn send(&mut self, message: Frame) -> anyhow::Result<()> {
        frame::write_frame(&mut self.writer, &message, Compression::None).await?;
        Ok(())
    }

    /// The counts since the last reset; `reset` then starts counting again.
    pub async fn stats(&mut self, reset: bool) -> anyhow::Result<Stats> {
        let reply = self
            .exchange(Frame::new(kind::STATS, 0, vec![u8::from(reset)]))
            .await?;
        match reply.kind {
            kind::STATS_REPLY => {
                serde_json::from_slice(&reply.payload).context("unreadable counts from the daemon")
            }
            kind::STATS_FAILED => bail!("{}", String::from_utf8_lossy(&reply.payload)),
            other => bail!("unexpected reply kind {other}"),
        }
    }

    /// What the daemon is doing now.
    pub async fn status(&mut self) -> anyhow::Result<Status> {
        let reply = self
            .exchange(Frame::new(kind::STATUS, 0, Vec::new()))
            .await?;
        anyhow::ensure!(
            reply.kind == kind::STATUS_REPLY,
            "unexpected reply kind {}",
            reply.kind
        );
        serde_json::from_slice(&reply.payload).context("unreadable status from the daemon")
    }

    /// Asks the daemon to exit.
    /// Asks the daemon of `dir` to stop and returns once its process has exited (its
    /// socket removed and its counts saved), so a script can start another at once.
    pub async fn stop(&mut self, dir: &RuntimeDir) -> anyhow::Result<()> {
        let reply = self.exchange(Frame::new(kind::STOP, 0, Vec::new())).await?;
        anyhow::ensure!(
            reply.kind == kind::STOPPING,
            "unexpected reply kind {}",
            reply.kind
        );
        let path = dir.alive_lock();
        let lock = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Polled rather than blocking, so a daemon that hangs on its way out is
        // reported instead of hanging `--stop` too.
        while !crate::system::flock(&lock, false, crate::system::LockWait::Try)
            .with_context(|| format!("cannot lock {}", path.display()))?
        {
            if Instant::now() >= deadline {
                bail!(
                    "the daemon acknowledged the stop but is still running after {}s",
                    STOP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// How long [`fetch_status`] waits for a daemon that accepted the connection.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The running daemon's [`Status`], without starting one: with no daemon, a `Status`
/// whose `daemon_pid` is `None` (schema and version filled in). Blocking and cheap (one
/// Unix-socket round trip, no async runtime), so a monitor may call it several times a
/// second; such connections do not keep an idle daemon alive.
pub fn fetch_status() -> anyhow::Result<Status> {
    let dir = RuntimeDir::prepare()?;
    let no_daemon = Status {
        schema: crate::status::SCHEMA,
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Status::default()
    };
    let Ok(stream) = std::os::unix::net::UnixStream::connect(dir.socket()) else {
        return Ok(no_daemon);
    };
    let reply = blocking_exchange(stream, kind::STATUS, &[])?;
    anyhow::ensure!(
        reply.0 == kind::STATUS_REPLY,
        "unexpected reply kind {}",
        reply.0
    );
    serde_json::from_slice(&reply.1).context("unreadable status from the daemon")
}

/// The counts since the last reset (see [`Stats`]), including what a running daemon
/// has not saved yet; `reset` then starts counting again. Without a daemon, read from
/// (and reset in) the stats file directly.
pub fn fetch_stats(reset: bool) -> anyhow::Result<Stats> {
    let dir = RuntimeDir::prepare()?;
    let Ok(stream) = std::os::unix::net::UnixStream::connect(dir.socket()) else {
        return super::stats_file::merge_and_maybe_reset(
            &super::stats_file::path(),
            &Stats::default(),
            reset,
            crate::system::now_unix(),
        );
    };
    let (reply_kind, payload) = blocking_exchange(stream, kind::STATS, &[u8::from(reset)])?;
    match reply_kind {
        kind::STATS_REPLY => {
            serde_json::from_slice(&payload).context("unreadable counts from the daemon")
        }
        kind::STATS_FAILED => bail!("{}", String::from_utf8_lossy(&payload)),
        other => bail!("unexpected reply kind {other}"),
    }
}

/// One request and its reply over the daemon socket, blocking: `(kind, payload)`.
/// The daemon never compresses on its socket, so frames are plain.
fn blocking_exchange(
    mut stream: std::os::unix::net::UnixStream,
    request_kind: u8,
    payload: &[u8],
) -> anyhow::Result<(u8, Vec<u8>)> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(STATUS_TIMEOUT))?;
    stream.set_write_timeout(Some(STATUS_TIMEOUT))?;
    let mut request = Vec::with_capacity(14 + payload.len());
    request.extend_from_slice(&(10 + payload.len() as u32).to_be_bytes());
    request.extend_from_slice(&[request_kind, 0]);
    request.extend_from_slice(&0u64.to_be_bytes());
    request.extend_from_slice(payload);
    stream
        .write_all(&request)
        .context("cannot talk to the sshcc daemon")?;
    let mut header = [0u8; 14];
    stream
        .read_exact(&mut header)
        .context("no answer from the sshcc daemon")?;
    let length = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    anyhow::ensure!(
        (10..=10 + frame::MAX_PAYLOAD).contains(&length),
        "bad frame from the sshcc daemon"
    );
    anyhow::ensure!(header[5] == 0, "compressed frame from the sshcc daemon");
    let mut body = vec![0u8; length - 10];
    stream
        .read_exact(&mut body)
        .context("truncated answer from the sshcc daemon")?;
    Ok((header[4], body))
}

/// Starts `sshcc --daemon` detached from the build: its own session (make's Ctrl-C
/// must not kill it), no terminal, output to the runtime dir's log.
fn spawn_daemon(dir: &RuntimeDir) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the sshcc executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())
        .with_context(|| format!("cannot open {}", dir.log().display()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--daemon")
        // ccache's descriptor for messages belongs to one compile, not to the daemon.
        .env_remove("UNCACHED_ERR_FD")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir("/");
    // SAFETY: setsid(2) and close_range(2) are async-signal-safe and touch no memory of
    // the parent.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            // Descriptors the wrapper inherited without close-on-exec (make's jobserver
            // pipe, ccache's stderr, the build's output pipe) would otherwise stay open for
            // the daemon's whole life, and whoever waits for them to close would hang.
            libc::close_range(3, libc::c_uint::MAX, 0);
            Ok(())
        });
    }
    command.spawn().context("cannot start the sshcc daemon")?;
    Ok(())
}
