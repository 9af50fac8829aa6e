//! Taking blobs in: which of a job's blobs a client must send (REAPI's
//! FindMissingBlobs), and storing what it sends, verified against its digest before
//! anyone can see it, written to `tmp/` and linked into place without replacing
//! anything, then accounted for (evicting when the store passes its bound).

use std::collections::HashSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

use super::blobs::{Store, Touch, create_dir};
use super::error::{Result, StoreError, io_error};
use super::layout::cost;
use super::size::format_size;
use super::stats::Counters;
use crate::digest::{Digest, HashingReader};

/// A blob may take at most this fraction of the bound. A blob close to the bound would
/// evict everything, itself next; refusing it ([`StoreError::Full`]) makes that job
/// preprocess locally instead.
const MAX_SHARE: u64 = 8;

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The blob is now in the store.
    Stored,
    /// It already was (or another job stored it first); the content sent was still
    /// verified.
    AlreadyPresent,
}

impl Store {
    /// Whether the blob is present (the empty blob always is). Touches it for LRU.
    pub fn contains(&self, digest: &Digest) -> bool {
        digest.is_empty() || self.present(digest, Touch::IfStale)
    }

    /// REAPI's FindMissingBlobs, asked by a client: the digests of `digests` not in
    /// the store, each once, in the order asked. Present blobs are touched now (not once
    /// a minute), so that a job's inputs, once confirmed, outlast whatever its upload
    /// evicts. This costs a `stat` per digest and does not read content: a corrupt blob
    /// is caught when it is materialised.
    pub fn find_missing(&self, digests: &[Digest]) -> Vec<Digest> {
        self.absent(digests, Touch::Now)
    }

    /// The same check by a job about to lay out its tree, which reads the blobs next:
    /// the usual once-a-minute touch is enough.
    pub fn missing_for_job(&self, digests: &[Digest]) -> Vec<Digest> {
        self.absent(digests, Touch::IfStale)
    }

    fn absent(&self, digests: &[Digest], touch: Touch) -> Vec<Digest> {
        let mut seen = HashSet::with_capacity(digests.len());
        let mut missing = Vec::new();
        for digest in digests {
            if !seen.insert(*digest) || digest.is_empty() {
                continue;
            }
            if self.present(digest, touch) {
                Counters::bump(&self.counters.found, 1);
            } else {
                Counters::bump(&self.counters.missing, 1);
                missing.push(*digest);
            }
        }
        missing
    }

    /// Stores `content` under `digest`, refusing it unless it hashes to `digest`.
    pub fn insert(&self, digest: &Digest, content: &[u8]) -> Result<Inserted> {
        let actual = Digest::of(content);
        if actual != *digest {
            return Err(self.refuse(digest, actual));
        }
        if digest.is_empty() {
            return Ok(Inserted::AlreadyPresent);
        }
        self.check_fits(digest)?;
        if self.present(digest, Touch::IfStale) {
            return Ok(Inserted::AlreadyPresent);
        }
        let mut temp = self.temp_file(digest)?;
        temp.write_all(content)
            .map_err(|err| self.write_error(digest, err))?;
        self.publish(digest, temp)
    }

