//! Input trees: the REAPI v2 model of a job's files (`build.bazel.remote.execution.v2`
//! `Directory`, `FileNode`, `DirectoryNode`, `SymlinkNode`), shared by the client, which
//! builds a job's input root from absolute client paths ([`InputTree::build`]), the box,
//! which walks a root it received and must distrust ([`walk`]), and a REAPI client
//! (issue 14).
//!
//! A directory is named by the digest of its protobuf encoding, so the encoding here is
//! byte-identical to protobuf's deterministic encoding of REAPI's messages (fields in
//! number order, defaults omitted): a root digest built here is the one any REAPI engine
//! computes for the same tree, and blobs can go to such an engine as they are.
//!
//! Our file nodes carry the client's modification time in `node_properties.mtime`: the
//! box materialises files with it because gcc's `#pragma once` compares mtime, size and
//! content, and `__TIMESTAMP__` expands to the source's mtime. Symlinks and directories
//! carry no properties.
//!
//! Pieces: `wire` (the messages and their encoding, strict decoding), `build` (client
//! paths to a canonical tree), `walk` (a received root to a validated list of entries).
//! The tests are in their own files.

mod build;
mod walk;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

pub use build::InputTree;
pub use walk::{WalkEntry, WalkError, WalkLimits, walk, walk_with_limits};
pub use wire::{Directory, DirectoryNode, FileNode, SymlinkNode};

use crate::digest::Digest;
use std::path::PathBuf;

/// Longest name of one directory entry, in bytes: Linux's NAME_MAX. Longer names could
/// not be materialised, so neither side lets one into a tree.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest symlink target, in bytes: PATH_MAX less its terminating NUL.
pub const MAX_TARGET_BYTES: usize = 4095;

/// Largest encoded `Directory` accepted, in bytes (about 35,000 entries). It bounds what
/// the box fetches and decodes for one directory before it knows the blob is sane.
pub const MAX_DIRECTORY_BYTES: u64 = 4 << 20;

/// Most path components of an entry (a file at `/home/a/x.h` has 3). Build refuses
/// deeper paths so that it never makes a tree that [`walk`]'s default limits refuse.
pub const MAX_DEPTH: usize = 256;

/// A `google.protobuf.Timestamp`: seconds since the Unix epoch and a forward count of
/// nanoseconds (so 1.5 s before the epoch is `{ seconds: -2, nanos: 500_000_000 }`, the
/// form `stat`'s `st_mtime`/`st_mtime_nsec` already have).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    /// Protobuf's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;

    /// A file's modification time as `stat` reports it.
    pub fn mtime_of(metadata: &std::fs::Metadata) -> Timestamp {
        use std::os::unix::fs::MetadataExt;
        Timestamp {
            seconds: metadata.mtime(),
            // st_mtime_nsec is always below 10⁹, so it fits.
            nanos: metadata.mtime_nsec() as i32,
        }
    }

    /// Whether this is a Timestamp protobuf allows: nanos in 0..10⁹, seconds within
    /// years 1 to 9999. Both sides refuse others, so a tree built here always decodes.
    pub fn is_valid(&self) -> bool {
        (0..1_000_000_000).contains(&self.nanos)
            && (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&self.seconds)
    }
}

/// What is at one client path, as [`InputTree::build`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file, materialised on the box from the blob `digest` with this mtime.
    File {
        digest: Digest,
        executable: bool,
        mtime: Timestamp,
    },
    /// A symbolic link; the target is kept as the client's `readlink` gave it.
    Symlink { target: String },
    /// A directory that must exist even if nothing in it is shipped (an include
    /// directory of the search chain, for instance). Parents of entries exist anyway.
    Directory,
}

/// Why a tree could not be built, or a `Directory` blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// An input path is not absolute and normalised, or has a component no tree may
    /// hold (not UTF-8, a NUL, longer than [`MAX_NAME_BYTES`]), or is too deep.
    #[error("input path {path:?} {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
    /// Two different entries at one path (a file and a directory, two different files,
    /// a symlink used as a parent directory…).
    #[error("conflicting entries at {0:?}")]
    Conflict(PathBuf),
    /// A file's mtime is outside protobuf's Timestamp range.
    #[error("invalid timestamp {seconds}s {nanos}ns")]
    BadTimestamp { seconds: i64, nanos: i32 },
    /// A symlink target that is empty, has a NUL, or is longer than [`MAX_TARGET_BYTES`].
    #[error("invalid symlink target {0:?}")]
    BadTarget(String),
    /// A directory's encoding would exceed [`MAX_DIRECTORY_BYTES`].
    #[error("directory blob of {0} bytes is larger than allowed")]
    TooLarge(u64),
    /// The blob is not well-formed protobuf: truncated, a bad varint, a wrong wire type,
    /// a string that is not UTF-8, a required digest absent.
    #[error("malformed Directory blob: {0}")]
    Malformed(&'static str),
    /// A field this model does not know or refuses (REAPI's `node_properties.properties`
    /// and `unix_mode`, directory and symlink properties, or anything unknown): the box
    /// would otherwise drop metadata silently.
    #[error("unsupported field {field} in {message}")]
    UnsupportedField { message: &'static str, field: u64 },
    /// Well-formed, but not the deterministic encoding (fields out of order, repeated,
    /// defaults written out, overlong varints): REAPI requires it, and it is the only
    /// form whose digest other implementations agree on.
    #[error("Directory blob is not in canonical encoding")]
    NotCanonical,
    /// An entry name that is empty, `.`, `..`, contains `/` or NUL, or is too long.
    #[error("invalid entry name {0:?}")]
    BadName(String),
    /// A list not sorted by name, or a name used twice in one directory.
    #[error("entry {0:?} out of order or duplicated")]
    NotSorted(String),
    /// A digest whose hash is not 64 lowercase hex digits, or whose size is negative.
    #[error("invalid digest in entry {0:?}")]
    BadDigest(String),
}
