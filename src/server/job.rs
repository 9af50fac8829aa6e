//! One compile on the box: a private directory, the allowlisted compiler, and nothing
//! left behind.
//!
//! The compiler runs in its own process group so that killing the job also kills cc1 and
//! as; the directory is removed whatever happens (success, compile error, refusal,
//! client gone, time limit), because the `TempDir` owns it. Before it runs, the job waits
//! for a box-wide slot; the compiler then runs niced and, where the kernel allows,
//! confined to the job directory ([`super::sandbox`]).

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use tokio::process::Command;

use super::allowlist::Allowlist;
use super::argument_policy;
use super::counters::{self, Ended};
use super::sandbox::Confinement;
use super::settings::BoxSettings;
use crate::compiler::source;
use crate::exit_code::ExitCode;
use crate::protocol::{JobContext, Request, Response, SideFile};

/// Environment variables that would make the compiler look for programs, headers or
/// libraries, or write dependency files, somewhere the request did not name.
const SCRUBBED_ENVIRONMENT: &[&str] = &[
    "COMPILER_PATH",
    "GCC_EXEC_PREFIX",
    "LIBRARY_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
    "GCC_COMPARE_DEBUG",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
];

/// Removes [`SCRUBBED_ENVIRONMENT`] from this process, so that neither a job's compiler
/// nor the toolchain fingerprint the box reports for it (`-print-prog-name`) sees them.
///
/// # Safety
/// Must run before the process starts any thread (it changes the environment).
pub unsafe fn scrub_environment() {
    for name in SCRUBBED_ENVIRONMENT {
        // SAFETY: the caller guarantees no other thread reads the environment.
        unsafe { std::env::remove_var(name) };
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Finished(Response),
    /// The client went away (or we were told to stop): there is no one to answer.
    Abandoned,
}

/// Deepest `../` a side file may climb from the compile's working directory.
const MAX_SIDE_FILE_DEPTH: usize = 16;

/// Runs `request` to completion unless `cancelled` resolves first, and counts it in
/// the box's [`counters`].
pub async fn run(
    request: &Request,
    context: &JobContext,
    allowlist: Result<Allowlist, super::allowlist::AllowlistError>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
) -> Outcome {
    let mut compiler_started = None;
    let outcome = run_uncounted(
        request,
        context,
        allowlist,
        settings,
        cancelled,
        &mut compiler_started,
    )
    .await;
    let compile_time = compiler_started.map(|started: Instant| started.elapsed());
    let ended = match (&outcome, compile_time) {
        (Outcome::Abandoned, _) => Ended::Cancelled,
        (Outcome::Finished(_), None) => Ended::Refused,
        (Outcome::Finished(response), Some(_)) if response.status == 0 => Ended::Succeeded,
        (Outcome::Finished(_), Some(_)) => Ended::Failed,
    };
    counters::record(&settings.lock_dir, ended, compile_time);
    outcome
}

/// [`run`], noting in `compiler_started` when the compiler started (if it did).
async fn run_uncounted(
    request: &Request,
    context: &JobContext,
    allowlist: Result<Allowlist, super::allowlist::AllowlistError>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
    compiler_started: &mut Option<Instant>,
) -> Outcome {
    let compiler = match allowlist.and_then(|list| list.resolve(&request.argv[0]).map(String::from))
    {
        Ok(path) => behind_ccache(path),
        Err(err) => return refuse(ExitCode::CompilerMissing, &err.to_string()),
    };
    let job_dir = match tempfile::Builder::new().prefix("sshcc-job-").tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            let message = format!(
                "cannot create a job directory in {}: {err}",
                std::env::temp_dir().display()
            );
            return refuse(ExitCode::IoError, &message);
        }
    };
    run_in(
        request,
        context,
        &compiler,
        job_dir.path(),
        settings,
        cancelled,
        compiler_started,
    )
    .await
    // `job_dir` is dropped here, removing every file the job made.
}

/// The compiler an allowlisted ccache wrapper (`/usr/lib/ccache/arm-none-eabi-g++`)
/// stands for, found as ccache finds it; other paths unchanged. A box gains nothing
/// from ccache when the client caches, ccache mangles `-fdirectives-only` input, and
/// the toolchain the box reports must be the one that runs.
pub(crate) fn behind_ccache(allowlisted: String) -> String {
    let is_ccache = std::fs::canonicalize(&allowlisted)
        .is_ok_and(|real| real.file_name() == Some(std::ffi::OsStr::new("ccache")));
    if !is_ccache {
        return allowlisted;
    }
    let search = std::env::var_os("PATH");
    match crate::toolchain::real_compiler(Path::new(&allowlisted), search.as_deref()) {
        Ok(real) => real.display().to_string(),
        Err(err) => {
            tracing::warn!("{err:#}; running {allowlisted} as listed");
            allowlisted
        }
    }
}

