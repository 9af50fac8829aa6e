//! Handing blobs to jobs, verified: [`Store::materialize`] (a hardlink, or a copy, at
//! the job's path), [`Store::get`] and [`Store::open_verified`]. A corrupt blob is
//! removed and reported missing, so that the client sends it again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::blobs::{Store, Touch};
use super::error::{Result, io_error};
use super::verified::Stamp;
use crate::digest::{Digest, HashingReader};

impl Store {
    /// Puts the blob at `dest` (which must not exist; its directory must) for a job's
    /// compiler to read: a hardlink, read-only, or a verified copy when `dest` is on
    /// another filesystem or the blob has too many links. The content is verified on the
    /// way (once per process while its inode, size and mtime stay the same); a corrupt
    /// blob is removed from the store and reported [`StoreError::Missing`], with nothing
    /// left at `dest`. Once this returns `Ok`, eviction cannot take the content from the
    /// job.
    pub fn materialize(&self, digest: &Digest, dest: &Path) -> Result<()> {
        let creating = |err| io_error(format!("cannot create {}", dest.display()), err);
        if digest.is_empty() {
            create_read_only(dest).map_err(creating)?;
            return Ok(());
        }
        let source = self.blob_path(digest);
        // Link first, check after: the blob may be evicted at any moment, but not once
        // the job holds a link to it.
        let mut retried = false;
        loop {
            match fs::hard_link(&source, dest) {
                Ok(()) => return self.check_linked(digest, &source, dest),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    if fs::symlink_metadata(&source).is_err() {
                        return Err(self.missing(digest));
                    }
                    // The blob is there, so `dest`'s directory is not, unless the blob
                    // appeared just now; one retry tells which.
                    if retried {
                        return Err(creating(err));
                    }
                    retried = true;
                }
                Err(err) if can_copy_instead(&err) => {
                    return self.copy_out(digest, &source, dest);
                }
                Err(err) => return Err(creating(err)),
            }
        }
    }

    /// The blob's content, verified (a corrupt blob is removed and reported missing):
    /// hashed now, or earlier by this process with the same stamp (every job walks the
    /// directory blobs of its tree, most of them the last job's too).
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>> {
        if digest.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.blob_path(digest);
        let (file, meta) = self.open_blob(digest, &path)?;
        let mut content = Vec::with_capacity(meta.len() as usize);
        (&file)
            .take(digest.size_bytes.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|err| io_error(format!("cannot read blob {digest}"), err))?;
        let stamp = Stamp::of(&meta);
        if !self.verified.contains(digest, stamp) {
            if Digest::of(&content) != *digest {
                self.discard(digest, &path, Some(&meta), "its content does not match");
                return Err(self.missing(digest));
            }
            self.verified.remember(digest, stamp);
        }
        self.touch(&path, &meta, Touch::IfStale);
        Ok(content)
    }

    /// The blob as an open file positioned at its start, verified first (a corrupt blob
    /// is removed and reported missing), for streaming it out. Verified means hashed
    /// now, or earlier by this process with the same stamp.
    pub fn open_verified(&self, digest: &Digest) -> Result<File> {
        let reading = |err| io_error(format!("cannot read blob {digest}"), err);
        if digest.is_empty() {
            return tempfile::tempfile().map_err(reading);
        }
        let path = self.blob_path(digest);
        let (mut file, meta) = self.open_blob(digest, &path)?;
        // A job's tree reads hundreds of blobs, most of them read by the previous job
        // too: hashed once per process while their stamp holds, as `materialize` does.
        let stamp = Stamp::of(&meta);
        if !self.verified.contains(digest, stamp) {
            let actual = Digest::of_reader((&file).take(digest.size_bytes.saturating_add(1)))
                .map_err(reading)?;
            if actual != *digest {
                self.discard(digest, &path, Some(&meta), "its content does not match");
                return Err(self.missing(digest));
            }
            file.rewind().map_err(reading)?;
            self.verified.remember(digest, stamp);
        }
        self.touch(&path, &meta, Touch::IfStale);
        Ok(file)
    }

    /// After `materialize` linked the blob to `dest`: verify what the job will read.
    fn check_linked(&self, digest: &Digest, source: &Path, dest: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(dest)
            .map_err(|err| io_error(format!("cannot stat {}", dest.display()), err))?;
        let stamp = Stamp::of(&meta);
        let good = meta.len() == digest.size_bytes
            && (self.verified.contains(digest, stamp)
                || match Digest::of_file(dest) {
                    Ok(actual) => actual == *digest,
                    Err(err) => {
                        let _ = fs::remove_file(dest);
                        return Err(io_error(format!("cannot read blob {digest}"), err));
                    }
                });
        if !good {
            let _ = fs::remove_file(dest);
            self.discard(digest, source, Some(&meta), "its content does not match");
            return Err(self.missing(digest));
        }
        self.verified.remember(digest, stamp);
        self.touch(dest, &meta, Touch::IfStale);
        Ok(())
    }

    /// `materialize` where a link cannot be made: a copy, verified while copying (the
    /// copy is what the job reads, so it is what must match).
    pub(super) fn copy_out(&self, digest: &Digest, source: &Path, dest: &Path) -> Result<()> {
        let (file, meta) = self.open_blob(digest, source)?;
        let mut out = create_read_only(dest)
            .map_err(|err| io_error(format!("cannot create {}", dest.display()), err))?;
        let mut reader = HashingReader::new((&file).take(digest.size_bytes.saturating_add(1)));
        if let Err(err) = io::copy(&mut reader, &mut out) {
            let _ = fs::remove_file(dest);
            return Err(io_error(
                format!("cannot copy blob {digest} to {}", dest.display()),
                err,
            ));
        }
        if reader.digest() != *digest {
            let _ = fs::remove_file(dest);
            self.discard(digest, source, Some(&meta), "its content does not match");
            return Err(self.missing(digest));
        }
        self.touch(source, &meta, Touch::IfStale);
        Ok(())
    }
}

/// `link(2)` errors after which a copy still works: another filesystem, too many links,
/// or a filesystem without hard links.
pub fn can_copy_instead(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EXDEV | libc::EMLINK | libc::EPERM | libc::EOPNOTSUPP)
    )
}

fn create_read_only(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
}
