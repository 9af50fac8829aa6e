//! `sshcc status --json` and `sshcc stats` against a real build: a `make -j` through
//! the daemon to a real sshd box (and a `localhost` slot), watched while it runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Scratch, client_command, run, sshcc, stderr, write_script};
use sshcc::status::{HostKind, Phase, Stats, Status};
use sshcc::throwaway_box::ThrowawayBox;

/// How long each compiler script sleeps before compiling, on the box and here, so that
/// every phase lasts long enough to be seen by a poller.
const COMPILER_DELAY: &str = "0.6";
/// A compile sleeps at least this long on the box: a floor for the time counted.
const COMPILER_DELAY_MS: u64 = 600;

/// A box whose allowlisted `slowcc` sleeps, then runs gcc; a local `slowcc` that does
/// the same; private runtime and state directories (the daemon stopped when dropped).
struct Lab {
    build_box: ThrowawayBox,
    scratch: Scratch,
    hosts: String,
}

impl Lab {
    fn new() -> Self {
        let scratch = Scratch::new();
        let delayed = format!("sleep {COMPILER_DELAY}\nexec gcc \"$@\"");
        let box_compiler = scratch.path().join("box-bin/slowcc");
        write_script(&box_compiler, &delayed);
        write_script(&scratch.path().join("local-bin/slowcc"), &delayed);
        let list = scratch.path().join("DISTCC_CMDLIST");
        std::fs::write(&list, format!("{}\n", box_compiler.display())).unwrap();
        let build_box = ThrowawayBox::builder()
            .env("DISTCC_CMDLIST", list.to_str().unwrap())
            .start()
            .expect("box");
        let hosts = format!("@{}/2:{}", build_box.host_alias(), sshcc().display());
        Lab {
            build_box,
            scratch,
            hosts,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `program` with the client environment: the box (and anything in `extra_hosts`),
    /// a private daemon and stats file, `slowcc` first on PATH.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let path = format!(
            "{}:{}",
            self.path("local-bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = client_command(
            program,
            &self.hosts,
            self.build_box.ssh_config(),
            self.scratch.path(),
        );
        command
            .env("PATH", path)
            .env("SSHCC_IDLE_TIMEOUT", "120")
            // The scripts differ from gcc (and from each other): that is the point.
            .env("SSHCC_TOOLCHAIN_CHECK", "off");
        command
    }

    fn status(&self) -> Status {
        let output = run(self.command(sshcc()).args(["status", "--json"]));
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "status --json: {err}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    fn stats(&self, args: &[&str]) -> Stats {
        let output = run(self.command(sshcc()).arg("stats").arg("--json").args(args));
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Polls until no job is in flight (the daemon sees a wrapper's connection end a
    /// moment after the wrapper exits).
    fn settled_status(&self) -> Status {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status();
            if status.jobs.is_empty() || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `count` small C files and a Makefile compiling them with `$(CC)`.
fn sources(dir: &Path, count: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for index in 0..count {
        let file = format!("unit{index}.c");
        std::fs::write(
            dir.join(&file),
            format!("int unit{index}(int x) {{ return x * {index} + 3; }}\n"),
        )
        .unwrap();
        files.push(file);
    }
    let objects: Vec<String> = files.iter().map(|f| f.replace(".c", ".o")).collect();
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "all: {}\n%.o: %.c\n\t$(CC) -c $< -o $@\n",
            objects.join(" ")
        ),
    )
    .unwrap();
    files
}

/// Where each file was compiled, from the wrappers' `SSHCC_LOG=info` lines
/// (`unit3.c → @box/2:… (612 ms)`, `unit4.c → localhost`).
fn placements(output: &Output) -> BTreeMap<String, String> {
    stderr(output)
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" → ")?;
            let file = before.rsplit(' ').next()?.to_string();
            let host = after.split(" (").next()?.trim().to_string();
            Some((file, host))
        })
        .collect()
}

/// What the poller saw of one job.
#[derive(Debug, Default)]
struct Seen {
    file: String,
    pid: u32,
    hosts: BTreeSet<String>,
    phases: Vec<Phase>,
}

