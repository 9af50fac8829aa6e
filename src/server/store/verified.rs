//! The blobs this process has hashed, by [`Stamp`]: a blob handed out once need not be
//! hashed again while its inode, size and mtime stay the same (see the module
//! documentation's Trust).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::digest::Digest;

/// How many verified blobs a process remembers (about 80 bytes each), after which it
/// forgets them all and verifies again.
const VERIFIED_MEMORY: usize = 1 << 20;

/// How long ago a blob must have been written for its stamp to be remembered: longer
/// than any filesystem's timestamp tick.
const SETTLED_SECONDS: i64 = 2;

/// The identity of a file's content as far as `stat` can tell: which inode, how long,
/// when last written. A blob verified with this stamp need not be hashed again while the
/// stamp holds; writing to it changes the mtime. (ctime would be stricter but changes on
/// every link and atime update, so it would never hold.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub(super) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// Which blobs were verified with which stamp; shared by every job of the process.
#[derive(Default)]
pub(super) struct VerifiedMemory(Mutex<HashMap<Digest, Stamp>>);

impl VerifiedMemory {
    pub(super) fn contains(&self, digest: &Digest, stamp: Stamp) -> bool {
        self.lock().get(digest) == Some(&stamp)
    }

    /// Remembers a blob just hashed, unless it was written so recently that a second
    /// write in the same timestamp tick would leave the stamp as it is.
    pub(super) fn remember(&self, digest: &Digest, stamp: Stamp) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        if stamp.mtime >= now - SETTLED_SECONDS {
            return;
        }
        let mut memory = self.lock();
        if memory.len() >= VERIFIED_MEMORY {
            memory.clear();
        }
        memory.insert(*digest, stamp);
    }

    pub(super) fn forget(&self, digest: &Digest) {
        self.lock().remove(digest);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Stamp>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
