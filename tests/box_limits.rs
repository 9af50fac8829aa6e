//! A box shared by several developers: one cap on compiles across every session, the
//! compiler's niceness, a time limit per job and a size limit per request, all set by the
//! box's owner.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{compile_via, distcc_over_ssh, project_copy, sshcc, stderr, write_script};
use sshcc::throwaway_box::{BoxBuilder, ThrowawayBox};

/// A box allowlisting one compiler, `script` (a shell body run before the real gcc).
fn box_with_compiler(scratch: &Path, script: &str) -> BoxBuilder {
    let compiler = scratch.join("bin/x86_64-linux-gnu-gcc");
    write_script(
        &compiler,
        &format!("{script}\nexec /usr/bin/x86_64-linux-gnu-gcc \"$@\""),
    );
    let list = scratch.join("cmdlist");
    std::fs::write(&list, format!("{}\n", compiler.display())).unwrap();
    ThrowawayBox::builder().env("DISTCC_CMDLIST", list.to_str().unwrap())
}

/// One small job through the box's `sshcc --inetd`.
fn send(build_box: &ThrowawayBox) -> sshcc::protocol::Response {
    let sshcc = sshcc();
    distcc_over_ssh(
        build_box.ssh(),
        &[sshcc.to_str().unwrap(), "--inetd"],
        &["x86_64-linux-gnu-gcc", "-c", "x.c", "-o", "x.o"],
        b"int f(void) { return 42; }\n",
    )
}

/// Runs four slow jobs at once, two through each of `boxes`, and asserts that no two
/// compiled at the same time. `shared` holds the compiler script and its log.
fn assert_one_compile_at_a_time(shared: &Path, boxes: [&ThrowawayBox; 2]) {
    std::thread::scope(|scope| {
        for build_box in boxes.iter().chain(boxes.iter()) {
            scope.spawn(move || {
                let response = send(build_box);
                assert_eq!(
                    response.status,
                    0,
                    "{}",
                    String::from_utf8_lossy(&response.stderr)
                );
            });
        }
    });
    let events = std::fs::read_to_string(shared.join("log/running.log")).unwrap();
    let mut running = 0;
    for event in events.lines() {
        running += if event == "start" { 1 } else { -1 };
        assert!(
            running <= 1,
            "two compiles ran at once under --jobs 1:\n{events}"
        );
    }
    assert_eq!(events.lines().count(), 8, "{events}");
}

/// A box whose compiler logs each compile's start and end in `shared/log`, capped at one
/// compile at a time through slot files in `shared/locks/slots`. Every directory is
/// open to every account, as a shared box's /tmp is.
fn one_slot_box(shared: &Path) -> BoxBuilder {
    use std::os::unix::fs::PermissionsExt;
    let log = shared.join("log");
    for (dir, mode) in [
        (shared.to_path_buf(), 0o755),
        (log.clone(), 0o777),
        (shared.join("locks"), 0o1777),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let running = log.join("running.log");
    // Created here, writable by all: whichever account logs first, the other appends.
    std::fs::write(&running, "").unwrap();
    std::fs::set_permissions(&running, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Each compile logs outside its job, so the sandbox must be told it may write there.
    box_with_compiler(
        shared,
        &format!(
            "echo start >> {0}\nsleep 0.5\necho end >> {0}",
            running.display()
        ),
    )
    .env("SSHCC_JOBS", "1")
    .env(
        "SSHCC_LOCK_DIR",
        shared.join("locks/slots").to_str().unwrap(),
    )
    .env("SSHCC_SANDBOX_WRITE", log.to_str().unwrap())
}

#[test]
fn the_job_cap_holds_across_sessions_of_every_client() {
    let scratch = tempfile::tempdir().unwrap();
    let builder = one_slot_box(scratch.path());
    // Two sshds stand for two developers' connections to the same machine.
    let boxes = [builder.start().unwrap(), builder.start().unwrap()];
    assert_one_compile_at_a_time(scratch.path(), [&boxes[0], &boxes[1]]);
}

#[test]
fn the_job_cap_holds_across_accounts() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can serve a second account");
        return;
    }
    sshcc::throwaway_box::ensure_account(SECOND_ACCOUNT).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let builder = one_slot_box(scratch.path());
    // Whichever account comes first creates the slot directory and files; the other
    // must still be able to lock them.
    let boxes = [
        builder.start().unwrap(),
        builder.login_user(SECOND_ACCOUNT).start().unwrap(),
    ];
    assert_one_compile_at_a_time(scratch.path(), [&boxes[0], &boxes[1]]);
}

/// Another developer's account on the box.
const SECOND_ACCOUNT: &str = "sshcc-second";

#[test]
fn compilers_run_niced_as_distccd_does_unless_the_owner_says_otherwise() {
    let scratch = tempfile::tempdir().unwrap();
    let builder = box_with_compiler(scratch.path(), "echo \"niceness $(nice)\" >&2");
    let default_box = builder.clone().start().unwrap();
    let response = send(&default_box);
    let text = String::from_utf8_lossy(&response.stderr);
    assert!(text.contains("niceness 5"), "{text}");

    // The owner's forced command decides; the client cannot change it.
    let owned = builder
        .forced_command(format!("{} --inetd --nice 12", sshcc().display()))
        .start()
        .unwrap();
    let response = send(&owned);
    let text = String::from_utf8_lossy(&response.stderr);
    assert!(text.contains("niceness 12"), "{text}");
}

#[test]
fn a_compile_over_the_job_lifetime_is_killed_with_status_118() {
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let build_box = box_with_compiler(scratch.path(), "sleep 37")
        .env("SSHCC_JOB_LIFETIME", "1")
        .env("TMPDIR", tmp.to_str().unwrap())
        .start()
        .unwrap();
    let started = Instant::now();
    let response = send(&build_box);
    let text = String::from_utf8_lossy(&response.stderr);
    assert_eq!(response.status >> 8, 118, "{text}");
    assert!(text.contains("job lifetime of 1 s"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the compiler was not killed"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left {left:?}");
    let sleeping = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| cmdline == b"sleep\x0037\x00");
    assert!(!sleeping, "the compiler's children survived");
}

#[test]
fn a_request_over_the_size_limit_is_refused_with_the_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let list = scratch.path().join("cmdlist");
    std::fs::write(&list, "/usr/bin/x86_64-linux-gnu-gcc\n").unwrap();
    let build_box = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .env("SSHCC_MAX_INPUT", "1K")
        .start()
        .unwrap();
    let project = project_copy();
    let dir = project.path();
    // geometry.c with its headers (sent to the box, or preprocessed here) is larger
    // than 1 KiB.
    let output = compile_via(build_box.ssh_config(), "box", dir, scratch.path());
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("exceed the limit of 1024 (--max-input)"),
        "{text}"
    );
    assert!(!dir.join("g.o").exists(), "a failed job left an object");

    // Stock distcc over `--inetd` gets an answer it can read, after the box took in
    // (and dropped) the whole request.
    let sshcc = sshcc();
    let response = distcc_over_ssh(
        build_box.ssh(),
        &[sshcc.to_str().unwrap(), "--inetd"],
        &["x86_64-linux-gnu-gcc", "-c", "x.c", "-o", "x.o"],
        &[b' '; 4096],
    );
    let text = String::from_utf8_lossy(&response.stderr);
    assert_eq!(response.status >> 8, 105, "{text}");
    assert!(
        text.contains("the source is 4096 bytes, over this box's --max-input of 1024"),
        "{text}"
    );
}
