//! The compiler wrapper: `sshcc gcc -c x.c -o x.o`, `CCACHE_PREFIX=sshcc`, or a
//! masquerade link. It decides where a job runs, preprocesses locally, hands the job to
//! the daemon (or, with `SSHCC_NO_DAEMON=1`, dispatches it itself), and writes the
//! results exactly where and as a local compile would.
//!
//! Anything that is not a plain compile runs the real compiler directly (`exec`), so
//! links, `-E`, configure tests and `-M` cost nothing extra.

mod broker;
pub mod invocation;
mod output;
pub mod preprocess;
mod remote;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::client_settings::{self, ClientSettings, Preprocess};
use crate::compiler::args::{self, Distributable};
use crate::config::Config;
use crate::daemon::ipc::{Acquire, Assigned, RemoteReply};
use crate::daemon::stats_file;
use crate::dispatch::link::Flavour;
use crate::dispatch::tracker::LocalReason;
use crate::exit_code::ExitCode;
use crate::hosts;
use crate::protocol::mux::remote::RemoteCompile;
use crate::protocol::{JobContext, Request, Response, Version};
use crate::status::Stats;
use crate::toolchain::{self, Policy};
use broker::Broker;
use invocation::{Invocation, SAFEGUARD};
use output::{deliver, report};
use preprocess::Mode;

/// Runs the wrapper for sshcc's argv and returns the process exit status.
pub fn run(args: &[OsString]) -> std::process::ExitCode {
    let path = std::env::var_os("PATH");
    let invocation = match invocation::resolve(args, path.as_ref()) {
        Ok(invocation) => invocation,
        Err(err) => {
            eprintln!("sshcc: {err}");
            return ExitCode::BadArguments.into();
        }
    };
    if std::env::var_os(SAFEGUARD).is_some() {
        // We were reached again through PATH by a compiler we started: just compile.
        return exec_locally(&invocation, true);
    }
    let scan = match args::scan(&invocation.argv) {
        Ok(scan) => scan,
        Err(reason) => {
            tracing::debug!("{reason}: running {} locally", invocation.argv[0]);
            return exec_locally(&invocation, false);
        }
    };
    let config = match Config::load(hosts::process_env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("sshcc: {err:#}");
            return ExitCode::BadArguments.into();
        }
    };
    let settings = match ClientSettings::from_env(&config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sshcc: {err}");
            return ExitCode::BadArguments.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::warn!("cannot start the async runtime ({err}); compiling locally");
            return exec_locally(&invocation, false);
        }
    };
    let status = runtime.block_on(distribute(&invocation, &scan, &settings, &config));
    std::process::ExitCode::from(status)
}

/// Replaces this process with the compiler. `recursed` is set when sshcc was itself
/// started by sshcc; finding sshcc again as the compiler then means a loop.
fn exec_locally(invocation: &Invocation, recursed: bool) -> std::process::ExitCode {
    let compiler = &invocation.argv[0];
    let path = invocation.path.clone().or_else(|| std::env::var_os("PATH"));
    if recursed && is_sshcc(compiler, path.as_ref()) {
        eprintln!(
            "sshcc: {compiler} on PATH is sshcc itself; fix PATH so the real compiler comes first"
        );
        return ExitCode::RecursiveCall.into();
    }
    let err = local_command(invocation).exec();
    eprintln!("sshcc: cannot run {compiler}: {err}");
    ExitCode::CompilerMissing.into()
}

fn is_sshcc(compiler: &str, path: Option<&OsString>) -> bool {
    let ours = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    let theirs = invocation::find_on_path(compiler, path)
        .and_then(|found| std::fs::canonicalize(found).ok());
    ours.is_some() && ours == theirs
}

fn local_command(invocation: &Invocation) -> Command {
    let mut command = Command::new(&invocation.argv[0]);
    command.args(&invocation.argv[1..]).env(SAFEGUARD, "1");
    if let Some(path) = &invocation.path {
        command.env("PATH", path);
    }
    command
}

