//! Files shared by every job tree of one `--mux` process: one read-only inode per blob,
//! mtime and executable bit, hardlinked into each tree that lists it, so that laying a
//! tree out is a `link(2)` per header instead of a new file and a copy.
//!
//! The store's own blobs cannot be linked into trees: a tree's file carries the client's
//! mtime (libcpp's `#pragma once` compares mtimes, `__TIMESTAMP__` prints the source's),
//! and one inode has one mtime. So the process keeps its own copies, each made once from
//! a verified blob with the wanted mtime and mode `0444` (`0555`), in a directory beside
//! the job directories (a hardlink needs the same filesystem; where linking fails, as
//! across filesystems, the tree copies as before).
//!
//! A shared inode is written by nobody: the compile writes only its declared outputs
//! (options that write other files are refused), and an output at a tree file's path is
//! first replaced by a private copy (`Tree::output`). Should anything write one anyway
//! (a compile running as root ignores the mode), its mtime or size changes, which no
//! link can hide: every link is checked against the copy's record when made, and every
//! job checks its shared files again after its compile ([`Tree::check_shared`]), so a
//! changed copy is dropped and no object is built from it.
//!
//! The copies go with the process; while it lives they are bounded by [`MAX_BYTES`]:
//! past it, copies no tree links any more are removed (and when the trees themselves
//! link more than that, the next sweep waits until the copies have doubled).
//!
//! [`Tree::check_shared`]: super::Tree::check_shared

use std::collections::HashMap;
use std::fs::{self, FileTimes, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tempfile::TempDir;

use super::LayoutError;
use super::io_error;
use super::system_time;
use crate::digest::Digest;
use crate::server::store::{Store, StoreError, can_copy_instead};
use crate::tree::{Timestamp, WalkEntry};

/// Past this many bytes of copies, those no tree links are removed. A busy box's trees
/// link far less (a heavy C++ unit reads 10–20 MB of headers, most of them shared).
const MAX_BYTES: u64 = 512 << 20;

/// Independent locks, so that trees laid out at once mostly do not wait on each other.
const SHARDS: usize = 16;

/// What a shared file is a copy of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub digest: Digest,
    pub executable: bool,
    pub mtime: Option<Timestamp>,
}

impl Key {
    /// The copy a file entry of a walk is laid out from; `None` for other entries.
    pub fn of(entry: &WalkEntry) -> Option<Key> {
        match *entry {
            WalkEntry::File {
                digest,
                executable,
                mtime,
            } => Some(Key {
                digest,
                executable,
                mtime,
            }),
            _ => None,
        }
    }
}

/// What a shared copy was when made: a link to anything else is not it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Made {
    ino: u64,
    mode: u32,
    len: u64,
    mtime: (i64, i64),
}

impl Made {
    pub fn of(meta: &Metadata) -> Made {
        Made::from_stamp(
            meta.ino(),
            meta.mode(),
            meta.len(),
            (meta.mtime(), meta.mtime_nsec()),
        )
    }

    pub fn from_stamp(ino: u64, mode: u32, len: u64, mtime: (i64, i64)) -> Made {
        Made {
            ino,
            mode,
            len,
            mtime,
        }
    }
}

/// What [`SharedFiles::link`] did.
#[derive(Debug)]
pub(super) enum Link {
    /// The copy is linked at the destination, which `lstat` saw as this.
    Made(Metadata),
    /// Something is at the destination already.
    Exists,
    /// No link can be made there: the caller copies.
    Unlinkable,
}

/// The shared copies of one process.
pub struct SharedFiles {
    /// Made when the first tree links a file (a process serving only preprocessed
    /// jobs makes none); `None` where none could be made: every tree copies.
    dir: OnceLock<Option<TempDir>>,
    shards: Vec<Mutex<HashMap<Key, Made>>>,
    bytes: AtomicU64,
    /// Past this many bytes of copies, the next copy sweeps first.
    sweep_at: AtomicU64,
    /// Distinguishes the temporary names of copies being made at once.
    next_temp: AtomicU64,
}

