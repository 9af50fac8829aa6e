//! The box's content-addressed store: header and source blobs that clients sent once,
//! kept per account under `~/.cache/sshcc/store` for every later job that needs them
//! (issue 13, item 1; REAPI's CAS is the model).
//!
//! # Trust
//! Clients are not trusted. A blob becomes visible under its name only after its content
//! hashed to that name ([`StoreError::DigestMismatch`] otherwise, with nothing left on
//! disk), and the disk is not trusted either: a blob is checked again when it is handed
//! to a job ([`Store::materialize`], [`Store::get`], [`Store::open_verified`]), and a
//! corrupt one is removed and reported [`StoreError::Missing`], so the client sends it
//! again. Hashing every input of every job would cost more than it protects, so a
//! process hashes a blob the first time it hands it out and then trusts it while its
//! inode, size and mtime stay the same: a write changes the mtime, while bit rot under
//! an unchanged mtime is caught by the next process (every new `sshcc --mux`) and by
//! [`Store::get`] and [`Store::open_verified`], which always hash. Blobs are read-only
//! (0444) so a job cannot write through its hardlink by accident (root ignores the mode;
//! the mtime still gives it away).
//!
//! # Layout: the filesystem is the index
//! ```text
//! ROOT/                     0700: this account's blobs are its users' source code
//!   sha256/ab/abcdef…-SIZE  a blob, named by its digest, fanned out on the first byte
//!   tmp/                    inserts in progress (flocked by their writer)
//!   usage                   the shared size estimate (see `usage`)
//!   evict.lock              flocked by whoever scans or evicts
//! ```
//! There is no index file to corrupt or to keep in step: a name exists exactly when its
//! complete blob does, because blobs are written to `tmp/` and linked into place without
//! replacing anything (a concurrent insert of the same blob finds the name taken and
//! drops its copy). Nothing is fsynced: after a power cut a blob may be empty or garbage
//! under its name, which is what the verification on use is for.
//!
//! # Many jobs, many processes
//! One `Store` serves every job of a `sshcc --mux` process (it is `Sync`), and any number
//! of processes (several daemons' links, several users of the account) share a root.
//! - Eviction is least-recently-used by atime, which every use sets explicitly (at most
//!   once a minute per blob), so `noatime` mounts do not matter; mtime stays the
//!   insertion time so that it can tell a blob was written to.
//! - The size is an estimate shared through the `usage` file: inserts add to it, and
//!   when it passes the bound the inserting thread takes `evict.lock`, scans the store,
//!   removes the least recently used blobs down to 90% of the bound and writes the
//!   counted total back. A process that died mid-way leaves at most a wrong estimate,
//!   which the next scan replaces.
//! - A job's input cannot vanish under it: [`Store::materialize`] hardlinks first and
//!   checks after, and the job's link keeps the content alive whatever eviction does
//!   next. If the blob was evicted before the link, materialising reports
//!   [`StoreError::Missing`] and the client must send it again, as REAPI's
//!   `FAILED_PRECONDITION` asks a client to. A job should therefore materialise what is
//!   present before asking for what is missing: what it has linked is safe.
//!
//! Every method does blocking file I/O; async callers use `spawn_blocking`.

mod evict;
mod layout;
pub mod size;
mod usage;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::NamedTempFile;

use crate::digest::{Digest, HashingReader};

pub use evict::ScanReport;
use layout::{BLOB_DIR, TMP_DIR, USAGE_FILE, cost};
pub use size::{ParseSizeError, format_size, parse_size};

/// The bound when the box owner sets none: a box is a big machine, and a store holds
/// several projects' trees (and, where the toolchain fingerprint does not cover them,
/// their system headers).
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// A blob may take at most this fraction of the bound. A blob close to the bound would
/// evict everything, itself next; refusing it ([`StoreError::Full`]) makes that job
/// preprocess locally instead.
const MAX_SHARE: u64 = 8;

/// How stale a blob's atime must be before a use writes it again: LRU needs minutes,
/// not nanoseconds, and most uses then cost one `stat`.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How many verified blobs a process remembers (about 80 bytes each), after which it
/// forgets them all and verifies again.
const VERIFIED_MEMORY: usize = 1 << 20;

