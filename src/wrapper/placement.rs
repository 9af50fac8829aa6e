//! The placement loop ([`place_and_run`]): asks the daemon for hosts until one answers
//! the job (remote-preprocessed where the box can, else preprocessed here), retries
//! elsewhere when a box fails or refuses, replaces a daemon that died, and falls back
//! to a local compile as distcc does.

use std::io::Write;
use std::time::Instant;

use super::answer::{Answer, Outcome, classify};
use super::broker::Broker;
use super::invocation::Invocation;
use super::local::compile_locally;
use super::preprocess::Mode;
use super::preprocessed_job::preprocess_and_run;
use super::remote;
use crate::client_settings::{ClientSettings, Preprocess};
use crate::compiler::args::Distributable;
use crate::daemon::ipc::{Acquire, Assigned, RemoteReply};
use crate::dispatch::tracker::LocalReason;
use crate::exit_code::ExitCode;
use crate::protocol::Request;

/// Asks for hosts until one compiles the job or none is left, then compiles locally if
/// that is allowed; returns the exit status.
pub(super) async fn place_and_run(
    broker: &mut Broker,
    mut acquire: Acquire,
    invocation: &Invocation,
    scan: &Distributable,
    settings: &ClientSettings,
    remote_compiler: &str,
) -> u8 {
    let input = invocation.argv[scan.input].as_str();
    // Made once per preprocessing mode: a retry on a box of the same kind reuses it.
    let mut prepared: Option<(Mode, Request)> = None;
    // Dropped once the daemon says this job must be preprocessed here.
    let mut remote_request = None;
    if settings.preprocess.remote() {
        match remote::request(invocation, scan, remote_compiler) {
            Ok(request) => remote_request = Some(request),
            Err(why) => preprocessed_here(settings, input, &why),
        }
    }
    let mut daemon_replaced = 0;
    loop {
        let (host, flavour, no_remote_preprocessing) = match broker.acquire(&acquire).await {
            Ok(Assigned::Remote {
                host,
                flavour,
                no_remote_preprocessing,
            }) => (host, flavour, no_remote_preprocessing),
            Ok(Assigned::Local { .. }) => {
                tracing::info!("{input} → localhost");
                return compile_locally(invocation);
            }
            Ok(Assigned::NoHosts(why)) => {
                return no_remote_host(broker, invocation, settings, input, &why).await;
            }
            Err(err) => {
                match daemon_failed(
                    broker,
                    settings,
                    &mut daemon_replaced,
                    &err,
                    invocation,
                    input,
                )
                .await
                {
                    Some(status) => return status,
                    None => continue,
                }
            }
        };
        if let (Some(why), Some(_)) = (&no_remote_preprocessing, &remote_request) {
            preprocessed_here(settings, input, &format!("{host} cannot ({why})"));
        }
        let started = Instant::now();
        // The box preprocesses, unless it cannot or the daemon declines this job.
        let remote_answer = match remote_request
            .as_ref()
            .filter(|_| no_remote_preprocessing.is_none())
        {
            Some(request) => match broker.run_remote(request).await {
                Ok(Ok(RemoteReply::Compiled(compile))) => Some(Ok(Ok(Answer::Remote(compile)))),
                Ok(Ok(RemoteReply::Local(why))) => {
                    preprocessed_here(settings, input, &why);
                    remote_request = None;
                    None
                }
                Ok(Err(why)) => Some(Ok(Err(why))),
                Err(err) => Some(Err(err)),
            },
            None => None,
        };
        let answered = match remote_answer {
            Some(answered) => answered,
            None => {
                preprocess_and_run(
                    broker,
                    &mut prepared,
                    invocation,
                    scan,
                    flavour,
                    settings,
                    remote_compiler,
                )
                .await
            }
        };
        let answer = match answered {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => {
                tracing::warn!("{why}; {input} will be retried elsewhere");
                acquire.excluded.push(host);
                continue;
            }
            Err(err) => {
                match daemon_failed(
                    broker,
                    settings,
                    &mut daemon_replaced,
                    &err,
                    invocation,
                    input,
                )
                .await
                {
                    Some(status) => return status,
                    None => continue,
                }
            }
        };
        let answer = match answer {
            Answer::PreprocessingFailed => {
                // The local compile reports whatever made preprocessing fail, once.
                broker.local(LocalReason::Retry).await;
                return compile_locally(invocation);
            }
            answer => answer,
        };
        let elapsed = started.elapsed();
        match classify(answer.status()) {
            Outcome::Success => {
                let there = match answer {
                    Answer::Remote(_) => ", preprocessed there",
                    _ => "",
                };
                tracing::info!("{input} → {host} ({} ms{there})", elapsed.as_millis());
                return answer.deliver(scan);
            }
            Outcome::Refused(code) => {
                let reason = String::from_utf8_lossy(answer.stderr()).trim().to_string();
                if settings.skip_local_retry || !settings.fallback {
                    answer.report();
                    return code;
                }
                tracing::warn!("{reason}");
                // A box that cannot run the compiler (or is misconfigured) is avoided;
                // one refused option says nothing about the box.
                if code != ExitCode::BadArguments as u8 {
                    broker.refused(&reason).await;
                }
                acquire.excluded.push(host);
            }
            Outcome::CompileError(code) => {
                if settings.skip_local_retry || !settings.fallback {
                    answer.report();
                    return code;
                }
                // As distcc: the local run shows the compiler's message (once).
                tracing::debug!("{input} failed on {host} ({code}); retrying locally");
                // Free the box's slot first, as distcc does.
                broker.local(LocalReason::Retry).await;
                return compile_locally(invocation);
            }
            Outcome::Crashed(code) => {
                tracing::warn!(
                    "the compiler crashed on {host} (status {code}); compiling {input} locally"
                );
                broker
                    .refused(&format!("the compiler crashed there (status {code})"))
                    .await;
                broker.local(LocalReason::Fallback).await;
                return compile_locally(invocation);
            }
        }
    }
}

