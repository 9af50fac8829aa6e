//! Fault injection, end to end: a real `make -j8` of a C and C++ project through the
//! real sshcc wrapper and daemon to real OpenSSH boxes, while the test cuts the TCP
//! connection (a proxy in the path), kills or restarts sshd, kills the daemon, presses
//! Ctrl-C, fills a disk, or stalls a box. Every run ends with every object byte-identical
//! to a local build, or with a clear error and no partial object; never with a hung
//! build (docs/faults.md).
//!
//! The boxes' compilers wait at a gate the test opens (see [`lab::Compilers`]), so a
//! fault provably hits jobs in flight. Limits are generous: a test fails on a hang or a
//! wrong result, never because the machine is slow.

mod common;
#[path = "faults/lab/mod.rs"]
mod lab;
#[path = "faults/proxy.rs"]
mod proxy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run, sshcc, stderr};
use lab::{
    BUILD_LIMIT, Client, Compilers, Finished, Tmpfs, WAIT_LIMIT, assert_no_temporary_files,
    check_objects, job_dirs, object_names, stanza, start_box, wait_for, write_project,
};
use proxy::Proxy;
use sshcc::throwaway_box::ThrowawayBox;

/// Longer than the clients' `DISTCC_BACKOFF_PERIOD` (1 s), so a backed-off box is
/// offered jobs again.
const AFTER_BACKOFF: Duration = Duration::from_secs(2);

/// Whether `pid` has exited (a zombie has).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits until the compiles the box had started have all ended (the box killed them).
fn wait_until_gone(pids: &[i32]) {
    wait_for(
        "the box to kill the interrupted compiles",
        WAIT_LIMIT,
        || pids.iter().all(|&pid| gone(pid)),
    );
}

/// Builds the project again from scratch with `DISTCC_FALLBACK=0`: success means the
/// daemon reaches the box again and every job ran there.
fn rebuild_remotely(client: &Client, project: &Path) -> Finished {
    std::fs::remove_dir_all(project.join("obj")).unwrap();
    let build = client.build(project, &[("DISTCC_FALLBACK", "0")]).finish();
    build.assert_success();
    assert_eq!(
        build.remote_jobs(),
        object_names().len(),
        "every job on the box:\n{}",
        build.log
    );
    check_objects(&project.join("obj"), true);
    build
}

/// How a [`Scene`] is set up.
#[derive(Default)]
struct Setup {
    /// The box compiles at once (no gate to open).
    gate_open: bool,
    /// The client reaches the box through a [`Proxy`].
    via_proxy: bool,
    /// More ssh_config options for the box's stanza.
    ssh_options: &'static str,
    /// The box's TMPDIR is a small tmpfs, full.
    full_box_tmp: bool,
}

/// One box with gated compilers, a client using it as `@box/8` with local fallback,
/// and the project. Fields drop in order: the daemon stops before the box, the box
/// before its tmpfs is unmounted, all of them before the scratch directory goes.
struct Scene {
    client: Client,
    proxy: Option<Proxy>,
    build_box: ThrowawayBox,
    compilers: Compilers,
    box_tmp: PathBuf,
    _box_tmpfs: Option<Tmpfs>,
    project: PathBuf,
    scratch: tempfile::TempDir,
}

impl Scene {
    fn start(setup: Setup) -> Scene {
        let scratch = tempfile::tempdir().unwrap();
        let s = scratch.path();
        let compilers = Compilers::new(&s.join("compilers"), setup.gate_open);
        let box_tmp = s.join("box-tmp");
        let box_tmpfs = setup.full_box_tmp.then(|| {
            let tmpfs = Tmpfs::mount(&box_tmp, "256k");
            tmpfs.fill("filler");
            tmpfs
        });
        let build_box = start_box(&compilers, &box_tmp);
        let proxy = setup.via_proxy.then(|| Proxy::start(build_box.port()));
        let client = Client::new(
            &s.join("client"),
            &[stanza(
                &build_box,
                "box",
                proxy.as_ref().map(Proxy::port),
                setup.ssh_options,
                s,
            )],
            &[("box", 8)],
        );
        let project = s.join("project");
        write_project(&project);
        Scene {
            client,
            proxy,
            build_box,
            compilers,
            box_tmp,
            _box_tmpfs: box_tmpfs,
            project,
            scratch,
        }
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("a scene with a proxy")
    }

