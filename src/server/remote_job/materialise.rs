//! The job's tree on the box's disk: the client's files at their client paths under
//! `<root>`, made from verified store blobs, and read back without ever following a
//! link the client made.
//!
//! The tree is hostile: its symlinks may point anywhere, and its paths may try to make
//! the box (which is not confined, unlike the compiler) write or read through them. So
//! every entry is created inside a directory this module made itself (a symlink or file
//! in the way is refused, never followed), files are fresh copies (`O_EXCL`, so nothing
//! existing is written through), symlinks are leaves whose absolute targets are moved
//! under `<root>`, and outputs are read back with `O_NOFOLLOW` one real directory at a
//! time. Only the compiler follows the tree's symlinks, and the sandbox bounds it.
//!
//! Files are links to the process's [`SharedFiles`] (one read-only inode per blob and
//! client mtime: see there), or fresh copies where no link can be made. Laying out is
//! still what a job's layout costs, so a tree outlives its job: the next job of the
//! process takes it over, and `prune` keeps what it may (see there).

mod prune;
mod shared;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, FileTimes, Metadata, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::server::store::{Store, StoreError};
use crate::tree::{Timestamp, WalkEntry};
pub use shared::SharedFiles;
use shared::{Key, Link, Made};

/// Why the tree could not be laid out.
#[derive(Debug)]
pub(super) enum LayoutError {
    /// These blobs are not (any more) in the store.
    Missing(Vec<Digest>),
    /// The tree or a path of the job does what no honest client sends.
    Refused(String),
    /// The box's own disk failed.
    Io(String),
}

/// The tree under `<root>`, and what was laid out in it.
#[derive(Debug)]
pub(super) struct Tree {
    root: PathBuf,
    /// Every entry made here, relative to the root (the root is the empty path): its
    /// directories are the only places new entries go.
    laid: HashMap<PathBuf, Laid>,
    /// When the tree was last handed to a compile ([`Tree::seal`]): what the compile
    /// changed has a later ctime.
    sealed_at: SystemTime,
}

/// An entry as it was asked for and as `lstat` saw it once made.
#[derive(Debug)]
struct Laid {
    entry: WalkEntry,
    /// `None` for a directory until the tree is sealed (its entries change it).
    stamp: Option<Stamp>,
    /// A link to a [`SharedFiles`] copy, whose ctime moves whenever any tree links or
    /// unlinks it: only its inode, mode, size and mtime say it is unchanged.
    shared: bool,
}

impl Laid {
    /// Whether `meta` is still the entry as it was laid out.
    fn unchanged(&self, meta: &Metadata) -> bool {
        let Some(stamp) = self.stamp else {
            return false;
        };
        match self.shared {
            true => Made::of(meta) == stamp.made(),
            false => Stamp::of(meta) == stamp,
        }
    }

    /// The shared copy this entry links, if it is one.
    fn shared_key(&self) -> Option<(Key, Made)> {
        let stamp = self.stamp.filter(|_| self.shared)?;
        Some((Key::of(&self.entry)?, stamp.made()))
    }
}

/// What `lstat` tells of an entry: any change to its content, mode or times, or its
/// replacement, changes the ctime or the inode, and userspace cannot set a ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mode: u32,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            mode: meta.mode(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn made(&self) -> Made {
        Made::from_stamp(self.ino, self.mode, self.len, self.mtime)
    }
}

impl Tree {
    /// Makes the empty root (its parent, the job directory, must exist).
    pub fn create(root: PathBuf) -> Result<Tree, LayoutError> {
        make_dir(&root).map_err(|err| io_error(&root, err))?;
        let laid = Laid {
            entry: WalkEntry::Directory,
            stamp: None,
            shared: false,
        };
        Ok(Tree {
            root,
            laid: HashMap::from([(PathBuf::new(), laid)]),
            sealed_at: UNIX_EPOCH,
        })
    }

    /// Records the directories' stamps once everything is laid out, just before a
    /// compile may change the tree (blocking I/O).
    pub fn seal(&mut self) -> Result<(), LayoutError> {
        for (path, laid) in &mut self.laid {
            if laid.entry == WalkEntry::Directory {
                let full = self.root.join(path);
                let meta = fs::symlink_metadata(&full).map_err(|err| io_error(&full, err))?;
                laid.stamp = Some(Stamp::of(&meta));
            }
        }
        self.sealed_at = SystemTime::now();
        Ok(())
    }

