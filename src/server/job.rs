//! One compile on the box: a private directory, the allowlisted compiler, and nothing
//! left behind.
//!
//! The compiler runs in its own process group so that killing the job also kills cc1 and
//! as; the directory is removed whatever happens (success, compile error, refusal,
//! client gone), because `JobDir` owns it.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::allowlist::Allowlist;
use super::argument_policy;
use crate::compiler::source;
use crate::exit_code::ExitCode;
use crate::protocol::{Request, Response};

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

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Finished(Response),
    /// The client went away (or we were told to stop): there is no one to answer.
    Abandoned,
}

/// Runs `request` to completion unless `cancelled` resolves first.
pub async fn run(
    request: &Request,
    allowlist: Result<Allowlist, super::allowlist::AllowlistError>,
    cancelled: impl Future<Output = ()>,
) -> Outcome {
    let compiler = match allowlist.and_then(|list| list.resolve(&request.argv[0]).map(String::from))
    {
        Ok(path) => path,
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
    run_in(request, &compiler, job_dir.path(), cancelled).await
    // `job_dir` is dropped here, removing every file the job made.
}

async fn run_in(
    request: &Request,
    compiler: &str,
    dir: &Path,
    cancelled: impl Future<Output = ()>,
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
    if let Err(err) = tokio::fs::write(dir.join(&input_file), &request.source).await {
        return refuse(
            ExitCode::IoError,
            &format!("cannot write the source into the job directory: {err}"),
        );
    }

    let mut child = Command::new(compiler);
    child
        .args(&command.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in SCRUBBED_ENVIRONMENT {
        child.env_remove(name);
    }
    tracing::debug!(compiler, args = ?command.args, "running compiler");
    let child = match child.spawn() {
        Ok(child) => child,
        Err(err) => {
            return refuse(
                ExitCode::CompilerMissing,
                &format!("cannot run the allowlisted compiler {compiler}: {err}"),
            );
        }
    };
    let process_group = child.id();
    let output = tokio::select! {
        output = child.wait_with_output() => output,
        () = cancelled => {
            kill_process_group(process_group);
            return Outcome::Abandoned;
        }
    };
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            return refuse(
                ExitCode::IoError,
                &format!("lost track of the compiler: {err}"),
            );
        }
    };
    // The compiler is gone, but cc1 or as may linger in its group if it crashed.
    kill_process_group(process_group);
    let status = wait_status(output.status);
    let mut response = Response {
        status,
        stderr: output.stderr,
        stdout: output.stdout,
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
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "the build box".to_string())
}
