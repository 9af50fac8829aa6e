//! What the dispatcher records for `sshcc status` and `sshcc stats`: every job in flight
//! with its phase, and the counts not yet written to the stats file.
//!
//! A job is registered when its wrapper first asks for a slot and leaves when the
//! wrapper's connection ends ([`Tracker::finish`]); its outcome is counted then, once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::status::{HostStats, JobStatus, Phase, Stats};

/// Why a job compiles on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    /// A `localhost` slot won.
    Slot,
    /// No box could take it, or the box failed it: distcc's fallback.
    Fallback,
    /// The box answered with a compile error (or preprocessing failed), and the local
    /// compiler runs to show the message as it would.
    Retry,
}

impl LocalReason {
    pub fn code(self) -> u8 {
        match self {
            LocalReason::Slot => 0,
            LocalReason::Fallback => 1,
            LocalReason::Retry => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(LocalReason::Slot),
            1 => Some(LocalReason::Fallback),
            2 => Some(LocalReason::Retry),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct JobRecord {
    file: String,
    pid: u32,
    host: Option<String>,
    phase: Phase,
    started: Instant,
    phase_since: Instant,
    local: Option<LocalReason>,
    /// How long the box took to answer, from the job's arrival to its answer.
    answered: Option<Duration>,
    exit: Option<u8>,
}

/// Jobs in flight and counts since the daemon started or the stats file last took them.
#[derive(Debug)]
pub struct Tracker {
    next_id: AtomicU64,
    jobs: Mutex<BTreeMap<u64, JobRecord>>,
    /// Jobs compiled on this machine since the daemon started (the local row's count).
    local_done: AtomicU64,
    /// Counts not yet merged into the stats file.
    pending: Mutex<Stats>,
    /// Counts of this daemon's whole life, for the summary when it exits.
    life: Mutex<Stats>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            next_id: AtomicU64::new(1),
            jobs: Mutex::default(),
            local_done: AtomicU64::new(0),
            pending: Mutex::default(),
            life: Mutex::default(),
        }
    }
}

impl Tracker {
    /// Registers a job waiting for a slot; returns its id.
    pub fn begin(&self, file: &str, pid: u32) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.jobs.lock().expect("jobs lock").insert(
            id,
            JobRecord {
                file: file.to_string(),
                pid,
                host: None,
                phase: Phase::Queue,
                started: now,
                phase_since: now,
                local: None,
                answered: None,
                exit: None,
            },
        );
        id
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut JobRecord)) {
        if let Some(record) = self.jobs.lock().expect("jobs lock").get_mut(&id) {
            change(record);
        }
    }

    /// Moves a job to `phase` on `host` (`None`: keep the host it has).
    pub fn phase(&self, id: u64, phase: Phase, host: Option<&str>) {
        self.update(id, |record| {
            if let Some(host) = host {
                record.host = Some(host.to_string());
            }
            if record.phase != phase {
                record.phase = phase;
                record.phase_since = Instant::now();
            }
        });
    }

    /// Moves a job on to `phase` unless it is already past it (events of one job may be
    /// reported by different tasks, in either order).
    pub fn advance(&self, id: u64, phase: Phase) {
        self.update(id, |record| {
            if phase > record.phase {
                record.phase = phase;
                record.phase_since = Instant::now();
            }
        });
    }

    /// The job waits for a slot again (its host failed, or it asked again).
    pub fn requeue(&self, id: u64) {
        self.update(id, |record| {
            record.host = None;
            record.phase = Phase::Queue;
            record.phase_since = Instant::now();
        });
    }

    /// The job compiles here now.
    pub fn local(&self, id: u64, reason: LocalReason) {
        self.update(id, |record| {
            record.host = None;
            record.local = Some(reason);
            record.phase = Phase::Local;
            record.phase_since = Instant::now();
        });
    }

    /// `host` answered the job after `took` (a compile error is an answer too).
    pub fn answered(&self, id: u64, host: &str, took: Duration) {
        self.update(id, |record| record.answered = Some(took));
        let ms = took.as_millis() as u64;
        self.count(|stats| {
            let row = host_row(stats, host);
            row.remote_jobs += 1;
            row.remote_ms += ms;
        });
    }

    /// The wrapper's exit status for the job.
    pub fn done(&self, id: u64, exit: u8) {
        self.update(id, |record| record.exit = Some(exit));
    }

    /// `host` failed a job (unreachable, dropped, refused, timed out).
    pub fn host_failed(&self, host: &str) {
        self.count(|stats| host_row(stats, host).failures += 1);
    }

    /// Bytes on the wire to and from `host` since the last call for it.
    pub fn bytes(&self, host: &str, sent: u64, received: u64) {
        if sent == 0 && received == 0 {
            return;
        }
        self.count(|stats| {
            let row = host_row(stats, host);
            row.bytes_sent += sent;
            row.bytes_received += received;
        });
    }

    /// `hits` more jobs of `host` came from a REAPI engine's action cache.
    pub fn cache_hits(&self, host: &str, hits: u64) {
        if hits > 0 {
            self.count(|stats| host_row(stats, host).cache_hits += hits);
        }
    }

    /// The job's wrapper is gone: count how the job ended and forget it.
    pub fn finish(&self, id: u64) {
        let Some(record) = self.jobs.lock().expect("jobs lock").remove(&id) else {
            return;
        };
        if record.local.is_some() {
            self.local_done.fetch_add(1, Ordering::Relaxed);
        }
        self.count(|stats| {
            match record.local {
                Some(LocalReason::Slot) => stats.local_jobs += 1,
                Some(LocalReason::Fallback) => stats.fallback_jobs += 1,
                Some(LocalReason::Retry) | None => {}
            }
            if record.exit.is_some_and(|exit| exit != 0) {
                stats.errors += 1;
            }
            if let (Some(took), None) = (record.answered, record.local) {
                stats.time_saved_ms += took.as_millis() as u64;
            }
        });
    }

    fn count(&self, change: impl Fn(&mut Stats)) {
        change(&mut self.pending.lock().expect("pending lock"));
        change(&mut self.life.lock().expect("life lock"));
    }

    /// The jobs in flight, oldest first; jobs compiling here carry `local_host`.
    pub fn jobs(&self, local_host: &str) -> Vec<JobStatus> {
        let now = Instant::now();
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .map(|(id, record)| JobStatus {
                id: *id,
                file: record.file.clone(),
                pid: record.pid,
                host: if record.phase == Phase::Local {
                    Some(local_host.to_string())
                } else {
                    record.host.clone()
                },
                phase: record.phase,
                elapsed_ms: now.duration_since(record.started).as_millis() as u64,
                phase_elapsed_ms: now.duration_since(record.phase_since).as_millis() as u64,
            })
            .collect()
    }

    /// Jobs compiling on this machine now.
    pub fn local_busy(&self) -> u32 {
        self.jobs
            .lock()
            .expect("jobs lock")
            .values()
            .filter(|record| record.phase == Phase::Local)
            .count() as u32
    }

    /// Jobs compiled on this machine since the daemon started.
    pub fn local_done(&self) -> u64 {
        self.local_done.load(Ordering::Relaxed)
    }

    /// Takes the counts not yet in the stats file (empty when there are none).
    pub fn take_pending(&self) -> Stats {
        std::mem::take(&mut *self.pending.lock().expect("pending lock"))
    }

    /// Whether anything was counted since the last [`Tracker::take_pending`].
    pub fn has_pending(&self) -> bool {
        !is_empty(&self.pending.lock().expect("pending lock"))
    }

    /// Puts back counts that could not be written.
    pub fn restore_pending(&self, counts: &Stats) {
        add(&mut self.pending.lock().expect("pending lock"), counts);
    }

    /// Everything counted since the daemon started.
    pub fn life(&self) -> Stats {
        self.life.lock().expect("life lock").clone()
    }
}

