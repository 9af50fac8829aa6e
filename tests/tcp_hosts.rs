//! Plain TCP host entries (`host:port/N[,lzo]`, the guide's docker scheme) against
//! Debian's real `distccd --daemon` on loopback.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, project_copy, run, stderr};

/// A `distccd --daemon` on an ephemeral loopback port in a process group of its own,
/// which is ended when dropped: distccd pre-forks workers that would outlive the main
/// process.
struct Distccd {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Distccd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("distccd.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("distccd")
            .args([
                "--daemon",
                "--no-detach",
                "--listen",
                "127.0.0.1",
                "--allow",
                "127.0.0.1",
                "--jobs",
                "4",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--log-level",
                "info",
                "--log-stderr",
            ])
            // distccd drops root for its own user, who could not open a log file in our
            // private directory: it logs to the stderr we hand it instead.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            // Its own group, also because distccd ends its workers with kill(0, …).
            .process_group(0)
            .spawn()
            .expect("distccd");
        // Owned before anything can fail, so that a failure ends it too.
        let distccd = Distccd {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "distccd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        distccd
    }
}

impl Drop for Distccd {
    /// SIGTERM to the whole group (distccd's own way to stop, which takes its workers
    /// down too), then waits until no member is left; SIGKILL after a grace period.
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created for distccd.
        let signal_group = |signal| unsafe { libc::kill(-group, signal) };
        signal_group(libc::SIGTERM);
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_is_running(group) {
            if Instant::now() > deadline {
                signal_group(libc::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a process of process group `group` still runs (zombies, which only wait for
/// their new parent to reap them, do not count).
fn group_is_running(group: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp …; comm may contain anything, so after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

#[test]
fn tcp_host_entries_compile_on_a_stock_distccd_daemon() {
    let distccd = Distccd::start();
    let project = project_copy();
    let dir = project.path();
    let scratch = Scratch::new();
    for (options, source, compiler) in [("", "geometry.c", "gcc"), (",lzo", "shapes.cpp", "g++")] {
        let output = run(scratch
            .sshcc()
            .current_dir(dir)
            .args([compiler, "-O2", "-c", source, "-o", "remote.o"])
            .env(
                "SSHCC_HOSTS",
                format!("127.0.0.1:{}/4{options}", distccd.port),
            )
            .env("DISTCC_FALLBACK", "0"));
        assert!(output.status.success(), "{options}: {}", stderr(&output));
        let local = run(Command::new(compiler)
            .current_dir(dir)
            .args(["-O2", "-c", source, "-o", "local.o"]));
        assert!(local.status.success());
        assert_eq!(
            std::fs::read(dir.join("remote.o")).unwrap(),
            std::fs::read(dir.join("local.o")).unwrap(),
            "{source} via 127.0.0.1:{}{options}",
            distccd.port
        );
    }
    let log = std::fs::read_to_string(&distccd.log).unwrap_or_default();
    assert_eq!(
        log.matches("COMPILE_OK").count(),
        2,
        "both jobs ran on distccd: {log}"
    );
}
