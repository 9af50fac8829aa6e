//! The box's job counters across every session of every user: jobs served, how they
//! ended, compile time, and how many compiles run right now. The SSH analogue of
//! distccd's stats page on port 3633.
//!
//! They live in the lock directory beside the slots. Each account keeps its own file
//! (`counters-UID.json`, written under an exclusive `flock` because one account has many
//! sessions) and never writes another's; a reader sums them all. The current load is
//! not stored at all: it is the number of slot files locked right now.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::slots::Slots;

/// Counts since the counters were started (or removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Jobs answered (all outcomes but cancelled).
    pub jobs: u64,
    /// The compiler ran and succeeded.
    pub succeeded: u64,
    /// The compiler ran and failed (a compile error, or killed at the time limit).
    pub failed: u64,
    /// Refused before the compiler ran: allowlist, arguments, size, sandbox, I/O.
    pub refused: u64,
    /// The client went away before the answer.
    pub cancelled: u64,
    /// Milliseconds spent compiling.
    pub compile_ms: u64,
    /// Seconds since the Unix epoch of the oldest counter file.
    pub since: u64,
}

/// How one job ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Refused,
    Cancelled,
}

/// The box-wide view: all accounts' counters and the compiles running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxCounters {
    #[serde(flatten)]
    pub totals: Counters,
    /// Compiles running right now, across all sessions and users.
    pub running: usize,
}

/// Adds one job to this account's counters. Failing to count never fails the job.
pub fn record(lock_dir: &Path, ended: Ended, compile_time: Option<Duration>) {
    if let Err(err) = try_record(lock_dir, ended, compile_time) {
        tracing::debug!(
            "cannot update the job counters in {}: {err}",
            lock_dir.display()
        );
    }
}

fn try_record(
    lock_dir: &Path,
    ended: Ended,
    compile_time: Option<Duration>,
) -> std::io::Result<()> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    super::slots::prepare_shared_dir(lock_dir)?;
    let mut file = super::slots::open_shared_file(
        &lock_dir.join(format!("counters-{uid}.json")),
        libc::O_RDWR,
    )?;
    // Released when `file` closes.
    crate::system::flock(&file, true, crate::system::LockWait::Block)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut counters: Counters = serde_json::from_str(&text).unwrap_or_else(|_| Counters {
        since: crate::system::now_unix(),
        ..Counters::default()
    });
    match ended {
        Ended::Succeeded => counters.succeeded += 1,
        Ended::Failed => counters.failed += 1,
        Ended::Refused => counters.refused += 1,
        Ended::Cancelled => counters.cancelled += 1,
    }
    if ended != Ended::Cancelled {
        counters.jobs += 1;
    }
    let millis = compile_time.map_or(0, |time| time.as_millis());
    counters.compile_ms += u64::try_from(millis).unwrap_or(u64::MAX);
    let json = serde_json::to_vec(&counters).map_err(std::io::Error::other)?;
    file.rewind()?;
    file.set_len(0)?;
    file.write_all(&json)
}

/// Sums every account's counters in `slots`' directory and counts the busy slots.
pub fn read(slots: &Slots) -> BoxCounters {
    let mut totals = Counters::default();
    let files = std::fs::read_dir(slots.dir())
        .into_iter()
        .flatten()
        .flatten();
    for entry in files {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("counters-") && name.ends_with(".json")) {
            continue;
        }
        let Some(counters) = read_one(&entry.path()) else {
            continue;
        };
        totals.jobs += counters.jobs;
        totals.succeeded += counters.succeeded;
        totals.failed += counters.failed;
        totals.refused += counters.refused;
        totals.cancelled += counters.cancelled;
        totals.compile_ms += counters.compile_ms;
        if totals.since == 0 || (counters.since != 0 && counters.since < totals.since) {
            totals.since = counters.since;
        }
    }
    BoxCounters {
        totals,
        running: slots.busy(),
    }
}

fn read_one(path: &Path) -> Option<Counters> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_add_up_and_running_counts_held_slots() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().join("slots"), 3);
        let held = slots.acquire().await.unwrap();
        record(
            slots.dir(),
            Ended::Succeeded,
            Some(Duration::from_millis(120)),
        );
        record(slots.dir(), Ended::Failed, Some(Duration::from_millis(30)));
        record(slots.dir(), Ended::Refused, None);
        record(
            slots.dir(),
            Ended::Cancelled,
            Some(Duration::from_millis(5)),
        );
        let counters = read(&slots);
        assert_eq!(counters.running, 1);
        assert_eq!(
            (
                counters.totals.jobs,
                counters.totals.succeeded,
                counters.totals.failed,
                counters.totals.refused,
                counters.totals.cancelled,
                counters.totals.compile_ms
            ),
            (3, 1, 1, 1, 1, 155)
        );
        assert!(counters.totals.since > 0);
        drop(held);
        assert_eq!(read(&slots).running, 0);
    }
}
