//! Whether a freshly spawned sshd is usable: its banner on the port, then a real login
//! through the generated client configuration, each within a deadline; and telling a
//! lost port race (worth a retry) from a broken box.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::layout::{BoxPaths, HOST_ALIAS, read_log};

/// How long one sshd gets to accept a real login before we give up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum NotReady {
    /// sshd died on its own, most likely because the port was taken meanwhile.
    Exited(ExitStatus),
    Failed(anyhow::Error),
}

/// Waits for sshd's banner, then proves the whole setup (host key, client
/// key, user) with a real login so that a broken box fails here rather than
/// somewhere inside the test that uses it.
pub(super) fn wait_until_ready(
    child: &mut Child,
    paths: &BoxPaths,
    netns: Option<&(String, Ipv4Addr)>,
    port: u16,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let exited = |child: &mut Child| match child.try_wait() {
        Ok(status) => Ok(status),
        Err(err) => Err(NotReady::Failed(anyhow!(err).context("polling sshd"))),
    };
    if let Some((netns, _)) = netns {
        // The box may be unreachable from here by design: log in from inside its
        // namespace, retrying until sshd listens.
        loop {
            if let Some(status) = exited(child)? {
                return Err(NotReady::Exited(status));
            }
            let login = run_with_deadline(
                Command::new("ip")
                    .args(["netns", "exec", netns, "ssh", "-F"])
                    .arg(&paths.ssh_config)
                    .args([HOST_ALIAS, "true"]),
                Instant::now() + Duration::from_secs(5),
            );
            match login {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(err) => {
                    return Err(NotReady::Failed(
                        err.context("test login inside the namespace failed"),
                    ));
                }
            }
        }
    }
    loop {
        if let Some(status) = exited(child)? {
            return Err(NotReady::Exited(status));
        }
        if banner_seen(port) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(anyhow!(
                "no SSH banner on port {port} within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }

    let login = run_with_deadline(
        Command::new("ssh")
            .arg("-F")
            .arg(&paths.ssh_config)
            .arg(HOST_ALIAS)
            .arg("true"),
        deadline,
    );
    match login {
        Ok(()) => Ok(()),
        Err(err) => {
            // The banner may have come from whoever stole the port (the host
            // key check then fails); give our sshd a moment to die of it.
            thread::sleep(Duration::from_millis(100));
            match exited(child)? {
                Some(status) => Err(NotReady::Exited(status)),
                None => Err(NotReady::Failed(
                    err.context("test login `ssh box true` failed"),
                )),
            }
        }
    }
}

fn banner_seen(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    // Reading the whole line lets us close cleanly; leaving part of it unread
    // would reset the connection and put a scary line into sshd's log.
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    while banner.len() < 255 && !banner.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => banner.push(byte[0]),
            _ => return false,
        }
    }
    banner.starts_with(b"SSH-2.0-")
}

/// Whether sshd died because its port was taken, the one failure a fresh port
/// can fix.
pub(super) fn lost_port_race(log: &Path) -> bool {
    read_log(log).contains("Address already in use")
}

/// Runs `cmd` to completion, killing it at `deadline` so that a wedged sshd
/// cannot hang the test suite.
fn run_with_deadline(cmd: &mut Command, deadline: Instant) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ssh")?;
    let status = loop {
        if let Some(status) = child.try_wait().context("polling ssh")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("ssh did not finish within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    bail!("ssh exited with {status}: {}", stderr.trim())
}
