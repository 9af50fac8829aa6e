//! What asking for a slot gives ([`Assignment`]): a held slot on a box
//! ([`RemoteSlot`], which runs the job there) or on this machine ([`LocalSlot`]), each
//! released when dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::dispatcher::Dispatcher;
use super::host::HostState;
use super::link::{Flavour, HostLink, LinkError};
use super::remote::{JobBlobs, JobFailure};
use crate::mux::client::Observer;
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::toolchain::Fingerprint;

/// The outcome of asking for a slot.
#[derive(Debug)]
pub enum Assignment {
    /// Run the job on this box.
    Remote(RemoteSlot),
    /// A `localhost` entry won: run the job here.
    Local(LocalSlot),
    /// No usable host (none configured, all backed off or failed); the message says why.
    NoHosts(String),
}

/// A held slot on a box; released when dropped.
#[derive(Debug)]
pub struct RemoteSlot {
    pub(super) host: Arc<HostState>,
    pub(super) link: Arc<HostLink>,
    pub(super) dispatcher: Arc<Dispatcher>,
    /// The local compiler's toolchain, which a REAPI action names.
    pub(super) toolchain: Option<Fingerprint>,
}

impl RemoteSlot {
    /// The host entry's text, as the user wrote it.
    pub fn host(&self) -> &str {
        &self.host.spec.text
    }

    pub fn flavour(&self) -> Flavour {
        self.link.flavour()
    }

    /// Runs an encoded job on the box within `io_timeout` (`DISTCC_IO_TIMEOUT`); see
    /// [`HostLink::run`].
    /// `observer` hears of the job's progress on the link.
    pub async fn run(
        &self,
        job_payload: Vec<u8>,
        io_timeout: Duration,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        let running = (self.link).run(
            job_payload,
            self.host.spec.lzo,
            self.toolchain.as_ref(),
            observer,
        );
        match tokio::time::timeout(io_timeout, running).await {
            Ok(result) => {
                if result.is_ok() {
                    self.host.done.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            Err(_) => {
                self.link.retire();
                Err(LinkError(format!(
                    "{}: no answer within {}s (DISTCC_IO_TIMEOUT)",
                    self.link.label(),
                    io_timeout.as_secs()
                )))
            }
        }
    }

    /// Why this box cannot take remote-preprocessed jobs, or `None` when it can.
    pub fn no_remote_preprocessing(&self) -> Option<String> {
        self.link.no_remote_preprocessing()
    }

    /// Runs a remote-preprocessed job (uploading what the box lacks of `blobs` first)
    /// within `io_timeout`; see [`remote::run`](super::remote::run).
    pub async fn run_remote(
        &self,
        job: &RemoteJob,
        blobs: &JobBlobs,
        io_timeout: Duration,
        observer: Option<Observer>,
    ) -> Result<RemoteCompile, JobFailure> {
        let running = self.link.run_remote(
            job,
            blobs,
            &self.host.known_blobs,
            self.toolchain.as_ref(),
            observer,
        );
        match tokio::time::timeout(io_timeout, running).await {
            Ok(result) => {
                if result.is_ok() {
                    self.host.done.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            Err(_) => {
                self.link.retire();
                Err(JobFailure::Box(format!(
                    "{}: no answer within {}s (DISTCC_IO_TIMEOUT)",
                    self.link.label(),
                    io_timeout.as_secs()
                )))
            }
        }
    }

    /// Records that the host failed this job (`why`), so it is avoided for `backoff`.
    pub fn mark_failed(&self, backoff: Duration, why: &str) {
        let settings = self.link.reapi_config().cloned();
        self.dispatcher.back_off(&self.host, settings, backoff, why);
    }
}

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        self.dispatcher.release(&self.host);
    }
}

/// A held `localhost` slot; released when dropped.
#[derive(Debug)]
pub struct LocalSlot {
    pub(super) host: Arc<HostState>,
    pub(super) dispatcher: Arc<Dispatcher>,
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        self.dispatcher.release(&self.host);
    }
}
