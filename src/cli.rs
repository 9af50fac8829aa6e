//! The `sshcc` command line: which role this process plays, and logging.
//!
//! Compiler command lines cannot go through an option parser (they are the compiler's
//! options, not ours), so clap only sees invocations that start with an sshcc option,
//! a subcommand (`sshcc check`, `sshcc status`, `sshcc stats`, `sshcc mon`: see
//! [`crate::commands`]), or that run
//! under the name `distccd` (a symlink on the box replacing distccd).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

use crate::exit_code::ExitCode;
use crate::server::forced_command::{self, ServingMode};
use crate::server::settings::BoxSettings;

/// sshcc's own options (as opposed to a compiler command line). Also accepted under
/// the name `distccd`.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc",
    version,
    about = "Compile dispatcher for build boxes reached over SSH (distcc-compatible)",
    after_help = "As a compiler wrapper: sshcc COMPILER ARGS..., sshcc ARGS... (compiler cc), \
                  or a symlink named after the compiler.\n\
                  To check every configured host and its compilers: sshcc check [--json]\n\
                  What the daemon is doing: sshcc status [--json], or live: sshcc mon\n\
                  What sshcc did since the last reset: sshcc stats [--json] [--reset]"
)]
pub struct Options {
    /// Serve one distcc job on stdin/stdout and exit (what `ssh box sshcc --inetd` runs).
    #[arg(long, group = "role")]
    pub inetd: bool,
    /// Serve many jobs over stdin/stdout until the client hangs up (what the sshcc
    /// daemon runs on each pooled SSH connection).
    #[arg(long, group = "role")]
    pub mux: bool,
    /// Run the per-user daemon in the foreground (wrappers start it on demand).
    #[arg(long, group = "role")]
    pub daemon: bool,
    /// Stop the per-user daemon.
    #[arg(long, group = "role")]
    pub stop: bool,
    /// Print the host list, one entry per line, as `distcc --show-hosts` does.
    #[arg(long, group = "role")]
    pub show_hosts: bool,
    /// Print the total number of job slots of all hosts, as `distcc -j` does.
    #[arg(short = 'j', group = "role")]
    pub slots: bool,
    /// Print, as JSON, what this box runs: sshcc's version, its allowlist and each
    /// allowlisted compiler's toolchain fingerprint (what `sshcc check` asks a box).
    #[arg(long, group = "role")]
    pub box_info: bool,
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
    #[command(flatten, next_help_heading = "Box limits (--inetd, --mux)")]
    pub box_settings: BoxSettings,
}

/// First arguments that make `sshcc …` an sshcc command rather than an implicit
/// compile (`sshcc -c x.c`).
const OWN_OPTIONS: &[&str] = &[
    "--inetd",
    "--mux",
    "--daemon",
    "--stop",
    "--show-hosts",
    "-j",
    "--box-info",
    "--help",
    "-h",
    "--version",
    "-V",
    "--enable-tcp-insecure",
    "--make-me-a-botnet",
    "--log-file",
    "--log-stderr",
    "--log-level",
    "--jobs",
    "--nice",
    "--job-lifetime",
    "--max-input",
    "--sandbox",
    "--sandbox-allow",
    "--sandbox-write",
    "--lock-dir",
    "--cache-size",
];

