//! Walking a path the way the kernel resolves it, one component at a time, and recording
//! what the box needs to resolve it the same way: every directory crossed, and every
//! symlink crossed with its target as written (the target is walked too).
//!
//! A quoted include is looked up next to the including file *as reached*: `sub/x.h`
//! reached through a symlinked `sub` makes `#include "../y.h"` climb out of the link's
//! target, not out of `sub`'s parent. Replicating the symlinks (distcc's
//! `mirror_path.py`) rather than flattening them keeps `..` meaning on the box what it
//! means here. Each walk starts from a symlink-free directory, so `..` is simply its
//! parent; a `..` above `/` is refused, because on the box the tree's root is not `/`.
//!
//! Every `lstat` is fresh for the job (a header created since the last job must be seen)
//! and remembered only within it.

use std::ffi::OsString;
use std::io;
use std::path::Component;
use std::path::Path;
use std::path::PathBuf;

use super::file_state::FileStat;
use super::file_state::now_ns;

/// Symlinks followed in one walk before giving up (Linux's `MAXSYMLINKS`).
const MAX_FOLLOWS: usize = 40;

/// A directory or symlink the box must have (files are recorded by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crossed {
    Directory,
    Symlink(PathBuf),
}

/// What a path names, followed to the end.
#[derive(Debug, Clone)]
pub enum Walked {
    Missing,
    Directory(PathBuf),
    File {
        /// Its symlink-free path.
        real: PathBuf,
        stat: FileStat,
        /// When `stat` was taken.
        stat_time_ns: i128,
    },
}

/// Why a path cannot be reproduced on the box.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("{0} climbs above /")]
    AboveRoot(String),
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
    #[error("{0}: {1}")]
    Io(String, String),
}

#[derive(Debug, Clone)]
enum Lstat {
    Missing,
    Directory,
    Symlink(PathBuf),
    File(FileStat, i128),
    /// Neither: a socket, a device. The preprocessor could open it; we cannot ship it.
    Special,
}

/// One job's walks: the `lstat`s it made and what it crossed.
#[derive(Default)]
pub struct Walker {
    lstats: foldhash::HashMap<OsString, Lstat>,
    /// Recorded when a path is first `lstat`ed: a path seen again was recorded then.
    pub crossed: foldhash::HashMap<PathBuf, Crossed>,
}

impl Walker {
    /// Resolves `path` (absolute, or relative to `base`, a symlink-free directory).
    pub fn walk(&mut self, base: &Path, path: &Path) -> Result<Walked, WalkError> {
        let shown = || path.display().to_string();
        let mut current = if path.is_absolute() {
            PathBuf::from("/")
        } else {
            base.to_path_buf()
        };
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, path);
        let mut follows = 0;
        while let Some(part) = pending.pop() {
            if part == "/" {
                current = PathBuf::from("/");
                continue;
            }
            if part == ".." {
                if !current.pop() {
                    return Err(WalkError::AboveRoot(shown()));
                }
                continue;
            }
            let next = current.join(&part);
            let (lstat, fresh) = self
                .lstat(&next)
                .map_err(|err| WalkError::Io(next.display().to_string(), err.to_string()))?;
            match lstat {
                Lstat::Missing | Lstat::Special => return Ok(Walked::Missing),
                Lstat::Directory => {
                    if fresh {
                        self.crossed.insert(next.clone(), Crossed::Directory);
                    }
                    current = next;
                }
                Lstat::Symlink(target) => {
                    follows += 1;
                    if follows > MAX_FOLLOWS {
                        return Err(WalkError::Loop(shown()));
                    }
                    if fresh {
                        self.crossed
                            .insert(next.clone(), Crossed::Symlink(target.clone()));
                    }
                    push_components(&mut pending, &target);
                }
                Lstat::File(stat, stat_time_ns) => {
                    if !pending.is_empty() {
                        // `file/more`: ENOTDIR, which the preprocessor treats as absent.
                        return Ok(Walked::Missing);
                    }
                    return Ok(Walked::File {
                        real: next,
                        stat,
                        stat_time_ns,
                    });
                }
            }
        }
        Ok(Walked::Directory(current))
    }

    /// Resolves a directory; anything else is `None`.
    pub fn walk_dir(&mut self, base: &Path, path: &Path) -> Result<Option<PathBuf>, WalkError> {
        Ok(match self.walk(base, path)? {
            Walked::Directory(real) => Some(real),
            _ => None,
        })
    }

    /// `path`'s lstat, and whether it was taken just now (not remembered from earlier).
    fn lstat(&mut self, path: &Path) -> io::Result<(Lstat, bool)> {
        if let Some(known) = self.lstats.get(path.as_os_str()) {
            return Ok((known.clone(), false));
        }
        let found = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Lstat::Symlink(std::fs::read_link(path)?),
            Ok(meta) if meta.is_dir() => Lstat::Directory,
            Ok(meta) if meta.is_file() => Lstat::File(FileStat::of(&meta), now_ns()),
            Ok(_) => Lstat::Special,
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                Lstat::Missing
            }
            Err(err) => return Err(err),
        };
        self.lstats
            .insert(path.as_os_str().to_os_string(), found.clone());
        Ok((found, true))
    }
}

/// Pushes `path`'s components onto `stack` so that they pop in order (`/` for a root).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::RootDir | Component::Prefix(_) => stack.push("/".into()),
            Component::CurDir => {}
            Component::ParentDir => stack.push("..".into()),
            Component::Normal(name) => stack.push(name.to_os_string()),
        }
    }
}

/// The text before the last `/` of `path` (`""` for a bare name): the directory a
/// quoted include of a file reached as `path` is looked up in, as libcpp's
/// `dir_name_of_file` takes it. `Path::parent` would be wrong for `a/b/..`.
pub fn textual_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..=slash])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_recorded_and_dotdot_leaves_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("real/deep")).unwrap();
        std::fs::write(root.join("real/x.h"), "").unwrap();
        std::fs::write(root.join("x.h"), "").unwrap();
        symlink("real/deep", root.join("link")).unwrap();
        let mut walker = Walker::default();
        let Walked::File { real, .. } = walker.walk(&root, Path::new("link/../x.h")).unwrap()
        else {
            panic!("not found")
        };
        assert_eq!(real, root.join("real/x.h"));
        assert_eq!(
            walker.crossed.get(&root.join("link")),
            Some(&Crossed::Symlink("real/deep".into()))
        );
        assert_eq!(
            walker.crossed.get(&root.join("real/deep")),
            Some(&Crossed::Directory)
        );
        assert!(matches!(
            walker.walk(&root, Path::new("x.h/y")).unwrap(),
            Walked::Missing
        ));
        assert!(matches!(
            walker.walk(Path::new("/"), Path::new("../etc")),
            Err(WalkError::AboveRoot(_))
        ));
        symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            walker.walk(&root, Path::new("loop/x")),
            Err(WalkError::Loop(_))
        ));
    }

    #[test]
    fn textual_dirs_keep_dotdot() {
        assert_eq!(textual_dir("a/b/../c.h"), "a/b/../");
        assert_eq!(textual_dir("c.h"), "");
        assert_eq!(textual_dir("/c.h"), "/");
    }
}
