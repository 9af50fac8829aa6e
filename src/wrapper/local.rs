//! Running the real compiler here: in place of this process (`exec`, with the guard
//! against finding sshcc itself again), or as a child whose status becomes the exit code.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use super::invocation::{self, Invocation, SAFEGUARD};
use crate::exit_code::ExitCode;

/// Replaces this process with the compiler. `recursed` is set when sshcc was itself
/// started by sshcc; finding sshcc again as the compiler then means a loop.
pub(super) fn exec_locally(invocation: &Invocation, recursed: bool) -> std::process::ExitCode {
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

pub(super) fn local_command(invocation: &Invocation) -> Command {
    let mut command = Command::new(&invocation.argv[0]);
    command.args(&invocation.argv[1..]).env(SAFEGUARD, "1");
    if let Some(path) = &invocation.path {
        command.env("PATH", path);
    }
    command
}

/// Runs the compiler here and waits (used when a slot must stay held or after a remote
/// attempt), returning its status as a process exit code.
pub(super) fn compile_locally(invocation: &Invocation) -> u8 {
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
