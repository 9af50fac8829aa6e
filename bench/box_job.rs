//! What the box's safeguards cost per job: one tiny compile through `sshcc --inetd` on
//! a pipe (no SSH, so nothing else blurs it), with the Landlock sandbox off and on; both
//! take a box-wide slot. Local `gcc -c` is the floor. Run with
//! `cargo bench --bench box_job`; `SSHCC_BENCH_RUNS` (default 41) sets the rounds,
//! interleaved round-robin. Markdown goes to stdout.

#[path = "support.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::{BOX_COMPILER, machine_facts, stats};

const DEFAULT_RUNS: usize = 41;
const SOURCE: &[u8] = b"int x;\n";

#[derive(Debug, Clone, Copy)]
enum Route {
    LocalGcc,
    Inetd { sandbox: &'static str },
}

impl Route {
    fn label(self) -> String {
        match self {
            Route::LocalGcc => "local `gcc -c tiny.c`".to_string(),
            Route::Inetd { sandbox } => format!("`sshcc --inetd --sandbox {sandbox}` on a pipe"),
        }
    }
}

fn main() -> Result<()> {
    let _user_dirs = support::private_user_dirs()?;
    let runs = std::env::var("SSHCC_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let sshcc = Path::new(env!("CARGO_BIN_EXE_sshcc"));
    let scratch = tempfile::tempdir()?;
    let cmdlist = scratch.path().join("cmdlist");
    std::fs::write(&cmdlist, format!("{BOX_COMPILER}\n/usr/bin/gcc\n"))?;
    std::fs::write(scratch.path().join("tiny.c"), SOURCE)?;
    let request = request();
    let routes = [
        Route::LocalGcc,
        Route::Inetd { sandbox: "off" },
        Route::Inetd {
            sandbox: "required",
        },
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); routes.len()];
    for round in 0..runs + 1 {
        eprint!("\rround {round}/{runs}");
        for offset in 0..routes.len() {
            let index = (round + offset) % routes.len();
            let elapsed = match routes[index] {
                Route::LocalGcc => time_local(scratch.path())?,
                Route::Inetd { sandbox } => {
                    time_inetd(sshcc, &cmdlist, scratch.path(), sandbox, &request)?
                }
            };
            // The first round warms caches and is not kept.
            if round > 0 {
                samples[index].push(elapsed);
            }
        }
    }
    eprintln!();
    print!(
        "{}",
        machine_facts(&[
            ("runs per route", runs.to_string()),
            (
                "sandbox",
                capture_box_info(sshcc, &cmdlist).unwrap_or_else(|err| format!("{err:#}"))
            ),
        ])?
    );
    println!("\n| route | median ms | min ms | p90 ms |\n|---|---:|---:|---:|");
    for (route, samples) in routes.iter().zip(&samples) {
        let s = stats(samples);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            route.label(),
            s.median,
            s.min,
            s.p90
        );
    }
    Ok(())
}

/// `gcc -c x.c -o x.o` with `int x;` as distcc's client sends it (protocol 1).
fn request() -> Vec<u8> {
    let argv: [&[u8]; 5] = [b"gcc", b"-c", b"x.c", b"-o", b"x.o"];
    let mut out = format!("DIST00000001ARGC{:08x}", argv.len()).into_bytes();
    for word in argv {
        out.extend(format!("ARGV{:08x}", word.len()).bytes());
        out.extend_from_slice(word);
    }
    out.extend(format!("DOTI{:08x}", SOURCE.len()).bytes());
    out.extend_from_slice(SOURCE);
    out
}

fn time_local(dir: &Path) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("gcc")
        .current_dir(dir)
        .args(["-c", "tiny.c", "-o", "tiny.o"])
        .status()?;
    ensure!(status.success(), "local gcc failed");
    Ok(started.elapsed())
}

fn time_inetd(
    sshcc: &Path,
    cmdlist: &Path,
    dir: &Path,
    sandbox: &str,
    request: &[u8],
) -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(sshcc)
        .args(["--inetd", "--sandbox", sandbox])
        .env("DISTCC_CMDLIST", cmdlist)
        .env("SSHCC_LOCK_DIR", dir.join("slots"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning sshcc --inetd")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(request)?;
    // Like distcc, keep our side open until the answer is in.
    let output = child.wait_with_output()?;
    drop(stdin);
    let elapsed = started.elapsed();
    ensure!(
        output.stdout.starts_with(b"DONE00000001STAT00000000"),
        "the job failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

fn capture_box_info(sshcc: &Path, cmdlist: &Path) -> Result<String> {
    let output = Command::new(sshcc)
        .arg("--box-info")
        .env("DISTCC_CMDLIST", cmdlist)
        .output()?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(info["limits"]["sandbox"]
        .as_str()
        .unwrap_or("unknown")
        .to_string())
}
