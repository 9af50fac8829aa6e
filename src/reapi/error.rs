//! What can go wrong talking to a REAPI engine, sorted by what the caller does about
//! it: try again later ([`ReapiError::Retryable`]), tell the user their credentials
//! were refused ([`ReapiError::Refused`]), or give up on the engine for this job
//! (everything else).
//!
//! gRPC status codes are classified here once ([`ReapiError::from_code`]), for the
//! status of a call and for the `google.rpc.Status` an engine puts in a response
//! (a blob's entry in a batch, an `ExecuteResponse`, a failed operation) alike.

use tonic::Code;

use crate::digest::Digest;

/// A failed REAPI call. `call` names what was being done ("FindMissingBlobs",
/// "ByteStream.Write of <digest>"…), so the message stands on its own in a log.
#[derive(Debug, thiserror::Error)]
pub enum ReapiError {
    /// The engine is unreachable, overloaded or too slow (UNAVAILABLE,
    /// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, or no answer within the call timeout):
    /// the same request may well succeed after a backoff.
    #[error("{call}: the engine is unavailable or overloaded ({code:?}): {message}")]
    Retryable {
        call: String,
        code: Code,
        message: String,
    },
    /// The engine refused these credentials (UNAUTHENTICATED, PERMISSION_DENIED):
    /// retrying will not help until the user fixes them.
    #[error(
        "{call}: the engine refused this client ({code:?}): {message}; check the \
         authorization header value (credential helper) and the TLS client certificate"
    )]
    Refused {
        call: String,
        code: Code,
        message: String,
    },
    /// The engine's TLS certificate was not accepted (an unknown issuer, another name,
    /// expired): retrying will not help until the trust settings change.
    #[error(
        "{call}: the engine's TLS certificate was not accepted: {message}; check \
         ca_certificates and tls_server_name in its [reapi.\"HOST:PORT\"] settings"
    )]
    Untrusted { call: String, message: String },
    /// Any other error status: the engine will not do this request.
    #[error("{call}: {code:?}: {message}")]
    Failed {
        call: String,
        code: Code,
        message: String,
    },
    /// The CAS does not hold a blob the caller asked for (evicted, or never uploaded).
    #[error("{call}: the engine has no blob {digest}")]
    MissingBlob { call: String, digest: Digest },
    /// The engine sent bytes that are not the blob asked for: wrong size or hash.
    #[error("{call}: the engine sent {got} for blob {expected}")]
    CorruptBlob {
        call: String,
        expected: Digest,
        got: Digest,
    },
    /// An answer that breaks the protocol: an unparsable digest, an operation result
    /// of the wrong type, a stream that ended too early.
    #[error("{call}: malformed answer from the engine: {reason}")]
    Malformed { call: String, reason: String },
}

impl ReapiError {
    /// The error for status `code` (not OK) with `message`, classified.
    pub fn from_code(call: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        let (call, message) = (call.into(), message.into());
        match code {
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => {
                ReapiError::Retryable {
                    call,
                    code,
                    message,
                }
            }
            Code::Unauthenticated | Code::PermissionDenied => ReapiError::Refused {
                call,
                code,
                message,
            },
            _ => ReapiError::Failed {
                call,
                code,
                message,
            },
        }
    }

    /// The error for a failed gRPC call. A connection that failed because the
    /// engine's certificate was refused comes back as UNAVAILABLE, like an engine that
    /// is down, but is no reason to retry: it is [`ReapiError::Untrusted`].
    pub fn from_status(call: impl Into<String>, status: &tonic::Status) -> Self {
        if certificate_refused(status) {
            return ReapiError::Untrusted {
                call: call.into(),
                message: status.message().to_owned(),
            };
        }
        ReapiError::from_code(call, status.code(), status.message())
    }

    /// The error for a `google.rpc.Status` inside a response, or None if it is OK.
    pub fn from_rpc_status(
        call: impl Into<String>,
        status: Option<&bazel_remote_apis::google::rpc::Status>,
    ) -> Option<Self> {
        let status = status?;
        let code = Code::from_i32(status.code);
        (code != Code::Ok).then(|| ReapiError::from_code(call, code, status.message.clone()))
    }

    /// The engine answered nothing within `timeout`.
    pub(super) fn timed_out(call: impl Into<String>, timeout: std::time::Duration) -> Self {
        ReapiError::Retryable {
            call: call.into(),
            code: Code::DeadlineExceeded,
            message: format!("no answer within {timeout:?}"),
        }
    }

    pub(super) fn malformed(call: impl Into<String>, reason: impl Into<String>) -> Self {
        ReapiError::Malformed {
            call: call.into(),
            reason: reason.into(),
        }
    }

    /// Whether the same request may succeed after a backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReapiError::Retryable { .. })
    }
}

/// Whether `status` (or what caused it) is rustls refusing the peer's certificate.
/// rustls's own error type is behind tonic's, so its text is what can be matched; it
/// has read "invalid peer certificate: …" since rustls 0.20.
fn certificate_refused(status: &tonic::Status) -> bool {
    const REFUSED: &str = "invalid peer certificate";
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(err) = cause {
        if err.to_string().contains(REFUSED) {
            return true;
        }
        cause = err.source();
    }
    status.message().contains(REFUSED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_what_the_caller_does() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            let error = ReapiError::from_code("Execute", code, "busy");
            assert!(error.is_retryable(), "{error}");
        }
        for code in [Code::Unauthenticated, Code::PermissionDenied] {
            let error = ReapiError::from_code("Execute", code, "no");
            assert!(matches!(error, ReapiError::Refused { .. }), "{error}");
            assert!(
                error.to_string().contains("authorization header"),
                "{error}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::Internal,
            Code::NotFound,
            Code::Cancelled,
        ] {
            let error = ReapiError::from_code("Execute", code, "bad");
            assert!(matches!(error, ReapiError::Failed { .. }), "{error}");
        }
    }

    #[test]
    fn a_refused_certificate_is_not_retried() {
        let status = tonic::Status::unavailable(
            "error trying to connect: invalid peer certificate: UnknownIssuer",
        );
        let error = ReapiError::from_status("GetCapabilities", &status);
        assert!(matches!(error, ReapiError::Untrusted { .. }), "{error}");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("ca_certificates"), "{error}");
        let down = tonic::Status::unavailable("error trying to connect: Connection refused");
        assert!(ReapiError::from_status("GetCapabilities", &down).is_retryable());
    }

    #[test]
    fn an_ok_rpc_status_is_no_error() {
        use bazel_remote_apis::google::rpc::Status;
        assert!(ReapiError::from_rpc_status("x", None).is_none());
        let ok = Status::default();
        assert!(ReapiError::from_rpc_status("x", Some(&ok)).is_none());
        let busy = Status {
            code: Code::ResourceExhausted as i32,
            message: "queue full".into(),
            details: Vec::new(),
        };
        let error = ReapiError::from_rpc_status("x", Some(&busy)).unwrap();
        assert!(error.is_retryable());
        assert!(error.to_string().contains("queue full"), "{error}");
    }
}