/// What went wrong, for callers that branch on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The content does not hash to the digest it was sent under: a forged or damaged
    /// blob, refused. For a stream longer than announced, `actual` covers only the bytes
    /// read (one more than announced).
    #[error("blob content does not match its digest {expected}: it hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Not in the store (never sent, evicted, or found corrupt and removed): ask the
    /// client for it.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// The store cannot take this blob: too large for the bound, or the disk is full.
    #[error("the store cannot take blob {digest}: {reason}")]
    Full { digest: Digest, reason: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The blob is now in the store.
    Stored,
    /// It already was (or another job stored it first); the content sent was still
    /// verified.
    AlreadyPresent,
}

/// This process's counts since the store was opened, and the shared size estimate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub max_bytes: u64,
    /// The shared estimate of the whole store (every process's blobs).
    pub estimated_bytes: u64,
    /// Digests asked about that were present / absent.
    pub found: u64,
    pub missing: u64,
    /// Blobs written, and their bytes.
    pub stored: u64,
    pub stored_bytes: u64,
    /// Inserts refused because the content did not match the digest.
    pub refused: u64,
    /// Blobs found corrupt on disk and removed.
    pub corrupt: u64,
    /// Blobs evicted by this process, and their cost.
    pub evicted: u64,
    pub evicted_bytes: u64,
}