async fn run_in(
    request: &Request,
    context: &JobContext,
    compiler: &str,
    job_dir: &Path,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
    compiler_started: &mut Option<Instant>,
) -> Outcome {
    let scan = match crate::compiler::args::scan(&request.argv) {
        Ok(scan) => scan,
        Err(why) => {
            return refuse(
                ExitCode::BadArguments,
                &argument_policy::Refusal::NotDistributable(why).to_string(),
            );
        }
    };
    let input_file = format!(
        "input.{}",
        source::preprocessed_extension(&request.argv[scan.input])
    );
    let output_file = format!("output.{}", scan.action.output_extension());
    let command = match argument_policy::prepare(&request.argv, &input_file, &output_file) {
        Ok(command) => command,
        Err(refusal) => return refuse(ExitCode::BadArguments, &refusal.to_string()),
    };
    let dir = match place_side_files(job_dir, &context.files, &[&input_file, &output_file]).await {
        Ok(dir) => dir,
        Err(err) => {
            return refuse(
                ExitCode::IoError,
                &format!(
                    "cannot write the job's files in {}: {err}",
                    job_dir.display()
                ),
            );
        }
    };
    let dir = dir.as_path();
    if let Err(err) = tokio::fs::write(dir.join(&input_file), &request.source).await {
        return refuse(
            ExitCode::IoError,
            &format!(
                "cannot write the source into the job directory {}: {err}",
                job_dir.display()
            ),
        );
    }
    // Checked once every file the client sent is in place.
    if let Some(specs) = argument_policy::specs_from_job(&command.args, dir) {
        let refusal = argument_policy::Refusal::Forbidden {
            arg: specs,
            reason: "a specs file sent with the job can run any program",
        };
        return refuse(ExitCode::BadArguments, &refusal.to_string());
    }
    let compile = Compile {
        compiler,
        args: &command.args,
        work_dir: dir,
        job_dir,
        env: &context.env,
    };
    let ran = match run_compiler(compile, settings, cancelled, compiler_started).await {
        Ok(ran) => ran,
        Err(NotRun::Refused(exit, message)) => return refuse(exit, &message),
        Err(NotRun::Abandoned) => return Outcome::Abandoned,
    };
    let status = ran.status;
    let mut response = Response {
        status,
        stderr: ran.stderr,
        stdout: ran.stdout,
        object: Vec::new(),
    };
    if status == 0 {
        match tokio::fs::read(dir.join(&output_file)).await {
            Ok(object) => response.object = object,
            Err(err) => {
                let message = format!("the compiler succeeded but its output is missing: {err}");
                return refuse(ExitCode::Failure, &message);
            }
        }
    }
    Outcome::Finished(response)
}

/// One compiler run, as both kinds of job make it: `args` in `work_dir`, with `env`
/// added, temporaries in `job_dir`, which is all the confined compiler may write.
pub(crate) struct Compile<'a> {
    /// The allowlisted compiler's path.
    pub compiler: &'a str,
    pub args: &'a [String],
    pub work_dir: &'a Path,
    pub job_dir: &'a Path,
    pub env: &'a [(String, String)],
}

