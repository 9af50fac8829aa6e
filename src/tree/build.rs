//! The client's side: a job's input root from absolute client paths, in REAPI's
//! canonical form, with every `Directory` blob it consists of.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::path::PathBuf;

use super::Entry;
use super::MAX_DEPTH;
use super::MAX_DIRECTORY_BYTES;
use super::Timestamp;
use super::TreeError;
use super::wire;
use crate::digest::Digest;

/// A built input tree: the root's digest, the encoded `Directory` of every directory in
/// it (identical subtrees share one), and the file blobs it refers to.
#[derive(Clone, Debug)]
pub struct InputTree {
    root: Digest,
    directories: BTreeMap<Digest, Vec<u8>>,
    files: BTreeSet<Digest>,
}

/// One name in a directory while the tree is assembled. A `BTreeMap` keyed by name keeps
/// the bytewise order REAPI wants, and one map per directory keeps names unique across
/// files, directories and symlinks.
enum Node {
    File {
        digest: Digest,
        executable: bool,
        mtime: Timestamp,
    },
    Symlink(String),
    Dir(BTreeMap<String, Node>),
}

impl InputTree {
    /// Builds the tree of `entries`, each at an absolute, normalised client path (no
    /// `.`, `..` or empty components, no trailing `/`). Parents are implied directories;
    /// [`Entry::Directory`] makes one exist even when empty. The same entry given twice
    /// is fine; two different ones at one path, or a file or symlink where a directory
    /// is needed, is a [`TreeError::Conflict`].
    pub fn build<P: AsRef<Path>>(
        entries: impl IntoIterator<Item = (P, Entry)>,
    ) -> Result<InputTree, TreeError> {
        let mut root = BTreeMap::new();
        let mut files = BTreeSet::new();
        for (path, entry) in entries {
            if let Entry::File { digest, .. } = &entry {
                files.insert(*digest);
            }
            insert(&mut root, path.as_ref(), entry)?;
        }
        let mut directories = BTreeMap::new();
        let root = encode(&root, &mut directories)?;
        Ok(InputTree {
            root,
            directories,
            files,
        })
    }

    /// The digest of the root `Directory`: the tree's name.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// Every directory blob, by digest (in digest order), the root's included. An empty
    /// directory's blob is empty, with digest [`Digest::EMPTY`].
    pub fn directories(&self) -> impl ExactSizeIterator<Item = (&Digest, &[u8])> {
        self.directories
            .iter()
            .map(|(digest, blob)| (digest, blob.as_slice()))
    }

    /// One directory blob, if it is part of this tree.
    pub fn directory(&self, digest: &Digest) -> Option<&[u8]> {
        self.directories.get(digest).map(Vec::as_slice)
    }

    /// The file blobs the tree refers to, each once, in digest order.
    pub fn files(&self) -> impl ExactSizeIterator<Item = &Digest> {
        self.files.iter()
    }
}

fn bad(path: &Path, reason: &'static str) -> TreeError {
    TreeError::BadPath {
        path: path.to_owned(),
        reason,
    }
}

/// Checks one component of a client path. Path::components would quietly drop `.` and
/// doubled slashes, so the path is split by hand and every oddity refused instead: the
/// caller's paths must already be what the box will recreate.
fn component<'a>(path: &Path, name: &'a str) -> Result<&'a str, TreeError> {
    match name {
        "" => Err(bad(path, "has an empty component (`//` or a trailing `/`)")),
        "." | ".." => Err(bad(path, "has a `.` or `..` component")),
        _ => wire::check_name(name)
            .map(|()| name)
            .map_err(|_| bad(path, "has a component with a NUL or over 255 bytes")),
    }
}

