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

use super::ipc::{Acquire, Placement, kind};
use super::runtime_dir::RuntimeDir;
use crate::mux::frame::{self, Compression, Frame};

/// How long a freshly spawned daemon may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

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
        let lock = tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: flock(2) on a descriptor we own; released when `lock` is closed.
            let status = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
            (status == 0)
                .then_some(lock)
                .ok_or_else(std::io::Error::last_os_error)
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

    /// Reports that the box refused the job, and why.
    pub async fn refused(&mut self, why: &str) -> anyhow::Result<()> {
        frame::write_frame(
            &mut self.writer,
            &Frame::new(kind::REFUSED, 0, why.as_bytes().to_vec()),
            Compression::None,
        )
        .await?;
        Ok(())
    }

    /// Asks the daemon to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let reply = self.exchange(Frame::new(kind::STOP, 0, Vec::new())).await?;
        anyhow::ensure!(
            reply.kind == kind::STOPPING,
            "unexpected reply kind {}",
            reply.kind
        );
        Ok(())
    }
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
