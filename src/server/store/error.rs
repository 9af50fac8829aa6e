//! [`StoreError`]: what went wrong, for callers that branch on it.

use std::io;

use crate::digest::Digest;

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

pub(super) fn io_error(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}
