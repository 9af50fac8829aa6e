//! What a box answered ([`Answer`], however the job was sent) and what its wait status
//! means for the wrapper ([`Outcome`], distcc's classes).

use super::output::{deliver, report};
use super::remote;
use crate::compiler::args::Distributable;
use crate::protocol::Response;
use crate::protocol::mux::remote::RemoteCompile;

/// A box's answer to a job, however it was sent.
pub(super) enum Answer {
    /// To preprocessed source.
    Preprocessed(Response),
    /// To a remote-preprocessed job.
    Remote(RemoteCompile),
    /// Nothing was sent: the local preprocessor failed.
    PreprocessingFailed,
}

impl Answer {
    pub(super) fn status(&self) -> u32 {
        match self {
            Answer::Preprocessed(response) => response.status,
            Answer::Remote(compile) => compile.status,
            Answer::PreprocessingFailed => 1 << 8,
        }
    }

    pub(super) fn stderr(&self) -> &[u8] {
        match self {
            Answer::Preprocessed(response) => &response.stderr,
            Answer::Remote(compile) => &compile.stderr,
            Answer::PreprocessingFailed => &[],
        }
    }

    /// Prints what the compiler printed on the box.
    pub(super) fn report(&self) {
        match self {
            Answer::Preprocessed(response) => report(response),
            Answer::Remote(compile) => remote::report(compile),
            Answer::PreprocessingFailed => {}
        }
    }

    /// Prints what the compiler printed and writes its outputs; the exit status.
    pub(super) fn deliver(&self, scan: &Distributable) -> u8 {
        match self {
            Answer::Preprocessed(response) => deliver(response, scan),
            Answer::Remote(compile) => remote::deliver(compile),
            Answer::PreprocessingFailed => 1,
        }
    }
}

/// What a job's wait status means for the wrapper.
pub(super) enum Outcome {
    Success,
    /// The box would not run it (distcc's codes 100–120: allowlist, arguments, …).
    Refused(u8),
    CompileError(u8),
    /// Killed by a signal: distcc always retries those locally.
    Crashed(u8),
}

pub(super) fn classify(status: u32) -> Outcome {
    let signal = status & 0x7f;
    let code = ((status >> 8) & 0xff) as u8;
    match (signal, code) {
        (0, 0) => Outcome::Success,
        (0, 100..=120) => Outcome::Refused(code),
        (0, code) => Outcome::CompileError(code),
        (signal, _) => Outcome::Crashed(128u8.saturating_add(signal as u8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_map_to_distcc_outcomes() {
        assert!(matches!(classify(0), Outcome::Success));
        assert!(matches!(classify(1 << 8), Outcome::CompileError(1)));
        assert!(matches!(classify(110 << 8), Outcome::Refused(110)));
        assert!(matches!(classify(11 | 0x80), Outcome::Crashed(139)));
    }
}