impl SharedFiles {
    /// Copies in a directory of the temporary directory, where the job directories
    /// are, made on first use; without one, trees copy every file.
    pub fn new() -> SharedFiles {
        SharedFiles::in_dir(OnceLock::new())
    }

    /// None at all: every tree copies its files.
    #[cfg(test)]
    pub fn none() -> SharedFiles {
        SharedFiles::in_dir(OnceLock::from(None))
    }

    fn in_dir(dir: OnceLock<Option<TempDir>>) -> SharedFiles {
        SharedFiles {
            dir,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            bytes: AtomicU64::new(0),
            sweep_at: AtomicU64::new(MAX_BYTES),
            next_temp: AtomicU64::new(0),
        }
    }

    /// Links the shared copy of `key` (made now if needed, from `store`) at `dest`,
    /// which must not exist yet (blocking I/O).
    pub(super) fn link(&self, key: &Key, store: &Store, dest: &Path) -> Result<Link, LayoutError> {
        let Some(dir) = self.dir() else {
            return Ok(Link::Unlinkable);
        };
        let name = dir.path().join(name(key));
        // Before taking a shard: the sweep takes each in turn.
        if self.bytes.load(Ordering::Relaxed) > self.sweep_at.load(Ordering::Relaxed) {
            self.sweep();
        }
        let mut shard = self.shard(key);
        let mut made_now = false;
        loop {
            let made = match shard.get(key) {
                Some(made) => *made,
                None => {
                    let made = self.make(key, store, dir.path(), &name)?;
                    shard.insert(*key, made);
                    made_now = true;
                    made
                }
            };
            match fs::hard_link(&name, dest) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(Link::Exists);
                }
                Err(err) if can_copy_instead(&err) => return Ok(Link::Unlinkable),
                Err(err) if err.kind() == io::ErrorKind::NotFound && !made_now => {
                    // Removed under us (by hand, or a temp cleaner): make it again.
                    self.forget_locked(&mut shard, key, &name);
                    continue;
                }
                Err(err) => return Err(io_error(dest, err)),
            }
            let meta = fs::symlink_metadata(dest).map_err(|err| io_error(dest, err))?;
            if Made::of(&meta) == made {
                return Ok(Link::Made(meta));
            }
            // Changed since it was made: neither this tree nor any later one uses it.
            let _ = fs::remove_file(dest);
            self.forget_locked(&mut shard, key, &name);
            if made_now {
                return Err(LayoutError::Io(format!(
                    "{} changed as it was made",
                    name.display()
                )));
            }
        }
    }

    /// Drops the copy of `key` if it is still the one `made` describes (a job found it
    /// changed): later trees get a fresh one.
    pub(super) fn forget(&self, key: &Key, made: Made) {
        let Some(dir) = self.dir.get().and_then(Option::as_ref) else {
            return;
        };
        let mut shard = self.shard(key);
        if shard.get(key) == Some(&made) {
            self.forget_locked(&mut shard, key, &dir.path().join(name(key)));
        }
    }

    /// The copies' directory, made now if this is its first use.
    fn dir(&self) -> Option<&TempDir> {
        self.dir
            .get_or_init(|| {
                tempfile::Builder::new()
                    .prefix("sshcc-files-")
                    .tempdir()
                    .inspect_err(|err| tracing::debug!("no shared job files: {err}"))
                    .ok()
            })
            .as_ref()
    }

    fn forget_locked(&self, shard: &mut HashMap<Key, Made>, key: &Key, name: &Path) {
        if let Some(made) = shard.remove(key) {
            self.bytes.fetch_sub(made.len, Ordering::Relaxed);
            let _ = fs::remove_file(name);
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Made>> {
        let index = usize::from(key.digest.hash[0]) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the verified blob to a temporary name, gives it its mode and mtime, and
    /// renames it to `name` (blocking I/O).
    fn make(&self, key: &Key, store: &Store, dir: &Path, name: &Path) -> Result<Made, LayoutError> {
        let mut blob = match store.open_verified(&key.digest) {
            Ok(blob) => blob,
            Err(StoreError::Missing(digest)) => return Err(LayoutError::Missing(vec![digest])),
            Err(err) => return Err(LayoutError::Io(err.to_string())),
        };
        let temp = dir.join(format!(
            "tmp-{}",
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let mode = if key.executable { 0o555 } else { 0o444 };
        let made = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temp)?;
            io::copy(&mut blob, &mut file)?;
            file.set_permissions(Permissions::from_mode(mode))?;
            let modified = match key.mtime {
                Some(mtime) => {
                    system_time(mtime).ok_or_else(|| io::Error::other("an invalid mtime"))?
                }
                // No client mtime: one fixed time, so the copy's mtime never moves.
                None => std::time::UNIX_EPOCH,
            };
            file.set_times(FileTimes::new().set_modified(modified))?;
            let made = Made::of(&file.metadata()?);
            fs::rename(&temp, name)?;
            Ok(made)
        })();
        made.inspect(|made| {
            self.bytes.fetch_add(made.len, Ordering::Relaxed);
        })
        .map_err(|err: io::Error| {
            let _ = fs::remove_file(&temp);
            io_error(name, err)
        })
    }

    /// Removes the copies no tree links (blocking I/O).
    fn sweep(&self) {
        let Some(dir) = self.dir.get().and_then(Option::as_ref) else {
            return;
        };
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let unlinked: Vec<Key> = shard
                .keys()
                .filter(|key| {
                    fs::symlink_metadata(dir.path().join(name(key))).is_ok_and(|m| m.nlink() <= 1)
                })
                .copied()
                .collect();
            for key in unlinked {
                self.forget_locked(&mut shard, &key, &dir.path().join(name(&key)));
            }
        }
        let left = self.bytes.load(Ordering::Relaxed);
        self.sweep_at
            .store(MAX_BYTES.max(left.saturating_mul(2)), Ordering::Relaxed);
    }
}

