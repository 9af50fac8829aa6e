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
//! Files are copies rather than the store's hardlinks because they carry the client's
//! mtime: libcpp's `#pragma once` compares mtimes, and `__TIMESTAMP__` prints the
//! source's. Copying is what a job's layout costs, so a tree outlives its job: the next
//! job of the process takes it over, and `prune` keeps what it may (see there).

mod prune;

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
}

impl Tree {
    /// Makes the empty root (its parent, the job directory, must exist).
    pub fn create(root: PathBuf) -> Result<Tree, LayoutError> {
        make_dir(&root).map_err(|err| io_error(&root, err))?;
        let laid = Laid {
            entry: WalkEntry::Directory,
            stamp: None,
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
    /// from `store`. Every blob missing from the store is reported at once.
    pub fn fill(
        &mut self,
        entries: &[(PathBuf, WalkEntry)],
        store: &Store,
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
        let missing = store.find_missing(&digests);
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
                } => match self.file(&path, digest, *executable, *mtime, store) {
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
    /// there is left for the compiler to replace.
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
            Ok(_) => Ok(at),
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

    fn file(
        &mut self,
        path: &Path,
        digest: &Digest,
        executable: bool,
        mtime: Option<Timestamp>,
        store: &Store,
    ) -> Result<(), LayoutError> {
        if let Some(parent) = path.parent() {
            self.directory(parent)?;
        }
        let mut blob = match store.open_verified(digest) {
            Ok(blob) => blob,
            Err(StoreError::Missing(digest)) => return Err(LayoutError::Missing(vec![digest])),
            Err(err) => return Err(LayoutError::Io(err.to_string())),
        };
        let full = self.root.join(path);
        let mode = if executable { 0o755 } else { 0o644 };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full)
            .map_err(|err| match err.kind() {
                io::ErrorKind::AlreadyExists => {
                    refused(format!("the tree lists {} twice", client_path(path)))
                }
                _ => io_error(&full, err),
            })?;
        io::copy(&mut blob, &mut file).map_err(|err| io_error(&full, err))?;
        // The umask must not decide the executable bit.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|err| io_error(&full, err))?;
        if let Some(mtime) = mtime {
            let time = system_time(mtime)
                .ok_or_else(|| refused(format!("{} has an invalid mtime", client_path(path))))?;
            file.set_times(FileTimes::new().set_modified(time))
                .map_err(|err| io_error(&full, err))?;
        }
        let meta = file.metadata().map_err(|err| io_error(&full, err))?;
        let entry = WalkEntry::File {
            digest: *digest,
            executable,
            mtime,
        };
        self.remember(path, entry, &meta);
        Ok(())
    }

    fn remember(&mut self, path: &Path, entry: WalkEntry, meta: &Metadata) {
        let stamp = Some(Stamp::of(meta));
        self.laid.insert(path.to_path_buf(), Laid { entry, stamp });
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
        self.remember(path, entry, &meta);
        Ok(())
    }
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
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(dir.join("store"), 1 << 30).unwrap()
    }

    fn file(store: &Store, content: &[u8], mtime: Option<Timestamp>) -> WalkEntry {
        let digest = Digest::of(content);
        store.insert(&digest, content).unwrap();
        WalkEntry::File {
            digest,
            executable: false,
            mtime,
        }
    }

    #[test]
    fn files_carry_the_client_mtime_and_symlinks_stay_in_the_tree() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut tree = Tree::create(dir.path().join("root")).unwrap();
        let entries = vec![
            (PathBuf::from("home"), WalkEntry::Directory),
            (
                PathBuf::from("home/p/x.h"),
                file(
                    &store,
                    b"x",
                    Some(Timestamp {
                        seconds: 1_000_000_000,
                        nanos: 123,
                    }),
                ),
            ),
            (
                PathBuf::from("home/p/abs"),
                WalkEntry::Symlink {
                    target: "/home/p/x.h".into(),
                },
            ),
            (
                PathBuf::from("home/p/rel"),
                WalkEntry::Symlink {
                    target: "../p/x.h".into(),
                },
            ),
            (PathBuf::from("usr/include"), WalkEntry::Directory),
        ];
        tree.fill(&entries, &store).unwrap();
        let root = dir.path().join("root");
        let meta = fs::metadata(root.join("home/p/x.h")).unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 123));
        assert_eq!(meta.mode() & 0o777, 0o644);
        assert_eq!(fs::read(root.join("home/p/abs")).unwrap(), b"x");
        assert_eq!(
            fs::read_link(root.join("home/p/abs")).unwrap(),
            root.join("home/p/x.h")
        );
        assert_eq!(fs::read(root.join("home/p/rel")).unwrap(), b"x");
        assert!(root.join("usr/include").is_dir());
        assert_eq!(tree.read(Path::new("home/p/x.h")).unwrap(), b"x");
        // Not even a symlink into the tree is read back.
        assert!(tree.read(Path::new("home/p/abs")).is_err());
    }

    #[test]
    fn missing_blobs_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut tree = Tree::create(dir.path().join("root")).unwrap();
        let absent = |content: &[u8]| WalkEntry::File {
            digest: Digest::of(content),
            executable: false,
            mtime: None,
        };
        let entries = vec![
            (PathBuf::from("a/1.h"), absent(b"1")),
            (PathBuf::from("a/2.h"), file(&store, b"2", None)),
            (PathBuf::from("b/3.h"), absent(b"3")),
        ];
        match tree.fill(&entries, &store) {
            Err(LayoutError::Missing(digests)) => {
                assert_eq!(digests, [Digest::of(b"1"), Digest::of(b"3")]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_trees_cannot_reach_outside() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        let escape = WalkEntry::Symlink {
            target: outside.display().to_string(),
        };
        let climb = WalkEntry::Symlink {
            target: "../../../../../../../..".into(),
        };

        // A file written through a symlinked directory.
        let mut tree = Tree::create(dir.path().join("r1")).unwrap();
        let entries = vec![
            (PathBuf::from("p/link"), escape.clone()),
            (PathBuf::from("p/link/x.h"), file(&store, b"evil", None)),
        ];
        assert!(matches!(
            tree.fill(&entries, &store),
            Err(LayoutError::Refused(_))
        ));

        // An absolute target lands inside the tree, a climbing one is refused.
        let mut tree = Tree::create(dir.path().join("r2")).unwrap();
        let entries = vec![(PathBuf::from("p/link"), escape)];
        tree.fill(&entries, &store).unwrap();
        let root = dir.path().join("r2");
        assert_eq!(
            fs::read_link(root.join("p/link")).unwrap(),
            PathBuf::from(format!("{}{}", root.display(), outside.display()))
        );
        // Outputs through it, or at it, are refused; reading through it fails.
        assert!(tree.output(Path::new("p"), "link/secret").is_err());
        assert!(tree.output(Path::new("p"), "link").is_err());
        assert!(tree.output(Path::new("p"), "/p/link/x.o").is_err());
        assert!(tree.output(Path::new("p"), "../../x.o").is_err());
        assert_eq!(
            tree.output(Path::new("p"), "out/../x.o").unwrap(),
            PathBuf::from("p/x.o")
        );
        let mut tree = Tree::create(dir.path().join("r3")).unwrap();
        assert!(matches!(
            tree.fill(&[(PathBuf::from("p/link"), climb)], &store),
            Err(LayoutError::Refused(_))
        ));
        // A symlink the compile might leave, pointing out: never read.
        std::os::unix::fs::symlink(outside.join("secret"), dir.path().join("r3/p/obj")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("r3/p/dir")).unwrap();
        assert!(tree.read(Path::new("p/obj")).is_err());
        assert!(tree.read(Path::new("p/dir/secret")).is_err());
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    }
}
