//! `sshcc mon`: a live terminal view of this user's daemon (hosts with their slots,
//! failures, backoff, round-trip time and traffic; the jobs in flight and their
//! phases), or one plain-text snapshot when stdout is not a terminal (`--once`).
//!
//! The data is the daemon's [`Status`](crate::status::Status), read through
//! [`fetch_status`](crate::daemon::client::fetch_status) (one Unix-socket round trip;
//! it never starts a daemon). [`format`] words every number once for both outputs,
//! [`view`] draws the screen with ratatui, [`live`] owns the terminal, [`text`] writes
//! the snapshot.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;

pub mod format;
mod live;
pub mod text;
pub mod view;

#[cfg(test)]
mod sample;

/// The fastest refresh `--interval` accepts, in milliseconds.
const MIN_INTERVAL_MS: u64 = 50;

/// `sshcc mon`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc mon",
    bin_name = "sshcc mon",
    version,
    about = "Watch this user's sshcc daemon live: hosts, slots, failures, backoff, \
             traffic and the jobs in flight. Keys: q quits, h shows help. When stdout is \
             not a terminal, prints one snapshot as text."
)]
struct Options {
    /// Print one plain-text snapshot and exit (the default when stdout is not a
    /// terminal).
    #[arg(long)]
    once: bool,
    /// Milliseconds between refreshes (at least 50).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval: u64,
}

/// Runs `sshcc mon` with `args`, the arguments after `mon`.
pub fn run(args: &[OsString]) -> std::process::ExitCode {
    let mut argv = vec![OsString::from("sshcc mon")];
    argv.extend_from_slice(args);
    let options: Options = match crate::commands::parse_options(&argv) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let fetch = crate::daemon::client::fetch_status;
    if options.once || !std::io::stdout().is_terminal() {
        return match fetch() {
            Ok(status) => {
                print!("{}", text::snapshot(&status));
                std::process::ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("sshcc mon: cannot read the daemon's status: {err:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let interval = Duration::from_millis(options.interval.max(MIN_INTERVAL_MS));
    live::run(interval, fetch)
}
