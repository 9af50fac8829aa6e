//! sshcc: a distcc-compatible compile dispatcher whose transport is SSH.
//!
//! # Layout
//! Modules from the top down; each uses only modules below it (checked by
//! `tests/layering.rs`; docs/design.md has the module table).
//! - [`cli`]: which role the process plays (wrapper, daemon, box worker, a command).
//! - [`commands`]: `sshcc check`, `status`, `stats` and `mon`.
//! - [`wrapper`]: the compiler wrapper: where a job runs, preprocessing, writing the
//!   results as a local compile would.
//! - [`daemon`]: the per-user daemon behind a Unix socket, and the wrappers' side of it.
//! - [`dispatch`]: slots per host, backoff, the pool of connections to boxes.
//! - [`mux`]: both ends of a multiplexed link (`sshcc --mux` and the daemon's client).
//! - [`server`]: the box side of a job: allowlist, argument policy, sandbox, slots,
//!   running the compiler, `sshcc --inetd`. [`ssh`]: reaching a box (OpenSSH's
//!   configuration, known_hosts, russh connections).
//! - [`protocol`]: the wire formats, distcc's and sshcc's mux framing, over any
//!   `AsyncRead`/`AsyncWrite`. [`reapi`]: a client of Remote Execution API v2 engines
//!   (issue 14). [`throwaway_box`]: a private OpenSSH sshd on loopback standing in for
//!   a build box (tests, the demo and the benchmarks).
//! - [`client_settings`]: the client's environment over `config.toml`, and the host list.
//! - [`config`] (`config.toml`), [`hosts`] (distcc's host-list grammar and sources).
//! - Small shared pieces: [`compiler`] (command lines and distcc's distributable
//!   verdict), [`toolchain`] (compiler identity), [`status`] (the status and stats
//!   schema), [`digest`] (content digests), [`exit_code`] (distcc's 100–120),
//!   [`system`] (libc facts, locks), [`async_runtime`].

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
pub mod inputs;
pub mod mux;
pub mod protocol;
pub mod reapi;
pub mod server;
pub mod ssh;
pub mod status;
pub mod system;
pub mod throwaway_box;
pub mod toolchain;
pub mod tree;
pub mod wrapper;