#[derive(Default)]
struct Counters {
    found: AtomicU64,
    missing: AtomicU64,
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    refused: AtomicU64,
    corrupt: AtomicU64,
    evicted: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// The identity of a file's content as far as `stat` can tell: which inode, how long,
/// when last written. A blob verified with this stamp need not be hashed again while the
/// stamp holds; writing to it changes the mtime. (ctime would be stricter but changes on
/// every link and atime update, so it would never hold.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// An account's blob store on the box. See the module documentation.
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    max_bytes: u64,
    usage: usage::Usage,
    verified: Mutex<HashMap<Digest, Stamp>>,
    counters: Counters,
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
            verified: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        };
        create_dir(&store.blobs)?;
        create_dir(&store.tmp)?;
        evict::remove_stale_temps(&store.tmp);
        let report = store
            .bounds()
            .scan_on_open()
            .map_err(|err| store.scan_error(err))?;
        store.count_scan(report);
        Ok(store)
    }

    /// Counts the whole store, evicts down to below the bound if it is over, and makes
    /// the shared estimate exact. Waits while another process does the same.
    pub fn scan(&self) -> Result<ScanReport> {
        let report = self.bounds().scan().map_err(|err| self.scan_error(err))?;
        self.count_scan(Some(report.clone()));
        Ok(report)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether the blob is present (the empty blob always is). Touches it for LRU.
    pub fn contains(&self, digest: &Digest) -> bool {
        digest.is_empty() || self.present(digest)
    }

    /// REAPI's FindMissingBlobs: the digests of `digests` not in the store, each once,
    /// in the order asked. Present blobs are touched, so that a job's inputs, once
    /// confirmed, are the last to be evicted. This costs a `stat` per digest and does
    /// not read content: a corrupt blob is caught when it is materialised.
    pub fn find_missing(&self, digests: &[Digest]) -> Vec<Digest> {
        let mut seen = HashSet::with_capacity(digests.len());
        let mut missing = Vec::new();
        for digest in digests {
            if !seen.insert(*digest) || digest.is_empty() {
                continue;
            }
            if self.present(digest) {
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
        if self.present(digest) {
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
        if digest.is_empty() || self.present(digest) {
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

    /// The blob's content, verified (a corrupt blob is removed and reported missing).
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
        if Digest::of(&content) != *digest {
            self.discard(digest, &path, Some(&meta), "its content does not match");
            return Err(self.missing(digest));
        }
        self.touch(&path, &meta);
        Ok(content)
    }

    /// The blob as an open file positioned at its start, verified first (a corrupt blob
    /// is removed and reported missing), for streaming it out.
    pub fn open_verified(&self, digest: &Digest) -> Result<File> {
        let reading = |err| io_error(format!("cannot read blob {digest}"), err);
        if digest.is_empty() {
            return tempfile::tempfile().map_err(reading);
        }
        let path = self.blob_path(digest);
        let (mut file, meta) = self.open_blob(digest, &path)?;
        let actual = Digest::of_reader((&file).take(digest.size_bytes.saturating_add(1)))
            .map_err(reading)?;
        if actual != *digest {
            self.discard(digest, &path, Some(&meta), "its content does not match");
            return Err(self.missing(digest));
        }
        file.rewind().map_err(reading)?;
        self.touch(&path, &meta);
        Ok(file)
    }

    /// This process's counts and the shared size estimate.
    pub fn stats(&self) -> StoreStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        StoreStats {
            max_bytes: self.max_bytes,
            estimated_bytes: self
                .usage
                .read()
                .ok()
                .flatten()
                .map_or(0, |hint| hint.bytes),
            found: count(&counters.found),
            missing: count(&counters.missing),
            stored: count(&counters.stored),
            stored_bytes: count(&counters.stored_bytes),
            refused: count(&counters.refused),
            corrupt: count(&counters.corrupt),
            evicted: count(&counters.evicted),
            evicted_bytes: count(&counters.evicted_bytes),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        layout::blob_path(&self.blobs, digest)
    }

    fn bounds(&self) -> evict::Bounds<'_> {
        evict::Bounds {
            root: &self.root,
            max_bytes: self.max_bytes,
            usage: &self.usage,
        }
    }

    fn count_scan(&self, report: Option<ScanReport>) {
        if let Some(report) = report {
            Counters::bump(&self.counters.evicted, report.evicted);
            Counters::bump(&self.counters.evicted_bytes, report.evicted_bytes);
            Counters::bump(&self.counters.corrupt, report.removed_corrupt);
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
    fn present(&self, digest: &Digest) -> bool {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == digest.size_bytes => {
                self.touch(&path, &meta);
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

    fn open_blob(&self, digest: &Digest, path: &Path) -> Result<(File, Metadata)> {
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

    /// After `materialize` linked the blob to `dest`: verify what the job will read.
    fn check_linked(&self, digest: &Digest, source: &Path, dest: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(dest)
            .map_err(|err| io_error(format!("cannot stat {}", dest.display()), err))?;
        let stamp = Stamp::of(&meta);
        let good = meta.len() == digest.size_bytes
            && (self.was_verified(digest, stamp)
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
        self.remember_verified(digest, stamp);
        self.touch(dest, &meta);
        Ok(())
    }

    /// `materialize` where a link cannot be made: a copy, verified while copying (the
    /// copy is what the job reads, so it is what must match).
    fn copy_out(&self, digest: &Digest, source: &Path, dest: &Path) -> Result<()> {
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
        self.touch(source, &meta);
        Ok(())
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
                        self.touch(&path, &meta);
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
                Ok(report) => self.count_scan(report),
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

    /// Removes a corrupt blob, but only if `path` still names the inode found bad
    /// (`seen`): another process may have put a good copy there meanwhile.
    fn discard(&self, digest: &Digest, path: &Path, seen: Option<&Metadata>, why: &str) {
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
                self.forget_verified(digest);
                if let Err(err) = self.usage.add(-(cost(digest.size_bytes) as i64)) {
                    tracing::debug!("cannot update the blob store's size estimate: {err}");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!("cannot remove corrupt blob {}: {err}", path.display()),
        }
    }

    /// Marks a blob recently used (its atime), unless it was within [`TOUCH_EVERY`].
    /// Failing to touch only makes the blob look older.
    fn touch(&self, path: &Path, meta: &Metadata) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        if now.saturating_sub(meta.atime()) < TOUCH_EVERY.as_secs() as i64 {
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

    fn was_verified(&self, digest: &Digest, stamp: Stamp) -> bool {
        self.verified_memory().get(digest) == Some(&stamp)
    }

    fn remember_verified(&self, digest: &Digest, stamp: Stamp) {
        let mut memory = self.verified_memory();
        if memory.len() >= VERIFIED_MEMORY {
            memory.clear();
        }
        memory.insert(*digest, stamp);
    }

    fn forget_verified(&self, digest: &Digest) {
        self.verified_memory().remove(digest);
    }

    fn verified_memory(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Stamp>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse(&self, expected: &Digest, actual: Digest) -> StoreError {
        Counters::bump(&self.counters.refused, 1);
        tracing::warn!("refused a blob sent as {expected}: its content hashes to {actual}");
        StoreError::DigestMismatch {
            expected: *expected,
            actual,
        }
    }

    fn missing(&self, digest: &Digest) -> StoreError {
        StoreError::Missing(*digest)
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

fn default_root_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
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

/// `link(2)` errors after which a copy still works: another filesystem, too many links,
/// or a filesystem without hard links.
fn can_copy_instead(err: &io::Error) -> bool {
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

fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| io_error(format!("cannot create {}", dir.display()), err))
}

fn io_error(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}
