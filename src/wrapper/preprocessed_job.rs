//! A job preprocessed here for a box of a given flavour: the mode (`-fdirectives-only`
//! for an sshcc box, classic `-E` for distccd), the local preprocessor's output, the
//! box's command line, and the context an sshcc box also gets.

use std::io::Write;
use std::process::Stdio;

use super::answer::Answer;
use super::broker::Broker;
use super::invocation::Invocation;
use super::local::local_command;
use super::preprocess::{self, Mode};
use crate::client_settings::{ClientSettings, Preprocess};
use crate::compiler::args::Distributable;
use crate::dispatch::link::Flavour;
use crate::protocol::{JobContext, Request, Version};

/// Preprocesses here for a box of `flavour` (once per mode) and runs the job there.
pub(super) async fn preprocess_and_run(
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
        Flavour::Distccd | Flavour::Reapi => Mode::Classic,
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
        // A REAPI action sets the locale too, so messages read as they do here.
        Flavour::Reapi => JobContext::with_local_locale(),
        Flavour::Distccd => JobContext::default(),
    };
    Ok(broker
        .run(request, &context)
        .await?
        .map(Answer::Preprocessed))
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
