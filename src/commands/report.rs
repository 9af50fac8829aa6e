//! `sshcc status` and `sshcc stats`: the daemon's [`Status`] and the build counts
//! ([`Stats`]) as JSON or as a compact table.

use std::ffi::OsString;
use std::fmt::Write as _;

use clap::Parser;

use crate::exit_code::ExitCode;
use crate::status::{HostKind, Stats, Status, bytes, duration};
use crate::system::now_unix;

/// `sshcc status`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc status",
    bin_name = "sshcc status",
    version,
    about = "Show what the sshcc daemon is doing: every host (slots, jobs done and failed, \
             backoff, round-trip time, bytes, compression) and every job in flight."
)]
struct StatusOptions {
    /// Print the status as JSON (schema in docs/monitoring.md).
    #[arg(long)]
    json: bool,
}

/// `sshcc status [--json]`; `args` starts with `status`.
pub fn status_command(args: &[OsString]) -> std::process::ExitCode {
    let options: StatusOptions = match crate::commands::parse_options(args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let status = match crate::daemon::client::fetch_status() {
        Ok(status) => status,
        Err(err) => {
            eprintln!("sshcc: {err:#}");
            return ExitCode::Failure.into();
        }
    };
    if options.json {
        match serde_json::to_string_pretty(&status) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("sshcc: cannot encode the status: {err}");
                return ExitCode::Failure.into();
            }
        }
    } else {
        print!("{}", render_status(&status));
    }
    std::process::ExitCode::SUCCESS
}

/// `(store hits 97%, 1.2MB sent)`: how often the box's content store already held
/// what a job needed, and what had to be sent; empty before the first lookup.
fn store_summary(host: &crate::status::HostStatus) -> String {
    match host.store_hit_rate() {
        Some(rate) => format!(
            " (store hits {rate}%, {} sent)",
            bytes(host.blob_bytes_sent)
        ),
        None => String::new(),
    }
}

/// The status as a compact table.
pub fn render_status(status: &Status) -> String {
    let mut out = String::new();
    let Some(pid) = status.daemon_pid else {
        out.push_str("sshcc: no daemon running\n");
        return out;
    };
    let _ = writeln!(
        out,
        "sshcc {} daemon (pid {pid}), up {}",
        status.sshcc_version,
        duration(status.uptime_ms)
    );
    let width = column_width(status.hosts.iter().map(|host| host.host.as_str()), 16);
    let _ = writeln!(
        out,
        "{:<width$} {:>7} {:>6} {:>5} {:>8} {:>9} {:>9} {:>6}  STATE",
        "HOST", "SLOTS", "DONE", "FAIL", "RTT", "SENT", "RECEIVED", "RATIO"
    );
    for host in &status.hosts {
        let state = if host.kind == HostKind::Local {
            "local".to_string()
        } else if let Some(left) = host.backoff_remaining_ms {
            format!("backoff {}", duration(left))
        } else if host.connected {
            "connected".to_string()
        } else {
            "idle".to_string()
        };
        let state = match host.preprocessing.as_deref() {
            Some("remote") => format!("{state}, preprocesses{}", store_summary(host)),
            Some(_) if host.connected => format!("{state}, preprocessed here"),
            _ => state,
        };
        let state = match (&host.last_error, host.kind) {
            (Some(error), HostKind::Ssh | HostKind::Tcp) => format!("{state}; last error: {error}"),
            _ => state,
        };
        let _ = writeln!(
            out,
            "{:<width$} {:>7} {:>6} {:>5} {:>8} {:>9} {:>9} {:>6}  {state}",
            host.host,
            format!("{}/{}", host.slots_busy, host.slots_total),
            host.jobs_done,
            host.jobs_failed,
            host.rtt_ms
                .map_or("-".to_string(), |rtt| format!("{rtt:.1}ms")),
            bytes(host.bytes_sent),
            bytes(host.bytes_received),
            host.compression_ratio
                .map_or("-".to_string(), |ratio| format!("{ratio:.1}x")),
        );
    }
    if status.jobs.is_empty() {
        out.push_str("no jobs in flight\n");
    } else {
        let files = column_width(status.jobs.iter().map(|job| job.file.as_str()), 16);
        let hosts = column_width(
            status
                .jobs
                .iter()
                .map(|job| job.host.as_deref().unwrap_or("-")),
            8,
        );
        let _ = writeln!(
            out,
            "{:>7}  {:<files$} {:<hosts$} {:<10} {:>8} {:>8}",
            "PID", "FILE", "HOST", "PHASE", "IN PHASE", "TOTAL"
        );
        for job in &status.jobs {
            let phase = serde_json::to_value(job.phase)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:>7}  {:<files$} {:<hosts$} {:<10} {:>8} {:>8}",
                job.pid,
                job.file,
                job.host.as_deref().unwrap_or("-"),
                phase,
                duration(job.phase_elapsed_ms),
                duration(job.elapsed_ms)
            );
        }
    }
    out
}

