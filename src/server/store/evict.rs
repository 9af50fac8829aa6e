//! Keeping the store under its bound: scanning the fan-out directories, evicting the
//! least recently used blobs, and sweeping what killed inserts left in `tmp/`.
//!
//! Only one process scans at a time (`evict.lock`, an exclusive `flock`, also between
//! threads: each pass opens the file afresh). The directory listing is the truth; the
//! shared estimate only decides when to look. A thread whose insert pushed the estimate
//! over the bound waits for the lock and then looks at the estimate again, so that one
//! pass serves everyone who was waiting while it ran.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::layout::{BLOB_DIR, EVICT_LOCK, TMP_DIR, cost, is_fan_out_name, parse_blob_name};
use super::size::format_size;
use super::usage::{Hint, Usage};
use crate::digest::Digest;

/// Eviction goes this far below the bound (per mille), so that a full store is scanned
/// once per tenth of its size inserted rather than on every insert.
const LOW_WATER_PER_MILLE: u64 = 900;

/// How old the shared estimate may be before opening the store counts again: it bounds
/// the drift left by processes killed between publishing a blob and counting it.
const RESCAN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How old an unlocked temporary file must be to be removed. The lock alone tells a dead
/// writer, except in the instant between creating a file and locking it.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// What one scan found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Blobs left, and their cost in bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs evicted, and their cost.
    pub evicted: u64,
    pub evicted_bytes: u64,
    /// Files removed that were no blob: a size that differs from the name's, or a name
    /// that is no blob's.
    pub removed_corrupt: u64,
}

/// What eviction needs to know of a store.
pub(super) struct Bounds<'a> {
    pub root: &'a Path,
    pub max_bytes: u64,
    pub usage: &'a Usage,
}

struct Entry {
    path: PathBuf,
    digest: Digest,
    cost: u64,
    /// (seconds, nanoseconds): the LRU order.
    atime: (i64, i64),
}

