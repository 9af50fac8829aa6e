//! Plain TCP host entries (`host:port/N[,lzo]`, the guide's docker scheme) against
//! Debian's real `distccd --daemon` on loopback.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{project_copy, run, sshcc, stderr};

/// A `distccd --daemon` on an ephemeral loopback port, killed when dropped.
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
            .spawn()
            .expect("distccd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "distccd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Distccd {
            child,
            port,
            log,
            _dir: dir,
        }
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tcp_host_entries_compile_on_a_stock_distccd_daemon() {
    let distccd = Distccd::start();
    let project = project_copy();
    let dir = project.path();
    let runtime = tempfile::tempdir().unwrap();
    for (options, source, compiler) in [("", "geometry.c", "gcc"), (",lzo", "shapes.cpp", "g++")] {
        let output = run(Command::new(sshcc())
            .current_dir(dir)
            .args([compiler, "-O2", "-c", source, "-o", "remote.o"])
            .env(
                "SSHCC_HOSTS",
                format!("127.0.0.1:{}/4{options}", distccd.port),
            )
            .env("SSHCC_RUNTIME_DIR", runtime.path())
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
    let _ = Command::new(sshcc())
        .arg("--stop")
        .env("SSHCC_RUNTIME_DIR", runtime.path())
        .output();
}