impl Default for SharedFiles {
    fn default() -> Self {
        SharedFiles::new()
    }
}

/// `HASH-SIZE-x-SECONDS.NANOS` (`-` for no mtime; `x` or `r` for the executable bit).
fn name(key: &Key) -> PathBuf {
    let mode = if key.executable { 'x' } else { 'r' };
    let mtime = match key.mtime {
        Some(Timestamp { seconds, nanos }) => format!("{seconds}.{nanos}"),
        None => "-".to_string(),
    };
    PathBuf::from(format!(
        "{}-{}-{mode}-{mtime}",
        key.digest.hash_hex(),
        key.digest.size_bytes
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_the_copies_no_tree_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), 1 << 30).unwrap();
        let shared = SharedFiles::new();
        let key = |content: &[u8]| {
            let digest = Digest::of(content);
            store.insert(&digest, content).unwrap();
            Key {
                digest,
                executable: false,
                mtime: None,
            }
        };
        let (kept, dropped) = (key(b"kept"), key(b"dropped"));
        for (key, dest) in [(&kept, "a"), (&dropped, "b")] {
            let linked = shared.link(key, &store, &dir.path().join(dest)).unwrap();
            assert!(matches!(linked, Link::Made(_)));
        }
        assert!(matches!(
            shared.link(&kept, &store, &dir.path().join("a")).unwrap(),
            Link::Exists
        ));
        fs::remove_file(dir.path().join("b")).unwrap();
        shared.sweep();
        let copies = shared.dir().unwrap().path();
        assert!(copies.join(name(&kept)).exists());
        assert!(!copies.join(name(&dropped)).exists());
        assert_eq!(shared.bytes.load(Ordering::Relaxed), 4);
        // A copy swept away is made again when a tree wants it.
        let linked = shared
            .link(&dropped, &store, &dir.path().join("b"))
            .unwrap();
        assert!(matches!(linked, Link::Made(_)));
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"dropped");
    }
}
