//! Choosing where a job runs and getting it there: per-host slots, least-loaded
//! placement, backoff of failed hosts, and the pool of connections.
//!
//! The [`Dispatcher`] lives in the per-user daemon (shared by every wrapper of every
//! build) or, with `SSHCC_NO_DAEMON=1`, inside a single wrapper. Wrappers describe the
//! hosts they may use with each request, as distcc re-reads its host list per job, so
//! builds with different `DISTCC_HOSTS` can share one daemon.
//!
//! The pieces: what a wrapper asks for ([`Route`], in `route`), each host's shared
//! state (`host`), the [`Dispatcher`] with its slot counting and backoff
//! (`dispatcher`), placing a job and connecting (`placement`), the slots it hands out
//! ([`Assignment`], in `slots`) and `sshcc status`'s rows (`host_status`). The pooled
//! connections are in [`link`], remote-preprocessed jobs in [`remote`], the counts in
//! [`tracker`]. This file only re-exports.

mod dispatcher;
mod host;
mod host_status;
pub mod link;
mod placement;
pub mod remote;
mod route;
mod slots;
pub mod tracker;

pub use dispatcher::Dispatcher;
pub use placement::DEFAULT_REMOTE_COMMAND;
pub use route::{Route, ToolchainCheck};
pub use slots::{Assignment, LocalSlot, RemoteSlot};
