//! The store's size estimate, shared by every process using the store.
//!
//! Each insert adds its blob's cost here and each eviction pass replaces the figure with
//! what it counted on disk, so no process needs to scan to know when the bound is passed.
//! It is a hint, never the truth: a process killed between publishing a blob and adding
//! its cost leaves it low, a blob removed by hand leaves it high. Both are corrected by
//! the next scan, and a figure that is missing, garbled or older than a day makes
//! [`Store::open`](super::Store::open) scan.
//!
//! The file is `MAGIC`, the byte estimate and the Unix time of the last scan (both
//! little-endian `u64`), read and written in place under an exclusive `flock`; the kernel
//! drops the lock when a holder dies, so a crash never wedges the store.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

const MAGIC: &[u8; 8] = b"sshccSU1";
const LEN: usize = MAGIC.len() + 16;

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hint {
    /// The estimated cost of every blob in the store, in bytes.
    pub bytes: u64,
    /// When a scan last set `bytes` (Unix seconds); 0 when none ever did.
    pub scanned_at: u64,
}

/// The open estimate file. The mutex serialises this process's threads, because `flock`
/// is held per open file description and every thread shares this one; the `flock`
/// serialises processes.
pub(super) struct Usage {
    file: Mutex<File>,
}

impl Usage {
    pub fn open(path: &Path) -> io::Result<Usage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        Ok(Usage {
            file: Mutex::new(file),
        })
    }

    /// The current figure, `None` when the file holds none (new, or not ours).
    pub fn read(&self) -> io::Result<Option<Hint>> {
        self.locked(read_hint)
    }

    /// Adds `delta` bytes (negative for a removal) and returns the new estimate.
    pub fn add(&self, delta: i64) -> io::Result<u64> {
        self.update(|hint| {
            let hint = hint.unwrap_or(Hint {
                bytes: 0,
                scanned_at: 0,
            });
            Hint {
                bytes: hint.bytes.saturating_add_signed(delta),
                ..hint
            }
        })
        .map(|hint| hint.bytes)
    }

    /// Replaces the figure with `change(current)`, atomically with respect to every
    /// other process and thread.
    pub fn update(&self, change: impl FnOnce(Option<Hint>) -> Hint) -> io::Result<Hint> {
        self.locked(|file| {
            let hint = change(read_hint(file)?);
            let mut bytes = [0u8; LEN];
            bytes[..8].copy_from_slice(MAGIC);
            bytes[8..16].copy_from_slice(&hint.bytes.to_le_bytes());
            bytes[16..].copy_from_slice(&hint.scanned_at.to_le_bytes());
            file.write_all_at(&bytes, 0)?;
            Ok(hint)
        })
    }

    fn locked<T>(&self, work: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        // A thread that panicked holding the mutex left the file as consistent as a
        // killed process would: carry on.
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.lock()?;
        let result = work(&file);
        let _ = file.unlock();
        result
    }
}

fn read_hint(file: &File) -> io::Result<Option<Hint>> {
    let mut bytes = [0u8; LEN];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    if &bytes[..8] != MAGIC {
        return Ok(None);
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(Some(Hint {
        bytes: word(8),
        scanned_at: word(16),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_survive_reopening_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage");
        let usage = Usage::open(&path).unwrap();
        assert_eq!(usage.read().unwrap(), None);
        assert_eq!(usage.add(4096).unwrap(), 4096);
        assert_eq!(usage.add(-8192).unwrap(), 0, "saturates at zero");
        usage
            .update(|_| Hint {
                bytes: 100,
                scanned_at: 7,
            })
            .unwrap();
        assert_eq!(usage.add(5).unwrap(), 105);
        let again = Usage::open(&path).unwrap();
        assert_eq!(
            again.read().unwrap(),
            Some(Hint {
                bytes: 105,
                scanned_at: 7
            })
        );
        std::fs::write(&path, b"not a usage file at all, longer than 24").unwrap();
        assert_eq!(again.read().unwrap(), None);
    }
}
