//! The box side of a multiplexed link: `sshcc --mux` runs every job the daemon sends
//! over one stdin/stdout pair, concurrently, until the daemon hangs up.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::exit_code::ExitCode;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::protocol::mux::remote::{RemoteAnswer, RemoteJob};
use crate::protocol::mux::{Hello, kind, remote};
use crate::protocol::{self, Response, Version};
use crate::server::remote_job;
use crate::server::store::Store;
use crate::server::{allowlist::Allowlist, job, settings::BoxSettings};

/// Serves jobs from `input` until it ends, answering on `output`; returns the process
/// exit status.
pub async fn serve<R, W>(mut input: R, mut output: W, settings: BoxSettings) -> u8
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Shared by every job of the link rather than copied into each.
    let settings = Arc::new(settings);
    let store = open_store(&settings).await;
    // A finished job's tree, for the next job to take over: as many as can run at once.
    let trees = Arc::new(remote_job::WarmTrees::new(settings.slots().count()));
    let hello = Hello::ours(job::hostname(), store.as_ref().err().cloned());
    let (results, mut outgoing) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let hello = Frame::new(kind::HELLO, 0, hello.encode());
        frame::write_frame(&mut output, &hello, Compression::None).await?;
        while let Some(frame) = outgoing.recv().await {
            frame::write_frame(&mut output, &frame, Compression::Zstd).await?;
        }
        std::io::Result::Ok(())
    });

    let mut cancels: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut jobs = JoinSet::new();
    let status = loop {
        let frame = match frame::read_frame(&mut input).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break 0,
            Err(err) => {
                tracing::error!("bad frame from the client: {err}");
                break ExitCode::ProtocolError as u8;
            }
        };
        match frame.kind {
            kind::JOB => {
                // Reap finished tasks as we go: a long-lived link serves many jobs.
                while jobs.try_join_next().is_some() {}
                cancels.retain(|_, cancel| !cancel.is_closed());
                let (cancel, cancelled) = oneshot::channel();
                cancels.insert(frame.job, cancel);
                let results = results.clone();
                let settings = Arc::clone(&settings);
                jobs.spawn(async move {
                    let cancelled = async {
                        let _ = cancelled.await;
                    };
                    if let Some(response) = run_job(&frame.payload, &settings, cancelled).await {
                        let payload = protocol::distcc::encode_response(Version::V1, &response);
                        let _ = results
                            .send(Frame::new(kind::RESULT, frame.job, payload))
                            .await;
                    }
                });
            }
            kind::IDENTIFY => {
                let results = results.clone();
                jobs.spawn(async move {
                    let requested = String::from_utf8_lossy(&frame.payload).into_owned();
                    let identity = tokio::task::spawn_blocking(move || {
                        crate::server::identity::identify(&requested)
                    })
                    .await
                    .unwrap_or_else(|err| Err(format!("identifying failed: {err}")));
                    let payload = serde_json::to_vec(&identity).expect("serialisable");
                    let _ = results
                        .send(Frame::new(kind::IDENTITY, frame.job, payload))
                        .await;
                });
            }
            kind::REMOTE_JOB => {
                while jobs.try_join_next().is_some() {}
                cancels.retain(|_, cancel| !cancel.is_closed());
                let (cancel, cancelled) = oneshot::channel();
                cancels.insert(frame.job, cancel);
                let results = results.clone();
                let settings = Arc::clone(&settings);
                let (store, trees) = (store.clone(), Arc::clone(&trees));
                jobs.spawn(async move {
                    let cancelled = async {
                        let _ = cancelled.await;
                    };
                    let answer =
                        run_remote_job(&frame.payload, store, &trees, &settings, cancelled).await;
                    if let Some(answer) = answer {
                        let _ = results
                            .send(Frame::new(kind::REMOTE_RESULT, frame.job, answer.encode()))
                            .await;
                    }
                });
            }
            kind::FIND_MISSING | kind::PUT_BLOBS => {
                let results = results.clone();
                let store = store.clone();
                jobs.spawn(async move {
                    let answer = tokio::task::spawn_blocking(move || store_request(&frame, store))
                        .await
                        .unwrap_or_else(|err| Frame::new(kind::STORED, 0, err.to_string().into()));
                    let _ = results.send(answer).await;
                });
            }
            kind::CANCEL => {
                if let Some(cancel) = cancels.remove(&frame.job) {
                    let _ = cancel.send(());
                }
            }
            other => tracing::warn!("ignoring frame of unknown kind {other}"),
        }
    };
    // The client is gone or broke the stream: nobody will read what is still running.
    drop(cancels);
    while jobs.join_next().await.is_some() {}
    drop(results);
    // Removing the kept trees is blocking I/O.
    let _ = tokio::task::spawn_blocking(move || drop(trees)).await;
    match writer.await {
        Ok(Ok(())) => status,
        _ => ExitCode::IoError as u8,
    }
}

