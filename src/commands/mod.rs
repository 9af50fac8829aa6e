//! The client-side commands a person runs, beside the compiler wrapper: `sshcc check`
//! ([`check`]), `sshcc status` and `sshcc stats` ([`report`]), and `sshcc mon`
//! ([`monitor`]). Each takes its own arguments (after the subcommand's name) and
//! returns the status to exit with; [`crate::cli`] only picks which one runs.

use std::ffi::OsString;

use crate::exit_code::ExitCode;

pub mod check;
pub mod monitor;
pub mod report;

/// Parses a command's options with clap; on failure (or `--help`, `--version`) prints
/// clap's message and returns the status to exit with.
pub fn parse_options<P: clap::Parser>(args: &[OsString]) -> Result<P, std::process::ExitCode> {
    P::try_parse_from(args).map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            ExitCode::BadArguments.into()
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}
