//! The [`Store`] itself: where it lives, opening and scanning it, and what every
//! operation shares: a blob's path, whether it is present, opening it checked for size,
//! marking it used (atime, for LRU) and discarding a corrupt one.

use std::ffi::{CString, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{Result, StoreError, io_error};
use super::evict;
use super::evict::ScanReport;
use super::layout;
use super::layout::{BLOB_DIR, TMP_DIR, USAGE_FILE, cost};
use super::stats::{Counters, StoreStats};
use super::usage;
use super::verified::VerifiedMemory;
use crate::digest::Digest;

/// How stale a blob's atime must be before a use writes it again: LRU needs minutes,
/// not nanoseconds, and most uses then cost one `stat`.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How a use marks a blob recently used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touch {
    /// Only if its atime is older than [`TOUCH_EVERY`]: enough for LRU in a store
    /// that holds far more than the jobs at once need.
    IfStale,
    /// Now: the blob was just confirmed to a client, which sends the rest of its job
    /// and then runs it, so in a store only just big enough it must outlive every
    /// blob used before, even within the last minute.
    Now,
}

/// An account's blob store on the box. See the [module documentation](super).
pub struct Store {
    pub(super) root: PathBuf,
    pub(super) blobs: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) usage: usage::Usage,
    pub(super) verified: VerifiedMemory,
    pub(super) counters: Counters,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The account's store: `$XDG_CACHE_HOME/sshcc/store`, else `~/.cache/sshcc/store`
    /// (`$HOME`, else the passwd entry's home). `None` when there is no home at all.
    pub fn default_root() -> Option<PathBuf> {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        default_root_from(
            std::env::var_os("XDG_CACHE_HOME"),
            std::env::var_os("HOME")
                .or_else(|| crate::system::passwd_entry(uid).map(|(_, home)| home.into())),
        )
    }

    /// Opens (creating if needed) the store at `root`, bounded to `max_bytes` (each
    /// process applies its own bound; the smallest wins). Removes what dead inserts left
    /// in `tmp/`, and scans (evicting if over the bound) when the shared estimate is
    /// missing, over the bound or a day old. A bound of 0 refuses every blob
    /// ([`StoreError::Full`]) and empties the store.
    pub fn open(root: impl Into<PathBuf>, max_bytes: u64) -> Result<Store> {
        let root = root.into();
        let store = Store {
            blobs: root.join(BLOB_DIR),
            tmp: root.join(TMP_DIR),
            usage: usage::Usage::open(&{
                create_dir(&root)?;
                root.join(USAGE_FILE)
            })
            .map_err(|source| io_error(format!("cannot open {}", root.display()), source))?,
            root,
            max_bytes,
            verified: VerifiedMemory::default(),
            counters: Counters::default(),
        };
        create_dir(&store.blobs)?;
        create_dir(&store.tmp)?;
        evict::remove_stale_temps(&store.tmp);
        let report = store
            .bounds()
            .scan_on_open()
            .map_err(|err| store.scan_error(err))?;
        store.counters.count_scan(report);
        Ok(store)
    }

    /// Counts the whole store, evicts down to below the bound if it is over, and makes
    /// the shared estimate exact. Waits while another process does the same.
    pub fn scan(&self) -> Result<ScanReport> {
        let report = self.bounds().scan().map_err(|err| self.scan_error(err))?;
        self.counters.count_scan(Some(report.clone()));
        Ok(report)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// This process's counts and the shared size estimate.
    pub fn stats(&self) -> StoreStats {
        let estimated_bytes = self
            .usage
            .read()
            .ok()
            .flatten()
            .map_or(0, |hint| hint.bytes);
        self.counters.snapshot(self.max_bytes, estimated_bytes)
    }

    pub(super) fn blob_path(&self, digest: &Digest) -> PathBuf {
        layout::blob_path(&self.blobs, digest)
    }

    pub(super) fn bounds(&self) -> evict::Bounds<'_> {
        evict::Bounds {
            root: &self.root,
            max_bytes: self.max_bytes,
            usage: &self.usage,
        }
    }

    fn scan_error(&self, err: io::Error) -> StoreError {
        io_error(
            format!("cannot scan the blob store {}", self.root.display()),
            err,
        )
    }

    /// Whether a blob of the right size is under the digest's name; touches it. A file
    /// of the wrong size there is corrupt and removed.
    pub(super) fn present(&self, digest: &Digest, touch: Touch) -> bool {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == digest.size_bytes => {
                self.touch(&path, &meta, touch);
                true
            }
            Ok(meta) => {
                self.discard(digest, &path, Some(&meta), "it has the wrong size");
                false
            }
            // Unreadable counts as absent: the insert that follows reports the error.
            Err(_) => false,
        }
    }

    pub(super) fn open_blob(&self, digest: &Digest, path: &Path) -> Result<(File, Metadata)> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(self.missing(digest));
            }
            Err(err) => return Err(io_error(format!("cannot open blob {digest}"), err)),
        };
        let meta = file
            .metadata()
            .map_err(|err| io_error(format!("cannot stat blob {digest}"), err))?;
        if meta.len() != digest.size_bytes {
            self.discard(digest, path, Some(&meta), "it has the wrong size");
            return Err(self.missing(digest));
        }
        Ok((file, meta))
    }

    /// Removes a corrupt blob, but only if `path` still names the inode found bad
    /// (`seen`): another process may have put a good copy there meanwhile.
    pub(super) fn discard(&self, digest: &Digest, path: &Path, seen: Option<&Metadata>, why: &str) {
        if let Some(seen) = seen {
            match fs::symlink_metadata(path) {
                Ok(now) if now.dev() == seen.dev() && now.ino() == seen.ino() => {}
                _ => return,
            }
        }
        match fs::remove_file(path) {
            Ok(()) => {
                tracing::warn!("removed corrupt blob {digest} from the store: {why}");
                Counters::bump(&self.counters.corrupt, 1);
                self.verified.forget(digest);
                if let Err(err) = self.usage.add(-(cost(digest.size_bytes) as i64)) {
                    tracing::debug!("cannot update the blob store's size estimate: {err}");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!("cannot remove corrupt blob {}: {err}", path.display()),
        }
    }

    /// Marks a blob recently used (its atime), as `touch` says. Failing to touch
    /// only makes the blob look older.
    pub(super) fn touch(&self, path: &Path, meta: &Metadata, touch: Touch) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        if touch == Touch::IfStale
            && now.saturating_sub(meta.atime()) < TOUCH_EVERY.as_secs() as i64
        {
            return;
        }
        let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
        ];
        // SAFETY: `name` is a valid C string and `times` two valid timespecs; utimensat
        // only reads them.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            tracing::trace!(
                "cannot touch {}: {}",
                path.display(),
                io::Error::last_os_error()
            );
        }
    }

    pub(super) fn missing(&self, digest: &Digest) -> StoreError {
        StoreError::Missing(*digest)
    }
}

pub(super) fn default_root_from(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    // The XDG spec says to ignore a relative value.
    let cache = xdg_cache_home
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            home.filter(|home| !home.is_empty())
                .map(|home| Path::new(&home).join(".cache"))
        })?;
    Some(cache.join("sshcc").join("store"))
}

pub(super) fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| io_error(format!("cannot create {}", dir.display()), err))
}