/// `sshcc stats`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc stats",
    bin_name = "sshcc stats",
    version,
    about = "Show what sshcc did since the counts were last reset: jobs per host, local and \
             fallback jobs, errors, bytes and the compile time taken off this machine."
)]
struct StatsOptions {
    /// Print the counts as JSON (schema in docs/monitoring.md).
    #[arg(long)]
    json: bool,
    /// Start counting again from zero (prints the counts up to now first).
    #[arg(long)]
    reset: bool,
}

/// `sshcc stats [--json] [--reset]`; `args` starts with `stats`.
pub fn stats_command(args: &[OsString]) -> std::process::ExitCode {
    let options: StatsOptions = match crate::commands::parse_options(args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let stats = match crate::daemon::client::fetch_stats(options.reset) {
        Ok(stats) => stats,
        Err(err) => {
            eprintln!("sshcc: {err:#}");
            return ExitCode::Failure.into();
        }
    };
    if options.json {
        match serde_json::to_string_pretty(&stats) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("sshcc: cannot encode the counts: {err}");
                return ExitCode::Failure.into();
            }
        }
    } else {
        print!("{}", render_stats(&stats, now_unix()));
        if options.reset {
            println!("(counts reset)");
        }
    }
    std::process::ExitCode::SUCCESS
}

/// The counts as a short report; `now` is the current Unix time.
pub fn render_stats(stats: &Stats, now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "since {} ago: {} remote, {} local, {} fallback, {} errors; about {} of compiling taken off this machine",
        duration(now.saturating_sub(stats.since).saturating_mul(1000)),
        stats.hosts.iter().map(|host| host.remote_jobs).sum::<u64>(),
        stats.local_jobs,
        stats.fallback_jobs,
        stats.errors,
        duration(stats.time_saved_ms)
    );
    let width = column_width(stats.hosts.iter().map(|host| host.host.as_str()), 16);
    if !stats.hosts.is_empty() {
        let _ = writeln!(
            out,
            "{:<width$} {:>7} {:>8} {:>9} {:>9} {:>10} {:>10}",
            "HOST", "JOBS", "FAILURES", "SENT", "RECEIVED", "BOX TIME", "CACHE HITS"
        );
    }
    for host in &stats.hosts {
        let _ = writeln!(
            out,
            "{:<width$} {:>7} {:>8} {:>9} {:>9} {:>10} {:>10}",
            host.host,
            host.remote_jobs,
            host.failures,
            bytes(host.bytes_sent),
            bytes(host.bytes_received),
            duration(host.remote_ms),
            host.cache_hits
        );
    }
    out
}

/// The width of a column holding `texts` (at least `minimum`).
fn column_width<'a>(texts: impl Iterator<Item = &'a str>, minimum: usize) -> usize {
    texts
        .map(|text| text.chars().count())
        .max()
        .unwrap_or(0)
        .max(minimum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_said_plainly() {
        assert_eq!(
            render_status(&Status::default()),
            "sshcc: no daemon running\n"
        );
    }
}