    /// Lays out `entries` (each directory before what is in it, as a walk lists them)
    /// from `store`, linking files from `shared` where it can. Every blob missing from
    /// the store is reported at once.
    pub fn fill(
        &mut self,
        entries: &[(PathBuf, WalkEntry)],
        store: &Store,
        shared: &SharedFiles,
    ) -> Result<(), LayoutError> {
        // What an earlier job's tree still holds as asked needs nothing from the store.
        let digests: Vec<Digest> = entries
            .iter()
            .filter(|(path, node)| !self.holds(path, node))
            .filter_map(|(_, node)| match node {
                WalkEntry::File { digest, .. } => Some(*digest),
                _ => None,
            })
            .collect();
        let missing = store.missing_for_job(&digests);
        if !missing.is_empty() {
            return Err(LayoutError::Missing(missing));
        }
        // A blob found corrupt now is removed from the store and missing after all;
        // the rest is still laid out, so that one retry brings them all.
        let mut missing = Vec::new();
        for (path, node) in entries {
            let path = relative(path)
                .ok_or_else(|| refused(format!("the tree has an invalid path {path:?}")))?;
            if self.holds(&path, node) {
                continue;
            }
            match node {
                WalkEntry::Directory => self.directory(&path)?,
                WalkEntry::File {
                    digest,
                    executable,
                    mtime,
                } => match self.file(&path, digest, *executable, *mtime, store, shared) {
                    Err(LayoutError::Missing(digests)) => missing.extend(digests),
                    other => other?,
                },
                WalkEntry::Symlink { target } => self.symlink(&path, target)?,
            }
        }
        match missing.is_empty() {
            true => Ok(()),
            false => Err(LayoutError::Missing(missing)),
        }
    }

    /// Whether `entry` is laid out at `path` already (by an earlier job, kept by `prune`).
    fn holds(&self, path: &Path, entry: &WalkEntry) -> bool {
        self.laid.get(path).is_some_and(|laid| laid.entry == *entry)
    }

