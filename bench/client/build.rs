//! Sections 3 and 4: clean builds of the Lua library, with wall time, client and box CPU
//! and every object checked against the local build; and the bytes each route puts on
//! the wire for one such build.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::cgroup::CpuCgroup;
use crate::harness::{Bench, note_daemon, prepare};
use crate::procs::{BoxParts, find_daemon};
use crate::proxy::Traffic;
use crate::route::{BUILD_ROUTES, BYTES_ROUTES, Route, Via};
use crate::support::{children_cpu, children_cpu_since, process_cpu};
use crate::support::{median, ratio_summary};

#[derive(Debug, Clone, Copy)]
pub struct BuildSample {
    wall: Duration,
    /// user+sys of everything make ran (reaped children of this process).
    make_cpu: Duration,
    /// user+sys of the sshcc daemon during the build.
    daemon_cpu: Duration,
    /// Whether a daemon was running when the build started.
    daemon_measured: bool,
    /// user+sys of the box side (its sshd, distccd and all they ran) during the build.
    box_cpu: Option<Duration>,
    /// Of that, the live `sshcc --mux` workers' and sshd session processes' own CPU.
    box_parts: Option<BoxParts>,
    /// Compiler warnings make's output shows (a local build of Lua has none).
    warnings: usize,
    traffic: Traffic,
}

impl BuildSample {
    fn client_cpu(&self) -> Duration {
        self.make_cpu + self.daemon_cpu
    }
}

/// The Lua library, ready to build.
pub struct Project {
    pub dir: PathBuf,
    pub objects: Vec<String>,
}

impl Project {
    pub fn read_objects(&self) -> Result<HashMap<String, Vec<u8>>> {
        self.objects
            .iter()
            .map(|name| {
                fs::read(self.dir.join(name))
                    .map(|bytes| (name.clone(), bytes))
                    .with_context(|| format!("reading {name}"))
            })
            .collect()
    }

    /// Fails unless every object equals the reference build's.
    pub fn check_objects(&self, route: Route, reference: &HashMap<String, Vec<u8>>) -> Result<()> {
        for (name, bytes) in self.read_objects()? {
            ensure!(
                reference.get(&name) == Some(&bytes),
                "{}: {name} differs from the local build's",
                route.label()
            );
        }
        Ok(())
    }
}

impl Bench {
    /// One clean build of the project in `dir` through `route`.
    pub fn build(&self, route: Route, project: &Project) -> Result<BuildSample> {
        for object in &project.objects {
            match fs::remove_file(project.dir.join(object)) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("removing {object}")),
            }
        }
        let compiler = self.compiler(route);
        let mut cmd = Command::new("make");
        cmd.arg(format!("-j{}", route.jobs()))
            .arg(format!("CC={}", compiler.words.join(" ")))
            .current_dir(&project.dir);
        prepare(&mut cmd, &compiler);
        // The first sshcc build may start the daemon; its CPU is then not measured.
        let daemon = match route.via {
            Via::Sshcc => find_daemon(&self.network(route.net).runtime_dir)?,
            _ => None,
        };
        let evidence = self.evidence()?;
        let traffic = self.traffic(route);
        let box_cpu = self.box_cpu()?;
        let box_parts = self.box_cgroup.as_ref().map(BoxParts::now);
        let daemon_cpu = daemon.map(process_cpu).transpose()?;
        let children_cpu = children_cpu();
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running make for {}", route.label()))?;
        let wall = started.elapsed();
        let children_cpu = children_cpu_since(children_cpu);
        // Let the box reap what the build left (distccd's children log and exit after
        // answering) before reading its side.
        std::thread::sleep(Duration::from_millis(100));
        let box_cpu = match (self.box_cpu()?, box_cpu) {
            (Some(after), Some(before)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let box_parts = match (self.box_cgroup.as_ref().map(BoxParts::now), box_parts) {
            (Some(after), Some(before)) => Some(BoxParts {
                worker: after.worker.saturating_sub(before.worker),
                sshd: after.sshd.saturating_sub(before.sshd),
            }),
            _ => None,
        };
        let daemon_cpu = match (daemon, daemon_cpu) {
            (Some(pid), Some(before)) => process_cpu(pid)
                .with_context(|| format!("the sshcc daemon {pid} went away during the build"))?
                .saturating_sub(before),
            _ => Duration::ZERO,
        };
        let traffic = self.traffic(route) - traffic;
        self.check_output(route, &output)?;
        self.check_remote(route, project.objects.len(), evidence, &output)?;
        Ok(BuildSample {
            wall,
            make_cpu: children_cpu,
            daemon_cpu,
            daemon_measured: daemon.is_some(),
            box_cpu,
            box_parts,
            warnings: String::from_utf8_lossy(&output.stderr)
                .matches("warning:")
                .count(),
            traffic,
        })
    }

    fn box_cpu(&self) -> Result<Option<Duration>> {
        self.box_cgroup.as_ref().map(CpuCgroup::usage).transpose()
    }
}

