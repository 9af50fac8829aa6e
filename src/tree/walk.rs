//! The box's side: a received root digest to the list of entries to materialise, with
//! everything it fetches distrusted: each `Directory` blob is checked against its digest
//! before it is decoded, decoded strictly, and the expanded tree bounded.
//!
//! The walk runs in two passes. The first fetches each distinct directory once, breadth
//! first, so that it sees every blob it lacks and reports them all together (the box asks
//! the client for all of them in one round trip, not one per level). The second expands
//! the tree into paths; identical subtrees share a digest (a REAPI tree is a DAG), so a
//! blob may be expanded at several paths, and the entry limit is what keeps a small DAG
//! from expanding into an exponential tree.

use std::collections::HashMap;
use std::collections::HashSet;
use std::collections::VecDeque;
use std::path::PathBuf;

use super::Directory;
use super::FileNode;
use super::MAX_DEPTH;
use super::MAX_DIRECTORY_BYTES;
use super::Timestamp;
use super::TreeError;
use crate::digest::Digest;

/// How far a walk may go before it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLimits {
    /// Entries (files, symlinks and directories, counted at every path they appear at),
    /// and distinct directory blobs fetched.
    pub max_entries: usize,
    /// Path components of an entry. The expansion recurses once per level, so this also
    /// bounds its stack.
    pub max_depth: usize,
    /// The sum of the lengths of all returned paths, in bytes: the memory the result
    /// takes, which entries times depth alone would bound only loosely.
    pub max_path_bytes: usize,
}

impl Default for WalkLimits {
    /// A million entries, [`MAX_DEPTH`] levels, 256 MiB of paths: far beyond a real
    /// compile (a heavy C++ job has about 3,000 files), well within a box's memory.
    fn default() -> WalkLimits {
        WalkLimits {
            max_entries: 1_000_000,
            max_depth: MAX_DEPTH,
            max_path_bytes: 256 << 20,
        }
    }
}

/// One entry of a walked tree, at a path relative to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkEntry {
    /// A regular file; its blob is not fetched by the walk. Our clients always send the
    /// mtime; a REAPI tree from elsewhere may not have one.
    File {
        digest: Digest,
        executable: bool,
        mtime: Option<Timestamp>,
    },
    /// A symbolic link. The target is unchecked beyond being non-empty without NUL: it may
    /// be absolute or climb out with `..`, so materialising it is the caller's decision.
    Symlink { target: String },
    /// A directory, listed before anything in it.
    Directory,
}

/// Why a walk failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// These directory blobs (each once, breadth-first order) could not be fetched;
    /// what lies below them is unknown, so a walk after fetching them may report more.
    #[error("{} directory blob(s) missing", .0.len())]
    Missing(Vec<Digest>),
    /// The fetched blob's content or size is not what its digest says.
    #[error("directory blob {digest} at {path:?} does not match its digest")]
    Corrupt { digest: Digest, path: PathBuf },
    /// The blob matches its digest but is not a valid canonical `Directory`.
    #[error("directory {digest} at {path:?} is invalid: {source}")]
    Invalid {
        digest: Digest,
        path: PathBuf,
        source: TreeError,
    },
    /// A directory's digest declares a size over [`MAX_DIRECTORY_BYTES`]; it is not
    /// fetched.
    #[error("directory {digest} at {path:?} is larger than allowed")]
    TooLarge { digest: Digest, path: PathBuf },
    /// The tree exceeds one of the [`WalkLimits`].
    #[error("the tree exceeds its limit of {limit} {what}")]
    Limit { what: &'static str, limit: usize },
}

/// [`walk_with_limits`] with the default [`WalkLimits`].
pub fn walk(
    root: &Digest,
    fetch: impl FnMut(&Digest) -> Option<Vec<u8>>,
) -> Result<Vec<(PathBuf, WalkEntry)>, WalkError> {
    walk_with_limits(root, &WalkLimits::default(), fetch)
}

