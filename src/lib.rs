//! sshcc: a distcc-compatible compile dispatcher whose transport is SSH.
//!
//! # Layout
//! - [`protocol`]: the distcc wire protocol (framing, LZO, requests and responses), over
//!   any `AsyncRead`/`AsyncWrite`.
//! - [`compiler`]: compiler command lines: source-file rules and distcc's
//!   distributable-or-local verdict.
//! - [`server`]: the box side, `sshcc --inetd`: allowlist, argument policy, running a job.
//! - [`exit_code`]: distcc's exit codes 100–120.
//! - [`cli`]: the command line of the `sshcc` binary.
//! - [`throwaway_box`]: a private OpenSSH sshd on loopback standing in for a build box
//!   (tests, the demo and the benchmarks).

pub mod async_runtime;
pub mod cli;
pub mod client_settings;
pub mod commands;
pub mod compiler;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod dispatch;
pub mod exit_code;
pub mod hosts;
pub mod mux;
pub mod protocol;
pub mod server;
pub mod ssh;
pub mod status;
pub mod system;
pub mod throwaway_box;
pub mod toolchain;
pub mod wrapper;
