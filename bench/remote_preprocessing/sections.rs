//! The three experiments: real builds at 20 Mbit/s (cold, then with a widely included
//! header changed) with every object checked; the same with emulated 2-second compiles
//! (what the wall time is when the box has cores to spare); and the saturation run,
//! 128 emulated slots fed with `make -j128`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use crate::emulated::{Emulator, SECONDS, concurrency};
use crate::reference::Reference;
use crate::rocksdb::{Unit, write_makefile};
use crate::run::{Build, Client, Mode, Sample, Target};

/// A cold and a second build per mode.
pub struct Pair {
    pub cold: [Sample; 2],
    pub second: [Sample; 2],
    /// Objects equal to the local compile's, per build (`None`: not checked).
    pub identical_cold: [Option<usize>; 2],
    pub identical_second: [Option<usize>; 2],
}

pub struct Project<'a> {
    pub dir: &'a Path,
    pub units: &'a [Unit],
    pub reference: &'a Reference,
    /// The header the second builds change, and how many of the units include it.
    pub header: &'a str,
}

impl Project<'_> {
    /// Appends a comment to the header: its mtime and content change, its code does not.
    pub fn edit_header(&self, edit: usize) -> Result<()> {
        let path = self.dir.join(self.header);
        let mut text = fs::read_to_string(&path)?;
        text.push_str(&format!("\n// sshcc bench: a harmless edit ({edit})\n"));
        fs::write(&path, text)?;
        Ok(())
    }
}

/// Cold builds of both modes (fresh daemons; the box's store empty for the remote one,
/// as the box is fresh and local preprocessing stores nothing), the header edited, then
/// second builds of both with the same daemons.
#[allow(clippy::too_many_arguments)]
pub fn cold_and_second(
    client: &Client,
    target: &Target,
    project: &Project,
    makefile: &str,
    make_jobs: usize,
    runtime: &Path,
    edit: usize,
    check: bool,
) -> Result<Pair> {
    let objects: Vec<String> = project.units.iter().map(|u| u.object.clone()).collect();
    let dirs: Vec<PathBuf> = Mode::BOTH
        .iter()
        .map(|m| runtime.join(format!("{m:?}").to_lowercase()))
        .collect();
    let run = |mode: Mode, what: &str| -> Result<(Sample, Option<usize>)> {
        let index = Mode::BOTH.iter().position(|m| *m == mode).expect("a mode");
        eprintln!(
            "{what} build, {} ({} jobs, -j{make_jobs})",
            mode.label(),
            objects.len()
        );
        let sample = client.build(
            target,
            &Build {
                dir: project.dir,
                makefile,
                objects: &objects,
                make_jobs,
                runtime_dir: &dirs[index],
                mode,
                sample_status: false,
            },
        )?;
        let identical = if check {
            let same = project.reference.identical(project.dir, project.units)?;
            ensure!(
                same == objects.len(),
                "{what} build, {mode:?}: only {same} of {} objects equal the local compile's",
                objects.len()
            );
            Some(same)
        } else {
            None
        };
        eprintln!(
            "  {:.1} s, client CPU {:.0} ms/job",
            sample.wall.as_secs_f64(),
            sample.client_cpu().as_secs_f64() * 1e3 / sample.jobs as f64
        );
        Ok((sample, identical))
    };
    let (local_cold, lc) = run(Mode::Local, "cold")?;
    let (remote_cold, rc) = run(Mode::Remote, "cold")?;
    project.edit_header(edit)?;
    let (local_second, ls) = run(Mode::Local, "second")?;
    let (remote_second, rs) = run(Mode::Remote, "second")?;
    for dir in &dirs {
        client.stop_daemon(dir);
    }
    Ok(Pair {
        cold: [local_cold, remote_cold],
        second: [local_second, remote_second],
        identical_cold: [lc, rc],
        identical_second: [ls, rs],
    })
}

/// One saturation build's result.
pub struct Saturation {
    pub sample: Sample,
    /// Time-weighted mean of emulated compiles running on the box, in the steady
    /// window and over the whole build, the peak, and the window's length in seconds.
    pub busy_steady: f64,
    pub busy_whole: f64,
    pub peak: usize,
    pub window_s: f64,
    /// Jobs started per second in the steady window.
    pub rate: f64,
    /// Means of the daemon's `slots_busy` and of its jobs in the compile phase, in the
    /// steady window.
    pub status_busy: f64,
    pub status_compiling: f64,
    /// Median duration of the emulated compiles, seconds.
    pub compile_s: f64,
}

