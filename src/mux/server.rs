//! The box side of a multiplexed link: `sshcc --mux` runs every job the daemon sends
//! over one stdin/stdout pair, concurrently, until the daemon hangs up.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::exit_code::ExitCode;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::protocol::mux::{Hello, kind};
use crate::protocol::{self, Response, Version};
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
    let (results, mut outgoing) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let hello = Frame::new(kind::HELLO, 0, Hello::ours(job::hostname()).encode());
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
    match writer.await {
        Ok(Ok(())) => status,
        _ => ExitCode::IoError as u8,
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
