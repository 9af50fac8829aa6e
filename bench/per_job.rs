//! Per-job wall time of one tiny compile through Debian's real distcc client over
//! OpenSSH, with stock `distccd --inetd` and with `sshcc --inetd` on the box.
//!
//! Run with `cargo bench --bench per_job`. Every route compiles `int x;` one job at a
//! time; the routes are interleaved round-robin (with the starting route rotated every
//! round) so that machine noise hits all of them alike. `SSHCC_BENCH_RUNS` sets the
//! number of timed runs per route (default 21, at least 20).
//!
//! The box is a [`ThrowawayBox`]: a private sshd on 127.0.0.1. When run as root the
//! box logs in as the system user `sshcc-bench` (created if missing, shell `/bin/sh`),
//! because root's shell start-up files here cost ~110 ms per ssh command and would
//! blur the numbers. Machine facts and a markdown table go to stdout, progress to
//! stderr.

#[path = "support.rs"]
mod support;

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sshcc::throwaway_box::ThrowawayBox;
use support::{BOX_COMPILER, DISTCCD, Login, Stats, machine_facts, stats, tail};

const DEFAULT_RUNS: usize = 21;
const MIN_RUNS: usize = 20;
const RUNS_VARIABLE: &str = "SSHCC_BENCH_RUNS";
const SOURCE: &str = "tiny.c";
const OBJECT: &str = "tiny.o";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Distccd,
    Sshcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `gcc -c` on this machine: the compile itself.
    LocalGcc,
    /// `ssh -F cfg box true`: handshake, login and remote shell, nothing else.
    SshTrue,
    /// `distcc gcc -c` with the box as its only host.
    Distcc { server: Server, lzo: bool },
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::LocalGcc => "local `gcc -c tiny.c`",
            Route::SshTrue => "`ssh box true` (handshake floor)",
            Route::Distcc {
                server: Server::Distccd,
                lzo: true,
            } => "distcc → ssh → `distccd --inetd`, lzo",
            Route::Distcc {
                server: Server::Sshcc,
                lzo: true,
            } => "distcc → ssh → `sshcc --inetd`, lzo",
            Route::Distcc {
                server: Server::Distccd,
                lzo: false,
            } => "distcc → ssh → `distccd --inetd`, plain",
            Route::Distcc {
                server: Server::Sshcc,
                lzo: false,
            } => "distcc → ssh → `sshcc --inetd`, plain",
        }
    }

    fn compiles(self) -> bool {
        !matches!(self, Route::SshTrue)
    }
}

/// Table order; the distccd lzo route is the reference for the ratio column.
const ROUTES: [Route; 6] = [
    Route::LocalGcc,
    Route::SshTrue,
    Route::Distcc {
        server: Server::Distccd,
        lzo: true,
    },
    Route::Distcc {
        server: Server::Sshcc,
        lzo: true,
    },
    Route::Distcc {
        server: Server::Distccd,
        lzo: false,
    },
    Route::Distcc {
        server: Server::Sshcc,
        lzo: false,
    },
];
const REFERENCE: Route = Route::Distcc {
    server: Server::Distccd,
    lzo: true,
};

struct Bench {
    build_box: ThrowawayBox,
    sshcc: PathBuf,
    /// The client's working directory with tiny.c.
    work: PathBuf,
    /// Private `DISTCC_DIR` for the client (lock and backoff files).
    distcc_dir: PathBuf,
}

impl Bench {
    fn command(&self, route: Route) -> Command {
        match route {
            Route::LocalGcc => {
                let mut cmd = Command::new("gcc");
                cmd.args(["-c", SOURCE, "-o", OBJECT]);
                cmd
            }
            Route::SshTrue => {
                let mut cmd = self.build_box.ssh();
                cmd.arg("true");
                cmd
            }
            Route::Distcc { server, lzo } => {
                let server_path = match server {
                    Server::Distccd => DISTCCD.to_owned(),
                    Server::Sshcc => self.sshcc.display().to_string(),
                };
                let hosts = format!(
                    "@{}/1:{server_path}{}",
                    self.build_box.host_alias(),
                    if lzo { ",lzo" } else { "" }
                );
                let mut cmd = Command::new("distcc");
                cmd.args(["gcc", "-c", SOURCE, "-o", OBJECT])
                    .env("DISTCC_HOSTS", hosts)
                    .env("DISTCC_SSH", self.build_box.ssh_command())
                    .env("DISTCC_DIR", &self.distcc_dir)
                    // A job that cannot reach the box must fail, not run here.
                    .env("DISTCC_FALLBACK", "0")
                    .env("DISTCC_SKIP_LOCAL_RETRY", "1")
                    .env_remove("DISTCC_VERBOSE")
                    .env_remove("DISTCC_LOG")
                    .env_remove("DISTCC_POTENTIAL_HOSTS");
                cmd
            }
        }
    }