#[test]
fn a_build_watched_through_status_shows_every_job_its_host_and_phases_and_stats_add_up() {
    let lab = Lab::new();
    let dir = lab.path("project");
    let files = sources(&dir, 10);
    let local_entry = "localhost/1";
    let hosts = format!("{} {local_entry}", lab.hosts);

    // Poll `sshcc status --json` while the build runs.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let mut command = lab.command(sshcc());
        command.args(["status", "--json"]);
        std::thread::spawn(move || {
            let mut snapshots: Vec<Status> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let output = command.output().expect("sshcc status");
                assert!(output.status.success(), "{}", stderr(&output));
                snapshots.push(serde_json::from_slice(&output.stdout).expect("status JSON"));
                std::thread::sleep(Duration::from_millis(50));
            }
            snapshots
        })
    };
    let output = run(lab
        .command("make")
        .current_dir(&dir)
        .arg("-j3")
        .arg(format!("CC={} slowcc", sshcc().display()))
        .env("SSHCC_HOSTS", &hosts)
        .env("SSHCC_LOG", "info"));
    stop.store(true, Ordering::SeqCst);
    let snapshots = poller.join().expect("poller");
    assert!(output.status.success(), "make: {}", stderr(&output));
    for file in &files {
        assert!(dir.join(file.replace(".c", ".o")).exists(), "{file}");
    }

    let placed = placements(&output);
    assert_eq!(
        placed.keys().collect::<Vec<_>>(),
        files.iter().collect::<Vec<_>>(),
        "every file logged where it ran: {}",
        stderr(&output)
    );
    let remote: Vec<&String> = placed
        .iter()
        .filter(|(_, host)| *host == &lab.hosts)
        .map(|(file, _)| file)
        .collect();
    let local: Vec<&String> = placed
        .iter()
        .filter(|(_, host)| *host == "localhost")
        .map(|(file, _)| file)
        .collect();
    assert_eq!(remote.len() + local.len(), files.len(), "{placed:?}");
    assert!(!remote.is_empty() && !local.is_empty(), "{placed:?}");

    // Every job seen, with the host it ran on and its phases in order.
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    for snapshot in &snapshots {
        assert!(snapshot.daemon_pid.is_some() || snapshot.jobs.is_empty());
        for job in &snapshot.jobs {
            let entry = seen.entry(job.id).or_default();
            entry.file.clone_from(&job.file);
            entry.pid = job.pid;
            entry.hosts.extend(job.host.clone());
            if entry.phases.last() != Some(&job.phase) {
                entry.phases.push(job.phase);
            }
        }
    }
    let seen_files: BTreeSet<&String> = seen.values().map(|job| &job.file).collect();
    assert_eq!(
        seen_files,
        files.iter().collect(),
        "every compile appeared in sshcc status: {seen:#?}"
    );
    for job in seen.values() {
        assert!(job.pid > 0, "{job:?}");
        assert!(
            job.phases.windows(2).all(|w| w[0] < w[1]),
            "phases out of order: {job:?}"
        );
        if remote.contains(&&job.file) {
            assert_eq!(
                job.hosts,
                BTreeSet::from([lab.hosts.clone()]),
                "remote job: {job:?}"
            );
            assert!(!job.phases.contains(&Phase::Local), "{job:?}");
        } else {
            assert_eq!(
                job.hosts,
                BTreeSet::from([local_entry.to_string()]),
                "local job: {job:?}"
            );
            assert!(
                job.phases
                    .iter()
                    .all(|p| matches!(p, Phase::Queue | Phase::Local)),
                "{job:?}"
            );
        }
    }
    let all_phases: BTreeSet<Phase> = seen
        .values()
        .flat_map(|job| job.phases.iter().copied())
        .collect();
    assert!(all_phases.contains(&Phase::Compile), "{seen:#?}");
    assert!(all_phases.contains(&Phase::Local), "{seen:#?}");

    // Afterwards: nothing in flight, counts add up to the number of compiles.
    let status = lab.settled_status();
    assert!(status.jobs.is_empty(), "{status:#?}");
    assert_eq!(status.schema, sshcc::status::SCHEMA);
    assert_eq!(status.hosts.len(), 2, "{status:#?}");
    let (box_row, local_row) = (&status.hosts[0], &status.hosts[1]);
    assert_eq!(box_row.host, lab.hosts);
    assert_eq!(box_row.kind, HostKind::Ssh);
    assert_eq!((box_row.slots_total, box_row.slots_busy), (2, 0));
    assert_eq!(box_row.jobs_done, remote.len() as u64);
    assert_eq!(box_row.jobs_failed, 0);
    assert_eq!(box_row.backoff_remaining_ms, None);
    assert!(box_row.connected, "{box_row:?}");
    assert!(box_row.rtt_ms.is_some_and(|rtt| rtt > 0.0), "{box_row:?}");
    assert!(
        box_row.bytes_sent > 0 && box_row.bytes_received > 0,
        "{box_row:?}"
    );
    assert!(
        box_row.compression_ratio.is_some_and(|ratio| ratio > 0.0),
        "{box_row:?}"
    );
    assert_eq!(local_row.kind, HostKind::Local);
    assert_eq!(local_row.host, local_entry);
    assert_eq!((local_row.slots_total, local_row.slots_busy), (1, 0));
    assert_eq!(local_row.jobs_done, local.len() as u64);
    assert_eq!(
        status.hosts.iter().map(|h| h.jobs_done).sum::<u64>(),
        files.len() as u64
    );

    let human = run(lab.command(sshcc()).arg("status"));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&lab.hosts) && human.contains(local_entry),
        "{human}"
    );

    // The counts since the last reset.
    let stats = lab.stats(&[]);
    assert_eq!(stats.schema, sshcc::status::SCHEMA);
    assert_eq!(stats.hosts.len(), 1, "{stats:#?}");
    let row = &stats.hosts[0];
    assert_eq!(row.host, lab.hosts);
    assert_eq!(row.remote_jobs, remote.len() as u64);
    assert_eq!(row.failures, 0);
    // Everything on the link is counted, and the link stays up (round-trip probes), so
    // the counts may have grown since the status above.
    assert!(row.bytes_sent >= box_row.bytes_sent, "{row:?}");
    assert!(row.bytes_received >= box_row.bytes_received, "{row:?}");
    assert!(
        row.remote_ms >= COMPILER_DELAY_MS * remote.len() as u64,
        "{row:?}"
    );
    assert_eq!(stats.local_jobs, local.len() as u64);
    assert_eq!((stats.fallback_jobs, stats.errors), (0, 0));
    assert_eq!(row.remote_jobs + stats.local_jobs, files.len() as u64);
    assert_eq!(stats.time_saved_ms, row.remote_ms);

    let human = run(lab.command(sshcc()).arg("stats"));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!("{} remote", remote.len())) && human.contains(&lab.hosts),
        "{human}"
    );

    // --reset prints the counts so far, then starts over; the file survives the daemon.
    let before = lab.stats(&["--reset"]);
    assert_eq!(before.local_jobs, stats.local_jobs);
    let after = lab.stats(&[]);
    assert!(
        after
            .hosts
            .iter()
            .all(|h| h.remote_jobs == 0 && h.failures == 0 && h.remote_ms == 0),
        "{after:#?}"
    );
    assert_eq!(
        (after.local_jobs, after.fallback_jobs, after.errors),
        (0, 0, 0)
    );
    assert_eq!(after.time_saved_ms, 0);
    assert!(after.since >= stats.since);
    let stop = run(lab.command(sshcc()).arg("--stop"));
    assert!(stop.status.success());
    let saved: Stats =
        serde_json::from_slice(&std::fs::read(lab.path("state/sshcc/stats.json")).unwrap())
            .unwrap();
    assert_eq!(saved.since, after.since);
    assert_eq!(
        (saved.local_jobs, saved.fallback_jobs, saved.errors),
        (0, 0, 0)
    );
    assert!(saved.hosts.iter().all(|h| h.remote_jobs == 0));
    let status = lab.status();
    assert_eq!(status.daemon_pid, None);
    assert!(status.hosts.is_empty() && status.jobs.is_empty());
}

