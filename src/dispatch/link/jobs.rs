//! Running jobs on a [`HostLink`], counted as in flight: an encoded distcc job
//! ([`HostLink::run`]: as it is on an `sshcc --mux` link, as a plain request to a stock
//! distccd, as an action on a REAPI engine) and a remote-preprocessed one ([`HostLink::run_remote`]).

use std::sync::atomic::Ordering;

use super::host_link::{HostLink, LinkError, Transport};
use crate::dispatch::remote::{self, JobBlobs, JobFailure, KnownBlobs};
use crate::mux::client::{MuxError, Observer};
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::protocol::{self, Limits, Request, Version};
use crate::toolchain::Fingerprint;

impl HostLink {
    /// Runs a remote-preprocessed job (see [`remote::run`]), counted as in flight.
    /// A REAPI engine runs it as an action of the local compiler, `toolchain`.
    pub async fn run_remote(
        &self,
        job: &RemoteJob,
        blobs: &JobBlobs,
        known: &KnownBlobs,
        toolchain: Option<&Fingerprint>,
        observer: Option<Observer>,
    ) -> Result<RemoteCompile, JobFailure> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = match &self.transport {
            Transport::Mux { client, .. } => remote::run(client, job, blobs, known, observer).await,
            Transport::Reapi(endpoint) => {
                (self.run_reapi_remote(endpoint, job, blobs, toolchain, observer)).await
            }
            Transport::Distccd { .. } | Transport::Tcp { .. } => Err(JobFailure::Box(format!(
                "{} takes no remote-preprocessed jobs",
                self.label()
            ))),
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result.map_err(|failure| match failure {
            JobFailure::Link(err) => JobFailure::Box(self.describe(err)),
            other => other,
        })
    }

    /// What went wrong on the link, naming the box.
    fn describe(&self, err: MuxError) -> String {
        match err {
            MuxError::Lost => format!("lost the connection to {}", self.label()),
            other => format!("{}: {other}", self.label()),
        }
    }

    /// Runs one job, given and answered in encoded form (see
    /// [`protocol::job::encode_job`]; the answer is a protocol-1 response). An sshcc box
    /// gets the bytes as they are; a stock distccd gets the plain request in protocol 2
    /// when `lzo` is set, else 1, and no context (distcc's protocol has no place for it).
    /// `observer` hears when the request is out and when the answer starts arriving.
    /// A REAPI engine runs it as the compiler of `toolchain` (the local one).
    pub async fn run(
        &self,
        job_payload: Vec<u8>,
        lzo: bool,
        toolchain: Option<&Fingerprint>,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self
            .run_counted(job_payload, lzo, toolchain, observer)
            .await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    async fn run_counted(
        &self,
        job_payload: Vec<u8>,
        lzo: bool,
        toolchain: Option<&Fingerprint>,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        if let Transport::Mux { client, .. } = &self.transport {
            return client
                .run_observed(job_payload, observer)
                .await
                .map_err(|err| LinkError(self.describe(err)));
        }
        let (request, context) = protocol::job::decode_job(&job_payload, &Limits::default())
            .await
            .map_err(|err| LinkError(format!("cannot decode the job: {err}")))?;
        if let Transport::Reapi(endpoint) = &self.transport {
            let locale = &context.env;
            let response =
                (self.run_reapi(endpoint, &request, locale, toolchain, observer.as_ref())).await?;
            return Ok(protocol::distcc::encode_response(Version::V1, &response));
        }
        let version = if lzo { Version::V2 } else { Version::V1 };
        let request = Request { version, ..request };
        let response = match &self.transport {
            Transport::Distccd {
                ssh,
                command,
                channels,
            } => {
                let _permit = channels.acquire().await.expect("semaphore never closed");
                self.run_inetd(ssh, command, &request, observer.as_ref())
                    .await?
            }
            Transport::Tcp { host, port } => {
                self.run_tcp(host, *port, &request, observer.as_ref())
                    .await?
            }
            Transport::Mux { .. } | Transport::Reapi(_) => unreachable!("handled above"),
        };
        let traffic = &self.meter.traffic;
        traffic.job_sent();
        traffic.payload_sent(plain_request_len(&request));
        let answer = protocol::distcc::encode_response(Version::V1, &response);
        traffic.payload_received(answer.len() as u64);
        Ok(answer)
    }
}

/// The length of `request` in distcc's protocol 1 (uncompressed): the `DIST`, `ARGC`,
/// `ARGV` and `DOTI` tokens (12 bytes each) and what follows them.
fn plain_request_len(request: &Request) -> u64 {
    let tokens = 3 + request.argv.len() as u64;
    let argv: u64 = request.argv.iter().map(|arg| arg.len() as u64).sum();
    12 * tokens + argv + request.source.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_request_length_is_what_protocol_1_encodes() {
        let request = Request {
            version: Version::V1,
            argv: vec!["gcc".into(), "-c".into(), "x.c".into()],
            source: b"int x;\n".to_vec(),
        };
        assert_eq!(
            plain_request_len(&request),
            protocol::distcc::encode_request(&request).len() as u64
        );
    }
}
