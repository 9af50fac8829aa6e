//! Sections 1, 2 and 6: one tiny compile at a time, the routes interleaved round-robin,
//! and their tables (wall time, bytes per job, and behind the bastion each hop's
//! connections).

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::bastion;
use crate::harness::{Bench, SSHCC_REMOTE_MARK, note_daemon, prepare};
use crate::proxy::Traffic;
use crate::route::{Net, Route, TINY_BASTION, Via};
use crate::support::{median, ratio_summary, stats};

/// The tiny compile, in the bench's work directory.
pub const TINY_SOURCE: &str = "tiny.c";
const TINY_OBJECT: &str = "tiny.o";

/// One tiny compile.
#[derive(Debug, Clone, Copy)]
pub struct TinySample {
    pub wall: Duration,
    /// Through the proxy the client connects to.
    pub traffic: Traffic,
    /// Behind the bastion, through the proxy between the bastion and the box.
    pub second_hop: Traffic,
    /// What the sshcc wrapper logged as the job's time in the daemon and on the box.
    pub reported_ms: Option<f64>,
}

/// The `(N ms)` of the sshcc wrapper's remote-job line.
fn reported_ms(stderr: &str) -> Option<f64> {
    let line = stderr
        .lines()
        .find(|line| line.contains(SSHCC_REMOTE_MARK))?;
    let (_, rest) = line.rsplit_once('(')?;
    rest.strip_suffix(" ms)")?.trim().parse().ok()
}

impl Bench {
    /// Compiles tiny.c once through `route`.
    pub fn tiny(&self, route: Route) -> Result<TinySample> {
        let object = self.work.join(TINY_OBJECT);
        match fs::remove_file(&object) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err).context("removing tiny.o"),
        }
        let compiler = self.compiler(route);
        let mut cmd = Command::new(&compiler.words[0]);
        cmd.args(&compiler.words[1..])
            .args(["-c", TINY_SOURCE, "-o", TINY_OBJECT])
            .current_dir(&self.work);
        prepare(&mut cmd, &compiler);
        let evidence = self.evidence()?;
        let traffic = self.traffic(route);
        let second_hop = self.second_hop_traffic(route);
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running {}", route.label()))?;
        let elapsed = started.elapsed();
        let traffic = self.traffic(route) - traffic;
        let second_hop = self.second_hop_traffic(route) - second_hop;
        self.check_output(route, &output)?;
        let size = fs::metadata(&object).map(|m| m.len()).unwrap_or(0);
        ensure!(
            size > 0,
            "{} exited 0 but produced no tiny.o; stderr:\n{}",
            route.label(),
            String::from_utf8_lossy(&output.stderr)
        );
        self.check_remote(route, 1, evidence, &output)?;
        Ok(TinySample {
            wall: elapsed,
            traffic,
            second_hop,
            reported_ms: reported_ms(&String::from_utf8_lossy(&output.stderr)),
        })
    }
}

/// Section 1 and 2: samples (wall, traffic) per route, in `routes` order.
pub fn tiny_section(
    bench: &mut Bench,
    routes: &[Route],
    runs: usize,
) -> Result<Vec<Vec<TinySample>>> {
    for &route in routes {
        eprintln!("warm-up: {}", route.label());
        bench
            .tiny(route)
            .with_context(|| format!("warm-up of {}", route.label()))?;
        note_daemon(bench, route)?;
    }
    let mut samples = vec![Vec::with_capacity(runs); routes.len()];
    let total = Instant::now();
    for round in 0..runs {
        for step in 0..routes.len() {
            let index = (round + step) % routes.len();
            let sample = bench
                .tiny(routes[index])
                .with_context(|| format!("round {} of {runs}", round + 1))?;
            samples[index].push(sample);
        }
        eprint!(
            "\rtiny compiles: round {}/{runs} ({:.0?})",
            round + 1,
            total.elapsed()
        );
    }
    eprintln!();
    Ok(samples)
}