    fn objects(&self) -> PathBuf {
        self.project.join("obj")
    }

    /// Starts the build and waits until `jobs` compiles are waiting at the box's gate.
    fn build_until_jobs_wait(&self, env: &[(&str, &str)], jobs: usize) -> lab::Build {
        let mut build = self.client.build(&self.project, env);
        build.wait_for_jobs(&self.compilers, jobs);
        build
    }

    /// The build succeeded, every object is the local build's, no temporary file.
    fn assert_complete(&self, build: &Finished) {
        build.assert_success();
        check_objects(&self.objects(), true);
        assert_no_temporary_files(&self.project);
    }
}

/// Scenario 1: the TCP connection is cut while jobs run on the box.
#[test]
fn a_connection_cut_mid_build_yields_correct_objects_and_later_jobs_reconnect() {
    let scene = Scene::start(Setup {
        via_proxy: true,
        ..Setup::default()
    });
    let build = scene.build_until_jobs_wait(&[], 1);
    let interrupted = scene.compilers.started();
    scene.proxy().cut();
    wait_until_gone(&interrupted);
    scene.compilers.open_gate();
    let first = build.finish();
    scene.assert_complete(&first);
    assert!(first.log.contains("lost the connection"), "{}", first.log);
    wait_for("the box's job directories to go", WAIT_LIMIT, || {
        job_dirs(&scene.box_tmp).is_empty()
    });

    std::thread::sleep(AFTER_BACKOFF);
    rebuild_remotely(&scene.client, &scene.project);
    assert!(
        scene.proxy().accepted() >= 2,
        "the daemon opened a new connection"
    );
}

/// Scenario 2, with a second box: the jobs of the box whose sshd died move to the
/// healthy one (local fallback is off, so nothing was compiled here).
#[test]
fn jobs_of_a_killed_box_move_to_a_healthy_one() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let gated = Compilers::new(&s.join("a-compilers"), false);
    let open = Compilers::new(&s.join("b-compilers"), true);
    let mut dying = start_box(&gated, &s.join("a-tmp"));
    let healthy = start_box(&open, &s.join("b-tmp"));
    let client = Client::new(
        &s.join("client"),
        &[
            stanza(&dying, "a", None, "", s),
            stanza(&healthy, "b", None, "", s),
        ],
        &[("a", 4), ("b", 4)],
    );
    let project = s.join("project");
    write_project(&project);

    let mut build = client.build(&project, &[("DISTCC_FALLBACK", "0")]);
    build.wait_for_jobs(&gated, 1);
    dying.stop();
    let finished = build.finish();
    finished.assert_success();
    assert!(
        finished.log.contains("lost the connection"),
        "{}",
        finished.log
    );
    check_objects(&project.join("obj"), true);
    assert_no_temporary_files(&project);
}

/// Scenario 2, with no other box: the interrupted jobs are compiled here.
#[test]
fn jobs_of_a_killed_box_fall_back_to_local_compiles() {
    let mut scene = Scene::start(Setup::default());
    let build = scene.build_until_jobs_wait(&[], 1);
    scene.build_box.stop();
    let finished = build.finish();
    scene.assert_complete(&finished);
    assert!(finished.local_fallbacks() > 0, "{}", finished.log);
}

/// Scenario 2 with `DISTCC_FALLBACK=0` and no other box: a clear error, no object.
#[test]
fn a_killed_box_without_fallback_is_a_clear_error_and_no_partial_object() {
    let mut scene = Scene::start(Setup::default());
    let build = scene.build_until_jobs_wait(&[("DISTCC_FALLBACK", "0")], 1);
    scene.build_box.stop();
    let finished = build.finish();
    assert!(!finished.status.success(), "{}", finished.log);
    assert!(
        finished.log.contains("lost the connection")
            && finished.log.contains("(DISTCC_FALLBACK=0)"),
        "the error says what happened:\n{}",
        finished.log
    );
    check_objects(&scene.objects(), false);
    assert_no_temporary_files(&scene.project);
}

