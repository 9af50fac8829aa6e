//! The markdown tables.

use std::fmt::Write as _;

use crate::run::{Mode, Sample};
use crate::sections::{Pair, Saturation};

fn per_job_ms(d: std::time::Duration, jobs: usize) -> f64 {
    d.as_secs_f64() * 1e3 / jobs as f64
}

fn kb(bytes: u64, jobs: usize) -> f64 {
    bytes as f64 / 1e3 / jobs as f64
}

fn box_ms(s: &Sample) -> String {
    s.box_cpu.map_or("n/a".to_owned(), |d| {
        format!("{:.0}", per_job_ms(d, s.jobs))
    })
}

/// The builds of one [`Pair`] as a table.
pub fn pair_table(title: &str, pair: &Pair) -> String {
    let mut out = format!(
        "### {title}\n\n\
         | build | preprocessing | wall s | client CPU ms/job | of which wrapper + its cpp + make | of which daemon | KB up/job (link) | KB down/job | daemon's count: wire KB sent/job | blobs sent/job (KB/job) | box CPU ms/job | preprocessed on the box | objects = local compile |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    let rows = [
        ("cold", &pair.cold, &pair.identical_cold),
        (
            "second (header changed)",
            &pair.second,
            &pair.identical_second,
        ),
    ];
    for (build, samples, identical) in rows {
        for (i, mode) in Mode::BOTH.iter().enumerate() {
            let s = &samples[i];
            let _ = writeln!(
                out,
                "| {build} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({:.1}) | {} | {} of {} | {} |",
                mode.label(),
                s.wall.as_secs_f64(),
                per_job_ms(s.client_cpu(), s.jobs),
                per_job_ms(s.make_cpu, s.jobs),
                per_job_ms(s.daemon_cpu, s.jobs),
                kb(s.traffic.up, s.jobs),
                kb(s.traffic.down, s.jobs),
                kb(s.wire_sent, s.jobs),
                s.blobs_sent as f64 / s.jobs as f64,
                kb(s.blob_bytes_sent, s.jobs),
                box_ms(s),
                s.preprocessed_there,
                s.jobs,
                identical[i].map_or("not checked (emulated)".to_owned(), |n| format!(
                    "{n} of {}",
                    s.jobs
                )),
            );
        }
    }
    out
}

/// One line of the targets table.
pub struct Versus {
    pub measure: String,
    pub local: f64,
    pub remote: f64,
    pub unit: &'static str,
    /// remote / local must be at most this.
    pub target: f64,
}

impl Versus {
    pub fn new(measure: &str, local: f64, remote: f64, unit: &'static str, target: f64) -> Self {
        Versus {
            measure: measure.to_owned(),
            local,
            remote,
            unit,
            target,
        }
    }
}

pub fn targets_table(lines: &[Versus], saturation: Option<&[Saturation; 2]>) -> String {
    let mut out = String::from(
        "### Against the issue's targets\n\n\
         | measure | local preprocessing | remote preprocessing | remote / local | target | met |\n\
         |---|--:|--:|--:|--:|:-:|\n",
    );
    for line in lines {
        let ratio = line.remote / line.local;
        let _ = writeln!(
            out,
            "| {} | {:.1} {unit} | {:.1} {unit} | {ratio:.3}× | ≤ {}× | {} |",
            line.measure,
            line.local,
            line.remote,
            line.target,
            if ratio <= line.target { "yes" } else { "no" },
            unit = line.unit,
        );
    }
    if let Some([local, remote]) = saturation {
        let _ = writeln!(
            out,
            "| 128 emulated slots kept busy (steady state, box side) | {:.1} | {:.1} | {:.2}× | ≥ 100 of 128 | {} |",
            local.busy_steady,
            remote.busy_steady,
            remote.busy_steady / local.busy_steady,
            if remote.busy_steady >= 100.0 {
                "yes"
            } else {
                "no"
            },
        );
    }
    out
}

pub fn saturation_table(runs: &[Saturation; 2]) -> String {
    let mut out = String::from(
        "### Saturation: 128 emulated slots (2 s compiles that use no CPU), `make -j128`\n\n\
         | preprocessing | jobs | wall s | slots busy on the box, steady state | over the whole build | peak | jobs started/s (steady) | steady window s | daemon's `slots_busy` (steady mean) | daemon's jobs in phase `compile` | client CPU ms/job | of which daemon | box CPU ms/job | emulated compile s (median) | slots 2 cores could feed at this client CPU |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (mode, run) in Mode::BOTH.iter().zip(runs) {
        let s = &run.sample;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.0} |",
            mode.label(),
            s.jobs,
            s.wall.as_secs_f64(),
            run.busy_steady,
            run.busy_whole,
            run.peak,
            run.rate,
            run.window_s,
            run.status_busy,
            run.status_compiling,
            per_job_ms(s.client_cpu(), s.jobs),
            per_job_ms(s.daemon_cpu, s.jobs),
            box_ms(s),
            run.compile_s,
            2.0 * run.compile_s / s.client_cpu().as_secs_f64() * s.jobs as f64,
        );
    }
    out
}