#[test]
fn failures_fallbacks_and_jobs_without_a_daemon_are_counted() {
    let lab = Lab::new();
    let dir = lab.path("project");
    sources(&dir, 3);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = lab.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "{}\nHost dead\n  HostName 127.0.0.1\n  Port {closed_port}\n  ConnectTimeout 5\n",
            std::fs::read_to_string(lab.build_box.ssh_config()).unwrap()
        ),
    )
    .unwrap();
    let compile = |file: &str, hosts: &str, no_daemon: bool| {
        let mut command = lab.command(sshcc());
        command
            .current_dir(&dir)
            .args(["slowcc", "-c", file])
            .env("SSHCC_HOSTS", hosts)
            .env("SSHCC_SSH_CONFIG", &config)
            .env("DISTCC_FALLBACK", "1");
        if no_daemon {
            command.env("SSHCC_NO_DAEMON", "1");
        }
        let output = run(&mut command);
        assert!(output.status.success(), "{file}: {}", stderr(&output));
    };

    // A host nobody answers on: backed off, the job compiled here.
    compile("unit0.c", "@dead/2", false);
    let status = lab.settled_status();
    let dead = &status.hosts[0];
    assert_eq!(dead.host, "@dead/2");
    assert!(dead.jobs_failed >= 1, "{dead:?}");
    assert_eq!(dead.jobs_done, 0);
    assert!(dead.backoff_remaining_ms.is_some(), "{dead:?}");
    assert!(dead.last_error.is_some(), "{dead:?}");
    assert!(!dead.connected);
    assert_eq!(dead.compression_ratio, None);
    let local_row = status.hosts.last().unwrap();
    assert_eq!((local_row.kind, local_row.jobs_done), (HostKind::Local, 1));
    let stats = lab.stats(&[]);
    assert_eq!(stats.fallback_jobs, 1, "{stats:#?}");
    assert!(
        stats
            .hosts
            .iter()
            .any(|h| h.host == "@dead/2" && h.failures >= 1)
    );

    // Without a daemon, each job is added to the file itself.
    let stop = run(lab.command(sshcc()).arg("--stop"));
    assert!(stop.status.success());
    compile("unit1.c", &lab.hosts, true);
    compile("unit2.c", "", true);
    let stats = lab.stats(&[]);
    let row = stats.hosts.iter().find(|h| h.host == lab.hosts).unwrap();
    assert_eq!(row.remote_jobs, 1, "{stats:#?}");
    assert!(row.bytes_sent > 0 && row.remote_ms >= COMPILER_DELAY_MS);
    assert_eq!(
        (stats.fallback_jobs, stats.local_jobs, stats.errors),
        (1, 1, 0),
        "{stats:#?}"
    );
    assert_eq!(lab.status().daemon_pid, None, "no daemon was started");
}
