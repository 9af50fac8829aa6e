//! The [`MuxClient`]: the handshake, then a reader task that routes each RESULT to the
//! job waiting for it and never stops draining, and a writer task that serialises
//! frames; requests by job id, cancelled when the waiting job gives up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::events::{JobEvent, MuxError, Observer};
use super::traffic::{Counted, Traffic};
use crate::digest::Digest;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::protocol::mux::remote::{self, RemoteAnswer, RemoteJob};
use crate::protocol::mux::{Hello, kind};
use crate::toolchain::Fingerprint;

struct Waiter {
    answer: oneshot::Sender<Vec<u8>>,
    observer: Option<Observer>,
}

type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

/// A frame to write, and who wants to know once it is written.
struct Outgoing {
    frame: Frame,
    observer: Option<Observer>,
}

/// Bytes before a frame's payload (length, kind, flags, job id).
pub(super) const FRAME_HEADER: u64 = 14;

/// A live link to one box worker.
pub struct MuxClient {
    outgoing: mpsc::Sender<Outgoing>,
    pending: Pending,
    next_job: AtomicU64,
    closed: Arc<AtomicBool>,
    hello: Hello,
}

impl std::fmt::Debug for MuxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxClient")
            .field("hello", &self.hello)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl MuxClient {
    /// Waits up to `timeout` for the box's greeting on `reader`, then starts serving jobs.
    /// The halves are separate so that dropping the client closes `writer`, which is how
    /// the box learns to exit.
    pub async fn handshake<R, W>(reader: R, writer: W, timeout: Duration) -> Result<Self, MuxError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Self::handshake_counted(reader, writer, timeout, Arc::default()).await
    }

    /// [`MuxClient::handshake`], counting the link's bytes into `traffic`.
    pub async fn handshake_counted<R, W>(
        reader: R,
        writer: W,
        timeout: Duration,
        traffic: Arc<Traffic>,
    ) -> Result<Self, MuxError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = Counted::new(reader, traffic.clone());
        let mut writer = Counted::new(writer, traffic.clone());
        let greeting = tokio::time::timeout(timeout, frame::read_frame(&mut reader))
            .await
            .map_err(|_| MuxError::NoGreeting(format!("nothing within {timeout:?}")))?;
        let hello = match greeting {
            Ok(Some(frame)) if frame.kind == kind::HELLO => {
                traffic.payload_received(FRAME_HEADER + frame.payload.len() as u64);
                Hello::decode(&frame.payload)
                    .map_err(|err| MuxError::NoGreeting(err.to_string()))?
            }
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
        let (outgoing, mut to_send) = mpsc::channel::<Outgoing>(256);
        {
            let (pending, closed, traffic) = (pending.clone(), closed.clone(), traffic.clone());
            tokio::spawn(async move {
                while let Some(Outgoing { frame, observer }) = to_send.recv().await {
                    if let Err(err) =
                        frame::write_frame(&mut writer, &frame, Compression::Zstd).await
                    {
                        tracing::debug!("mux link write failed: {err}");
                        break;
                    }
                    traffic.payload_sent(FRAME_HEADER + frame.payload.len() as u64);
                    if frame.kind == kind::JOB || frame.kind == kind::REMOTE_JOB {
                        traffic.job_sent();
                    }
                    if let Some(observer) = observer {
                        observer(JobEvent::Sent);
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
                    match read_frame_announced(&mut reader, &pending).await {
                        Ok(Some(frame)) if kind::is_answer(frame.kind) => {
                            traffic.payload_received(FRAME_HEADER + frame.payload.len() as u64);
                            let waiter = pending.lock().expect("pending lock").remove(&frame.job);
                            if let Some(waiter) = waiter {
                                let _ = waiter.answer.send(frame.payload);
                            }
                        }
                        Ok(Some(frame)) => {
                            traffic.payload_received(FRAME_HEADER + frame.payload.len() as u64);
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
        self.request(kind::JOB, job_payload, None).await
    }

    /// [`MuxClient::run`], telling `observer` when the request is written and when the
    /// answer starts to arrive.
    pub async fn run_observed(
        &self,
        job_payload: Vec<u8>,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, MuxError> {
        self.request(kind::JOB, job_payload, observer).await
    }

    /// The time one small request takes to be answered: an IDENTIFY for a name no
    /// allowlist holds, which the box answers at once (it reads its allowlist and
    /// nothing else). `None` from a box too old to answer.
    pub async fn round_trip(&self) -> Result<Option<Duration>, MuxError> {
        if self.hello.protocol < 2 {
            return Ok(None);
        }
        let started = Instant::now();
        self.request(kind::IDENTIFY, Vec::new(), None).await?;
        Ok(Some(started.elapsed()))
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
            .request(kind::IDENTIFY, compiler.as_bytes().to_vec(), None)
            .await?;
        Ok(Some(serde_json::from_slice(&answer).unwrap_or_else(
            |err| {
                Err(format!(
                    "the box sent an unreadable toolchain identity: {err}"
                ))
            },
        )))
    }

    /// Which of `digests` the box's content store lacks.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, MuxError> {
        let answer = self
            .request(kind::FIND_MISSING, remote::encode_digests(digests), None)
            .await?;
        remote::decode_digests(&answer).map_err(|err| MuxError::Garbled(err.to_string()))
    }

    /// Stores blobs (digest and content each) in the box's content store; `Err` with
    /// the box's reason when it refused one.
    pub async fn put_blobs(
        &self,
        blobs: &[(Digest, Vec<u8>)],
    ) -> Result<Result<(), String>, MuxError> {
        let payload =
            remote::encode_blobs(blobs.iter().map(|(digest, content)| (digest, &content[..])));
        let answer = self.request(kind::PUT_BLOBS, payload, None).await?;
        Ok(if answer.is_empty() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&answer).into_owned())
        })
    }

    /// Runs a job whose inputs are in the box's store. Dropping the future cancels it.
    pub async fn run_remote(
        &self,
        job: &RemoteJob,
        observer: Option<Observer>,
    ) -> Result<RemoteAnswer, MuxError> {
        let answer = self
            .request(kind::REMOTE_JOB, job.encode(), observer)
            .await?;
        RemoteAnswer::decode(&answer).map_err(|err| MuxError::Garbled(err.to_string()))
    }

    /// Sends a request frame and waits for the answer with the same id.
    async fn request(
        &self,
        request_kind: u8,
        payload: Vec<u8>,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, MuxError> {
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            // Checked under the lock `close` takes, so a job cannot slip in after the
            // link died and wait for an answer nobody will send.
            let mut pending = self.pending.lock().expect("pending lock");
            if self.closed.load(Ordering::SeqCst) {
                return Err(MuxError::Lost);
            }
            pending.insert(
                job,
                Waiter {
                    answer,
                    observer: observer.clone(),
                },
            );
        }
        let mut guard = CancelOnDrop {
            client: self,
            job,
            armed: true,
        };
        if self
            .outgoing
            .send(Outgoing {
                frame: Frame::new(request_kind, job, payload),
                observer,
            })
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

/// Reads one frame like [`frame::read_frame`], first telling the observer of the job it
/// answers that its answer is arriving (once the header is in, before the payload).
async fn read_frame_announced<R: AsyncRead + Unpin>(
    reader: &mut R,
    pending: &Pending,
) -> Result<Option<Frame>, frame::FrameError> {
    let mut header = [0u8; FRAME_HEADER as usize];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(frame::FrameError::Truncated),
            n => filled += n,
        }
    }
    if header[4] == kind::RESULT || header[4] == kind::REMOTE_RESULT {
        let job = u64::from_be_bytes(header[6..14].try_into().expect("8 bytes"));
        let observer = pending
            .lock()
            .expect("pending lock")
            .get(&job)
            .and_then(|waiter| waiter.observer.clone());
        if let Some(observer) = observer {
            observer(JobEvent::Answering);
        }
    }
    frame::read_frame(&mut (&header[..]).chain(reader)).await
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
                let _ = outgoing
                    .send(Outgoing {
                        frame: cancel,
                        observer: None,
                    })
                    .await;
            });
        }
    }
}