/// Runs the compiler here and waits (used when a slot must stay held or after a remote
/// attempt), returning its status as a process exit code.
fn compile_locally(invocation: &Invocation) -> u8 {
    match local_command(invocation).status() {
        Ok(status) => exit_code_of(status),
        Err(err) => {
            eprintln!("sshcc: cannot run {}: {err}", invocation.argv[0]);
            ExitCode::CompilerMissing as u8
        }
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => ExitCode::Failure as u8,
    }
}

/// The real local compiler, for the dispatcher's toolchain check; empty (no check)
/// when the check is off everywhere or the compiler cannot be found.
fn local_compiler_for_check(invocation: &Invocation, settings: &ClientSettings) -> String {
    if settings.toolchain_check == Some(Policy::Off) {
        return String::new();
    }
    let path = invocation.path.clone().or_else(|| std::env::var_os("PATH"));
    invocation::find_on_path(&invocation.argv[0], path.as_ref())
        .and_then(|found| toolchain::real_compiler(&found, path.as_deref()).ok())
        .map(|real| real.display().to_string())
        .unwrap_or_default()
}

/// `host=policy` entries: config.toml's per-host settings, then the global one
/// (`SSHCC_TOOLCHAIN_CHECK` over config.toml's `toolchain_check`) as `*`.
fn toolchain_policies(settings: &ClientSettings, config: &Config) -> Vec<String> {
    let mut policies: Vec<String> = config
        .host
        .iter()
        .filter_map(|(host, settings)| {
            Some(format!("{host}={}", settings.toolchain_check?.as_str()))
        })
        .collect();
    if let Some(global) = settings.toolchain_check {
        policies.push(format!("*={}", global.as_str()));
    }
    policies
}

/// Finds a host, preprocesses for it, runs the job there and writes the results;
/// falls back to a local compile as distcc does.
async fn distribute(
    invocation: &Invocation,
    scan: &Distributable,
    settings: &ClientSettings,
    config: &Config,
) -> u8 {
    let input = invocation.argv[scan.input].as_str();
    let host_list = match client_settings::load_hosts(config) {
        Ok(Some(list)) if !list.hosts.is_empty() => list,
        Ok(_) => {
            tracing::warn!(
                "no hosts configured (SSHCC_HOSTS, DISTCC_HOSTS or a hosts file); compiling {input} locally"
            );
            return count_alone(compile_locally(invocation), Some(LocalReason::Slot));
        }
        Err(err) if settings.fallback => {
            tracing::warn!("{err}; compiling {input} locally");
            return count_alone(compile_locally(invocation), Some(LocalReason::Fallback));
        }
        Err(err) => {
            eprintln!("sshcc: {err}");
            return count_alone(ExitCode::BadHostSpec as u8, None);
        }
    };
    // An option an sshcc box would refuse (side files that would be lost, paths outside
    // the job) is better compiled here at once than refused remotely.
    let remote_compiler = invocation::remote_compiler_name(
        &invocation.argv[0],
        invocation
            .path
            .as_ref()
            .or(std::env::var_os("PATH").as_ref()),
        settings.no_rewrite_cross,
    );
    let remote_argv = preprocess::remote_command(&invocation.argv, &remote_compiler, Mode::Classic);
    if let Err(refusal) =
        crate::server::argument_policy::prepare(&remote_argv, "input.i", "output.o")
    {
        tracing::debug!("{refusal}; compiling {input} locally");
        return count_alone(compile_locally(invocation), Some(LocalReason::Slot));
    }
    let mut broker = Broker::open(settings).await;
    let acquire = Acquire {
        hosts: client_settings::entries_for_dispatch(&host_list, config),
        ssh_config: settings.ssh_config.clone(),
        ssh_options: settings.ssh_options.clone(),
        unchecked_host_keys: settings.unchecked_host_keys.clone(),
        backoff_secs: settings.backoff_secs,
        io_timeout_secs: settings.io_timeout_secs,
        excluded: Vec::new(),
        compiler: remote_compiler.clone(),
        local_compiler: local_compiler_for_check(invocation, settings),
        toolchain_policies: toolchain_policies(settings, config),
        file: input.to_string(),
        pid: std::process::id(),
    };
    let status = place_and_run(
        &mut broker,
        acquire,
        invocation,
        scan,
        settings,
        &remote_compiler,
    )
    .await;
    broker.finish(status).await;
    status
}