/// Scenario 3: sshd restarts on the same port (the box reboots) mid-build; the same
/// daemon notices, and later jobs reach the box again over a new connection.
#[test]
fn a_rebooted_box_is_reconnected_by_the_same_daemon() {
    let mut scene = Scene::start(Setup::default());
    let build = scene.build_until_jobs_wait(&[], 1);
    let daemon = scene.client.daemon_pids();
    assert_eq!(daemon.len(), 1);
    scene
        .build_box
        .restart(Duration::from_secs(2))
        .expect("restart");
    scene.compilers.open_gate();
    let first = build.finish();
    scene.assert_complete(&first);
    assert!(first.log.contains("lost the connection"), "{}", first.log);

    std::thread::sleep(AFTER_BACKOFF);
    rebuild_remotely(&scene.client, &scene.project);
    assert_eq!(
        scene.client.daemon_pids(),
        daemon,
        "the same daemon reconnected"
    );
}

/// Scenario 3, the silent kind: the box vanished without closing the connection (a
/// reboot, a dead link). The SSH keepalive notices long before DISTCC_IO_TIMEOUT, the
/// jobs move, and later jobs use a new connection.
#[test]
fn keepalive_notices_a_silently_vanished_box() {
    let scene = Scene::start(Setup {
        via_proxy: true,
        ssh_options: "ServerAliveInterval 1\n  ServerAliveCountMax 2",
        ..Setup::default()
    });
    // Far beyond the build limit: only the keepalive can end the waits in time.
    let io_timeout = (BUILD_LIMIT * 4).as_secs().to_string();
    let build = scene.build_until_jobs_wait(&[("DISTCC_IO_TIMEOUT", &io_timeout)], 1);
    scene.proxy().blackhole();
    scene.compilers.open_gate();
    let first = build.finish();
    scene.assert_complete(&first);
    assert!(first.log.contains("lost the connection"), "{}", first.log);

    std::thread::sleep(AFTER_BACKOFF);
    rebuild_remotely(&scene.client, &scene.project);
}

/// Scenario 4: the daemon is killed (SIGKILL) while jobs run through it. The running
/// wrappers notice, start a new daemon and retry through it (local fallback is off, so
/// nothing was compiled here).
#[test]
fn wrappers_outlive_a_killed_daemon() {
    let scene = Scene::start(Setup::default());
    let build = scene.build_until_jobs_wait(&[("DISTCC_FALLBACK", "0")], 1);
    let interrupted = scene.compilers.started();
    let daemons = scene.client.daemon_pids();
    assert_eq!(daemons.len(), 1);
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(daemons[0], libc::SIGKILL) };
    // The box saw its client go and killed the jobs.
    wait_until_gone(&interrupted);
    scene.compilers.open_gate();
    let finished = build.finish();
    scene.assert_complete(&finished);
    assert!(
        finished.log.contains("the sshcc daemon failed"),
        "{}",
        finished.log
    );
    let log = scene.client.daemon_log();
    let now = scene.client.daemon_pids();
    assert_eq!(now.len(), 1, "one new daemon: {now:?}\n{log}");
    assert_ne!(now, daemons);
    assert_eq!(log.matches("daemon started").count(), 2, "{log}");
}

/// Scenario 5: Ctrl-C while compiles run on the box. The box kills them (no process
/// left, no job directory), nothing partial is left here, and the daemon's slots are
/// free for the next build.
#[test]
fn ctrl_c_cancels_the_remote_compiles_and_leaves_nothing_behind() {
    let scene = Scene::start(Setup::default());
    let mut build = scene.build_until_jobs_wait(&[], 4);
    assert!(build.is_running());
    build.signal(libc::SIGINT);
    let interrupted = build.finish();
    assert!(!interrupted.status.success(), "{}", interrupted.log);
    wait_for("the box to kill every compile", WAIT_LIMIT, || {
        scene.compilers.running(&scene.box_tmp).is_empty()
    });
    wait_for("the box's job directories to go", WAIT_LIMIT, || {
        job_dirs(&scene.box_tmp).is_empty()
    });
    check_objects(&scene.objects(), false);
    assert_no_temporary_files(&scene.project);

    scene.compilers.open_gate();
    rebuild_remotely(&scene.client, &scene.project);
}