fn host_row<'a>(stats: &'a mut Stats, host: &str) -> &'a mut HostStats {
    let index = match stats.hosts.iter().position(|row| row.host == host) {
        Some(index) => index,
        None => {
            stats.hosts.push(HostStats {
                host: host.to_string(),
                ..HostStats::default()
            });
            stats.hosts.len() - 1
        }
    };
    &mut stats.hosts[index]
}

/// Adds the counts of `delta` to `into` (hosts matched by entry).
pub fn add(into: &mut Stats, delta: &Stats) {
    for row in &delta.hosts {
        let target = host_row(into, &row.host);
        target.remote_jobs += row.remote_jobs;
        target.failures += row.failures;
        target.bytes_sent += row.bytes_sent;
        target.bytes_received += row.bytes_received;
        target.remote_ms += row.remote_ms;
        target.cache_hits += row.cache_hits;
    }
    into.local_jobs += delta.local_jobs;
    into.fallback_jobs += delta.fallback_jobs;
    into.errors += delta.errors;
    into.time_saved_ms += delta.time_saved_ms;
}

/// Whether `stats` counts nothing.
pub fn is_empty(stats: &Stats) -> bool {
    stats.hosts.is_empty()
        && stats.local_jobs == 0
        && stats.fallback_jobs == 0
        && stats.errors == 0
        && stats.time_saved_ms == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_moves_through_its_phases_and_is_counted_once() {
        let tracker = Tracker::default();
        let id = tracker.begin("a.c", 42);
        assert_eq!(tracker.jobs("localhost")[0].phase, Phase::Queue);
        assert_eq!(tracker.jobs("localhost")[0].host, None);
        tracker.phase(id, Phase::Preprocess, Some("@box/8"));
        tracker.phase(id, Phase::Send, None);
        tracker.advance(id, Phase::Receive);
        tracker.advance(id, Phase::Compile);
        let job = &tracker.jobs("localhost")[0];
        assert_eq!(job.phase, Phase::Receive, "never backwards");
        tracker.phase(id, Phase::Send, None);
        let job = &tracker.jobs("localhost")[0];
        assert_eq!(
            (job.phase, job.host.as_deref()),
            (Phase::Send, Some("@box/8"))
        );
        tracker.answered(id, "@box/8", Duration::from_millis(30));
        tracker.done(id, 0);
        tracker.finish(id);
        tracker.finish(id);
        assert!(tracker.jobs("localhost").is_empty());
        let stats = tracker.take_pending();
        assert_eq!(stats.hosts[0].remote_jobs, 1);
        assert_eq!(stats.hosts[0].remote_ms, 30);
        assert_eq!(stats.time_saved_ms, 30);
        assert!(is_empty(&tracker.take_pending()));
        assert_eq!(tracker.life().hosts[0].remote_jobs, 1);
    }

    #[test]
    fn local_compiles_fallbacks_and_errors_are_counted() {
        let tracker = Tracker::default();
        let slot = tracker.begin("a.c", 1);
        tracker.local(slot, LocalReason::Slot);
        let fallback = tracker.begin("b.c", 2);
        tracker.host_failed("@box/8");
        tracker.local(fallback, LocalReason::Fallback);
        let retried = tracker.begin("c.c", 3);
        tracker.answered(retried, "@box/8", Duration::from_millis(5));
        tracker.local(retried, LocalReason::Retry);
        tracker.done(retried, 1);
        let jobs = tracker.jobs("localhost/2");
        assert!(jobs.iter().all(|job| job.phase == Phase::Local));
        assert!(
            jobs.iter()
                .all(|job| job.host.as_deref() == Some("localhost/2"))
        );
        assert_eq!(tracker.local_busy(), 3);
        for id in [slot, fallback, retried] {
            tracker.finish(id);
        }
        assert_eq!(tracker.local_done(), 3);
        let stats = tracker.take_pending();
        assert_eq!(
            (stats.local_jobs, stats.fallback_jobs, stats.errors),
            (1, 1, 1)
        );
        assert_eq!(stats.time_saved_ms, 0, "the retried job ran here too");
        assert_eq!(stats.hosts[0].failures, 1);
        assert_eq!(stats.hosts[0].remote_jobs, 1);
    }

    #[test]
    fn counts_add_up_by_host() {
        let mut total = Stats::default();
        let delta = Stats {
            hosts: vec![HostStats {
                host: "@a".into(),
                remote_jobs: 2,
                bytes_sent: 10,
                ..HostStats::default()
            }],
            local_jobs: 1,
            ..Stats::default()
        };
        add(&mut total, &delta);
        add(&mut total, &delta);
        assert_eq!(total.hosts.len(), 1);
        assert_eq!(total.hosts[0].remote_jobs, 4);
        assert_eq!(total.hosts[0].bytes_sent, 20);
        assert_eq!(total.local_jobs, 2);
    }
}
