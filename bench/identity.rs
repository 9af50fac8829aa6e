//! What the toolchain check costs: the first job on a fresh daemon and the jobs after
//! it, with the check off, on with warm fingerprint caches, and on with cold caches
//! (both ends hash their compiler). Run with `cargo bench --bench identity`;
//! `SSHCC_BENCH_RUNS` (default 7) sets the rounds. Markdown goes to stdout.

#[path = "support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sshcc::throwaway_box::ThrowawayBox;
use support::{BOX_COMPILER, Login, machine_facts, stats};

/// Jobs after the first one, per round.
const LATER_JOBS: usize = 10;

#[derive(Debug, Clone, Copy)]
enum Scenario {
    Off,
    Warm,
    Cold,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Off => "check off",
            Scenario::Warm => "check on, cached fingerprints",
            Scenario::Cold => "check on, cold caches (both ends hash)",
        }
    }
}

struct Bench {
    build_box: ThrowawayBox,
    sshcc: PathBuf,
    scratch: PathBuf,
    box_cache: PathBuf,
}

impl Bench {
    /// One round: a fresh daemon, its first job, then [`LATER_JOBS`] more.
    fn round(&self, scenario: Scenario, round: usize) -> Result<(Duration, Vec<Duration>)> {
        let runtime_dir = self.scratch.join(format!("run-{round}-{scenario:?}"));
        let local_cache = self.scratch.join("local-cache");
        if matches!(scenario, Scenario::Cold) {
            let _ = fs::remove_dir_all(&local_cache);
            let _ = fs::remove_file(self.box_cache.join("sshcc/toolchains.json"));
        }
        let job = || -> Result<Duration> {
            let started = Instant::now();
            let output = Command::new(&self.sshcc)
                .current_dir(&self.scratch)
                .args([BOX_COMPILER, "-c", "tiny.c", "-o", "tiny.o"])
                .env("SSHCC_HOSTS", format!("@box/4:{}", self.sshcc.display()))
                .env("SSHCC_SSH_CONFIG", self.build_box.ssh_config())
                .env("SSHCC_RUNTIME_DIR", &runtime_dir)
                .env("XDG_CACHE_HOME", &local_cache)
                .env("DISTCC_FALLBACK", "0")
                .env(
                    "SSHCC_TOOLCHAIN_CHECK",
                    match scenario {
                        Scenario::Off => "off",
                        Scenario::Warm | Scenario::Cold => "strict",
                    },
                )
                .output()
                .context("running sshcc")?;
            ensure!(
                output.status.success(),
                "{}: {}",
                scenario.label(),
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(started.elapsed())
        };
        let first = job()?;
        let later = (0..LATER_JOBS).map(|_| job()).collect::<Result<Vec<_>>>()?;
        let stop = Command::new(&self.sshcc)
            .arg("--stop")
            .env("SSHCC_RUNTIME_DIR", &runtime_dir)
            .output()?;
        ensure!(stop.status.success(), "stopping the daemon");
        Ok((first, later))
    }
}

fn main() -> Result<()> {
    let _user_dirs = support::private_user_dirs()?;
    let runs: usize = std::env::var("SSHCC_BENCH_RUNS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("SSHCC_BENCH_RUNS")?
        .unwrap_or(7);
    let sshcc = PathBuf::from(env!("CARGO_BIN_EXE_sshcc"));
    let login = Login::choose(&sshcc)?;
    let scratch = tempfile::Builder::new()
        .prefix("sshcc-bench-")
        .tempdir_in("/tmp")?;
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755))?;
    let cmdlist = scratch.path().join("DISTCC_CMDLIST");
    fs::write(&cmdlist, format!("{BOX_COMPILER}\n"))?;
    fs::set_permissions(&cmdlist, fs::Permissions::from_mode(0o644))?;
    // The box account writes its fingerprint cache here, where the bench can empty it.
    let box_cache = scratch.path().join("box-cache");
    fs::create_dir_all(&box_cache)?;
    fs::set_permissions(&box_cache, fs::Permissions::from_mode(0o1777))?;
    fs::write(scratch.path().join("tiny.c"), "int x;\n")?;
    let (build_box, box_shell) = support::start_box_with(
        &cmdlist,
        &login,
        &sshcc,
        &[("XDG_CACHE_HOME", box_cache.to_str().context("UTF-8 path")?)],
    )?;
    let bench = Bench {
        build_box,
        sshcc,
        scratch: scratch.path().to_path_buf(),
        box_cache,
    };
    let scenarios = [Scenario::Off, Scenario::Warm, Scenario::Cold];
    bench.round(Scenario::Warm, usize::MAX)?;
    let mut first: Vec<Vec<Duration>> = vec![Vec::new(); scenarios.len()];
    let mut later: Vec<Vec<Duration>> = vec![Vec::new(); scenarios.len()];
    for round in 0..runs {
        for step in 0..scenarios.len() {
            let index = (round + step) % scenarios.len();
            let (one, rest) = bench.round(scenarios[index], round)?;
            first[index].push(one);
            later[index].extend(rest);
        }
        eprint!("\rround {}/{runs}", round + 1);
    }
    eprintln!();
    println!(
        "{}",
        machine_facts(&[("box login", login.describe(&box_shell))])?
    );
    println!(
        "| scenario | first job on a fresh daemon (median, min–p90) | later jobs (median, min–p90) |"
    );
    println!("|---|---|---|");
    for (index, scenario) in scenarios.iter().enumerate() {
        let (f, l) = (stats(&first[index]), stats(&later[index]));
        println!(
            "| {} | {:.1} ms ({:.1}–{:.1}) | {:.1} ms ({:.1}–{:.1}) |",
            scenario.label(),
            f.median,
            f.min,
            f.p90,
            l.median,
            l.min,
            l.p90
        );
    }
    println!(
        "\n{runs} rounds, scenarios interleaved; each round starts a new daemon and runs 1 + {LATER_JOBS} tiny jobs."
    );
    Ok(())
}