fn insert(root: &mut BTreeMap<String, Node>, path: &Path, entry: Entry) -> Result<(), TreeError> {
    let text = path.as_os_str().as_bytes();
    if !text.starts_with(b"/") {
        return Err(bad(path, "is not absolute"));
    }
    let text = std::str::from_utf8(text).map_err(|_| bad(path, "is not UTF-8"))?;
    if text == "/" {
        return match entry {
            Entry::Directory => Ok(()),
            _ => Err(TreeError::Conflict(path.to_owned())),
        };
    }
    // Depth is the number of components, one more than the number of inner slashes.
    if text.bytes().filter(|&byte| byte == b'/').count() > MAX_DEPTH {
        return Err(bad(path, "is deeper than 256 components"));
    }
    let (parents, leaf) = text.rsplit_once('/').expect("starts with /");
    let leaf = component(path, leaf)?;

    let mut dir = root;
    let mut end = 0;
    for name in parents.split('/').skip(1) {
        let name = component(path, name)?;
        end += 1 + name.len();
        // Look up before inserting so that only new names cost an allocation.
        if !dir.contains_key(name) {
            dir.insert(name.to_owned(), Node::Dir(BTreeMap::new()));
        }
        match dir.get_mut(name) {
            Some(Node::Dir(children)) => dir = children,
            _ => return Err(TreeError::Conflict(PathBuf::from(&text[..end]))),
        }
    }

    let node = match entry {
        Entry::File {
            digest,
            executable,
            mtime,
        } => {
            wire::check_timestamp(mtime)?;
            Node::File {
                digest,
                executable,
                mtime,
            }
        }
        Entry::Symlink { target } => {
            wire::check_target(&target)?;
            Node::Symlink(target)
        }
        Entry::Directory => Node::Dir(BTreeMap::new()),
    };
    match dir.get(leaf) {
        None => {
            dir.insert(leaf.to_owned(), node);
            Ok(())
        }
        Some(existing) if same(existing, &node) => Ok(()),
        Some(_) => Err(TreeError::Conflict(path.to_owned())),
    }
}

/// Whether a new entry agrees with the node already at its path. A directory agrees
/// with a directory whatever it holds: an explicit `Directory` adds nothing to one.
fn same(existing: &Node, new: &Node) -> bool {
    match (existing, new) {
        (Node::Dir(_), Node::Dir(_)) => true,
        (
            Node::File {
                digest,
                executable,
                mtime,
            },
            Node::File {
                digest: new_digest,
                executable: new_executable,
                mtime: new_mtime,
            },
        ) => digest == new_digest && executable == new_executable && mtime == new_mtime,
        (Node::Symlink(target), Node::Symlink(new_target)) => target == new_target,
        _ => false,
    }
}

/// Encodes `dir` after its subdirectories (a directory's blob names theirs by digest),
/// recording every blob in `blobs`; returns `dir`'s digest.
fn encode(
    dir: &BTreeMap<String, Node>,
    blobs: &mut BTreeMap<Digest, Vec<u8>>,
) -> Result<Digest, TreeError> {
    let mut subdirectories = Vec::new();
    for (name, node) in dir {
        if let Node::Dir(children) = node {
            subdirectories.push((name.as_str(), encode(children, blobs)?));
        }
    }
    // About what an entry takes (a file node is ~95 bytes plus its name), to spare
    // the blob most of its regrowth.
    let mut blob = Vec::with_capacity(dir.len() * 128);
    for (name, node) in dir {
        if let Node::File {
            digest,
            executable,
            mtime,
        } = node
        {
            wire::put_file_entry(&mut blob, name, digest, *executable, Some(*mtime));
        }
    }
    for (name, digest) in subdirectories {
        wire::put_directory_entry(&mut blob, name, &digest);
    }
    for (name, node) in dir {
        if let Node::Symlink(target) = node {
            wire::put_symlink_entry(&mut blob, name, target);
        }
    }
    if blob.len() as u64 > MAX_DIRECTORY_BYTES {
        return Err(TreeError::TooLarge(blob.len() as u64));
    }
    let digest = Digest::of(&blob);
    blobs.entry(digest).or_insert(blob);
    Ok(digest)
}