/// Runs the process for `args` (as from `std::env::args_os`).
pub fn run(args: Vec<OsString>) -> std::process::ExitCode {
    let invoked_as = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let first = args
        .get(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own_option = OWN_OPTIONS
        .iter()
        .any(|option| first == *option || first.starts_with(&format!("{option}=")));
    if invoked_as.contains("sshcc") && first == "check" {
        if let Err(err) = init_logging(None, None, "warn", false) {
            eprintln!("sshcc: {err:#}");
        }
        return crate::commands::check::run(&args[1..]);
    }
    if invoked_as.contains("sshcc") && first == "mon" {
        if let Err(err) = init_logging(None, None, "warn", false) {
            eprintln!("sshcc: {err:#}");
        }
        return crate::commands::monitor::run(&args[2..]);
    }
    if invoked_as.contains("sshcc") && matches!(first.as_str(), "status" | "stats") {
        if let Err(err) = init_logging(None, None, "warn", false) {
            eprintln!("sshcc: {err:#}");
        }
        return match first.as_str() {
            "status" => crate::commands::report::status_command(&args[1..]),
            _ => crate::commands::report::stats_command(&args[1..]),
        };
    }
    if invoked_as != "distccd" && !(invoked_as.contains("sshcc") && own_option) {
        if let Err(err) = init_logging(None, None, "warn", true) {
            eprintln!("sshcc: {err:#}");
        }
        return crate::wrapper::run(&args);
    }
    let options: Options = match crate::commands::parse_options(&args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    // The daemon writes to its own log file, where what it does is worth recording.
    let default_level = if options.daemon { "info" } else { "warn" };
    if let Err(err) = init_logging(
        options.log_file.as_deref(),
        options.log_level.as_deref(),
        default_level,
        false,
    ) {
        eprintln!("sshcc: {err:#}");
        return ExitCode::BadArguments.into();
    }
    let serving = match serving_mode(&options) {
        Ok(serving) => serving,
        Err(why) => {
            tracing::warn!("{why}");
            eprintln!("sshcc: {why}");
            return ExitCode::AccessDenied.into();
        }
    };
    if serving.is_some() {
        // SAFETY: still single-threaded: no runtime has started yet.
        unsafe { crate::server::job::scrub_environment() };
    }
    let settings = options.box_settings;
    match serving {
        Some(ServingMode::Inetd) => {
            return serve_stdio(async move {
                crate::server::serve_one(tokio::io::stdin(), tokio::io::stdout(), &settings).await
            });
        }
        Some(ServingMode::Mux) => {
            return serve_stdio(crate::mux::server::serve(
                tokio::io::stdin(),
                tokio::io::stdout(),
                settings,
            ));
        }
        Some(ServingMode::BoxInfo) => return print_box_info(&settings),
        None => {}
    }
    if options.daemon {
        run_daemon()
    } else if options.stop {
        stop_daemon()
    } else if options.slots || options.show_hosts {
        print_hosts(options.slots)
    } else {
        eprintln!("sshcc: nothing to do (see --help)");
        ExitCode::BadArguments.into()
    }
}

/// Which serving mode this process runs, if any. Under a forced command
/// (`SSH_ORIGINAL_COMMAND` set), the client's request picks one of the serving modes and
/// nothing else; see [`forced_command`].
fn serving_mode(options: &Options) -> Result<Option<ServingMode>, String> {
    let asked = if options.inetd {
        ServingMode::Inetd
    } else if options.mux {
        ServingMode::Mux
    } else if options.box_info {
        ServingMode::BoxInfo
    } else {
        return Ok(None);
    };
    match std::env::var("SSH_ORIGINAL_COMMAND") {
        Ok(original) => forced_command::requested_mode(&original).map(Some),
        Err(_) => Ok(Some(asked)),
    }
}

/// Runs a box worker on stdin/stdout and exits with its status.
fn serve_stdio(worker: impl Future<Output = u8>) -> std::process::ExitCode {
    let runtime = match crate::async_runtime::build() {
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

fn run_daemon() -> std::process::ExitCode {
    let result = crate::daemon::runtime_dir::RuntimeDir::prepare().and_then(|dir| {
        crate::async_runtime::build()
            .context("cannot start the async runtime")?
            .block_on(crate::daemon::run(dir))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::Failure.into()
        }
    }
}

fn stop_daemon() -> std::process::ExitCode {
    let stopped = crate::daemon::runtime_dir::RuntimeDir::prepare().and_then(|dir| {
        crate::async_runtime::build()?.block_on(async {
            match crate::daemon::client::DaemonClient::connect(&dir).await {
                Ok(mut client) => client.stop(&dir).await.map(|()| true),
                Err(_) => Ok(false),
            }
        })
    });
    match stopped {
        Ok(true) => {
            println!("sshcc: daemon stopped");
            std::process::ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("sshcc: no daemon running");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sshcc: {err:#}");
            ExitCode::Failure.into()
        }
    }
}

/// `sshcc -j` and `sshcc --show-hosts`, with distcc's output.
fn print_hosts(slots: bool) -> std::process::ExitCode {
    let list = match crate::client_settings::config_and_hosts() {
        Ok((_, list)) => list,
        Err(code) => return code,
    };
    if slots {
        println!("{}", list.total_slots());
    } else {
        print!("{}", list.show_hosts());
    }
    std::process::ExitCode::SUCCESS
}

/// `sshcc --box-info`: this box's report, exiting with distcc's "compiler missing"
/// status when there is no usable allowlist (the box then runs nothing).
fn print_box_info(settings: &BoxSettings) -> std::process::ExitCode {
    let info = crate::server::identity::box_info(settings);
    match serde_json::to_string_pretty(&info) {
        Ok(json) => println!("{json}"),
        Err(err) => {
            eprintln!("sshcc: cannot encode the box report: {err}");
            return ExitCode::Failure.into();
        }
    }
    if info.allowlist_error.is_some() {
        ExitCode::CompilerMissing.into()
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Sets up `tracing`: `SSHCC_LOG` (an env-filter directive) wins, then `--log-level`,
/// then `DISTCC_VERBOSE=1` (debug), then `default_level`.
/// `compiling` marks the wrapper role, whose messages go to ccache's
/// `UNCACHED_ERR_FD` when it is set.
fn init_logging(
    log_file: Option<&Path>,
    log_level: Option<&str>,
    default_level: &str,
    compiling: bool,
) -> anyhow::Result<()> {
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
        (None, None) => default_level.to_string(),
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
        None => match uncached_error_file().filter(|_| compiling) {
            // ccache caches the compiler's stderr; messages about sshcc itself must not
            // be replayed on later cache hits, so they go where ccache says.
            Some(file) => builder
                .without_time()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            None => builder
                .without_time()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init(),
        },
    }
    Ok(())
}

/// ccache's `UNCACHED_ERR_FD`, as a file of our own.
fn uncached_error_file() -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var("UNCACHED_ERR_FD").ok()?.trim().parse().ok()?;
    // SAFETY: dup(2) on a number is harmless; a negative result means it was not open.
    let duplicate = unsafe { libc::dup(fd) };
    // SAFETY: `duplicate` is a descriptor we just created and own exclusively.
    (duplicate >= 0).then(|| unsafe { std::fs::File::from_raw_fd(duplicate) })
}