/// Scenario 6a: the box's TMPDIR is full. The box refuses the job saying why, the
/// wrapper compiles here, and the box keeps no job directory.
#[test]
fn a_full_disk_on_the_box_is_explained_and_falls_back() {
    if !Tmpfs::can_mount() {
        return;
    }
    let scene = Scene::start(Setup {
        gate_open: true,
        full_box_tmp: true,
        ..Setup::default()
    });
    let finished = scene.client.build(&scene.project, &[]).finish();
    scene.assert_complete(&finished);
    assert!(
        finished.log.contains("No space left on device"),
        "the box says why:\n{}",
        finished.log
    );
    assert!(job_dirs(&scene.box_tmp).is_empty());
}

/// Scenario 6b: the local output directory fills up. sshcc says it cannot write the
/// object; no partial object or temporary file is left.
#[test]
fn a_full_local_disk_is_a_clear_error_and_no_partial_object() {
    if !Tmpfs::can_mount() {
        return;
    }
    let scene = Scene::start(Setup {
        gate_open: true,
        ..Setup::default()
    });
    // Room for a few of the objects, not for all of them.
    let out = Tmpfs::mount(&scene.scratch.path().join("out"), "32k");
    let out_arg = format!("OUT={}", out.path().display());
    let finished = scene
        .client
        .build_with(&scene.project, &[], &[&out_arg])
        .finish();
    assert!(!finished.status.success(), "{}", finished.log);
    assert!(
        finished
            .log
            .lines()
            .any(|line| line.starts_with("sshcc: cannot write")
                && line.contains("No space left on device")),
        "sshcc says it cannot write the object:\n{}",
        finished.log
    );
    check_objects(out.path(), false);
    assert_no_temporary_files(out.path());
}

/// Scenario 7: the connection stalls mid-build (the box's end stops answering, the
/// socket stays open). DISTCC_IO_TIMEOUT ends the waits, the jobs are compiled here, and
/// later jobs use a new connection instead of the stalled one.
#[test]
fn a_stalled_connection_times_out_and_later_jobs_use_a_new_one() {
    let scene = Scene::start(Setup {
        via_proxy: true,
        ..Setup::default()
    });
    let build = scene.build_until_jobs_wait(&[("DISTCC_IO_TIMEOUT", "5")], 1);
    scene.proxy().blackhole();
    scene.compilers.open_gate();
    let first = build.finish();
    scene.assert_complete(&first);
    assert!(
        first
            .log
            .contains("no answer within 5s (DISTCC_IO_TIMEOUT)"),
        "{}",
        first.log
    );

    // Before the SSH keepalive could have noticed anything.
    std::thread::sleep(AFTER_BACKOFF);
    rebuild_remotely(&scene.client, &scene.project);
}

/// Scenario 7, a hung box (sshd and its sessions stopped: the kernel still accepts
/// connections, nothing answers): the jobs in flight time out, new connections time out,
/// the build finishes here; without local fallback the error says what happened.
#[test]
fn a_hung_box_cannot_hang_the_build() {
    let scene = Scene::start(Setup {
        ssh_options: "ConnectTimeout 5",
        ..Setup::default()
    });
    let build = scene.build_until_jobs_wait(&[("DISTCC_IO_TIMEOUT", "5")], 1);
    scene.build_box.freeze();
    let finished = build.finish();
    scene.assert_complete(&finished);

    // A fresh daemon must connect, and cannot.
    let _ = scene.client.command(sshcc()).arg("--stop").output();
    std::thread::sleep(AFTER_BACKOFF);
    let output = run(scene
        .client
        .command(sshcc())
        .current_dir(&scene.project)
        .args(["gcc", "-c", "c0.c", "-o", "lonely.o"])
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_IO_TIMEOUT", "5"));
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("timed out"),
        "the error says why: {}",
        stderr(&output)
    );
    assert!(!scene.project.join("lonely.o").exists());
    scene.build_box.thaw();
}
