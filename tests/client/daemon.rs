//! The daemon's life: exactly one started by racing wrappers and `--stop`, idle exit
//! and the no-daemon mode, and none of the build's descriptors kept open.

use std::time::{Duration, Instant};

use crate::common::{run, sshcc, stderr};
use crate::lab::{Lab, check_many_sources, many_sources};
use sshcc::daemon::runtime_dir::SOCKET_NAME;

#[test]
fn sixty_four_wrappers_racing_start_exactly_one_daemon_and_stop_works() {
    let lab = Lab::new();
    let dir = many_sources(&lab, "race", 64);
    let children: Vec<_> = (0..64)
        .map(|index| {
            lab.command(sshcc())
                .current_dir(&dir)
                .args([
                    "gcc",
                    "-O2",
                    "-c",
                    &format!("unit{index}.c"),
                    "-o",
                    &format!("unit{index}.o"),
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    check_many_sources(&dir, 64);
    let log = std::fs::read_to_string(lab.path("runtime/daemon.log")).unwrap_or_default();
    assert_eq!(log.matches("daemon started").count(), 1, "{log}");
    let stop = run(lab.command(sshcc()).arg("--stop"));
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout).trim(),
        "sshcc: daemon stopped"
    );
    assert!(!lab.path(&format!("runtime/{SOCKET_NAME}")).exists());
    let again = run(lab.command(sshcc()).arg("--stop"));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "sshcc: no daemon running"
    );
}

#[test]
fn the_daemon_exits_when_idle_and_no_daemon_mode_works() {
    let lab = Lab::new();
    let dir = lab.project("idle");
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_IDLE_TIMEOUT", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lab.path(&format!("runtime/{SOCKET_NAME}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit when idle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["g++", "-std=c++17", "-c", "shapes.cpp", "-o", "s.o"])
        .env("SSHCC_NO_DAEMON", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !lab.path(&format!("runtime/{SOCKET_NAME}")).exists(),
        "SSHCC_NO_DAEMON must not start a daemon"
    );
    assert!(dir.join("s.o").exists());
}

#[test]
fn the_daemon_keeps_none_of_the_builds_descriptors_open() {
    let lab = Lab::new();
    let dir = lab.project("descriptors");
    // Like make's jobserver pipe or ccache's UNCACHED_ERR_FD: a descriptor inherited
    // without close-on-exec. If the daemon the wrapper starts kept it, this command's
    // output would not end until the daemon exits.
    let script = format!(
        "exec 5>&2; UNCACHED_ERR_FD=5 {} gcc -c geometry.c -o g.o",
        sshcc().display()
    );
    let output = run(lab.command("sh").current_dir(&dir).args(["-c", &script]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        lab.path(&format!("runtime/{SOCKET_NAME}")).exists(),
        "the build's output ended only because the daemon exited"
    );
}
