//! The daemon side of a multiplexed link: many concurrent jobs over one stream to a box
//! running `sshcc --mux`.
//!
//! A reader task routes each RESULT to the job waiting for it and keeps draining the
//! stream (an undrained SSH channel would stall the whole connection); a writer task
//! serialises outgoing frames. If the link breaks, every waiting job learns it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::frame::{self, Compression, Frame};
use super::kind;
use super::server::Hello;
use crate::toolchain::Fingerprint;

/// Why a job did not get an answer over the link.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("the box did not greet as `sshcc --mux`: {0}")]
    NoGreeting(String),
    #[error("the connection to the box was lost")]
    Lost,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// A live link to one box worker.
#[derive(Debug)]
pub struct MuxClient {
    outgoing: mpsc::Sender<Frame>,
    pending: Pending,
    next_job: AtomicU64,
    closed: Arc<AtomicBool>,
    hello: Hello,
}

impl MuxClient {
    /// Waits up to `timeout` for the box's greeting on `reader`, then starts serving jobs.
    /// The halves are separate so that dropping the client closes `writer`, which is how
    /// the box learns to exit.
    pub async fn handshake<R, W>(
        mut reader: R,
        mut writer: W,
        timeout: Duration,
    ) -> Result<Self, MuxError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let greeting = tokio::time::timeout(timeout, frame::read_frame(&mut reader))
            .await
            .map_err(|_| MuxError::NoGreeting(format!("nothing within {timeout:?}")))?;
        let hello = match greeting {
            Ok(Some(frame)) if frame.kind == kind::HELLO => Hello::decode(&frame.payload)
                .map_err(|err| MuxError::NoGreeting(err.to_string()))?,
            Ok(Some(frame)) => {
                return Err(MuxError::NoGreeting(format!(
                    "first frame has kind {}",
                    frame.kind
                )));
            }
            Ok(None) => return Err(MuxError::NoGreeting("the stream ended".into())),
            Err(err) => return Err(MuxError::NoGreeting(err.to_string())),
        };

        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (outgoing, mut to_send) = mpsc::channel::<Frame>(256);
        {
            let (pending, closed) = (pending.clone(), closed.clone());
            tokio::spawn(async move {
                while let Some(frame) = to_send.recv().await {
                    if let Err(err) =
                        frame::write_frame(&mut writer, &frame, Compression::Zstd).await
                    {
                        tracing::debug!("mux link write failed: {err}");
                        break;
                    }
                }
                close(&closed, &pending);
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
            });
        }
        {
            let (pending, closed) = (pending.clone(), closed.clone());
            tokio::spawn(async move {
                loop {
                    match frame::read_frame(&mut reader).await {
                        Ok(Some(frame))
                            if frame.kind == kind::RESULT || frame.kind == kind::IDENTITY =>
                        {
                            let waiter = pending.lock().expect("pending lock").remove(&frame.job);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(frame.payload);
                            }
                        }
                        Ok(Some(frame)) => {
                            tracing::debug!("ignoring frame kind {} from the box", frame.kind)
                        }
                        Ok(None) => break,
                        Err(err) => {
                            tracing::debug!("mux link read failed: {err}");
                            break;
                        }
                    }
                }
                close(&closed, &pending);
            });
        }
        Ok(MuxClient {
            outgoing,
            pending,
            next_job: AtomicU64::new(1),
            closed,
            hello,
        })
    }

    /// What the box said about itself.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Whether the link has failed; a closed client never recovers.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one job (encoded by [`protocol::job::encode_job`]) and waits for the box's
    /// answer, a distcc protocol-1 response left encoded: the daemon only forwards it.
    /// Dropping the future cancels the job on the box (its compiler is killed).
    pub async fn run(&self, job_payload: Vec<u8>) -> Result<Vec<u8>, MuxError> {
        self.request(kind::JOB, job_payload).await
    }

    /// Asks the box which toolchain its allowlist gives `compiler`: the fingerprint,
    /// or the box's reason for having none. `None` when the box is too old to say.
    pub async fn identify(
        &self,
        compiler: &str,
    ) -> Result<Option<Result<Fingerprint, String>>, MuxError> {
        if self.hello.protocol < 2 {
            return Ok(None);
        }
        let answer = self
            .request(kind::IDENTIFY, compiler.as_bytes().to_vec())
            .await?;
        Ok(Some(serde_json::from_slice(&answer).unwrap_or_else(
            |err| {
                Err(format!(
                    "the box sent an unreadable toolchain identity: {err}"
                ))
            },
        )))
    }

    /// Sends a request frame and waits for the answer with the same id.
    async fn request(&self, request_kind: u8, payload: Vec<u8>) -> Result<Vec<u8>, MuxError> {
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            // Checked under the lock `close` takes, so a job cannot slip in after the
            // link died and wait for an answer nobody will send.
            let mut pending = self.pending.lock().expect("pending lock");
            if self.closed.load(Ordering::SeqCst) {
                return Err(MuxError::Lost);
            }
            pending.insert(job, answer);
        }
        let mut guard = CancelOnDrop {
            client: self,
            job,
            armed: true,
        };
        if self
            .outgoing
            .send(Frame::new(request_kind, job, payload))
            .await
            .is_err()
        {
            guard.armed = false;
            self.pending.lock().expect("pending lock").remove(&job);
            return Err(MuxError::Lost);
        }
        let answer = answered.await.map_err(|_| MuxError::Lost);
        guard.armed = false;
        answer
    }
}

/// Marks the link dead and wakes every waiting job (dropping their senders), under the
/// lock that `run` checks the mark under.
fn close(closed: &AtomicBool, pending: &Pending) {
    let mut pending = pending.lock().expect("pending lock");
    closed.store(true, Ordering::SeqCst);
    pending.clear();
}

/// Tells the box to stop a job nobody waits for any more.
struct CancelOnDrop<'a> {
    client: &'a MuxClient,
    job: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.client
                .pending
                .lock()
                .expect("pending lock")
                .remove(&self.job);
            // The queue may be full; the cancel must not be lost, and Drop cannot wait.
            let outgoing = self.client.outgoing.clone();
            let cancel = Frame::new(kind::CANCEL, self.job, Vec::new());
            tokio::spawn(async move {
                let _ = outgoing.send(cancel).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_box_that_does_not_greet_is_reported() {
        let (client_end, mut box_end) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut box_end, b"Welcome to the box!\n")
            .await
            .unwrap();
        let (reader, writer) = tokio::io::split(client_end);
        let err = MuxClient::handshake(reader, writer, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, MuxError::NoGreeting(_)), "{err}");

        let (client_end, box_end) = tokio::io::duplex(1024);
        drop(box_end);
        let (reader, writer) = tokio::io::split(client_end);
        let err = MuxClient::handshake(reader, writer, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, MuxError::NoGreeting(_)), "{err}");
    }
}