    /// Runs `route` once and returns its wall time, failing unless the command
    /// succeeded and (for compiles) wrote a fresh tiny.o.
    fn run(&self, route: Route) -> Result<Duration> {
        let object = self.work.join(OBJECT);
        match fs::remove_file(&object) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err).context("removing tiny.o"),
        }
        let mut cmd = self.command(route);
        cmd.current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running {}", route.label()))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "{} failed ({}):\n{}{}\nsshd log (tail):\n{}",
                route.label(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                tail(&self.build_box.log(), 20)
            );
        }
        if route.compiles() {
            let size = fs::metadata(&object).map(|m| m.len()).unwrap_or(0);
            ensure!(
                size > 0,
                "{} exited 0 but produced no tiny.o; stderr:\n{}",
                route.label(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    }
}

fn main() -> Result<()> {
    let _user_dirs = support::private_user_dirs()?;
    let runs = runs_from_env()?;
    let sshcc = PathBuf::from(env!("CARGO_BIN_EXE_sshcc"));
    ensure!(
        !sshcc.to_string_lossy().contains(char::is_whitespace),
        "the sshcc path {} contains whitespace, which DISTCC_HOSTS cannot carry",
        sshcc.display()
    );

    let login = Login::choose(&sshcc)?;

    // World-readable: the box account must read the allowlist.
    let scratch = tempfile::Builder::new()
        .prefix("sshcc-bench-")
        .tempdir_in("/tmp")
        .context("creating the scratch directory")?;
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755))?;
    let cmdlist = scratch.path().join("DISTCC_CMDLIST");
    fs::write(&cmdlist, format!("{BOX_COMPILER}\n")).context("writing DISTCC_CMDLIST")?;
    fs::set_permissions(&cmdlist, fs::Permissions::from_mode(0o644))?;
    let work = scratch.path().join("work");
    let distcc_dir = scratch.path().join("distcc-dir");
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&distcc_dir)?;
    fs::write(work.join(SOURCE), "int x;\n").context("writing tiny.c")?;

    let (build_box, box_shell) = support::start_box(&cmdlist, &login, &sshcc)?;

    let bench = Bench {
        build_box,
        sshcc,
        work,
        distcc_dir,
    };

    // Untimed warm-up of every route: page cache, and an early, clear failure.
    for route in ROUTES {
        bench
            .run(route)
            .with_context(|| format!("warm-up of {}", route.label()))?;
    }

    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); ROUTES.len()];
    let total = Instant::now();
    for round in 0..runs {
        for step in 0..ROUTES.len() {
            let index = (round + step) % ROUTES.len();
            let route = ROUTES[index];
            let elapsed = bench
                .run(route)
                .with_context(|| format!("round {} of {runs}", round + 1))?;
            samples[index].push(elapsed);
        }
        eprint!("\rround {}/{runs} ({:.0?})", round + 1, total.elapsed());
    }
    eprintln!();

    println!(
        "{}",
        machine_facts(&[
            ("box login", login.describe(&box_shell)),
            ("runs per route", runs.to_string()),
        ])?
    );
    println!("{}", table(&samples));
    Ok(())
}

fn runs_from_env() -> Result<usize> {
    let Some(value) = std::env::var_os(RUNS_VARIABLE) else {
        return Ok(DEFAULT_RUNS);
    };
    let value = value.to_string_lossy();
    let runs: usize = value
        .trim()
        .parse()
        .with_context(|| format!("{RUNS_VARIABLE}={value:?} is not a number"))?;
    ensure!(
        runs >= MIN_RUNS,
        "{RUNS_VARIABLE}={runs}: at least {MIN_RUNS} runs per route are needed for a meaningful p90"
    );
    Ok(runs)
}

fn table(samples: &[Vec<Duration>]) -> String {
    let all: Vec<Stats> = samples.iter().map(|s| stats(s)).collect();
    let at = |route: Route| &all[ROUTES.iter().position(|r| *r == route).unwrap()];
    let reference = at(REFERENCE).median;
    let floor = at(Route::SshTrue).median;
    let mut out = String::from(
        "| # | path | median ms | min ms | p90 ms | median / distccd (lzo) | median − ssh floor, ms |\n\
         |---|------|----------:|-------:|-------:|-----------------------:|-----------------------:|\n",
    );
    for (index, (route, s)) in ROUTES.iter().zip(&all).enumerate() {
        let over_floor = if matches!(route, Route::Distcc { .. }) {
            format!("{:.0}", s.median - floor)
        } else {
            "—".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2}× | {over_floor} |",
            index + 1,
            route.label(),
            s.median,
            s.min,
            s.p90,
            s.median / reference,
        );
    }
    out
}
