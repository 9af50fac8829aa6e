//! The TCP routes' `distccd --daemon` on an ephemeral port of 127.0.0.1, in a process
//! group of its own so that stopping it stops the workers it pre-forks too.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::route::SLOTS;
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
                // Its own group, led by it: the workers it forks join it, so they can
                // be stopped together however the leader ends.
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
                    stop_group(&mut child);
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
        stop_group(&mut self.child);
    }
}

/// How long the group gets to exit after SIGTERM before what is left is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Stops `child`, which leads its own process group, and everything in that group:
/// SIGTERM to the whole group (distccd and its pre-forked workers all stop on it), then
/// the leader is reaped and the workers, which init adopts, are waited for until none
/// runs; whatever is left after [`STOP_GRACE`] is SIGKILLed. Signalling only the leader
/// relies on it passing the signal on, which it cannot when it dies at once (SIGKILL),
/// and then its workers outlive the benchmark.
fn stop_group(child: &mut Child) {
    let group = child.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory-safety preconditions. The group id is the unreaped
    // leader's pid, so it cannot belong to anyone else yet.
    unsafe { libc::kill(-group, libc::SIGTERM) };
    let _ = child.wait();
    let deadline = Instant::now() + STOP_GRACE;
    // Once the leader is reaped, the id stays taken only while a member is alive, and
    // the SIGKILL below is sent only after one was seen running.
    while group_running(group) {
        if Instant::now() > deadline {
            // SAFETY: as above; a member was just seen running, so the group is still ours.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether some process of `group` still runs. Read from /proc rather than with
/// `kill(-group, 0)`, which also counts zombies that only wait for init to reap them.
fn group_running(group: libc::pid_t) -> bool {
    let group = group.to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            // After the command name (which may contain ") "): state, ppid, pgrp.
            let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| {
                rest.split_whitespace().take(3).collect()
            });
            matches!(fields[..], [state, _, pgrp] if state != "Z" && pgrp == group)
        })
    })
}

/// `SSHCC_BENCH_DISTCCD_NICE`: a niceness for the TCP distccd instead of its default
/// (5), to see how much the priority matters on a machine that is client and box at once.
pub fn distccd_nice() -> Option<i32> {
    std::env::var("SSHCC_BENCH_DISTCCD_NICE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}