/// What a compiler that ran to its end reported.
pub(crate) struct Ran {
    /// The traditional `waitpid` encoding distcc sends in `STAT`.
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a compile did not run to its end.
pub(crate) enum NotRun {
    /// Refused or failed before the compiler finished: the distcc code and the reason.
    Refused(ExitCode, String),
    /// The client went away (or we were told to stop).
    Abandoned,
}

/// Runs `compile` in a box-wide slot, niced and confined to its job directory, in its
/// own process group, within the job lifetime; notes in `compiler_started` when the
/// compiler started.
pub(crate) async fn run_compiler(
    compile: Compile<'_>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
    compiler_started: &mut Option<Instant>,
) -> Result<Ran, NotRun> {
    tokio::pin!(cancelled);
    let compiler = compile.compiler;
    let confinement = match Confinement::prepare(settings, Path::new(compiler), compile.job_dir) {
        Ok(confinement) => confinement,
        Err(why) => return Err(NotRun::Refused(ExitCode::AccessDenied, why)),
    };
    // Waiting happens after every cheap refusal, so a full box still answers bad
    // requests at once.
    let _slot = tokio::select! {
        slot = take_slot(settings) => slot,
        () = &mut cancelled => return Err(NotRun::Abandoned),
    };

    let mut child = Command::new(compiler);
    child
        .args(compile.args)
        .current_dir(compile.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    child.envs(compile.env.iter().map(|(name, value)| (name, value)));
    // The compiler's temporary files (the assembly between cc1 and as) stay in the job.
    child.env("TMPDIR", compile.job_dir);
    tracing::debug!(compiler, args = ?compile.args, "running compiler");
    let child = match spawn_niced_and_confined(child, settings.nice, confinement).await {
        Ok(child) => child,
        Err(err) => {
            return Err(NotRun::Refused(
                ExitCode::CompilerMissing,
                format!("cannot run the allowlisted compiler {compiler}: {err}"),
            ));
        }
    };
    *compiler_started = Some(Instant::now());
    let process_group = child.id();
    let time_limit = async {
        match settings.job_lifetime() {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let output = tokio::select! {
        output = child.wait_with_output() => output,
        () = &mut cancelled => {
            kill_process_group(process_group);
            return Err(NotRun::Abandoned);
        }
        () = time_limit => {
            kill_process_group(process_group);
            let message = format!(
                "the compile ran longer than this box's job lifetime of {} s and was killed",
                settings.job_lifetime
            );
            return Err(NotRun::Refused(ExitCode::Timeout, message));
        }
    };
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            return Err(NotRun::Refused(
                ExitCode::IoError,
                format!("lost track of the compiler: {err}"),
            ));
        }
    };
    // The compiler is gone, but cc1 or as may linger in its group if it crashed.
    kill_process_group(process_group);
    Ok(Ran {
        status: wait_status(output.status),
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

/// A box-wide compile slot; `None` when the lock directory is unusable, since a broken
/// resource limit should not fail builds.
async fn take_slot(settings: &BoxSettings) -> Option<super::slots::Slot> {
    match settings.slots().acquire().await {
        Ok(slot) => Some(slot),
        Err(err) => {
            tracing::warn!(
                "box-wide job limit not enforced: lock directory {}: {err}",
                settings.lock_dir.display()
            );
            None
        }
    }
}

/// Starts `child` at `nice` more niceness and, given a confinement, sandboxed, from a
/// thread of its own that takes both first and then ends.
///
/// Niceness and Landlock belong to the calling thread on Linux and pass to what it
/// starts, so no code has to run in the child between fork and exec, and the standard
/// library starts the compiler with `posix_spawn` (a vfork) instead of forking this whole
/// process: a fork of a `--mux` serving 128 jobs marks its every page copy-on-write, and
/// the faults and TLB flushes that follow cost the box more than laying out the job's
/// tree. The thread is never reused, so its confinement dies with it.
async fn spawn_niced_and_confined(
    mut child: Command,
    nice: i32,
    confinement: Option<Confinement>,
) -> std::io::Result<tokio::process::Child> {
    let runtime = tokio::runtime::Handle::current();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sshcc-spawn".to_string())
        .spawn(move || {
            // The child is registered with the runtime's process driver.
            let _runtime = runtime.enter();
            let started = (|| {
                if nice != 0 {
                    // SAFETY: plain integers; `who` 0 is the calling thread on Linux.
                    unsafe {
                        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
                        libc::setpriority(libc::PRIO_PROCESS, 0, current.saturating_add(nice));
                    }
                }
                if let Some(confinement) = &confinement {
                    confinement.apply_to_current_thread()?;
                }
                child.spawn()
            })();
            let _ = sender.send(started);
        })?;
    receiver
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread died")))
}

/// Writes the client's source files into the job directory so that diagnostics can
/// quote source lines, and returns the directory to compile in: nested deep enough that
/// every `../` in their paths stays inside the job directory. Absolute paths, paths
/// climbing too far and names clashing with the job's own files are skipped.
async fn place_side_files(
    job_dir: &Path,
    files: &[SideFile],
    reserved: &[&str],
) -> std::io::Result<std::path::PathBuf> {
    let placed: Vec<(std::path::PathBuf, usize, &SideFile)> = files
        .iter()
        .filter_map(|file| normalise(&file.path).map(|(path, up)| (path, up, file)))
        .filter(|(path, up, _)| {
            *up <= MAX_SIDE_FILE_DEPTH
                && !(*up == 0 && reserved.iter().any(|r| path == Path::new(r)))
        })
        .collect();
    let depth = placed.iter().map(|(_, up, _)| *up).max().unwrap_or(0);
    let nested = |levels: usize| (0..levels).fold(job_dir.to_path_buf(), |dir, _| dir.join("w"));
    let work_dir = nested(depth);
    tokio::fs::create_dir_all(&work_dir).await?;
    for (path, up, file) in placed {
        // `up` levels above the working directory is still inside the job directory.
        let target = nested(depth - up).join(path);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&target, &file.contents).await?;
    }
    Ok(work_dir)
}

/// Lexically normalises a relative path: the path below its leading `..`s and how
/// many there are; `None` for an absolute or empty path.
fn normalise(path: &str) -> Option<(std::path::PathBuf, usize)> {
    use std::path::Component;
    let mut up = 0;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    up += 1;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| (parts.iter().collect(), up))
}

fn refuse(exit: ExitCode, message: &str) -> Outcome {
    let text = format!("sshcc on {}: {message}\n", hostname());
    tracing::warn!("{message}");
    Outcome::Finished(Response::refusal(exit, &text))
}

fn kill_process_group(group: Option<u32>) {
    if let Some(group) = group.and_then(|g| i32::try_from(g).ok()) {
        // SAFETY: kill(2) with a negative pid signals a process group we created; it has
        // no memory-safety preconditions.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// The traditional `waitpid` encoding distcc sends in `STAT`.
fn wait_status(status: std::process::ExitStatus) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    status.into_raw() as u32
}

/// This box's name, for messages that reach a user who may use several boxes.
pub fn hostname() -> String {
    Some(crate::system::hostname())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "the build box".to_string())
}