    /// Stores what `reader` yields under `digest`, hashing while writing, so a large
    /// blob is never held in memory. At most one byte more than `digest` announces is
    /// read: a longer stream is refused without filling the disk. The content is
    /// verified even when the blob is already present.
    pub fn insert_reader(&self, digest: &Digest, reader: impl Read) -> Result<Inserted> {
        let mut reader = HashingReader::new(reader.take(digest.size_bytes.saturating_add(1)));
        let reading = |err| io_error(format!("cannot read the content of blob {digest}"), err);
        if digest.is_empty() || self.present(digest, Touch::IfStale) {
            io::copy(&mut reader, &mut io::sink()).map_err(reading)?;
            let actual = reader.digest();
            if actual != *digest {
                return Err(self.refuse(digest, actual));
            }
            return Ok(Inserted::AlreadyPresent);
        }
        self.check_fits(digest)?;
        let mut temp = self.temp_file(digest)?;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(reading(err)),
            };
            temp.write_all(&buffer[..read])
                .map_err(|err| self.write_error(digest, err))?;
        }
        let actual = reader.digest();
        if actual != *digest {
            // Dropping `temp` removes it: nothing of a forged blob stays behind.
            return Err(self.refuse(digest, actual));
        }
        self.publish(digest, temp)
    }

    /// [`Store::insert_reader`] from a file (which may change later: it is copied, not
    /// linked).
    pub fn insert_file(&self, digest: &Digest, path: &Path) -> Result<Inserted> {
        let file = File::open(path)
            .map_err(|err| io_error(format!("cannot read {}", path.display()), err))?;
        self.insert_reader(digest, file)
    }

    fn check_fits(&self, digest: &Digest) -> Result<()> {
        let limit = self.max_bytes / MAX_SHARE;
        if cost(digest.size_bytes) > limit {
            return Err(StoreError::Full {
                digest: *digest,
                reason: format!(
                    "it is larger than the {} a blob may take of the store's {}",
                    format_size(limit),
                    format_size(self.max_bytes)
                ),
            });
        }
        Ok(())
    }

    /// A temporary file in `tmp/`, flocked for as long as it lives so that
    /// `evict::remove_stale_temps` in another process leaves it alone.
    fn temp_file(&self, digest: &Digest) -> Result<NamedTempFile> {
        let make = || {
            tempfile::Builder::new()
                .prefix(".blob-")
                .tempfile_in(&self.tmp)
        };
        let temp = match make() {
            // Someone removed the store under us: recreate it rather than fail jobs.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                create_dir(&self.tmp)?;
                make()
            }
            other => other,
        }
        .map_err(|err| self.write_error(digest, err))?;
        let _ = temp.as_file().try_lock();
        Ok(temp)
    }

    /// Makes a complete, verified temporary file visible under the digest's name, never
    /// replacing a blob already there, then accounts for it.
    fn publish(&self, digest: &Digest, temp: NamedTempFile) -> Result<Inserted> {
        temp.as_file()
            .set_permissions(Permissions::from_mode(0o444))
            .map_err(|err| self.write_error(digest, err))?;
        let path = self.blob_path(digest);
        let mut temp = temp;
        let mut made_dir = false;
        loop {
            match temp.persist_noclobber(&path) {
                Ok(_) => break,
                Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => {
                    // Another job or process stored it first. Its copy is as good as
                    // ours (a name only ever appears complete and verified); ours is
                    // removed as `err.file` drops.
                    if let Ok(meta) = fs::symlink_metadata(&path) {
                        self.touch(&path, &meta, Touch::IfStale);
                    }
                    return Ok(Inserted::AlreadyPresent);
                }
                // Fan-out directories are made on first use.
                Err(err) if err.error.kind() == io::ErrorKind::NotFound && !made_dir => {
                    create_dir(path.parent().expect("a blob path has a parent"))?;
                    made_dir = true;
                    temp = err.file;
                }
                Err(err) => return Err(self.write_error(digest, err.error)),
            }
        }
        Counters::bump(&self.counters.stored, 1);
        Counters::bump(&self.counters.stored_bytes, digest.size_bytes);
        tracing::trace!("stored blob {digest}");
        match self.usage.add(cost(digest.size_bytes) as i64) {
            Ok(estimate) if estimate > self.max_bytes => match self.bounds().evict_if_over() {
                Ok(report) => self.counters.count_scan(report),
                Err(err) => tracing::warn!("cannot evict from the blob store: {err}"),
            },
            Ok(_) => {}
            Err(err) => tracing::warn!(
                "cannot update the blob store's size estimate in {}: {err}",
                self.root.display()
            ),
        }
        Ok(Inserted::Stored)
    }

    fn refuse(&self, expected: &Digest, actual: Digest) -> StoreError {
        Counters::bump(&self.counters.refused, 1);
        tracing::warn!("refused a blob sent as {expected}: its content hashes to {actual}");
        StoreError::DigestMismatch {
            expected: *expected,
            actual,
        }
    }

    /// An error writing a blob: a full disk (or quota) is [`StoreError::Full`], so that
    /// the caller treats it like a blob too large, not like a broken store.
    fn write_error(&self, digest: &Digest, err: io::Error) -> StoreError {
        if matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
            StoreError::Full {
                digest: *digest,
                reason: format!("{err} in {}", self.root.display()),
            }
        } else {
            io_error(
                format!("cannot write blob {digest} in {}", self.root.display()),
                err,
            )
        }
    }
}