/// Says why `input` is preprocessed here although remote preprocessing was wanted: a
/// warning when the user asked for it (`SSHCC_PREPROCESS=remote`), else a debug note.
fn preprocessed_here(settings: &ClientSettings, input: &str, why: &str) {
    if settings.preprocess == Preprocess::Remote {
        tracing::warn!("{input} is preprocessed here: {why}");
    } else {
        tracing::debug!("{input} is preprocessed here: {why}");
    }
}

/// No box took the job: compile here unless the user said not to.
async fn no_remote_host(
    broker: &mut Broker,
    invocation: &Invocation,
    settings: &ClientSettings,
    input: &str,
    why: &str,
) -> u8 {
    if settings.fallback {
        tracing::warn!("{why}; compiling {input} locally");
        broker.local(LocalReason::Fallback).await;
        compile_locally(invocation)
    } else {
        // One write, so that the messages of a `make -j` stay whole lines.
        let message = format!("sshcc: {why}; not compiling {input} locally (DISTCC_FALLBACK=0)\n");
        let _ = std::io::stderr().write_all(message.as_bytes());
        ExitCode::NoHosts as u8
    }
}

/// The daemon failed `input`'s job with `err`: `None` when a new daemon took over (ask
/// again), else the status to exit with (compiled here, or not, as distcc would).
async fn daemon_failed(
    broker: &mut Broker,
    settings: &ClientSettings,
    daemon_replaced: &mut u32,
    err: &anyhow::Error,
    invocation: &Invocation,
    input: &str,
) -> Option<u8> {
    if let Some(fresh) = broker
        .replace_daemon(settings, daemon_replaced, err, input)
        .await
    {
        *broker = fresh;
        return None;
    }
    let why = format!("the sshcc daemon failed: {err:#}");
    Some(no_remote_host(broker, invocation, settings, input, &why).await)
}
