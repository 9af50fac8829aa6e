//! A private, throwaway OpenSSH `sshd` on 127.0.0.1 that stands in for a
//! remote build box.
//!
//! sshcc's whole job is talking to build boxes over SSH, so tests exercise a
//! real OpenSSH server instead of a mock: host-key checking, public-key
//! authentication, `environment=` options reaching the remote process and
//! connections dying when a host dies all behave exactly as they would against
//! a real machine. The quick-start demo and the benchmarks reuse it for the
//! same reason.
//!
//! A [`ThrowawayBox`] owns a temporary directory (host key, client key,
//! `authorized_keys`, `sshd_config`, `known_hosts`, a client `ssh_config` and
//! the sshd log) and the `sshd` process serving it. It never reads or writes
//! the real `~/.ssh` of the user running the tests: clients reach the box with
//! `ssh -F <ssh_config> box`, which ignores every other client configuration.
//! Its sessions get their own slot, temporary, cache, state and config
//! directories inside the box's directory, so that what runs on the box (which
//! logs in as the same user) leaves the real home alone too.
//! Dropping the box kills sshd together with every session it spawned and
//! deletes the directory.
//!
//! The pieces, each in its own file: the [`BoxBuilder`]'s options (`builder`), what
//! starting a box does (`start`), the files it writes (`configs`: `sshd_config`,
//! `ssh_config`, `known_hosts`, `authorized_keys`), keys and certificates (`keys`), the
//! directory's layout (`layout`), how a fresh sshd proves it is usable (`readiness`),
//! sshd's process tree (`process`), the running [`ThrowawayBox`] (`running`), and
//! accounts for other login users (`account`). This file only re-exports them.

mod account;
mod builder;
mod configs;
mod keys;
mod layout;
mod process;
mod readiness;
mod running;
mod start;

pub use account::ensure_account;
pub use builder::BoxBuilder;
pub use keys::{CertificateRequest, certify};
pub use running::ThrowawayBox;

#[cfg(test)]
mod tests;
