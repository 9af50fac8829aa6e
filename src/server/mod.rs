//! The box side: `sshcc --inetd` serves one distcc job on stdin/stdout and exits.
//!
//! Unlike `distccd --inetd` it notices the compiler's exit immediately (no 1-second poll),
//! enforces the allowlist even when the client passes `--enable-tcp-insecure`, and
//! explains refusals in the response instead of closing the connection silently.

pub mod allowlist;
pub mod argument_policy;
pub mod counters;
pub mod forced_command;
pub mod identity;
pub mod job;
pub mod remote_job;
pub mod sandbox;
pub mod settings;
pub mod slots;
pub mod store;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::exit_code::ExitCode;
use crate::protocol::{self, ProtocolError, Response, Version};
use settings::BoxSettings;

/// Serves one job from `input` to `output` and returns the process exit status: 0 when
/// the job succeeded, the compiler's status when it failed, a distcc code (100–120) when
/// it never ran. Nothing but protocol bytes is written to `output`; diagnostics go to
/// `tracing`.
pub async fn serve_one<R, W>(mut input: R, mut output: W, settings: &BoxSettings) -> u8
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The version is read ahead of the request, so that even a refused request gets an
    // answer its client can read.
    let mut head = [0u8; 12];
    if let Err(err) = input.read_exact(&mut head).await {
        tracing::error!("bad request: {err}");
        return ExitCode::Truncated as u8;
    }
    let version = protocol::packet::read_header(&mut &head[..], "DIST")
        .await
        .ok()
        .and_then(|number| Version::from_number(number).ok());
    let mut input = (&head[..]).chain(input);
    let request = match protocol::read_request(&mut input, &settings.request_limits()).await {
        Ok(request) => request,
        Err(
            err @ ProtocolError::TooLarge {
                what: "DOTI",
                len,
                max,
            },
        ) => {
            // distcc writes its whole request before it reads, so take the source in
            // (without keeping it); only a client still there gets the answer.
            let drained =
                tokio::io::copy(&mut (&mut input).take(len), &mut tokio::io::sink()).await;
            match (version, drained) {
                (Some(version), Ok(bytes)) if bytes == len => {
                    let message = format!(
                        "sshcc on {}: the source is {len} bytes, over this box's --max-input of {max}\n",
                        job::hostname()
                    );
                    tracing::warn!("{}", message.trim_end());
                    let refusal = Response::refusal(err.exit_code(), &message);
                    return answer(&mut output, version, &refusal).await;
                }
                _ => {
                    tracing::error!("bad request: {err}");
                    return err.exit_code() as u8;
                }
            }
        }
        Err(err @ ProtocolError::PumpUnsupported) => {
            tracing::warn!("{err}");
            let message = format!("sshcc on {}: {err}\n", job::hostname());
            let refusal = Response::refusal(err.exit_code(), &message);
            return answer(&mut output, Version::V3, &refusal).await;
        }
        Err(err) => {
            tracing::error!("bad request: {err}");
            return err.exit_code() as u8;
        }
    };
    tracing::debug!(argv = ?request.argv, version = request.version.number(), "request");
    let allowlist = allowlist::Allowlist::from_env();
    let context = crate::protocol::JobContext::default();
    match job::run(
        &request,
        &context,
        allowlist,
        settings,
        client_gone_or_signalled(&mut input),
    )
    .await
    {
        job::Outcome::Finished(response) => answer(&mut output, request.version, &response).await,
        job::Outcome::Abandoned => {
            tracing::warn!("client went away; compiler killed");
            ExitCode::IoError as u8
        }
    }
}

/// Sends the response and returns the exit status that mirrors it.
async fn answer<W: AsyncWrite + Unpin>(
    output: &mut W,
    version: Version,
    response: &Response,
) -> u8 {
    if let Err(err) = protocol::write_response(output, version, response).await {
        tracing::warn!("cannot send the response: {err}");
        return ExitCode::IoError as u8;
    }
    let status = response.status;
    match (status & 0x7f, (status >> 8) & 0xff) {
        (0, code) => code as u8,
        (signal, _) => 128u8.saturating_add(signal as u8),
    }
}

/// Resolves when the client closes its side (distcc never half-closes while it waits, so
/// EOF means it is gone) or when we are asked to terminate.
async fn client_gone_or_signalled<R: AsyncRead + Unpin>(input: &mut R) {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    // A missing handler only means that signal is not watched; EOF still is.
    let [mut term, mut int, mut hup] = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ]
    .map(|kind| signal(kind).ok());
    async fn received(signal: &mut Option<Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let eof = async {
        let mut scratch = [0u8; 4096];
        while let Ok(n) = input.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = eof => {}
        () = received(&mut term) => {}
        () = received(&mut int) => {}
        () = received(&mut hup) => {}
    }
}
