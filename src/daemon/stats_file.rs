//! The persistent counts behind `sshcc stats`: `$XDG_STATE_HOME/sshcc/stats.json`
//! (else `~/.local/state/sshcc/stats.json`).
//!
//! Every writer (a daemon flushing what it counted, a wrapper under
//! `SSHCC_NO_DAEMON=1`, `sshcc stats --reset`) adds to the file under an exclusive
//! `flock` on `stats.lock` next to it, and replaces the file by a rename, so concurrent
//! daemons and wrappers never lose each other's counts and a reader never sees half a
//! file.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::dispatch::tracker;
use crate::status::{SCHEMA, Stats};

/// Where the counts live.
pub fn path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    // SAFETY: getuid(2) cannot fail and has no preconditions.
                    let uid = unsafe { libc::getuid() };
                    crate::system::passwd_entry(uid).map(|(_, home)| PathBuf::from(home))
                })
                .map(|home| home.join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("sshcc").join("stats.json")
}

/// Counts that start now.
fn fresh(now: u64) -> Stats {
    Stats {
        schema: SCHEMA,
        since: now,
        ..Stats::default()
    }
}

/// Holds the lock next to `file` while alive.
struct Locked {
    _lock: File,
}

fn lock(file: &Path) -> anyhow::Result<Locked> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("stats.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // Released when `lock` is closed.
    crate::system::flock(&lock, true, crate::system::LockWait::Block)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Locked { _lock: lock })
}

/// The counts in `file`; fresh ones (since `now`) when there is none yet. A file that
/// cannot be parsed is an error rather than silently zeroed.
fn load(file: &Path, now: u64) -> anyhow::Result<Stats> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid (remove it to start over)", file.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(fresh(now)),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", file.display())),
    }
}

fn store(file: &Path, stats: &Stats) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".stats-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    serde_json::to_writer_pretty(&mut temp, stats)?;
    std::io::Write::write_all(&mut temp, b"\n")?;
    temp.persist(file)
        .map_err(|err| err.error)
        .with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}

/// Adds `delta` to the counts in `file` and returns the total (the file is only
/// written when `delta` counts something).
pub fn merge_into(file: &Path, delta: &Stats, now: u64) -> anyhow::Result<Stats> {
    let _locked = lock(file)?;
    let mut stats = load(file, now)?;
    if !tracker::is_empty(delta) {
        tracker::add(&mut stats, delta);
        stats.schema = SCHEMA;
        store(file, &stats)?;
    }
    Ok(stats)
}

/// Adds `delta`, then, with `reset`, starts counting again from zero. Returns the
/// counts up to now (before the reset).
pub fn merge_and_maybe_reset(
    file: &Path,
    delta: &Stats,
    reset: bool,
    now: u64,
) -> anyhow::Result<Stats> {
    let _locked = lock(file)?;
    let mut stats = load(file, now)?;
    tracker::add(&mut stats, delta);
    stats.schema = SCHEMA;
    if reset {
        store(file, &fresh(now))?;
    } else if !tracker::is_empty(delta) {
        store(file, &stats)?;
    }
    Ok(stats)
}

/// [`merge_into`] the user's file.
pub fn merge(delta: &Stats) -> anyhow::Result<Stats> {
    merge_into(&path(), delta, crate::system::now_unix())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::HostStats;

    #[test]
    fn counts_accumulate_and_reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/sshcc/stats.json");
        let delta = Stats {
            hosts: vec![HostStats {
                host: "@box/8".into(),
                remote_jobs: 3,
                ..HostStats::default()
            }],
            fallback_jobs: 1,
            ..Stats::default()
        };
        let empty = merge_into(&file, &Stats::default(), 100).unwrap();
        assert_eq!(empty.since, 100);
        assert!(!file.exists(), "nothing counted, nothing written");
        merge_into(&file, &delta, 100).unwrap();
        let total = merge_into(&file, &delta, 200).unwrap();
        assert_eq!(total.since, 100);
        assert_eq!(total.schema, SCHEMA);
        assert_eq!(total.hosts[0].remote_jobs, 6);
        assert_eq!(total.fallback_jobs, 2);
        let before = merge_and_maybe_reset(&file, &delta, true, 300).unwrap();
        assert_eq!(before.hosts[0].remote_jobs, 9);
        let after = merge_into(&file, &Stats::default(), 400).unwrap();
        assert_eq!(after, fresh(300));
        std::fs::write(&file, "{not json").unwrap();
        assert!(merge_into(&file, &delta, 500).is_err());
    }
}