    /// Makes `path` (relative to the root) and its parents as directories of our own,
    /// refusing to pass through anything else (a symlink or file of the tree).
    pub fn directory(&mut self, path: &Path) -> Result<(), LayoutError> {
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component);
            if self.holds(&prefix, &WalkEntry::Directory) {
                continue;
            }
            let full = self.root.join(&prefix);
            match make_dir(&full) {
                Ok(()) => {
                    let laid = Laid {
                        entry: WalkEntry::Directory,
                        stamp: None,
                        shared: false,
                    };
                    self.laid.insert(prefix.clone(), laid);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(refused(format!(
                        "{} is not a directory of the tree (a symlink or file is in the way)",
                        client_path(&prefix)
                    )));
                }
                Err(err) => return Err(io_error(&full, err)),
            }
        }
        Ok(())
    }

    /// Where an output at client path `path` (relative ones from the client's `cwd`,
    /// which must already be a directory of ours) will be: its directories made as with
    /// [`Tree::directory`], every one of them (also those a `..` leaves again) real, so
    /// the path the compiler is given and the one read back are the same file. An output
    /// whose leaf is a symlink or directory of the tree is refused; a file of the tree
    /// there is left for the compiler to replace (a shared one first becomes a private
    /// copy, so that the compiler writes no other tree's file).
    pub fn output(&mut self, cwd: &Path, path: &str) -> Result<PathBuf, LayoutError> {
        let bad = |why: &str| refused(format!("output {path:?} {why}"));
        let start = match path.starts_with('/') {
            true => PathBuf::new(),
            false => cwd.to_path_buf(),
        };
        let mut at = start;
        let components: Vec<Component> = Path::new(path).components().collect();
        let leaf = match components.last() {
            Some(Component::Normal(name)) => *name,
            _ => return Err(bad("does not name a file")),
        };
        for component in &components[..components.len() - 1] {
            match component {
                Component::Normal(name) => {
                    at.push(name);
                    self.directory(&at)?;
                }
                Component::ParentDir => {
                    if !at.pop() {
                        return Err(bad("climbs above the root directory"));
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        at.push(leaf);
        match fs::symlink_metadata(self.root.join(&at)) {
            Ok(meta) if !meta.is_file() => Err(bad("is a symlink or directory of the tree")),
            Ok(_) => {
                self.unshare(&at)?;
                Ok(at)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(at),
            Err(err) => Err(io_error(&self.root.join(&at), err)),
        }
    }

    /// The regular file at `path` (relative to the root), reached through real
    /// directories only and itself not a symlink, whatever the compile left there.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let not_regular = || io::Error::other("not a regular file");
        let mut dir = open_at(
            None,
            self.root.as_os_str().as_bytes(),
            libc::O_DIRECTORY | libc::O_RDONLY,
        )?;
        let components: Vec<Component> = path.components().collect();
        let Some((Component::Normal(leaf), parents)) = components.split_last() else {
            return Err(not_regular());
        };
        for component in parents {
            let Component::Normal(name) = component else {
                return Err(not_regular());
            };
            dir = open_at(
                Some(&dir),
                name.as_bytes(),
                libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
            )?;
        }
        // O_NONBLOCK: opening a FIFO must not hang the box (it is then refused as not
        // regular).
        let file = File::from(open_at(
            Some(&dir),
            leaf.as_bytes(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        )?);
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        let mut content = Vec::new();
        (&file).read_to_end(&mut content)?;
        Ok(content)
    }

    /// Checks, after a compile, that no shared file of the tree changed while it ran (a
    /// changed one is dropped from `shared`): the compile may have read what another
    /// tree's compile wrote (blocking I/O).
    pub fn check_shared(&self, shared: &SharedFiles) -> Result<(), String> {
        for (path, laid) in &self.laid {
            let Some((key, made)) = laid.shared_key() else {
                continue;
            };
            let full = self.root.join(path);
            if !fs::symlink_metadata(&full).is_ok_and(|meta| laid.unchanged(&meta)) {
                shared.forget(&key, made);
                return Err(format!(
                    "the job's input {} changed during the compile",
                    client_path(path)
                ));
            }
        }
        Ok(())
    }

    /// Replaces the shared file at `path` (if it is one) with a private copy of the same
    /// content, mode and mtime.
    fn unshare(&mut self, path: &Path) -> Result<(), LayoutError> {
        let Some(laid) = self.laid.get(path).filter(|laid| laid.shared) else {
            return Ok(());
        };
        let entry = laid.entry.clone();
        let WalkEntry::File {
            executable, mtime, ..
        } = entry
        else {
            return Ok(());
        };
        let full = self.root.join(path);
        let content = self.read(path).map_err(|err| io_error(&full, err))?;
        fs::remove_file(&full).map_err(|err| io_error(&full, err))?;
        self.laid.remove(path);
        let mut file = create_private(&full, executable).map_err(|err| io_error(&full, err))?;
        io::Write::write_all(&mut file, &content).map_err(|err| io_error(&full, err))?;
        let meta = finish_private(&file, (&full, path), executable, mtime)?;
        self.remember(path, entry, &meta, false);
        Ok(())
    }

    fn file(
        &mut self,
        path: &Path,
        digest: &Digest,
        executable: bool,
        mtime: Option<Timestamp>,
        store: &Store,
        shared: &SharedFiles,
    ) -> Result<(), LayoutError> {
        if let Some(parent) = path.parent() {
            self.directory(parent)?;
        }
        let full = self.root.join(path);
        let entry = WalkEntry::File {
            digest: *digest,
            executable,
            mtime,
        };
        let key = Key {
            digest: *digest,
            executable,
            mtime,
        };
        match shared.link(&key, store, &full)? {
            Link::Made(meta) => {
                self.remember(path, entry, &meta, true);
                return Ok(());
            }
            Link::Exists => {
                return Err(refused(format!(
                    "the tree lists {} twice",
                    client_path(path)
                )));
            }
            Link::Unlinkable => {}
        }
        let mut blob = match store.open_verified(digest) {
            Ok(blob) => blob,
            Err(StoreError::Missing(digest)) => return Err(LayoutError::Missing(vec![digest])),
            Err(err) => return Err(LayoutError::Io(err.to_string())),
        };
        let mut file = create_private(&full, executable).map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => {
                refused(format!("the tree lists {} twice", client_path(path)))
            }
            _ => io_error(&full, err),
        })?;
        io::copy(&mut blob, &mut file).map_err(|err| io_error(&full, err))?;
        let meta = finish_private(&file, (&full, path), executable, mtime)?;
        self.remember(path, entry, &meta, false);
        Ok(())
    }

    fn remember(&mut self, path: &Path, entry: WalkEntry, meta: &Metadata, shared: bool) {
        let stamp = Some(Stamp::of(meta));
        let laid = Laid {
            entry,
            stamp,
            shared,
        };
        self.laid.insert(path.to_path_buf(), laid);
    }

    fn symlink(&mut self, path: &Path, target: &str) -> Result<(), LayoutError> {
        let parent = path.parent().unwrap_or(Path::new(""));
        self.directory(parent)?;
        let made_target = if target.starts_with('/') {
            format!("{}{target}", self.root.display())
        } else if climbs_out(parent, target) {
            return Err(refused(format!(
                "symlink {} -> {target} climbs above the root directory",
                client_path(path)
            )));
        } else {
            target.to_string()
        };
        let full = self.root.join(path);
        // symlink(2) never follows its last component and fails on anything there.
        std::os::unix::fs::symlink(&made_target, &full).map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => {
                refused(format!("the tree lists {} twice", client_path(path)))
            }
            _ => io_error(&full, err),
        })?;
        let meta = fs::symlink_metadata(&full).map_err(|err| io_error(&full, err))?;
        let entry = WalkEntry::Symlink {
            target: target.to_string(),
        };
        self.remember(path, entry, &meta, false);
        Ok(())
    }
}

