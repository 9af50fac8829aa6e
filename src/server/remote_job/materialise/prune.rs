//! Taking over the tree an earlier job left: [`Tree::prune`] removes whatever the next
//! job's tree does not hold exactly as laid out, so that [`Tree::fill`] only makes what
//! is new. Laying out a heavy C++ job is hundreds of file copies and removing it as
//! many unlinks; between two jobs of one project almost all of it is the same.
//!
//! What a compile may have done to the tree is found by `lstat` alone: any write,
//! chmod, utime, rename or replacement changes an entry's ctime or inode, and a
//! directory that gained or lost an entry (the compile's own outputs, or anything else)
//! has a new ctime too; userspace cannot set a ctime back. The one gap is the clock's
//! tick: a change within the same tick as the stamp leaves the ctime as it was, so an
//! entry stamped shortly before the tree was sealed is checked by content (a file is
//! hashed again, a directory listed) instead of trusted. A file linked from the
//! process's shared copies is the exception: every link to it moves its ctime, so its
//! inode, mode, size and mtime (the client's, which a write replaces with now) say it is
//! unchanged, and it is checked by content only when that mtime is recent.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::Stamp;
use super::Tree;
use super::relative;
use crate::digest::Digest;
use crate::tree::WalkEntry;

/// How close to the seal a stamp must be to be checked by content: longer than any
/// kernel's timestamp tick (at most 10 ms at HZ=100) with room to spare.
const RACY_MARGIN: Duration = Duration::from_millis(50);

impl Tree {
    /// Leaves only what `entries` (a walk's list) asks for, with their parent
    /// directories and `keep_dirs` (the working directory): every other entry, every
    /// entry a compile changed, and everything no job laid out is removed, never
    /// following a symlink. Blocking I/O; an error means the tree must be dropped.
    pub fn prune(&mut self, entries: &[(PathBuf, WalkEntry)], keep_dirs: &Path) -> io::Result<()> {
        let racy_after = self
            .sealed_at
            .checked_sub(RACY_MARGIN)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i128);
        // A shared file's ctime moves with every link to it; a write to it would move
        // its mtime from the client's (long past, as a rule) to now.
        let racy = |laid: &super::Laid| {
            laid.stamp.is_none_or(|stamp| {
                let (seconds, nanos) = if laid.shared {
                    stamp.mtime
                } else {
                    stamp.ctime
                };
                i128::from(seconds) * 1_000_000_000 + i128::from(nanos) > racy_after
            })
        };

        let mut wanted_dirs: HashSet<PathBuf> = HashSet::from([PathBuf::new()]);
        add_with_ancestors(&mut wanted_dirs, keep_dirs);
        let mut wanted: HashMap<PathBuf, &WalkEntry> = HashMap::with_capacity(entries.len());
        for (path, entry) in entries {
            let Some(path) = relative(path) else { continue };
            match entry {
                WalkEntry::Directory => add_with_ancestors(&mut wanted_dirs, &path),
                _ => {
                    if let Some(parent) = path.parent() {
                        add_with_ancestors(&mut wanted_dirs, parent);
                    }
                    wanted.insert(path, entry);
                }
            }
        }

