//! [`HostState`]: what the dispatcher keeps about one host entry, shared by every job
//! that names it: its slots in use, counts, backoff, and its connection.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::link::{HostLink, LinkMeter};
use super::remote::KnownBlobs;
use crate::config::ReapiConfig;
use crate::hosts::HostSpec;
use crate::ssh::config::ClientOptions;

/// Until when a host that failed is avoided, and the REAPI settings it failed with: a
/// build with other settings (a token exported since, a fixed TLS path) tries it at
/// once, as it would get a new connection anyway, while builds with the failed
/// settings keep avoiding it.
#[derive(Debug)]
pub(super) struct Backoff {
    pub(super) until: Instant,
    pub(super) reapi_settings: Option<ReapiConfig>,
}

impl Backoff {
    /// How much longer the host is avoided by a build with `settings` (`None` for
    /// hosts other than REAPI engines); `None` if not at all.
    pub(super) fn left_for(&self, settings: Option<&ReapiConfig>) -> Option<Duration> {
        if self.reapi_settings.as_ref() != settings {
            return None;
        }
        self.until.checked_duration_since(Instant::now())
    }
}

/// Shared state of one host entry (keyed by its text and the ssh config in use).
#[derive(Debug)]
pub(super) struct HostState {
    pub(super) key: String,
    /// Order of first use, for `sshcc status`.
    pub(super) seq: u64,
    pub(super) spec: HostSpec,
    pub(super) ssh: ClientOptions,
    pub(super) busy: Mutex<u32>,
    /// Jobs the host answered, and jobs it failed, since the daemon started.
    pub(super) done: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) meter: Arc<LinkMeter>,
    /// The connection jobs use now (a copy of `link` that status reads without waiting
    /// for a connection attempt).
    pub(super) current: Mutex<Option<Arc<HostLink>>>,
    pub(super) backoff: Mutex<Option<Backoff>>,
    /// Why the host was last backed off, for the messages of jobs that cannot use it.
    pub(super) last_failure: Mutex<String>,
    /// Serialises connecting, so 64 concurrent first jobs open one connection.
    pub(super) link: tokio::sync::Mutex<Option<Arc<HostLink>>>,
    /// Blobs the box's content store holds, as far as this daemon knows.
    pub(super) known_blobs: KnownBlobs,
}