/// Section 3: interleaved clean builds on loopback, every object checked.
pub fn build_section(
    bench: &mut Bench,
    project: &Project,
    reference: &HashMap<String, Vec<u8>>,
    builds: usize,
) -> Result<Vec<Vec<BuildSample>>> {
    for &route in &BUILD_ROUTES {
        eprintln!("warm-up build: {}", route.label());
        bench.build(route, project)?;
        project.check_objects(route, reference)?;
        note_daemon(bench, route)?;
    }
    let mut samples = vec![Vec::with_capacity(builds); BUILD_ROUTES.len()];
    let total = Instant::now();
    for round in 0..builds {
        for step in 0..BUILD_ROUTES.len() {
            let index = (round + step) % BUILD_ROUTES.len();
            let route = BUILD_ROUTES[index];
            let sample = bench
                .build(route, project)
                .with_context(|| format!("build round {} of {builds}", round + 1))?;
            project.check_objects(route, reference)?;
            ensure!(
                route.via != Via::Sshcc || sample.daemon_measured,
                "the sshcc daemon was not running before a timed build"
            );
            samples[index].push(sample);
        }
        eprintln!(
            "builds: round {}/{builds} ({:.0?})",
            round + 1,
            total.elapsed()
        );
    }
    Ok(samples)
}

pub fn build_table(samples: &[Vec<BuildSample>], files: usize) -> String {
    let wall = |i: usize| median(samples[i].iter().map(|s| s.wall.as_secs_f64()).collect());
    let cpu = |i: usize, part: fn(&BuildSample) -> Duration| {
        median(
            samples[i]
                .iter()
                .map(|s| part(s).as_secs_f64() * 1e3 / files as f64)
                .collect(),
        )
    };
    let warnings = |i: usize| {
        let counts: Vec<usize> = samples[i].iter().map(|s| s.warnings).collect();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        match (min, max) {
            (Some(min), Some(max)) if min == max => min.to_string(),
            (Some(min), Some(max)) => format!("{min}–{max}"),
            _ => "—".to_owned(),
        }
    };
    let tcp = BUILD_ROUTES
        .iter()
        .position(|r| r.via == Via::DistccTcp)
        .expect("a TCP route");
    let mut out = String::from(
        "### 3. Clean build of the Lua library, loopback\n\n\
         | path | make -j | median s | min s | max s | wall / distcc TCP | client CPU ms/job | of which sshcc daemon | client CPU / distcc TCP | box CPU ms/job | warnings shown |\n\
         |------|--------:|---------:|------:|------:|------------------:|------------------:|----------------------:|------------------------:|---------------:|---------------:|\n",
    );
    for (i, route) in BUILD_ROUTES.iter().enumerate() {
        let walls: Vec<f64> = samples[i].iter().map(|s| s.wall.as_secs_f64()).collect();
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(0.0, f64::max);
        let client = cpu(i, BuildSample::client_cpu);
        let daemon = if route.via == Via::Sshcc {
            format!("{:.1}", cpu(i, |s| s.daemon_cpu))
        } else {
            "—".to_owned()
        };
        let box_cpu = if route.via == Via::Local {
            "—".to_owned()
        } else if samples[i].iter().all(|s| s.box_cpu.is_some()) {
            format!("{:.1}", cpu(i, |s| s.box_cpu.unwrap_or_default()))
        } else {
            "n/a".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.1} | {daemon} | {:.2}× | {box_cpu} | {} |",
            route.label(),
            route.jobs(),
            wall(i),
            min,
            max,
            wall(i) / wall(tcp),
            client,
            client / cpu(tcp, BuildSample::client_cpu),
            warnings(i),
        );
    }
    if let Some(sshcc) = BUILD_ROUTES.iter().position(|r| r.via == Via::Sshcc) {
        let pairs = samples[sshcc].iter().zip(&samples[tcp]);
        let wall: Vec<f64> = pairs
            .clone()
            .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
            .collect();
        let cpu: Vec<f64> = pairs
            .map(|(a, b)| a.client_cpu().as_secs_f64() / b.client_cpu().as_secs_f64())
            .collect();
        let _ = write!(
            out,
            "\nPairwise, round by round, sshcc / distcc TCP: wall time {}; client CPU {}.\n",
            ratio_summary(&wall),
            ratio_summary(&cpu)
        );
        if samples[sshcc].iter().all(|s| s.box_parts.is_some()) {
            let part = |f: fn(&BoxParts) -> Duration| {
                median(
                    samples[sshcc]
                        .iter()
                        .filter_map(|s| s.box_parts.as_ref())
                        .map(|p| f(p).as_secs_f64() * 1e3 / files as f64)
                        .collect(),
                )
            };
            let _ = write!(
                out,
                "\nOf sshcc's box CPU, the `sshcc --mux` worker itself (without the compilers it \
                 runs) used {:.1} ms/job and the sshd processes of its connection {:.1} ms/job.\n",
                part(|p| p.worker),
                part(|p| p.sshd)
            );
        }
    }
    out
}

/// Section 4: one clean build per route through the proxies, counting bytes.
pub fn bytes_section(
    bench: &mut Bench,
    project: &Project,
    reference: &HashMap<String, Vec<u8>>,
) -> Result<String> {
    let files = project.objects.len() as u64;
    let mut out = String::from(
        "### 4. Bytes on the wire per job, Lua library build through the proxy (20 ms RTT)\n\n\
         | path | bytes up/job | bytes down/job | total KB/job | TCP connections | wall s (one build, -j4) |\n\
         |------|-------------:|---------------:|-------------:|----------------:|------------------------:|\n",
    );
    for &route in &BYTES_ROUTES {
        eprintln!("bytes build: {}", route.label());
        if route.via == Via::Sshcc {
            // Warm: the connection is open before the build, as in section 2.
            bench.tiny(route)?;
            note_daemon(bench, route)?;
        }
        let sample = bench.build(route, project)?;
        project.check_objects(route, reference)?;
        let t = sample.traffic;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {:.2} |",
            route.label(),
            t.up / files,
            t.down / files,
            (t.up + t.down) as f64 / files as f64 / 1e3,
            t.connections,
            sample.wall.as_secs_f64(),
        );
    }
    Ok(out)
}