pub fn tiny_table(
    title: &str,
    shown: &[Route],
    routes: &[Route],
    samples: &[Vec<TinySample>],
    traffic: bool,
) -> String {
    let index = |route: Route| routes.iter().position(|r| *r == route);
    let walls = |i: usize| samples[i].iter().map(|s| s.wall).collect::<Vec<_>>();
    // The distcc TCP route shown is the reference, and sshcc's pairwise partner.
    let tcp = shown
        .iter()
        .find(|r| r.via == Via::DistccTcp)
        .and_then(|r| index(*r));
    let reference = tcp.map(|i| stats(&walls(i)).median);
    let mut out = format!("### {title}\n\n");
    out.push_str("| path | median ms | min ms | p90 ms | median / distcc TCP |");
    if traffic {
        out.push_str(" bytes up/job | bytes down/job |");
    }
    out.push_str("\n|------|----------:|-------:|-------:|--------------------:|");
    if traffic {
        out.push_str("-------------:|---------------:|");
    }
    out.push('\n');
    let mut notes = String::new();
    for &route in shown {
        let Some(i) = index(route) else { continue };
        let s = stats(&walls(i));
        let ratio = reference.map_or("—".to_owned(), |r| format!("{:.2}×", s.median / r));
        let _ = write!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {ratio} |",
            route.label(),
            s.median,
            s.min,
            s.p90
        );
        if traffic {
            if route.via == Via::Local {
                out.push_str(" — | — |");
            } else {
                let mut sum = Traffic::default();
                for sample in &samples[i] {
                    sum += sample.traffic;
                }
                let n = samples[i].len() as u64;
                let _ = write!(out, " {} | {} |", sum.up / n, sum.down / n);
            }
        }
        out.push('\n');
        if let (Via::Sshcc, Some(tcp)) = (route.via, tcp) {
            // Sample k of every route comes from round k of the interleaved loop.
            let ratios: Vec<f64> = samples[i]
                .iter()
                .zip(&samples[tcp])
                .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
                .collect();
            let _ = writeln!(
                notes,
                "\nPairwise, round by round: sshcc / distcc TCP = {}.",
                ratio_summary(&ratios)
            );
        }
        let reported: Vec<f64> = samples[i].iter().filter_map(|s| s.reported_ms).collect();
        if route.via == Via::Sshcc && !reported.is_empty() {
            let _ = writeln!(
                notes,
                "\nsshcc's wrapper log (`SSHCC_LOG=info`) puts the median job's time in the daemon and \
                 on the box at {:.0} ms (its own resolution: whole ms); the remaining {:.0} ms of the median \
                 are the wrapper's start-up, local preprocessing and writing tiny.o.",
                median(reported.clone()),
                s.median - median(reported)
            );
        }
    }
    out.push_str(&notes);
    out
}

/// Section 6: tiny compiles to the box behind the bastion, interleaved with local gcc and
/// distcc TCP through one delayed hop (the reference).
pub fn bastion_section(bench: &mut Bench, runs: usize) -> Result<String> {
    let config = bench.network(Net::Bastion).master_config.clone();
    bench.start_master(&config, bastion::TARGET_HOST)?;
    let samples = tiny_section(bench, &TINY_BASTION, runs)?;
    // sshcc's one connection really took the jump: it came in through the proxy in
    // front of the bastion and the bastion's went out through the one in front of the
    // box (the client could reach that one directly on loopback).
    let sshcc = Route::new(Via::Sshcc, Net::Bastion);
    let index = TINY_BASTION.iter().position(|r| *r == sshcc);
    let timed_connections: u64 = index.map_or(0, |i| {
        samples[i]
            .iter()
            .map(|s| s.traffic.connections + s.second_hop.connections)
            .sum()
    });
    ensure!(
        timed_connections == 0,
        "sshcc opened {timed_connections} connections during timed jobs; its daemon was not warm"
    );
    for (hop, proxy) in [
        ("client → bastion", bench.proxy(sshcc)),
        ("bastion → box", bench.second_hop_proxy(sshcc)),
    ] {
        let connections = proxy.map_or(0, |p| p.traffic().connections);
        ensure!(
            connections >= 1,
            "sshcc's connection never went through the {hop} proxy"
        );
    }
    let mut out = tiny_table(
        "6. Tiny compile, one job at a time, behind one bastion hop (20 ms RTT on each hop)",
        &TINY_BASTION,
        &TINY_BASTION,
        &samples,
        true,
    );
    out.push_str(
        "\nPer job and hop (bytes above are the client's hop; TCP connections counted by each \
         hop's proxy):\n\n\
         | path | TCP connections/job, client → bastion | TCP connections/job, bastion → box | \
         bytes up/job, bastion → box | bytes down/job, bastion → box |\n\
         |------|-------------------------------------:|-----------------------------------:|\
         ----------------------------:|------------------------------:|\n",
    );
    for (route, samples) in TINY_BASTION.iter().zip(&samples) {
        if route.via == Via::Local {
            continue;
        }
        let n = samples.len() as f64;
        let per_job = |f: fn(&TinySample) -> u64| samples.iter().map(f).sum::<u64>() as f64 / n;
        let (first, second) = (
            per_job(|s| s.traffic.connections),
            per_job(|s| s.second_hop.connections),
        );
        let second_hop = if route.net == Net::Bastion {
            format!(
                "{second:.2} | {:.0} | {:.0}",
                per_job(|s| s.second_hop.up),
                per_job(|s| s.second_hop.down)
            )
        } else {
            "— | — | —".to_owned()
        };
        let _ = writeln!(out, "| {} | {first:.2} | {second_hop} |", route.label());
    }
    Ok(out)
}
