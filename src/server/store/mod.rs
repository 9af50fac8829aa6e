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
//!   once a minute per blob, except that FIND_MISSING always does, so that a job's
//!   confirmed inputs outlast what its own upload evicts), so `noatime` mounts do not
//!   matter; mtime stays the
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

//!
//! # Files
//! The [`Store`] itself, opening it and what every operation shares are in `blobs`;
//! `insert` takes blobs in (and says which a client must send), `materialize` hands
//! them to jobs, verified; `verified` is the memory of what this process has hashed,
//! `stats` the counts. On disk: `layout` (names), `usage` (the shared estimate),
//! `evict` (scans and LRU eviction), `size` (`--cache-size`). This file only
//! re-exports.

mod blobs;
mod error;
mod evict;
mod insert;
mod layout;
mod materialize;
pub mod size;
mod stats;
mod usage;
mod verified;

#[cfg(test)]
mod tests;

pub use blobs::Store;
pub use error::{Result, StoreError};
pub use evict::ScanReport;
pub use insert::Inserted;
pub use materialize::can_copy_instead;
pub use size::{ParseSizeError, format_size, parse_size};
pub use stats::StoreStats;

/// The bound when the box owner sets none: a box is a big machine, and a store holds
/// several projects' trees (and, where the toolchain fingerprint does not cover them,
/// their system headers).
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;
