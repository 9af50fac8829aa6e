//! What the daemon knows about the build right now (`sshcc status --json`, `sshcc mon`)
//! and since the last reset (`sshcc stats`): the stable, documented schema both sides
//! share.
//!
//! Fields are only ever added, never renamed or removed; a consumer must ignore fields
//! it does not know. Durations are milliseconds, sizes bytes, times Unix seconds.

use serde::{Deserialize, Serialize};

/// The schema version, bumped only if a field ever has to change meaning.
pub const SCHEMA: u32 = 1;

/// A snapshot of the daemon: every host it knows and every job in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub schema: u32,
    pub sshcc_version: String,
    /// The daemon's process id; `None` when no daemon is running (then everything else
    /// is empty).
    pub daemon_pid: Option<u32>,
    pub uptime_ms: u64,
    /// One row per host entry the daemon has served, remote hosts first, then the
    /// local row (`kind` = `local`) for jobs compiled on this machine.
    pub hosts: Vec<HostStatus>,
    /// Jobs in flight, oldest first.
    pub jobs: Vec<JobStatus>,
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    #[default]
    Ssh,
    Tcp,
    Local,
    Reapi,
}

/// One host entry and what it has done since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host entry as written in the host list (`@box/8`, `localhost/2`).
    pub host: String,
    pub kind: HostKind,
    pub slots_total: u32,
    pub slots_busy: u32,
    /// Jobs that finished on this host (for the local row: compiled here).
    pub jobs_done: u64,
    /// Jobs this host failed (connection, refusal, timeout), not compile errors.
    pub jobs_failed: u64,
    /// Milliseconds until a backed-off host is tried again; `None` when usable.
    pub backoff_remaining_ms: Option<u64>,
    /// Why the host last failed.
    pub last_error: Option<String>,
    /// Whether a connection to it is open now.
    pub connected: bool,
    /// Round-trip time of the connection, from the last exchange that measured it.
    pub rtt_ms: Option<f64>,
    /// Bytes written to and read from this host's connection (on the wire).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Uncompressed payload bytes per byte on the wire, both directions; `None` before
    /// the first job.
    pub compression_ratio: Option<f64>,
    /// Where this host's jobs are preprocessed: `remote` (the box preprocesses from
    /// its content store) or `local`; `None` before a connection.
    #[serde(default)]
    pub preprocessing: Option<String>,
    /// Why the box cannot preprocess, when `preprocessing` is `local`.
    #[serde(default)]
    pub preprocessing_note: Option<String>,
    /// Remote-preprocessed jobs the box compiled.
    #[serde(default)]
    pub remote_jobs: u64,
    /// Blobs (sources, headers, directories) whose presence in the box's store was
    /// asked, and how many of those it lacked: the store's hit rate is
    /// `1 - blobs_missing / blobs_looked_up`.
    #[serde(default)]
    pub blobs_looked_up: u64,
    #[serde(default)]
    pub blobs_missing: u64,
    /// Blobs sent to the box's store, and their bytes (before compression).
    #[serde(default)]
    pub blobs_sent: u64,
    #[serde(default)]
    pub blob_bytes_sent: u64,
    /// Jobs a REAPI engine answered from its shared action cache.
    #[serde(default)]
    pub cache_hits: u64,
}

impl HostStatus {
    /// The share of looked-up blobs the box's store already held, in percent; `None`
    /// before the first lookup.
    pub fn store_hit_rate(&self) -> Option<u64> {
        (self.blobs_looked_up > 0).then(|| {
            self.blobs_looked_up.saturating_sub(self.blobs_missing) * 100 / self.blobs_looked_up
        })
    }
}

/// Where a job is. Phases are ordered as a job passes through them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for a slot.
    #[default]
    Queue,
    /// Slot assigned; the wrapper is running the preprocessor.
    Preprocess,
    /// The request is going to the box.
    Send,
    /// The box is compiling.
    Compile,
    /// The result is coming back.
    Receive,
    /// Compiling on this machine (a `localhost` slot or a fallback).
    Local,
}

/// One job in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The daemon's number for the job, unique while it runs.
    pub id: u64,
    /// The source file as the build named it.
    pub file: String,
    /// The wrapper's process id.
    pub pid: u32,
    /// The host entry it was given; `None` while queued.
    pub host: Option<String>,
    pub phase: Phase,
    /// Since the wrapper asked for a slot.
    pub elapsed_ms: u64,
    /// Since it entered its current phase.
    pub phase_elapsed_ms: u64,
}

/// Counts since the last `sshcc stats --reset`, kept across daemon restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub schema: u32,
    /// When counting started (the last reset).
    pub since: u64,
    pub hosts: Vec<HostStats>,
    /// Jobs that ran here because no host was configured or a `localhost` slot won.
    pub local_jobs: u64,
    /// Jobs that ran here after a remote attempt failed or no host was usable.
    pub fallback_jobs: u64,
    /// Jobs that failed outright (no fallback, or the local run failed too).
    pub errors: u64,
    /// Milliseconds boxes spent on jobs that did not run here: an estimate of the
    /// compile time taken off this machine.
    pub time_saved_ms: u64,
}

/// One host's share of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStats {
    pub host: String,
    /// Jobs compiled there successfully (compile errors included: the box answered).
    pub remote_jobs: u64,
    /// Jobs the host failed (they moved elsewhere or fell back).
    pub failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Milliseconds from sending a job to its answer, summed.
    pub remote_ms: u64,
    /// Of `remote_jobs`, those a REAPI engine answered from its action cache.
    #[serde(default)]
    pub cache_hits: u64,
}

/// `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `512B`, `3.4kB`, `12.0MB`, `1.2GB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n}B"),
        1_000..1_000_000 => format!("{:.1}kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}MB", n as f64 / 1e6),
        _ => format!("{:.1}GB", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_800_000), "2h10m");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(3_400), "3.4kB");
        assert_eq!(bytes(12_000_000), "12.0MB");
    }
}
