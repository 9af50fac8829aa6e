//! The emulated box compiler for the saturation experiment and the wall-time runs: an
//! allowlisted program named `x86_64-linux-gnu-g++` (`emulated_cc.c`, built here with
//! gcc) that sleeps [`SECONDS`] instead of compiling, so 128 slots fit on a 2-core machine, while everything on the client
//! stays real (the wrapper's preprocessing, the daemon's scan, hashing and upload, the
//! post-job dependency check).
//!
//! What the client checks must still be right, so the program writes what the real
//! compile of that translation unit would have: the object of the local reference
//! compile, and — for a remote-preprocessed job, whose command carries the box's own
//! `-MD -MF <jobdir>/sshcc-deps.d` — the dependency list of the real compile (made
//! locally with `g++ -M`), with the source named as the job names it and every absolute
//! path under the job's root (`<jobdir>/root`), as gcc would list them on the box. The
//! daemon then checks that list against what it sent exactly as after a real compile. A
//! job preprocessed on the client arrives as preprocessed text the program cannot name;
//! it gets a tiny valid object (the wrapper only writes it). Each run appends
//! `<start ns> <end ns>` to `compiles.log`, from which the box's real concurrency is
//! computed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::rocksdb::Unit;

/// How long an emulated compile takes.
pub const SECONDS: u32 = 2;

/// The program and its data, in a directory the box account can read.
pub struct Emulator {
    /// The program (allowlisted on the emulated box).
    pub compiler: PathBuf,
    /// Objects, dependency templates and `tiny.o` (`SSHCC_SANDBOX_ALLOW`).
    pub data: PathBuf,
    /// Where `compiles.log` is written (`SSHCC_SANDBOX_WRITE`).
    pub log_dir: PathBuf,
}

impl Emulator {
    /// Builds the program and writes the data for `units` into `dir`: each unit's reference
    /// object from `reference` and a dependency template made from `deps` (its `g++ -M`
    /// output, run in the project directory).
    pub fn create(dir: &Path, units: &[(Unit, Vec<u8>, String)]) -> Result<Self> {
        let bin = dir.join("bin");
        let data = dir.join("data");
        let log_dir = dir.join("log");
        for d in [dir, &bin, &data, &log_dir] {
            fs::create_dir_all(d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        // The box account writes the log.
        fs::set_permissions(&log_dir, fs::Permissions::from_mode(0o777))?;
        for (unit, object, deps) in units {
            fs::write(data.join(format!("{}.o", unit.key)), object)?;
            fs::write(
                data.join(format!("{}.d", unit.key)),
                template(deps, &unit.source),
            )?;
        }
        let tiny = dir.join("tiny.cc");
        fs::write(&tiny, "int sshcc_bench_emulated;\n")?;
        let status = Command::new("g++")
            .arg("-c")
            .arg(&tiny)
            .arg("-o")
            .arg(data.join("tiny.o"))
            .status()
            .context("compiling tiny.o")?;
        ensure!(status.success(), "compiling tiny.o failed");
        for entry in fs::read_dir(&data)? {
            fs::set_permissions(entry?.path(), fs::Permissions::from_mode(0o644))?;
        }
        let compiler = bin.join("x86_64-linux-gnu-g++");
        build_program(dir, &compiler, &data, &log_dir)?;
        fs::set_permissions(&compiler, fs::Permissions::from_mode(0o755))?;
        Ok(Emulator {
            compiler,
            data,
            log_dir,
        })
    }

    /// Every emulated compile so far: (start, end) in Unix nanoseconds.
    pub fn compiles(&self) -> Result<Vec<(u128, u128)>> {
        let text = fs::read_to_string(self.log_dir.join("compiles.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let (a, b) = line.split_once(' ').context("malformed compiles.log")?;
                Ok((a.trim().parse()?, b.trim().parse()?))
            })
            .collect()
    }
}

/// `g++ -M` output as a template: one line, the source as `@SRC@`, every absolute path
/// under `@ROOT@`.
fn template(deps: &str, source: &str) -> String {
    let mut words = deps
        .split_whitespace()
        .filter(|word| *word != "\\")
        .map(|word| {
            if word == source {
                "@SRC@".to_owned()
            } else if word.starts_with('/') {
                format!("@ROOT@{word}")
            } else {
                word.to_owned()
            }
        });
    let target = words.next().unwrap_or_default();
    let rest: Vec<String> = words.collect();
    format!("{target} {}\n", rest.join(" "))
}

/// The emulated compiler's source; its data and log directories are compiled in.
const PROGRAM: &str = include_str!("emulated_cc.c");

/// Builds [`PROGRAM`] into `compiler` for `data` and `log_dir`.
fn build_program(dir: &Path, compiler: &Path, data: &Path, log_dir: &Path) -> Result<()> {
    let source = dir.join("emulated_cc.c");
    fs::write(&source, PROGRAM)?;
    let literal = |path: &Path| format!("\"{}\"", path.display());
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror"])
        .arg(format!("-DEMULATED_SECONDS={SECONDS}"))
        .arg(format!("-DEMULATED_DATA={}", literal(data)))
        .arg(format!("-DEMULATED_LOG={}", literal(log_dir)))
        .arg(&source)
        .arg("-o")
        .arg(compiler)
        .status()
        .context("compiling the emulated compiler")?;
    ensure!(status.success(), "compiling the emulated compiler failed");
    Ok(())
}

/// The box's concurrency over `[from, to]` (Unix nanoseconds): the time-weighted mean
/// number of emulated compiles running, and the peak.
pub fn concurrency(compiles: &[(u128, u128)], from: u128, to: u128) -> (f64, usize) {
    if to <= from {
        return (0.0, 0);
    }
    let busy: u128 = compiles
        .iter()
        .map(|&(start, end)| end.min(to).saturating_sub(start.max(from)))
        .sum();
    let mut events: Vec<(u128, i64)> = compiles
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    events.sort();
    let (mut running, mut peak) = (0i64, 0i64);
    for (_, step) in events {
        running += step;
        peak = peak.max(running);
    }
    (busy as f64 / (to - from) as f64, peak as usize)
}
