//! The `sshcc` command line: which role this process plays, and logging.
//!
//! Compiler command lines cannot go through an option parser (they are the compiler's
//! options, not ours), so clap only sees invocations that start with an sshcc option or
//! that run under the name `distccd` (a symlink on the box replacing distccd).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

use crate::exit_code::ExitCode;

/// Options of the box worker, accepted under both names `sshcc` and `distccd`.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc",
    version,
    about = "Compile dispatcher for build boxes reached over SSH (distcc-compatible)",
    after_help = "As a compiler wrapper: sshcc COMPILER ARGS... (arrives with the client)"
)]
pub struct ServerOptions {
    /// Serve one distcc job on stdin/stdout and exit (what `ssh box sshcc --inetd` runs).
    #[arg(long, conflicts_with = "mux")]
    pub inetd: bool,
    /// Serve many jobs over stdin/stdout until the client hangs up (what the sshcc
    /// daemon runs on each pooled SSH connection).
    #[arg(long)]
    pub mux: bool,
    /// Accepted for distcc compatibility; the allowlist applies regardless.
    #[arg(long, alias = "make-me-a-botnet")]
    pub enable_tcp_insecure: bool,
    /// Append logs to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log to stderr (the default; accepted for distccd compatibility).
    #[arg(long)]
    pub log_stderr: bool,
    /// Log level: error, warning, notice, info or debug (distccd's names).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Runs the process for `args` (as from `std::env::args_os`).
pub fn run(args: Vec<OsString>) -> std::process::ExitCode {
    let invoked_as = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let first = args.get(1).map(|arg| arg.to_string_lossy().into_owned());
    let is_server_invocation = invoked_as == "distccd"
        || first
            .as_deref()
            .is_some_and(|arg| arg.starts_with("--") || arg == "-h" || arg == "-V");
    if !is_server_invocation {
        eprintln!(
            "sshcc: the compiler-wrapper mode (sshcc COMPILER ARGS...) is not implemented yet; run `sshcc --inetd` on a box"
        );
        return ExitCode::BadArguments.into();
    }
    let options = match ServerOptions::try_parse_from(&args) {
        Ok(options) => options,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::BadArguments.into()
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    if let Err(err) = init_logging(options.log_file.as_deref(), options.log_level.as_deref()) {
        eprintln!("sshcc: {err:#}");
        return ExitCode::BadArguments.into();
    }
    if options.inetd {
        serve_stdio(crate::server::serve_one(
            tokio::io::stdin(),
            tokio::io::stdout(),
        ))
    } else if options.mux {
        serve_stdio(crate::mux::server::serve(
            tokio::io::stdin(),
            tokio::io::stdout(),
        ))
    } else {
        eprintln!("sshcc: nothing to do; the box worker runs as `sshcc --inetd` (see --help)");
        ExitCode::BadArguments.into()
    }
}

/// Runs a box worker on stdin/stdout and exits with its status.
fn serve_stdio(worker: impl Future<Output = u8>) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::Failure.into();
        }
    };
    let status = runtime.block_on(worker);
    // tokio's stdin reader may sit in a blocking read that runtime shutdown would wait
    // for; every file is already closed and flushed, so leave at once.
    std::process::exit(status.into())
}

/// Sets up `tracing`: `SSHCC_LOG` (an env-filter directive) wins, then `--log-level`,
/// then `DISTCC_VERBOSE=1` (debug); the default shows warnings and errors.
fn init_logging(log_file: Option<&Path>, log_level: Option<&str>) -> anyhow::Result<()> {
    let directive = match (std::env::var("SSHCC_LOG").ok(), log_level) {
        (Some(directive), _) => directive,
        (None, Some(level)) => match level {
            "critical" | "error" => "error",
            "warning" | "notice" => "warn",
            "info" => "info",
            "debug" => "debug",
            other => anyhow::bail!("unknown log level {other:?}"),
        }
        .to_string(),
        (None, None) if std::env::var("DISTCC_VERBOSE").as_deref() == Ok("1") => {
            "debug".to_string()
        }
        (None, None) => "warn".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .with_context(|| format!("bad log filter {directive:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .without_time()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}
