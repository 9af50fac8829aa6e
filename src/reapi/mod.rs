//! A client of Remote Execution API v2 engines (issue 14): BuildGrid, Buildbarn,
//! BuildBuddy, NativeLink and the like, reached over gRPC with `bazel-remote-apis`'
//! generated messages and stubs.
//!
//! Pieces: `endpoint` (where the engine is: URL, instance, TLS, authorization,
//! timeouts), `client` (the connection, GetCapabilities, the action cache), `cas`
//! (FindMissingBlobs, uploads in batches or by ByteStream, verified downloads),
//! `execute` (Execute, following and resuming the operation), `action` (Command and
//! Action messages in canonical form), `error` (failures classified by what the
//! caller does about them).
//!
//! Digests are [`crate::digest::Digest`] (SHA-256, REAPI's shape), and input roots are
//! [`crate::tree`] trees, whose `Directory` blobs are already REAPI's deterministic
//! encoding: they are uploaded as they are.

mod action;
mod cas;
mod client;
mod endpoint;
mod error;
mod execute;

pub use action::{BuiltAction, CommandSpec};
pub use client::{Capabilities, ReapiClient};
pub use endpoint::{
    Authorization, ClientIdentity, Endpoint, EndpointError, TRANSFER_BYTES_PER_CALL_TIMEOUT,
    TlsSettings,
};
pub use error::ReapiError;

/// REAPI's generated messages, for the fields of results this module passes on
/// (`ExecuteResponse`, `ActionResult`, `OutputFile`…).
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;

use crate::digest::Digest;

/// Our digest as REAPI's message.
pub fn to_proto(digest: &Digest) -> proto::Digest {
    proto::Digest {
        hash: digest.hash_hex(),
        size_bytes: digest.size_bytes as i64,
    }
}

/// An engine's digest as ours; `call` names the answer it came in, for the error
/// when it is malformed (not 64 lowercase hex digits, a negative size).
pub fn from_proto(call: impl Into<String>, digest: &proto::Digest) -> Result<Digest, ReapiError> {
    let call = call.into();
    let hash = Digest::parse_hash(&digest.hash)
        .map_err(|err| ReapiError::malformed(call.clone(), err.to_string()))?;
    let size_bytes = u64::try_from(digest.size_bytes)
        .map_err(|_| ReapiError::malformed(call, format!("negative size in {digest:?}")))?;
    Ok(Digest { hash, size_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_convert_both_ways_and_bad_ones_are_refused() {
        let digest = Digest::of(b"int main;");
        assert_eq!(from_proto("t", &to_proto(&digest)).unwrap(), digest);
        let mut bad = to_proto(&digest);
        bad.size_bytes = -1;
        assert!(matches!(
            from_proto("t", &bad),
            Err(ReapiError::Malformed { .. })
        ));
        let mut bad = to_proto(&digest);
        bad.hash = bad.hash.to_uppercase();
        assert!(matches!(
            from_proto("t", &bad),
            Err(ReapiError::Malformed { .. })
        ));
    }
}
