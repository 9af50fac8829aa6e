//! `sshcc mon`: a live terminal view of the daemon (hosts, slots, jobs in flight), or
//! one plain-text snapshot when stdout is not a terminal (`--once`).

use std::ffi::OsString;

use clap::Parser;

/// `sshcc mon`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc mon",
    bin_name = "sshcc mon",
    version,
    about = "Watch the daemon live: hosts, slots, jobs in flight. Keys: q quits, h help."
)]
struct Options {
    /// Print one plain-text snapshot and exit (the default when stdout is not a
    /// terminal).
    #[arg(long)]
    once: bool,
    /// Milliseconds between refreshes.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval: u64,
}

/// Runs `sshcc mon` with `args`, the arguments after `mon`.
pub fn run(args: &[OsString]) -> std::process::ExitCode {
    let mut argv = vec![OsString::from("sshcc mon")];
    argv.extend_from_slice(args);
    let _options: Options = match crate::cli::parse_options(&argv) {
        Ok(options) => options,
        Err(code) => return code,
    };
    eprintln!("sshcc mon: not implemented yet");
    std::process::ExitCode::FAILURE
}
