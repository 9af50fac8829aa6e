//! `sshcc check`: every host of the user's list reached exactly as a build reaches it,
//! and every compiler a box's allowlist names compared with the compiler a local
//! compile would run. A wrong key, an unrecorded host key or another build of gcc on
//! a box then shows up before a build, not as jobs silently compiled locally or as an
//! object from a different compiler.
//!
//! The box side is `sshcc --box-info` ([`crate::server::identity::box_info`]). Hosts
//! are checked concurrently; the local compilers are fingerprinted afterwards, once
//! per name, through the same cache the dispatcher uses.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use russh::ChannelMsg;

use crate::client_settings::ClientSettings;
use crate::config::Config;
use crate::dispatch::DEFAULT_REMOTE_COMMAND;
use crate::dispatch::link::{HostLink, TCP_CONNECT_TIMEOUT, TOOLCHAIN_PROPERTY};
use crate::exit_code::ExitCode;
use crate::hosts::{HostKind, HostSpec};
use crate::server::identity::BoxInfo;
use crate::ssh::config::{self as ssh_config, ClientOptions};
use crate::ssh::connection::SshConnection;
use crate::toolchain::Policy;
use judge::{LocalToolchains, judge};
use render::render;
pub use report::{CompilerReport, CompilerStatus, HostReport, RemoteSshcc, Report, Toolchain};

mod judge;
mod render;
mod report;

/// How long a box may take to answer `--box-info`: a slow login shell, plus hashing
/// every allowlisted compiler on a box that has never done so (about a second each).
const BOX_INFO_TIMEOUT: Duration = Duration::from_secs(30);

const UNVERIFIABLE_SSH: &str = "stock distccd or old sshcc: toolchain cannot be verified";
const UNVERIFIABLE_TCP: &str = "stock distccd: toolchain cannot be verified";

/// `sshcc check`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "sshcc check",
    bin_name = "sshcc check",
    version,
    about = "Check every configured host: connection, authentication, host key, the box's \
             sshcc and allowlist, and whether its compilers match the local ones. \
             Exits 0 when everything is usable and matches, 1 otherwise."
)]
struct Options {
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `sshcc check` (`args[0]` is `check`).
pub fn run(args: &[OsString]) -> std::process::ExitCode {
    let options: Options = match crate::commands::parse_options(args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let (config, list) = match crate::client_settings::config_and_hosts() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if list.hosts.is_empty() {
        eprintln!("sshcc: the host list is empty: nothing to check");
        return ExitCode::NoHosts.into();
    }
    let settings = match ClientSettings::from_env(&config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sshcc: {err}");
            return ExitCode::BadArguments.into();
        }
    };
    let setup = Arc::new(Setup {
        ssh: ClientOptions {
            config_file: settings.ssh_config,
            extra: settings.ssh_options,
            unchecked_host_keys: settings.unchecked_host_keys,
        },
        config,
        policy: settings.toolchain_check,
    });
    let probes = match crate::async_runtime::build() {
        Ok(runtime) => runtime.block_on(probe_all(&list.hosts, &setup)),
        Err(err) => {
            eprintln!("sshcc: cannot start the async runtime: {err}");
            return ExitCode::Failure.into();
        }
    };
    let report = judge(probes, &mut LocalToolchains::for_user());
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("sshcc: cannot encode the report: {err}");
                return ExitCode::Failure.into();
            }
        }
    } else {
        print!("{}", render(&report));
    }
    if report.ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// What every host's check needs: how to reach hosts and how strict to be.
struct Setup {
    ssh: ClientOptions,
    config: Config,
    /// `SSHCC_TOOLCHAIN_CHECK`, else config.toml's global `toolchain_check`.
    policy: Option<Policy>,
}

impl Setup {
    /// The policy the dispatcher applies to `host`: config.toml's setting for it, else
    /// the global one, else strict.
    fn policy_for(&self, host: &str) -> Policy {
        self.config
            .host
            .get(host)
            .and_then(|settings| settings.toolchain_check)
            .or(self.policy)
            .unwrap_or_default()
    }
}

/// A host as reached, before its compilers are compared: the report so far and, for
/// an sshcc box with an allowlist, the box's own report.
struct Probe {
    report: HostReport,
    box_info: Option<BoxInfo>,
}

async fn probe_all(hosts: &[HostSpec], setup: &Arc<Setup>) -> Vec<Probe> {
    let tasks: Vec<_> = hosts
        .iter()
        .map(|spec| tokio::spawn(probe(spec.clone(), setup.clone())))
        .collect();
    let mut probes = Vec::with_capacity(tasks.len());
    for task in tasks {
        probes.push(task.await.expect("a host check panicked"));
    }
    probes
}

async fn probe(spec: HostSpec, setup: Arc<Setup>) -> Probe {
    let mut report = HostReport {
        entry: spec.text.clone(),
        kind: match spec.kind {
            HostKind::Ssh { .. } => "ssh",
            HostKind::Tcp { .. } => "tcp",
            HostKind::Local => "local",
            HostKind::Reapi { .. } => "reapi",
        },
        slots: spec.slots,
        ok: false,
        error: None,
        note: None,
        address: None,
        connect_ms: None,
        auth_method: None,
        host_key: None,
        command: None,
        box_info_ms: None,
        remote: None,
        toolchain_check: None,
        compilers: Vec::new(),
    };
    let mut box_info = None;
    let reached = match &spec.kind {
        _ if spec.down => {
            report.note = Some("marked ,down: builds do not use it".to_string());
            Ok(())
        }
        HostKind::Local => {
            report.note = Some("runs jobs on this machine".to_string());
            Ok(())
        }
        HostKind::Tcp { host, port } => probe_tcp(&mut report, host, *port).await,
        HostKind::Reapi { authority, .. } => {
            let url = spec.kind.reapi_url().expect("a REAPI entry");
            probe_reapi(&mut report, &url, authority, &setup).await
        }
        HostKind::Ssh {
            user,
            host,
            command,
        } => probe_ssh(
            &mut report,
            user.as_deref(),
            host,
            command.as_deref(),
            &setup,
        )
        .await
        .map(|info| box_info = info),
    };
    report.error = reached.err().map(|err| format!("{err:#}"));
    Probe { report, box_info }
}