/// Copies of the units (a comment line appended, so each copy is a new source for the
/// box's store but compiles to the same object) until there are `jobs`, beside their
/// originals so that quote includes resolve the same; and a makefile for them.
pub fn saturation_units(project: &Project, jobs: usize) -> Result<Vec<Unit>> {
    let mut units = Vec::with_capacity(jobs);
    for copy in 0.. {
        for unit in project.units {
            if units.len() == jobs {
                write_makefile(project.dir, "Makefile.saturation", &units)?;
                return Ok(units);
            }
            let source = unit.source.replace(".cc", &format!("__c{copy}.cc"));
            let mut text = fs::read_to_string(project.dir.join(&unit.source))?;
            text.push_str(&format!("\n// sshcc bench: copy {copy}\n"));
            fs::write(project.dir.join(&source), text)?;
            units.push(Unit::new(&source));
        }
    }
    unreachable!()
}

/// `make -j128` over `units` in `mode` with a fresh daemon, the box's compiles counted
/// from the emulator's log and the daemon's status sampled every 100 ms.
pub fn saturate(
    client: &Client,
    target: &Target,
    emulator: &Emulator,
    project: &Project,
    units: &[Unit],
    runtime: &Path,
    mode: Mode,
) -> Result<Saturation> {
    let objects: Vec<String> = units.iter().map(|u| u.object.clone()).collect();
    let dir = runtime.join(format!("{mode:?}").to_lowercase());
    eprintln!(
        "saturation, {} ({} jobs, -j{})",
        mode.label(),
        units.len(),
        target.slots
    );
    let sample = client.build(
        target,
        &Build {
            dir: project.dir,
            makefile: "Makefile.saturation",
            objects: &objects,
            make_jobs: target.slots,
            runtime_dir: &dir,
            mode,
            sample_status: true,
        },
    )?;
    client.stop_daemon(&dir);
    let compiles: Vec<(u128, u128)> = emulator
        .compiles()?
        .into_iter()
        .filter(|(start, _)| (sample.started_ns..=sample.ended_ns).contains(start))
        .collect();
    ensure!(
        compiles.len() == units.len(),
        "{} emulated compiles logged for {} jobs",
        compiles.len(),
        units.len()
    );
    let first = compiles.iter().map(|c| c.0).min().unwrap_or_default();
    let last_start = compiles.iter().map(|c| c.0).max().unwrap_or_default();
    let last_end = compiles.iter().map(|c| c.1).max().unwrap_or_default();
    // Steady: after the first compiles could have ended, until the last one started.
    let mut from = first + u128::from(SECONDS) * 1_000_000_000;
    let mut to = last_start;
    if to <= from {
        (from, to) = (first, last_end);
    }
    let (busy_steady, _) = concurrency(&compiles, from, to);
    let (busy_whole, peak) = concurrency(&compiles, first, last_end);
    let window_s = (to - from) as f64 / 1e9;
    let started = compiles
        .iter()
        .filter(|c| (from..=to).contains(&c.0))
        .count();
    let in_window: Vec<_> = sample
        .status_samples
        .iter()
        .filter(|s| (from..=to).contains(&s.at_ns))
        .collect();
    let mean = |f: &dyn Fn(&crate::run::StatusSample) -> u32| {
        if in_window.is_empty() {
            0.0
        } else {
            in_window.iter().map(|s| f(s) as f64).sum::<f64>() / in_window.len() as f64
        }
    };
    let mut durations: Vec<f64> = compiles.iter().map(|(a, b)| (b - a) as f64 / 1e9).collect();
    durations.sort_by(f64::total_cmp);
    Ok(Saturation {
        busy_steady,
        busy_whole,
        peak,
        window_s,
        rate: started as f64 / window_s.max(1e-9),
        status_busy: mean(&|s| s.slots_busy),
        status_compiling: mean(&|s| s.compiling),
        compile_s: durations[durations.len() / 2],
        sample,
    })
}
