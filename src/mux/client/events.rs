//! What a job on the link can learn ([`JobEvent`], told to its [`Observer`]) and why it
//! may get no answer ([`MuxError`]).

use std::sync::Arc;

/// Why a job did not get an answer over the link.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("the box did not greet as `sshcc --mux`: {0}")]
    NoGreeting(String),
    #[error("the connection to the box was lost")]
    Lost,
    #[error("the box sent an unreadable answer: {0}")]
    Garbled(String),
}

/// Progress of one job on the link, for `sshcc status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// The request is written: the box has it (or will as soon as the network delivers).
    Sent,
    /// The answer's first bytes arrived; the rest is on its way.
    Answering,
}

/// Told about a job's [`JobEvent`]s.
pub type Observer = Arc<dyn Fn(JobEvent) + Send + Sync>;