/// Every entry of the tree named `root`, each at its path relative to the root (the
/// root itself is not listed), in path order with each directory before its content.
/// `fetch` gives a directory blob by digest, or `None` if it is not at hand; the empty
/// directory is never fetched (REAPI's empty blob is always present).
pub fn walk_with_limits(
    root: &Digest,
    limits: &WalkLimits,
    mut fetch: impl FnMut(&Digest) -> Option<Vec<u8>>,
) -> Result<Vec<(PathBuf, WalkEntry)>, WalkError> {
    // Pass 1: each distinct directory once, breadth first, so each is first met at its
    // shallowest path (which the depth check and the error messages use).
    let mut directories: HashMap<Digest, Directory> = HashMap::new();
    let mut queued = HashSet::from([*root]);
    let mut queue = VecDeque::from([(*root, 0, PathBuf::new())]);
    let mut missing = Vec::new();
    while let Some((digest, depth, path)) = queue.pop_front() {
        let directory = if digest == Digest::EMPTY {
            Directory::default()
        } else {
            if digest.size_bytes > MAX_DIRECTORY_BYTES {
                return Err(WalkError::TooLarge { digest, path });
            }
            let Some(blob) = fetch(&digest) else {
                missing.push(digest);
                continue;
            };
            // The length first: a wrong-sized blob is refused without hashing it.
            if blob.len() as u64 != digest.size_bytes || Digest::of(&blob) != digest {
                return Err(WalkError::Corrupt { digest, path });
            }
            Directory::decode(&blob).map_err(|source| WalkError::Invalid {
                digest,
                path: path.clone(),
                source,
            })?
        };
        let has_entries = !(directory.files.is_empty()
            && directory.directories.is_empty()
            && directory.symlinks.is_empty());
        if has_entries && depth + 1 > limits.max_depth {
            return Err(limit("levels", limits.max_depth));
        }
        for child in &directory.directories {
            if queued.insert(child.digest) {
                if queued.len() > limits.max_entries {
                    return Err(limit("entries", limits.max_entries));
                }
                queue.push_back((child.digest, depth + 1, path.join(&child.name)));
            }
        }
        directories.insert(digest, directory);
    }
    if !missing.is_empty() {
        return Err(WalkError::Missing(missing));
    }

    // Pass 2: expand into paths, every blob now at hand and valid.
    let mut expansion = Expansion {
        directories: &directories,
        limits,
        entries: Vec::new(),
        path_bytes: 0,
    };
    expansion.expand(root, &mut PathBuf::new(), 0)?;
    Ok(expansion.entries)
}

fn limit(what: &'static str, limit: usize) -> WalkError {
    WalkError::Limit { what, limit }
}

struct Expansion<'a> {
    directories: &'a HashMap<Digest, Directory>,
    limits: &'a WalkLimits,
    entries: Vec<(PathBuf, WalkEntry)>,
    path_bytes: usize,
}

/// A child of a directory, whichever of the three lists it came from.
enum Child<'a> {
    File(&'a FileNode),
    Directory(&'a Digest),
    Symlink(&'a str),
}

impl Expansion<'_> {
    fn expand(
        &mut self,
        digest: &Digest,
        path: &mut PathBuf,
        depth: usize,
    ) -> Result<(), WalkError> {
        let directory = &self.directories[digest];
        // The three lists merged into one name order, so the whole result is in path
        // order (names are unique across the lists, so there are no ties).
        let mut children: Vec<(&str, Child)> = Vec::with_capacity(
            directory.files.len() + directory.directories.len() + directory.symlinks.len(),
        );
        children.extend(
            directory
                .files
                .iter()
                .map(|file| (file.name.as_str(), Child::File(file))),
        );
        children.extend(
            (directory.directories.iter())
                .map(|dir| (dir.name.as_str(), Child::Directory(&dir.digest))),
        );
        children.extend(
            (directory.symlinks.iter())
                .map(|link| (link.name.as_str(), Child::Symlink(&link.target))),
        );
        children.sort_unstable_by_key(|(name, _)| *name);

        for (name, child) in children {
            if depth + 1 > self.limits.max_depth {
                return Err(limit("levels", self.limits.max_depth));
            }
            if self.entries.len() >= self.limits.max_entries {
                return Err(limit("entries", self.limits.max_entries));
            }
            path.push(name);
            self.path_bytes += path.as_os_str().len();
            if self.path_bytes > self.limits.max_path_bytes {
                return Err(limit("bytes of paths", self.limits.max_path_bytes));
            }
            let entry = match child {
                Child::File(file) => WalkEntry::File {
                    digest: file.digest,
                    executable: file.is_executable,
                    mtime: file.mtime,
                },
                Child::Symlink(target) => WalkEntry::Symlink {
                    target: target.to_owned(),
                },
                Child::Directory(_) => WalkEntry::Directory,
            };
            self.entries.push((path.clone(), entry));
            if let Child::Directory(child) = child {
                self.expand(child, path, depth + 1)?;
            }
            path.pop();
        }
        Ok(())
    }
}