/// A new file of the tree's own, written only by us (`O_EXCL`, never through a link).
fn create_private(full: &Path, executable: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .custom_flags(libc::O_NOFOLLOW)
        .open(full)
}

/// Gives a private copy its mode (the umask must not decide the executable bit) and the
/// client's mtime, and returns what it now is.
fn finish_private(
    file: &File,
    (full, path): (&Path, &Path),
    executable: bool,
    mtime: Option<Timestamp>,
) -> Result<Metadata, LayoutError> {
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|err| io_error(full, err))?;
    if let Some(mtime) = mtime {
        let time = system_time(mtime)
            .ok_or_else(|| refused(format!("{} has an invalid mtime", client_path(path))))?;
        file.set_times(FileTimes::new().set_modified(time))
            .map_err(|err| io_error(full, err))?;
    }
    file.metadata().map_err(|err| io_error(full, err))
}

/// `path` as a plain relative path (only normal components), or `None`.
pub(super) fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether a relative symlink target, read from `dir` (relative to the root) without
/// following anything, climbs above the root: the client would stay at `/`, the box
/// would leave the tree.
fn climbs_out(dir: &Path, target: &str) -> bool {
    let mut depth = dir.components().count();
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

fn system_time(Timestamp { seconds, nanos }: Timestamp) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::try_from(nanos).ok()?);
    let whole = Duration::from_secs(seconds.unsigned_abs());
    match seconds >= 0 {
        true => UNIX_EPOCH.checked_add(whole)?.checked_add(nanos),
        false => UNIX_EPOCH.checked_sub(whole)?.checked_add(nanos),
    }
}

fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)
}

/// openat(2) relative to `dir` (or the working directory), close-on-exec.
fn open_at(dir: Option<&OwnedFd>, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::other("a NUL in a path"))?;
    let dir = dir.map_or(libc::AT_FDCWD, |dir| dir.as_raw_fd());
    // SAFETY: `name` is a valid C string and `dir` an open descriptor or AT_FDCWD.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn client_path(path: &Path) -> String {
    format!("/{}", path.display())
}

fn refused(message: String) -> LayoutError {
    LayoutError::Refused(message)
}

fn io_error(path: &Path, err: io::Error) -> LayoutError {
    LayoutError::Io(format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests;