fn millis_since(started: Instant) -> u64 {
    started.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

async fn probe_tcp(report: &mut HostReport, host: &str, port: u16) -> anyhow::Result<()> {
    let address = format!("{host}:{port}");
    report.address = Some(address.clone());
    let started = Instant::now();
    tokio::time::timeout(
        TCP_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "no answer from {address} within {}s",
            TCP_CONNECT_TIMEOUT.as_secs()
        )
    })?
    .with_context(|| format!("cannot connect to {address}"))?;
    report.connect_ms = Some(millis_since(started));
    report.note = Some(UNVERIFIABLE_TCP.to_string());
    Ok(())
}

/// Opens the engine as the dispatcher would (its capabilities: reachable, executes,
/// speaks SHA-256, takes our credentials).
async fn probe_reapi(
    report: &mut HostReport,
    url: &str,
    authority: &str,
    setup: &Setup,
) -> anyhow::Result<()> {
    report.address = Some(url.to_string());
    let mut config = setup
        .config
        .reapi
        .get(authority)
        .cloned()
        .unwrap_or_default();
    config.read_environment(|name| std::env::var(name).ok());
    let started = Instant::now();
    HostLink::reapi(url, &config, Default::default()).await?;
    report.connect_ms = Some(millis_since(started));
    report.note = Some(format!(
        "REAPI engine, instance {:?}: jobs are preprocessed {} and run as actions on \
         workers advertising the platform properties and {TOOLCHAIN_PROPERTY}",
        config.instance_name.clone().unwrap_or_default(),
        match config.remote_preprocessing {
            true => "by the workers",
            false => "here",
        }
    ));
    Ok(())
}

/// Connects as the dispatcher would and asks the box for its report; `None` when the
/// remote command does not speak `--box-info`.
async fn probe_ssh(
    report: &mut HostReport,
    user: Option<&str>,
    host: &str,
    command: Option<&str>,
    setup: &Setup,
) -> anyhow::Result<Option<BoxInfo>> {
    report.toolchain_check = Some(setup.policy_for(host));
    let command = command
        .or_else(|| setup.config.command_for(host))
        .unwrap_or(DEFAULT_REMOTE_COMMAND);
    report.command = Some(command.to_string());
    let target = ssh_config::resolve_with(host, user, None, &setup.ssh)?;
    let started = Instant::now();
    let connection = SshConnection::connect(&target, &setup.ssh).await?;
    report.connect_ms = Some(millis_since(started));
    report.address = Some(connection.label().to_string());
    report.auth_method = Some(connection.auth_method().to_string());
    report.host_key = Some(connection.host_key_decision().to_string());

    let started = Instant::now();
    let asked = format!("{command} --box-info");
    let answer = tokio::time::timeout(BOX_INFO_TIMEOUT, run_remote(&connection, &asked))
        .await
        .map_err(|_| {
            anyhow!(
                "`{asked}` did not answer within {}s",
                BOX_INFO_TIMEOUT.as_secs()
            )
        })??;
    report.box_info_ms = Some(millis_since(started));
    let info = match serde_json::from_slice::<BoxInfo>(&answer.stdout) {
        Ok(info) => info,
        // What a shell says for a command it cannot find.
        Err(_) if answer.status == Some(127) => bail!(
            "`{command}` is not installed on {} (or not on the login PATH): {}",
            connection.label(),
            String::from_utf8_lossy(&answer.stderr).trim()
        ),
        Err(_) => {
            report.note = Some(UNVERIFIABLE_SSH.to_string());
            return Ok(None);
        }
    };
    report.remote = Some(RemoteSshcc {
        sshcc_version: info.sshcc_version.clone(),
        protocol: info.protocol,
        hostname: info.hostname.clone(),
        allowlist: info.allowlist.clone(),
        allowlist_error: info.allowlist_error.clone(),
        limits: info.limits.clone(),
        counters: info.counters.clone(),
        preprocessing: match &info.store {
            Some(store) if info.protocol >= 3 && store.error.is_none() => "remote",
            _ => "local",
        },
        store: info.store.clone(),
    });
    if let Some(why) = &info.allowlist_error {
        bail!("no usable allowlist, so the box runs nothing: {why}");
    }
    if info.compilers.is_empty() {
        bail!(
            "the allowlist {} names no compiler, so the box runs nothing",
            info.allowlist.as_deref().unwrap_or_default()
        );
    }
    Ok(Some(info))
}

/// What a command run on the box printed, and its exit status.
#[derive(Default)]
struct Answer {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
}

async fn run_remote(connection: &SshConnection, command: &str) -> anyhow::Result<Answer> {
    let mut channel = connection
        .exec(command)
        .await
        .with_context(|| format!("cannot run `{command}` on {}", connection.label()))?;
    let mut answer = Answer::default();
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => answer.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => answer.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => answer.status = Some(exit_status),
            _ => {}
        }
    }
    Ok(answer)
}