impl Bounds<'_> {
    /// Counts the whole store, evicts down to below the bound if it is over, and makes
    /// the shared estimate exact. Waits while another process does the same.
    pub fn scan(&self) -> io::Result<ScanReport> {
        let _lock = self.lock()?;
        self.scan_locked()
    }

    /// When opening: scans if the estimate is missing, over the bound or a day old.
    pub fn scan_on_open(&self) -> io::Result<Option<ScanReport>> {
        let now = unix_now();
        self.scan_when(|hint| match hint {
            None => true,
            Some(hint) => {
                hint.bytes > self.max_bytes
                    || now.abs_diff(hint.scanned_at) > RESCAN_AFTER.as_secs()
            }
        })
    }

    /// After an insert took the estimate over the bound.
    pub fn evict_if_over(&self) -> io::Result<Option<ScanReport>> {
        self.scan_when(|hint| hint.is_none_or(|hint| hint.bytes > self.max_bytes))
    }

    fn scan_when(&self, needed: impl Fn(Option<Hint>) -> bool) -> io::Result<Option<ScanReport>> {
        if !needed(self.usage.read()?) {
            return Ok(None);
        }
        let _lock = self.lock()?;
        // Whoever held the lock may have done the work already.
        if !needed(self.usage.read()?) {
            return Ok(None);
        }
        self.scan_locked().map(Some)
    }

    fn lock(&self) -> io::Result<File> {
        let path = self.root.join(EVICT_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|err| context(err, format!("cannot open {}", path.display())))?;
        file.lock()
            .map_err(|err| context(err, format!("cannot lock {}", path.display())))?;
        Ok(file)
    }

    fn scan_locked(&self) -> io::Result<ScanReport> {
        let estimate_before = self.usage.read()?.map_or(0, |hint| hint.bytes);
        remove_stale_temps(&self.root.join(TMP_DIR));
        let mut report = ScanReport::default();
        let mut entries = self.list_blobs(&mut report)?;
        let mut total: u64 = entries.iter().map(|entry| entry.cost).sum();
        if total > self.max_bytes {
            let target = self.max_bytes / 1000 * LOW_WATER_PER_MILLE;
            entries.sort_by_key(|entry| entry.atime);
            for entry in &entries {
                if total <= target {
                    break;
                }
                match fs::remove_file(&entry.path) {
                    Ok(()) => {}
                    // Removed by someone else (found corrupt): gone all the same.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::warn!("cannot evict {}: {err}", entry.path.display());
                        continue;
                    }
                }
                tracing::trace!("evicted blob {}", entry.digest);
                total -= entry.cost;
                report.evicted += 1;
                report.evicted_bytes += entry.cost;
            }
        }
        report.blobs = entries.len() as u64 - report.evicted;
        report.bytes = total;
        // Inserts made while we listed were added to the estimate since we read it; we
        // may have counted some of them too, which errs on the side of scanning early.
        let now = unix_now();
        self.usage.update(|hint| Hint {
            bytes: total.saturating_add(
                hint.map_or(0, |hint| hint.bytes)
                    .saturating_sub(estimate_before),
            ),
            scanned_at: now,
        })?;
        if report.evicted > 0 || report.removed_corrupt > 0 {
            tracing::info!(
                "blob store {}: evicted {} blobs ({}), removed {} corrupt files; \
                 {} blobs ({}) remain of {}",
                self.root.display(),
                report.evicted,
                format_size(report.evicted_bytes),
                report.removed_corrupt,
                report.blobs,
                format_size(report.bytes),
                format_size(self.max_bytes),
            );
        }
        Ok(report)
    }

    /// Every blob under `sha256/`. Files that cannot be blobs (a name that is no digest
    /// or sits in the wrong fan-out directory, a size that differs from the name's) are
    /// removed: nothing else ever writes there.
    fn list_blobs(&self, report: &mut ScanReport) -> io::Result<Vec<Entry>> {
        let listing = |dir: &Path, err| context(err, format!("cannot list {}", dir.display()));
        let blobs = self.root.join(BLOB_DIR);
        let mut entries = Vec::new();
        for fan in fs::read_dir(&blobs).map_err(|err| listing(&blobs, err))? {
            let fan = fan.map_err(|err| listing(&blobs, err))?;
            let fan_path = fan.path();
            let prefix = fan.file_name();
            let Some(prefix) = prefix.to_str().filter(|name| is_fan_out_name(name)) else {
                tracing::debug!("ignoring {} in the blob store", fan_path.display());
                continue;
            };
            let listed = match fs::read_dir(&fan_path) {
                Ok(listed) => listed,
                Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(err) => return Err(listing(&fan_path, err)),
            };
            for blob in listed {
                let blob = blob.map_err(|err| listing(&fan_path, err))?;
                let path = blob.path();
                let meta = match blob.metadata() {
                    Ok(meta) => meta,
                    // Evicted or discarded by someone else since the listing.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => {
                        return Err(context(err, format!("cannot stat {}", path.display())));
                    }
                };
                let digest = blob
                    .file_name()
                    .to_str()
                    .and_then(parse_blob_name)
                    .filter(|digest| digest.hash_hex().starts_with(prefix));
                match digest {
                    Some(digest) if meta.is_file() && meta.len() == digest.size_bytes => {
                        entries.push(Entry {
                            path,
                            digest,
                            cost: cost(digest.size_bytes),
                            atime: (meta.atime(), meta.atime_nsec()),
                        });
                    }
                    _ if meta.is_dir() => {
                        tracing::debug!("ignoring directory {} in the blob store", path.display());
                    }
                    _ => {
                        tracing::warn!(
                            "removing {} from the blob store: not a blob, or a corrupt one",
                            path.display()
                        );
                        if fs::remove_file(&path).is_ok() {
                            report.removed_corrupt += 1;
                        }
                    }
                }
            }
        }
        Ok(entries)
    }
}

/// Removes what inserts of dead processes left in `tmp`: files nobody holds locked that
/// are older than [`STALE_TEMP`]. Best effort.
pub(super) fn remove_stale_temps(tmp: &Path) {
    let Ok(listing) = fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for entry in listing.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > STALE_TEMP);
        if !old {
            continue;
        }
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        else {
            // A symlink or similar: not an insert's either.
            let _ = fs::remove_file(&path);
            continue;
        };
        if file.try_lock().is_ok() {
            tracing::debug!("removing {}, left by an interrupted insert", path.display());
            let _ = fs::remove_file(&path);
        }
    }
}

/// `err` with what was being done, keeping its kind.
fn context(err: io::Error, what: String) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
