//! The compiler wrapper: `sshcc gcc -c x.c -o x.o`, `CCACHE_PREFIX=sshcc`, or a
//! masquerade link. It decides where a job runs, preprocesses locally, hands the job to
//! the daemon (or, with `SSHCC_NO_DAEMON=1`, dispatches it itself), and writes the
//! results exactly where and as a local compile would.
//!
//! Anything that is not a plain compile runs the real compiler directly (`exec`), so
//! links, `-E`, configure tests and `-M` cost nothing extra.
//!
//! This file is the entry ([`run`]): the invocation, the settings and the runtime. Then
//! `distribute` finds the host list and asks the daemon (`broker`), `placement` asks for
//! hosts until one answers, `preprocessed_job` preprocesses here for a box and
//! `remote` builds the unpreprocessed job; what a box answered and what its status
//! means are in `answer`, the results written in `output`, and running the compiler
//! here in `local`.

mod answer;
mod broker;
mod distribute;
pub mod invocation;
mod local;
mod output;
mod placement;
pub mod preprocess;
mod preprocessed_job;
mod remote;

use std::ffi::OsString;

use crate::client_settings::ClientSettings;
use crate::compiler::args;
use crate::config::Config;
use crate::exit_code::ExitCode;
use crate::hosts;
use distribute::distribute;
use invocation::SAFEGUARD;
use local::exec_locally;

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