/// This account's content store, or why there is none (then the box takes no
/// remote-preprocessed jobs, and says so in its greeting).
async fn open_store(settings: &BoxSettings) -> Result<Arc<Store>, String> {
    let bound = settings.cache_size;
    tokio::task::spawn_blocking(move || {
        let root = Store::default_root()
            .ok_or_else(|| "no home or XDG_CACHE_HOME for the content store".to_string())?;
        Store::open(&root, bound)
            .map(Arc::new)
            .map_err(|err| format!("cannot open the content store {}: {err:#}", root.display()))
    })
    .await
    .unwrap_or_else(|err| Err(format!("opening the content store failed: {err}")))
}

/// Answers a FIND_MISSING or PUT_BLOBS frame from the store (blocking I/O).
fn store_request(frame: &Frame, store: Result<Arc<Store>, String>) -> Frame {
    let answer = |kind, payload: Vec<u8>| Frame::new(kind, frame.job, payload);
    let store = match store {
        Ok(store) => store,
        // No store: every blob is missing, and none can be stored.
        Err(why) if frame.kind == kind::FIND_MISSING => {
            tracing::debug!("{why}");
            return answer(kind::MISSING, frame.payload.clone());
        }
        Err(why) => return answer(kind::STORED, why.into_bytes()),
    };
    if frame.kind == kind::FIND_MISSING {
        return match remote::decode_digests(&frame.payload) {
            Ok(digests) => answer(
                kind::MISSING,
                remote::encode_digests(&store.find_missing(&digests)),
            ),
            Err(err) => {
                tracing::warn!("bad FIND_MISSING from the client: {err}");
                answer(kind::MISSING, frame.payload.clone())
            }
        };
    }
    let blobs = match remote::decode_blobs(&frame.payload) {
        Ok(blobs) => blobs,
        Err(err) => return answer(kind::STORED, format!("bad PUT_BLOBS: {err}").into_bytes()),
    };
    for (digest, content) in blobs {
        if let Err(err) = store.insert(&digest, content) {
            // A blob whose content is not what its digest says is refused, whoever
            // sent it: the store only ever holds what it verified.
            tracing::warn!("refused blob {digest}: {err}");
            return answer(kind::STORED, format!("blob {digest}: {err}").into_bytes());
        }
    }
    answer(kind::STORED, Vec::new())
}

/// Runs one remote-preprocessed job; `None` when it was cancelled.
async fn run_remote_job(
    payload: &[u8],
    store: Result<Arc<Store>, String>,
    trees: &remote_job::WarmTrees,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
) -> Option<RemoteAnswer> {
    let refused = |code: ExitCode, why: String| {
        Some(RemoteAnswer::Refused {
            code: code as u8,
            reason: format!("sshcc on {}: {why}", job::hostname()),
        })
    };
    let store = match store {
        Ok(store) => store,
        Err(why) => return refused(ExitCode::IoError, why),
    };
    let remote_job = match RemoteJob::decode(payload) {
        Ok(remote_job) => remote_job,
        Err(err) => {
            tracing::error!("bad remote job: {err}");
            return refused(ExitCode::ProtocolError, format!("bad request: {err}"));
        }
    };
    match remote_job::run(
        &remote_job,
        store,
        trees,
        Allowlist::from_env(),
        settings,
        cancelled,
    )
    .await
    {
        Ok(compile) => Some(RemoteAnswer::Compiled(compile)),
        Err(err) => err.into_answer(),
    }
}

/// Runs one job; `None` when it was cancelled.
async fn run_job(
    payload: &[u8],
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
) -> Option<Response> {
    let limits = settings.request_limits();
    let (request, context) = match protocol::job::decode_job(payload, &limits).await {
        Ok(decoded) => decoded,
        Err(err) => {
            tracing::error!("bad request: {err}");
            let message = format!("sshcc on {}: bad request: {err}\n", job::hostname());
            return Some(Response::refusal(err.exit_code(), &message));
        }
    };
    match job::run(
        &request,
        &context,
        Allowlist::from_env(),
        settings,
        cancelled,
    )
    .await
    {
        job::Outcome::Finished(response) => Some(response),
        job::Outcome::Abandoned => None,
    }
}
