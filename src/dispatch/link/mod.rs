//! One pooled connection to a box, and how jobs travel on it.
//!
//! When the box runs sshcc, one long-lived `sshcc --mux` channel carries every job (no
//! per-job channel, process or shell; clear of sshd's `MaxSessions`). When the host's
//! command is a stock distccd (it rejects `--mux`), each job gets its own exec channel
//! running `distccd --inetd` on the same connection, capped per connection and retried
//! when sshd refuses a session. Plain TCP hosts get a connection per job. A REAPI engine gets each job as an action
//! on one gRPC channel (`reapi`).
//!
//! The pieces: the [`HostLink`] and what it says about itself (`host_link`), jobs on it
//! (`jobs`), opening an SSH link (`open`: `--mux`, or the distccd fallback), each
//! transport's way of running one job (`distccd`, `tcp`, `reapi`; an `sshcc --mux` job is the
//! mux client's), and what is measured across reconnections ([`LinkMeter`], in
//! `meter`). This file only re-exports.

mod distccd;
mod host_link;
mod jobs;
mod meter;
mod open;
mod reapi;
mod reapi_remote;
mod tcp;

pub use host_link::{Flavour, HostLink, LinkError, RemoteIdentity};
pub use meter::LinkMeter;
pub use reapi::TOOLCHAIN_PROPERTY;
pub(crate) use tcp::TCP_CONNECT_TIMEOUT;
