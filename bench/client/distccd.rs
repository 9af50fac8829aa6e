//! The TCP routes' `distccd --daemon` on an ephemeral port of 127.0.0.1.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::SLOTS;
use crate::support::DISTCCD;

/// `distccd --daemon` on an ephemeral port of 127.0.0.1, stopped when dropped.
pub struct Distccd {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Distccd {
    pub fn start(dir: &Path, cmdlist: &Path) -> Result<Self> {
        let log = dir.join("distccd.log");
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let log_file = fs::File::create(&log).context("creating the distccd log")?;
            let mut child = Command::new(DISTCCD)
                .args([
                    "--daemon",
                    "--no-detach",
                    "--log-stderr",
                    "--log-level=notice",
                ])
                .args(["--listen", "127.0.0.1", "--allow", "127.0.0.1"])
                .args(["--port", &port.to_string(), "--jobs", &SLOTS.to_string()])
                .args(distccd_nice().map(|nice| format!("--nice={nice}")))
                .env("DISTCC_CMDLIST", cmdlist)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                // distccd signals its whole process group when it stops.
                .process_group(0)
                .spawn()
                .context("starting distccd")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Ok(Distccd { child, port, log });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("distccd did not listen on port {port} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!(
            "distccd exited on each of 5 ports; log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> Result<String> {
        Ok(
            String::from_utf8_lossy(&fs::read(&self.log).context("reading the distccd log")?)
                .into_owned(),
        )
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `SSHCC_BENCH_DISTCCD_NICE`: a niceness for the TCP distccd instead of its default
/// (5), to see how much the priority matters on a machine that is client and box at once.
pub fn distccd_nice() -> Option<i32> {
    std::env::var("SSHCC_BENCH_DISTCCD_NICE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}
