//! The daemon side of a multiplexed link: many concurrent jobs over one stream to a box
//! running `sshcc --mux`.
//!
//! A reader task routes each RESULT to the job waiting for it and keeps draining the
//! stream (an undrained SSH channel would stall the whole connection); a writer task
//! serialises outgoing frames. If the link breaks, every waiting job learns it at once.
//!
//! Both tasks count what passes ([`Traffic`]): bytes on the stream, and the same frames
//! uncompressed, so `sshcc status` can show the volume and the compression ratio.
//!
//! The pieces: the [`MuxClient`] with its reader and writer tasks (`multiplexer`),
//! what a job can learn and suffer on the link ([`JobEvent`], [`MuxError`], in
//! `events`), and the counting (`traffic`). This file only re-exports.

mod events;
mod multiplexer;
mod traffic;

#[cfg(test)]
mod tests;

pub use events::{JobEvent, MuxError, Observer};
pub use multiplexer::MuxClient;
pub use traffic::{Counted, Traffic, TrafficCounts};