/// Counts a job that ran without the dispatcher (no hosts, or an option only a local
/// compile handles) straight into the stats file; `reason` is why it compiled here,
/// `None` if it did not compile at all.
fn count_alone(status: u8, reason: Option<LocalReason>) -> u8 {
    let delta = Stats {
        local_jobs: u64::from(reason == Some(LocalReason::Slot)),
        fallback_jobs: u64::from(reason == Some(LocalReason::Fallback)),
        errors: u64::from(status != 0),
        ..Stats::default()
    };
    if let Err(err) = stats_file::merge(&delta) {
        tracing::debug!("cannot count the job: {err:#}");
    }
    status
}

/// Asks for hosts until one compiles the job or none is left, then compiles locally if
/// that is allowed; returns the exit status.
async fn place_and_run(
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
                if let Some(fresh) = broker
                    .replace_daemon(settings, &mut daemon_replaced, &err, input)
                    .await
                {
                    *broker = fresh;
                    continue;
                }
                return no_remote_host(
                    broker,
                    invocation,
                    settings,
                    input,
                    &format!("the sshcc daemon failed: {err:#}"),
                )
                .await;
            }
        };
        if let (Some(why), Some(_)) = (&no_remote_preprocessing, &remote_request) {
            preprocessed_here(settings, input, &format!("{host} cannot ({why})"));
        }
        let started = Instant::now();
        let answered = match remote_request
            .as_ref()
            .filter(|_| no_remote_preprocessing.is_none())
        {
            Some(request) => match broker.run_remote(request).await {
                Ok(Ok(RemoteReply::Compiled(compile))) => Ok(Ok(Answer::Remote(compile))),
                Ok(Ok(RemoteReply::Local(why))) => {
                    preprocessed_here(settings, input, &why);
                    remote_request = None;
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
                Ok(Err(why)) => Ok(Err(why)),
                Err(err) => Err(err),
            },
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
                if let Some(fresh) = broker
                    .replace_daemon(settings, &mut daemon_replaced, &err, input)
                    .await
                {
                    *broker = fresh;
                    continue;
                }
                return no_remote_host(
                    broker,
                    invocation,
                    settings,
                    input,
                    &format!("the sshcc daemon failed: {err:#}"),
                )
                .await;
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

/// A box's answer to a job, however it was sent.
enum Answer {
    /// To preprocessed source.
    Preprocessed(Response),
    /// To a remote-preprocessed job.
    Remote(RemoteCompile),
    /// Nothing was sent: the local preprocessor failed.
    PreprocessingFailed,
}

impl Answer {
    fn status(&self) -> u32 {
        match self {
            Answer::Preprocessed(response) => response.status,
            Answer::Remote(compile) => compile.status,
            Answer::PreprocessingFailed => 1 << 8,
        }
    }

    fn stderr(&self) -> &[u8] {
        match self {
            Answer::Preprocessed(response) => &response.stderr,
            Answer::Remote(compile) => &compile.stderr,
            Answer::PreprocessingFailed => &[],
        }
    }

    /// Prints what the compiler printed on the box.
    fn report(&self) {
        match self {
            Answer::Preprocessed(response) => report(response),
            Answer::Remote(compile) => remote::report(compile),
            Answer::PreprocessingFailed => {}
        }
    }

    /// Prints what the compiler printed and writes its outputs; the exit status.
    fn deliver(&self, scan: &Distributable) -> u8 {
        match self {
            Answer::Preprocessed(response) => deliver(response, scan),
            Answer::Remote(compile) => remote::deliver(compile),
            Answer::PreprocessingFailed => 1,
        }
    }
}

/// Preprocesses here for a box of `flavour` (once per mode) and runs the job there.
async fn preprocess_and_run(
    broker: &mut Broker,
    prepared: &mut Option<(Mode, Request)>,
    invocation: &Invocation,
    scan: &Distributable,
    flavour: Flavour,
    settings: &ClientSettings,
    remote_compiler: &str,
) -> anyhow::Result<Result<Answer, String>> {
    let mode = match flavour {
        Flavour::Sshcc if settings.preprocess == Preprocess::Classic => Mode::Classic,
        Flavour::Sshcc => Mode::for_sshcc_box(&invocation.argv[0]),
        Flavour::Distccd => Mode::Classic,
    };
    if prepared
        .as_ref()
        .is_none_or(|(made_for, _)| *made_for != mode)
    {
        let Some(source) = preprocessed_source(invocation, scan, mode) else {
            return Ok(Ok(Answer::PreprocessingFailed));
        };
        let argv = remote_command(invocation, remote_compiler, mode);
        *prepared = Some((
            mode,
            Request {
                version: Version::V1,
                argv,
                source,
            },
        ));
    }
    let Some((_, request)) = prepared.as_ref() else {
        unreachable!("prepared just above");
    };
    // An sshcc box also gets the locale and the project's sources, so its messages
    // read exactly like a local compile's.
    let context = match flavour {
        Flavour::Sshcc => JobContext {
            files: preprocess::side_files(&request.source),
            ..JobContext::with_local_locale()
        },
        Flavour::Distccd => JobContext::default(),
    };
    Ok(broker
        .run(request, &context)
        .await?
        .map(Answer::Preprocessed))
}

/// What a job's wait status means for the wrapper.
enum Outcome {
    Success,
    /// The box would not run it (distcc's codes 100–120: allowlist, arguments, …).
    Refused(u8),
    CompileError(u8),
    /// Killed by a signal: distcc always retries those locally.
    Crashed(u8),
}

fn classify(status: u32) -> Outcome {
    let signal = status & 0x7f;
    let code = ((status >> 8) & 0xff) as u8;
    match (signal, code) {
        (0, 0) => Outcome::Success,
        (0, 100..=120) => Outcome::Refused(code),
        (0, code) => Outcome::CompileError(code),
        (signal, _) => Outcome::Crashed(128u8.saturating_add(signal as u8)),
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

/// Runs the local preprocessor; `None` if it failed (its messages are discarded: the
/// local compile that follows prints them).
fn preprocessed_source(
    invocation: &Invocation,
    scan: &Distributable,
    mode: Mode,
) -> Option<Vec<u8>> {
    if preprocess::already_preprocessed(&invocation.argv, scan) {
        return std::fs::read(&invocation.argv[scan.input]).ok();
    }
    let command = preprocess::preprocessor_command(&invocation.argv, scan, mode);
    let mut cpp = local_command(&Invocation {
        argv: command,
        path: invocation.path.clone(),
    });
    let output = cpp.stdin(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    // Preprocessor warnings (#warning, missing-include notes) belong to the user.
    let _ = std::io::stderr().write_all(&output.stderr);
    Some(output.stdout)
}

fn remote_command(invocation: &Invocation, remote_compiler: &str, mode: Mode) -> Vec<String> {
    let mut command = preprocess::remote_command(&invocation.argv, remote_compiler, mode);
    // The box's compiler writes into a pipe; keep the colours a terminal would get.
    let colour_chosen = invocation
        .argv
        .iter()
        .any(|arg| arg.starts_with("-fdiagnostics-color") || arg == "-fno-diagnostics-color");
    if !colour_chosen
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("GCC_COLORS") != Some("".into())
    {
        command.push("-fdiagnostics-color=always".to_string());
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_map_to_distcc_outcomes() {
        assert!(matches!(classify(0), Outcome::Success));
        assert!(matches!(classify(1 << 8), Outcome::CompileError(1)));
        assert!(matches!(classify(110 << 8), Outcome::Refused(110)));
        assert!(matches!(classify(11 | 0x80), Outcome::Crashed(139)));
    }
}
