//! The file-state cache: what a file's content digest is, known from its stat alone, so an
//! unchanged header is read and hashed once per daemon life while every job still stats
//! it afresh.
//!
//! A digest is trusted while the file's `(dev, ino, size, mtime_ns, ctime_ns)` stays the
//! same. Any write moves mtime and ctime, but only by the filesystem's timestamp
//! granularity (a few milliseconds on ext4), so two writes of the same size within one
//! tick would look unchanged. Goma's `CanBeStale` answers that: a stat whose mtime (or
//! ctime) is within [`RACY_WINDOW`] of the moment it was taken is never trusted, the
//! file is hashed on every use until it has been quiet for a while, and what was hashed
//! then is not remembered.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::Digest;

/// How close to "now" a timestamp must be for the stat to be untrustworthy (Goma's
/// choice; ext4's granularity is far finer, NFS's can be coarse).
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// Entries kept before the cache starts over (a bound on memory for a daemon that lives
/// through many checkouts; refilling costs one hash per file).
const MAX_ENTRIES: usize = 500_000;

/// A file's identity and version as `stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub mode: u32,
}

impl FileStat {
    pub fn of(meta: &Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            mode: meta.mode(),
        }
    }

    /// Whether any execute bit is set (REAPI's `is_executable`).
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }

    /// The modification time as whole seconds since the epoch and nanoseconds (REAPI's
    /// `Timestamp`; the seconds are floored, so the nanoseconds are never negative).
    pub fn mtime(&self) -> (i64, u32) {
        let seconds = self.mtime_ns.div_euclid(1_000_000_000);
        let nanos = self.mtime_ns.rem_euclid(1_000_000_000);
        (seconds as i64, nanos as u32)
    }

    /// Whether this stat cannot tell a later write of the same size from no write at all:
    /// the file changed within `window_ns` of `now_ns`, when the stat was taken.
    pub fn is_racy(&self, now_ns: i128, window_ns: i128) -> bool {
        let newest = self.mtime_ns.max(self.ctime_ns);
        newest > now_ns - window_ns
    }

    /// Whether `other` is the same version of the same file.
    pub fn same_version(&self, other: &FileStat) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)
            == (
                other.dev,
                other.ino,
                other.size,
                other.mtime_ns,
                other.ctime_ns,
            )
    }
}

/// The current time in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i128)
}

/// What a digest lookup found: the digest, the stat it belongs to (the open file's, which
/// may be newer than the caller's if the file changed in between), and the content when
/// it had to be read.
pub struct Hashed {
    pub digest: Digest,
    pub stat: FileStat,
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Key {
    fn of(stat: &FileStat) -> Key {
        Key {
            dev: stat.dev,
            ino: stat.ino,
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
        }
    }
}

/// stat → digest, shared by every job of the daemon.
pub struct FileStates {
    digests: Mutex<HashMap<Key, Digest>>,
    hashed: AtomicU64,
    pub racy_window_ns: i128,
}

impl Default for FileStates {
    fn default() -> Self {
        FileStates {
            digests: Mutex::default(),
            hashed: AtomicU64::new(0),
            racy_window_ns: RACY_WINDOW_NS,
        }
    }
}

impl FileStates {
    /// The digest of the file at `path`, whose stat (taken at `stat_time_ns`) is `stat`.
    pub fn digest(&self, path: &Path, stat: &FileStat, stat_time_ns: i128) -> io::Result<Hashed> {
        if !stat.is_racy(stat_time_ns, self.racy_window_ns)
            && let Some(digest) = self.lock().get(&Key::of(stat)).copied()
        {
            return Ok(Hashed {
                digest,
                stat: *stat,
                content: None,
            });
        }
        let mut file = std::fs::File::open(path)?;
        let open_stat = FileStat::of(&file.metadata()?);
        let mut content = Vec::with_capacity(open_stat.size as usize);
        file.read_to_end(&mut content)?;
        let digest = Digest::of(&content);
        self.hashed.fetch_add(1, Ordering::Relaxed);
        // Remembered only if the content read is the version the caller stat'ed (a
        // write since shows in the fstats or the size) and that stat can be trusted.
        let after = FileStat::of(&file.metadata()?);
        if content.len() as u64 == open_stat.size
            && after.same_version(&open_stat)
            && open_stat.same_version(stat)
            && !stat.is_racy(stat_time_ns, self.racy_window_ns)
        {
            let mut digests = self.lock();
            if digests.len() >= MAX_ENTRIES {
                digests.clear();
            }
            digests.insert(Key::of(&open_stat), digest);
        }
        tracing::trace!(path = %path.display(), %digest, "hashed");
        Ok(Hashed {
            digest,
            stat: open_stat,
            content: Some(content),
        })
    }

    /// Files read and hashed so far (for tests and statistics).
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Digest>> {
        self.digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mtime(path: &Path, seconds: i64) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let times = [
            libc::timespec {
                tv_sec: seconds,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: seconds,
                tv_nsec: 0,
            },
        ];
        assert_eq!(
            unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) },
            0
        );
    }

    #[test]
    fn an_unchanged_file_is_hashed_once_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h");
        std::fs::write(&path, "int a;\n").unwrap();
        set_mtime(&path, 1_000_000_000);
        let states = FileStates::default();
        // ctime is "now" after any write: the racy guard holds until it is old.
        let later = now_ns() + 10 * RACY_WINDOW_NS;
        let stat = FileStat::of(&std::fs::metadata(&path).unwrap());
        let first = states.digest(&path, &stat, later).unwrap();
        let second = states.digest(&path, &stat, later).unwrap();
        assert_eq!(first.digest, second.digest);
        assert!(second.content.is_none());
        assert_eq!(states.hashed(), 1);

        std::fs::write(&path, "int b;\n").unwrap();
        set_mtime(&path, 1_000_000_000);
        let stat = FileStat::of(&std::fs::metadata(&path).unwrap());
        let third = states.digest(&path, &stat, later).unwrap();
        assert_ne!(third.digest, first.digest, "ctime moved");
        assert_eq!(states.hashed(), 2);
    }

    #[test]
    fn a_recently_changed_file_is_hashed_on_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h");
        std::fs::write(&path, "int a;\n").unwrap();
        let states = FileStates::default();
        for _ in 0..3 {
            let stat = FileStat::of(&std::fs::metadata(&path).unwrap());
            states.digest(&path, &stat, now_ns()).unwrap();
        }
        assert_eq!(states.hashed(), 3);
    }

    #[test]
    fn mtime_splits_into_seconds_and_nanoseconds() {
        let stat = FileStat {
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: -1,
            ctime_ns: 0,
            mode: 0o755,
        };
        assert_eq!(stat.mtime(), (-1, 999_999_999));
        assert!(stat.is_racy(RACY_WINDOW_NS, RACY_WINDOW_NS + 1));
        assert!(!stat.is_racy(RACY_WINDOW_NS, RACY_WINDOW_NS));
        assert!(stat.executable());
    }
}