        // Directories first, shallow ones before what is in them: one that is gone,
        // replaced or unwanted goes with everything laid below it; one that changed is
        // listed and cleared of what no job laid there.
        let mut dirs: Vec<PathBuf> = self
            .laid
            .iter()
            .filter(|(_, laid)| laid.entry == WalkEntry::Directory)
            .map(|(path, _)| path.clone())
            .collect();
        dirs.sort_by_key(|path| path.components().count());
        for dir in dirs {
            let Some(laid) = self.laid.get(&dir) else {
                continue; // went with a parent
            };
            let full = self.root.join(&dir);
            let meta = match fs::symlink_metadata(&full) {
                Ok(meta) => meta,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.forget_below(&dir);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let stamp = Stamp::of(&meta);
            let replaced = !meta.is_dir() || laid.stamp.is_some_and(|laid| laid.ino != stamp.ino);
            if replaced || !wanted_dirs.contains(&dir) {
                if dir.as_os_str().is_empty() {
                    return Err(io::Error::other("the tree's root was replaced"));
                }
                remove_entry(&full)?;
                self.forget_below(&dir);
            } else if laid.stamp != Some(stamp) || racy(laid) {
                self.remove_strays(&dir)?;
            }
        }

        // Then files and symlinks: kept when asked for as laid and unchanged.
        let mut gone = Vec::new();
        for (path, laid) in &self.laid {
            if laid.entry == WalkEntry::Directory {
                continue;
            }
            let full = self.root.join(path);
            let keep = wanted.get(path) == Some(&&laid.entry)
                && match fs::symlink_metadata(&full) {
                    Ok(meta) if !laid.unchanged(&meta) => false,
                    Ok(_) => match &laid.entry {
                        // A symlink's target cannot change in place.
                        WalkEntry::File { digest, .. } if racy(laid) => {
                            Digest::of_file(&full).is_ok_and(|actual| actual == *digest)
                        }
                        _ => true,
                    },
                    Err(err) if err.kind() == io::ErrorKind::NotFound => false,
                    Err(err) => return Err(err),
                };
            if !keep {
                gone.push(path.clone());
            }
        }
        for path in gone {
            match fs::remove_file(self.root.join(&path)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            self.laid.remove(&path);
        }
        Ok(())
    }

    /// Removes from directory `dir` (laid out, unchanged itself) every entry no job
    /// laid out there.
    fn remove_strays(&mut self, dir: &Path) -> io::Result<()> {
        let full = self.root.join(dir);
        for child in fs::read_dir(&full)? {
            let name = child?.file_name();
            if !self.laid.contains_key(&dir.join(&name)) {
                remove_entry(&full.join(&name))?;
            }
        }
        Ok(())
    }

    /// Forgets `dir` and everything laid below it (gone from the disk).
    fn forget_below(&mut self, dir: &Path) {
        self.laid.retain(|path, _| !path.starts_with(dir));
    }
}

/// Adds `dir` and every directory above it (up to the root, the empty path).
fn add_with_ancestors(dirs: &mut HashSet<PathBuf>, dir: &Path) {
    // A directory in the set has its ancestors there already.
    for dir in dir.ancestors() {
        if !dirs.insert(dir.to_path_buf()) {
            break;
        }
    }
}

/// Removes a file, symlink or whole directory at `path`, never following a symlink.
fn remove_entry(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) => Err(err),
    };
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::server::remote_job::materialise::SharedFiles;
    use crate::server::store::Store;
    use crate::tree::Timestamp;

    const OLD: Timestamp = Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };

    fn file(store: &Store, content: &[u8]) -> WalkEntry {
        let digest = Digest::of(content);
        store.insert(&digest, content).unwrap();
        WalkEntry::File {
            digest,
            executable: false,
            mtime: Some(OLD),
        }
    }

    fn entries(list: &[(&str, &WalkEntry)]) -> Vec<(PathBuf, WalkEntry)> {
        list.iter()
            .map(|(path, entry)| (PathBuf::from(path), (*entry).clone()))
            .collect()
    }

    /// Lays `entries` out in `tree` (pruned first) and seals it, as a job does, with
    /// private copies (see [`lay_shared`]).
    fn lay(tree: &mut Tree, entries: &[(PathBuf, WalkEntry)], store: &Store) {
        lay_shared(tree, entries, store, &SharedFiles::none());
    }

    fn lay_shared(
        tree: &mut Tree,
        entries: &[(PathBuf, WalkEntry)],
        store: &Store,
        shared: &SharedFiles,
    ) {
        tree.prune(entries, Path::new("p")).unwrap();
        tree.fill(entries, store, shared).unwrap();
        tree.directory(Path::new("p")).unwrap();
        tree.seal().unwrap();
    }

    fn ino(path: &Path) -> u64 {
        fs::symlink_metadata(path).unwrap().ino()
    }

    /// Moves the seal back, as if the compile had run long after the layout, so that
    /// stamps are trusted rather than checked by content.
    fn settle(tree: &mut Tree) {
        tree.sealed_at -= Duration::from_secs(1);
    }

    #[test]
    fn a_later_job_keeps_what_is_unchanged_and_loses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), 1 << 30).unwrap();
        let root = dir.path().join("root");
        let mut tree = Tree::create(root.clone()).unwrap();
        let (a, b, c) = (file(&store, b"a"), file(&store, b"b"), file(&store, b"c"));
        let link = WalkEntry::Symlink {
            target: "a.h".into(),
        };
        let first = entries(&[
            ("p/a.h", &a),
            ("p/b.h", &b),
            ("p/gone/c.h", &c),
            ("p/l.h", &link),
        ]);
        lay(&mut tree, &first, &store);
        // What the compile did: an output, and a file of the tree rewritten.
        fs::write(root.join("p/x.o"), "object").unwrap();
        fs::remove_file(root.join("p/b.h")).unwrap();
        fs::write(root.join("p/b.h"), "B").unwrap();
        settle(&mut tree);
        let kept = (ino(&root.join("p/a.h")), ino(&root.join("p/l.h")));

        let second = entries(&[
            ("p/a.h", &a),
            ("p/b.h", &b),
            ("p/l.h", &link),
            ("q/c.h", &c),
        ]);
        lay(&mut tree, &second, &store);
        assert_eq!(kept, (ino(&root.join("p/a.h")), ino(&root.join("p/l.h"))));
        assert_eq!(fs::read(root.join("p/b.h")).unwrap(), b"b");
        assert!(
            !root.join("p/x.o").exists(),
            "the last job's output is gone"
        );
        assert!(
            !root.join("p/gone").exists(),
            "an unwanted directory is gone"
        );
        assert_eq!(fs::read(root.join("q/c.h")).unwrap(), b"c");
        let mut names: Vec<_> = fs::read_dir(root.join("p"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["a.h", "b.h", "l.h"]);
    }

    #[test]
    fn changes_hidden_from_the_stamp_are_caught_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), 1 << 30).unwrap();
        let root = dir.path().join("root");
        let mut tree = Tree::create(root.clone()).unwrap();
        let a = file(&store, b"aaaa");
        let list = entries(&[("p/a.h", &a)]);
        lay(&mut tree, &list, &store);
        // A same-size write just after the seal, its mtime set back: only the ctime
        // tells, and it may fall in the stamp's tick. The stamp is racy, so the content
        // is checked.
        fs::write(root.join("p/a.h"), "AAAA").unwrap();
        let file = fs::File::options()
            .write(true)
            .open(root.join("p/a.h"))
            .unwrap();
        let times =
            fs::FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
        file.set_times(times).unwrap();
        let wanted = tree.laid[Path::new("p/a.h")].stamp.unwrap();
        let mut forged = wanted;
        forged.ctime = Stamp::of(&file.metadata().unwrap()).ctime;
        // Pretend the kernel's tick hid the change.
        tree.laid.get_mut(Path::new("p/a.h")).unwrap().stamp = Some(forged);
        lay(&mut tree, &list, &store);
        assert_eq!(fs::read(root.join("p/a.h")).unwrap(), b"aaaa");
    }

    #[test]
    fn trees_share_one_read_only_inode_and_a_write_to_it_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), 1 << 30).unwrap();
        let shared = SharedFiles::new();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let mut first = Tree::create(one.clone()).unwrap();
        let mut second = Tree::create(two.clone()).unwrap();
        let (a, b) = (file(&store, b"a"), file(&store, b"b"));
        let list = entries(&[("p/a.h", &a), ("p/b.h", &b)]);
        lay_shared(&mut first, &list, &store, &shared);
        lay_shared(&mut second, &list, &store, &shared);
        let meta = fs::metadata(one.join("p/a.h")).unwrap();
        assert_eq!(
            meta.ino(),
            ino(&two.join("p/a.h")),
            "one inode for both trees"
        );
        assert_eq!(meta.mode() & 0o777, 0o444);
        assert_eq!((meta.mtime(), meta.nlink()), (OLD.seconds, 3));

        // Another tree linking and unlinking moves the ctime: still unchanged.
        settle(&mut first);
        drop(second);
        fs::remove_dir_all(&two).unwrap();
        first.check_shared(&shared).unwrap();
        let kept = ino(&one.join("p/a.h"));
        lay_shared(&mut first, &list, &store, &shared);
        assert_eq!(kept, ino(&one.join("p/a.h")));

        // A write through a link (a compile as root ignores the mode) moves the mtime:
        // the compile's check fails, the copy is dropped, the next layout is fresh.
        fs::write(one.join("p/b.h"), "B").unwrap();
        assert!(first.check_shared(&shared).is_err());
        let mut third = Tree::create(dir.path().join("three")).unwrap();
        lay_shared(&mut third, &list, &store, &shared);
        assert_eq!(fs::read(dir.path().join("three/p/b.h")).unwrap(), b"b");
        settle(&mut first);
        lay_shared(&mut first, &list, &store, &shared);
        assert_eq!(fs::read(one.join("p/b.h")).unwrap(), b"b");
        first.check_shared(&shared).unwrap();

        // An output at a shared file's path becomes the tree's own copy first.
        let at = first.output(Path::new("p"), "a.h").unwrap();
        assert_eq!(at, PathBuf::from("p/a.h"));
        let meta = fs::metadata(one.join("p/a.h")).unwrap();
        assert_ne!(meta.ino(), ino(&dir.path().join("three/p/a.h")));
        assert_eq!((meta.mode() & 0o777, meta.mtime()), (0o644, OLD.seconds));
        assert_eq!(fs::read(one.join("p/a.h")).unwrap(), b"a");
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_is_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), 1 << 30).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "keep").unwrap();
        let root = dir.path().join("root");
        let mut tree = Tree::create(root.clone()).unwrap();
        let a = file(&store, b"a");
        let list = entries(&[("p/sub/a.h", &a)]);
        lay(&mut tree, &list, &store);
        fs::remove_dir_all(root.join("p/sub")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("p/sub")).unwrap();
        settle(&mut tree);
        lay(&mut tree, &list, &store);
        assert!(fs::symlink_metadata(root.join("p/sub")).unwrap().is_dir());
        assert_eq!(fs::read(root.join("p/sub/a.h")).unwrap(), b"a");
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"keep");
    }
}
