//! `sshcc check`: every host of the user's list reached exactly as a build reaches it,
//! and every compiler a box's allowlist names compared with the compiler a local
//! compile would run. A wrong key, an unrecorded host key or another build of gcc on
//! a box then shows up before a build, not as jobs silently compiled locally or as an
//! object from a different compiler.
//!
//! The box side is `sshcc --box-info` ([`crate::server::identity::box_info`]). Hosts
//! are checked concurrently; the local compilers are fingerprinted afterwards, once
//! per name, through the same cache the dispatcher uses.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use russh::ChannelMsg;
use serde::Serialize;

use crate::client_settings::ClientSettings;
use crate::config::Config;
use crate::dispatch::DEFAULT_REMOTE_COMMAND;
use crate::dispatch::link::TCP_CONNECT_TIMEOUT;
use crate::exit_code::ExitCode;
use crate::hosts::{HostKind, HostSpec};
use crate::server::identity::{BoxInfo, CompilerInfo};
use crate::ssh::config::{self as ssh_config, ClientOptions};
use crate::ssh::connection::SshConnection;
use crate::toolchain::{self, Fingerprint, FingerprintCache, Policy};
use crate::wrapper::invocation::find_on_path;

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

/// `sshcc check --json`'s document. Later versions may add fields but do not rename
/// or remove any; a field that does not apply to a host is `null` (lists are empty).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The version of the sshcc that ran the check.
    pub sshcc_version: String,
    /// Whether every host passed; the exit status is 0 exactly when this is true.
    pub ok: bool,
    /// One per host list entry, in list order.
    pub hosts: Vec<HostReport>,
}

/// One host list entry.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// The entry as written in the host list, e.g. `@box/8` or `buildbox:3632`.
    pub entry: String,
    /// `ssh`, `tcp` or `local`.
    pub kind: &'static str,
    /// Job slots (`/N`).
    pub slots: u32,
    /// Whether this host passed: usable, and every compiler that exists locally
    /// matches.
    pub ok: bool,
    /// Why builds cannot use the host: unreachable, authentication refused, remote
    /// command missing, no allowlist.
    pub error: Option<String>,
    /// What else to know, e.g. that the toolchain of a stock distccd cannot be
    /// verified, or that the entry runs jobs locally.
    pub note: Option<String>,
    /// Where the connection went: `user@host:port` (SSH) or `host:port` (TCP).
    pub address: Option<String>,
    /// Milliseconds to connect (SSH: including key exchange and authentication).
    pub connect_ms: Option<u64>,
    /// How the SSH connection authenticated, e.g. `key /home/me/.ssh/id_ed25519`,
    /// `agent key me@laptop`, `certificate /home/me/.ssh/id_ed25519-cert.pub`.
    pub auth_method: Option<String>,
    /// Why the box's host key was trusted, e.g. `known_hosts`,
    /// `host certificate (CA SHA256:…)`, `learned (accept-new): …`.
    pub host_key: Option<String>,
    /// The remote command (the entry's `:command`, config.toml's, or `sshcc`).
    pub command: Option<String>,
    /// Milliseconds for `command --box-info` to answer.
    pub box_info_ms: Option<u64>,
    /// What an sshcc box says about itself.
    pub remote: Option<RemoteSshcc>,
    /// The `toolchain_check` policy for this host: `strict`, `version` or `off`.
    pub toolchain_check: Option<Policy>,
    /// The box's allowlisted compilers, in allowlist order.
    pub compilers: Vec<CompilerReport>,
}

/// An sshcc box's own report, without its compilers.
#[derive(Debug, Serialize)]
pub struct RemoteSshcc {
    pub sshcc_version: String,
    /// The mux protocol version it speaks.
    pub protocol: u32,
    pub hostname: String,
    /// The allowlist file, if it has one.
    pub allowlist: Option<String>,
    /// Why it has no usable allowlist (it then runs nothing).
    pub allowlist_error: Option<String>,
    /// The box owner's limits and sandbox (absent from older boxes).
    pub limits: Option<crate::server::identity::LimitsInfo>,
    /// Jobs the box served for everyone, and compiles running now (absent from older
    /// boxes).
    pub counters: Option<crate::server::counters::BoxCounters>,
}

/// One allowlisted compiler, compared with its local counterpart: the compiler of the
/// same name on the local PATH (sshcc's own masquerade links skipped, ccache wrappers
/// followed).
#[derive(Debug, Serialize)]
pub struct CompilerReport {
    /// The allowlist entry, as the box's file has it.
    pub entry: String,
    pub status: CompilerStatus,
    /// The difference (`mismatch`) or the error (`box-error`, `local-error`).
    pub detail: Option<String>,
    /// The box's compiler.
    pub remote: Option<Toolchain>,
    /// The local compiler.
    pub local: Option<Toolchain>,
}

/// How an allowlisted compiler compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompilerStatus {
    /// The same toolchain (as far as the host's `toolchain_check` looks).
    Match,
    /// Another toolchain: the dispatcher sends this compiler's jobs elsewhere.
    Mismatch,
    /// `toolchain_check` is `off` for this host.
    NotChecked,
    /// No compiler of that name here, so no local job can go there.
    MissingLocally,
    /// The box cannot run or fingerprint its compiler.
    BoxError,
    /// The local compiler exists but cannot be fingerprinted.
    LocalError,
}

impl CompilerStatus {
    /// Whether this makes the check fail: a compiler that exists here would not be
    /// (or should not be) used on the box.
    fn fails(self) -> bool {
        matches!(
            self,
            CompilerStatus::Mismatch | CompilerStatus::BoxError | CompilerStatus::LocalError
        )
    }

    fn text(self) -> &'static str {
        match self {
            CompilerStatus::Match => "match",
            CompilerStatus::Mismatch => "mismatch",
            CompilerStatus::NotChecked => "not checked",
            CompilerStatus::MissingLocally => "missing locally",
            CompilerStatus::BoxError => "box error",
            CompilerStatus::LocalError => "local error",
        }
    }
}

/// One side's compiler, from its fingerprint.
#[derive(Debug, Serialize)]
pub struct Toolchain {
    /// The real compiler (symlinks and ccache followed).
    pub compiler: PathBuf,
    /// `-dumpmachine`.
    pub target: String,
    /// The first line of `--version`.
    pub version: String,
    /// A short digest of the whole fingerprint: equal digests, identical toolchains.
    pub digest: String,
}

impl From<&Fingerprint> for Toolchain {
    fn from(fingerprint: &Fingerprint) -> Self {
        Toolchain {
            compiler: fingerprint.compiler.clone(),
            target: fingerprint.target.clone(),
            version: fingerprint.version.clone(),
            digest: fingerprint.digest(),
        }
    }
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

/// Compares every box's compilers with the local ones and settles each host's verdict.
fn judge(probes: Vec<Probe>, locals: &mut LocalToolchains) -> Report {
    let hosts: Vec<HostReport> = probes
        .into_iter()
        .map(
            |Probe {
                 mut report,
                 box_info,
             }| {
                if let Some(info) = box_info {
                    let policy = report.toolchain_check.unwrap_or_default();
                    report.compilers = info
                        .compilers
                        .iter()
                        .map(|remote| compare(remote, policy, |name| locals.lookup(name)))
                        .collect();
                }
                report.ok = report.error.is_none()
                    && report
                        .compilers
                        .iter()
                        .all(|compiler| !compiler.status.fails());
                report
            },
        )
        .collect();
    Report {
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        ok: hosts.iter().all(|host| host.ok),
        hosts,
    }
}

/// Compares one allowlisted compiler with the local compiler of the same name, which
/// `local` finds and fingerprints (`None`: there is none).
fn compare(
    remote: &CompilerInfo,
    policy: Policy,
    local: impl FnOnce(&str) -> Result<Option<Fingerprint>, String>,
) -> CompilerReport {
    let mut report = CompilerReport {
        entry: remote.entry.clone(),
        status: CompilerStatus::Match,
        detail: None,
        remote: remote.fingerprint.as_ref().map(Toolchain::from),
        local: None,
    };
    if policy == Policy::Off {
        report.status = CompilerStatus::NotChecked;
        return report;
    }
    let name = Path::new(&remote.entry)
        .file_name()
        .map_or(remote.entry.clone(), |name| {
            name.to_string_lossy().into_owned()
        });
    let here = match local(&name) {
        Ok(Some(fingerprint)) => fingerprint,
        Ok(None) => {
            report.status = CompilerStatus::MissingLocally;
            report.detail = remote.error.clone();
            return report;
        }
        Err(err) => {
            report.status = CompilerStatus::LocalError;
            report.detail = Some(err);
            return report;
        }
    };
    report.local = Some(Toolchain::from(&here));
    match &remote.fingerprint {
        Some(there) => {
            if let Some(difference) = here.difference(there, policy == Policy::Version) {
                report.status = CompilerStatus::Mismatch;
                report.detail = Some(difference);
            }
        }
        None => {
            report.status = CompilerStatus::BoxError;
            report.detail = Some(
                remote
                    .error
                    .clone()
                    .unwrap_or_else(|| "the box sent no fingerprint".to_string()),
            );
        }
    }
    report
}

/// The local compilers, found and fingerprinted once per name.
struct LocalToolchains {
    path: Option<OsString>,
    /// This sshcc binary, whose masquerade links are not compilers.
    ours: Option<PathBuf>,
    cache: FingerprintCache,
    known: HashMap<String, Result<Option<Fingerprint>, String>>,
}

impl LocalToolchains {
    fn for_user() -> Self {
        LocalToolchains {
            path: std::env::var_os("PATH"),
            ours: std::env::current_exe().and_then(std::fs::canonicalize).ok(),
            cache: FingerprintCache::for_user(),
            known: HashMap::new(),
        }
    }

    fn lookup(&mut self, name: &str) -> Result<Option<Fingerprint>, String> {
        if let Some(known) = self.known.get(name) {
            return known.clone();
        }
        let found = self
            .find(name)
            .map(|compiler| {
                toolchain::real_compiler(&compiler, self.path.as_deref())
                    .and_then(|real| self.cache.fingerprint(&real))
                    .map(|lookup| lookup.fingerprint)
                    .map_err(|err| format!("{err:#}"))
            })
            .transpose();
        self.known.insert(name.to_string(), found.clone());
        found
    }

    /// `name` on PATH as a local compile finds it, past directories where `name` is a
    /// link to sshcc itself (masquerade directories).
    fn find(&self, name: &str) -> Option<PathBuf> {
        let is_ours = |candidate: PathBuf| {
            self.ours.is_some() && std::fs::canonicalize(candidate).ok() == self.ours
        };
        let dirs =
            std::env::split_paths(self.path.as_ref()?).filter(|dir| !is_ours(dir.join(name)));
        let search = std::env::join_paths(dirs).ok()?;
        find_on_path(name, Some(&search))
    }
}

/// The report as text: one block per host, then a summary line.
fn render(report: &Report) -> String {
    let mut out = String::new();
    for host in &report.hosts {
        out.push_str(&format!(
            "{} ({}, {} slots)\n",
            host.entry, host.kind, host.slots
        ));
        let mut row = |label: &str, value: String| {
            out.push_str(&format!("  {label:<11}{value}\n"));
        };
        let failing = host
            .compilers
            .iter()
            .filter(|compiler| compiler.status.fails())
            .count();
        row(
            "status",
            match (&host.error, failing) {
                (Some(error), _) => format!("UNUSABLE: {error}"),
                (None, 0) => "ok".to_string(),
                (None, 1) => "PROBLEM: 1 compiler does not match".to_string(),
                (None, n) => format!("PROBLEM: {n} compilers do not match"),
            },
        );
        if let Some(note) = &host.note {
            row("note", note.clone());
        }
        if let (Some(address), Some(ms)) = (&host.address, host.connect_ms) {
            row("connected", format!("{address} in {ms} ms"));
        }
        if let Some(auth) = &host.auth_method {
            row("auth", auth.clone());
        }
        if let Some(host_key) = &host.host_key {
            row("host key", host_key.clone());
        }
        if let Some(remote) = &host.remote {
            row(
                "box",
                format!(
                    "sshcc {} (protocol {}) on {}; `{} --box-info` took {} ms",
                    remote.sshcc_version,
                    remote.protocol,
                    remote.hostname,
                    host.command.as_deref().unwrap_or_default(),
                    host.box_info_ms.unwrap_or_default()
                ),
            );
            if let Some(allowlist) = &remote.allowlist {
                row(
                    "allowlist",
                    format!(
                        "{allowlist} (toolchain_check {})",
                        host.toolchain_check.unwrap_or_default().as_str()
                    ),
                );
            }
            if let Some(limits) = &remote.limits {
                let lifetime = match limits.job_lifetime {
                    0 => "none".to_string(),
                    seconds => format!("{seconds} s"),
                };
                row(
                    "limits",
                    format!(
                        "{} compiles at once (box-wide), nice {}, job lifetime {lifetime}, max input {} MiB",
                        limits.jobs,
                        limits.nice,
                        limits.max_input >> 20
                    ),
                );
                row("sandbox", limits.sandbox.clone());
            }
            if let Some(counters) = &remote.counters {
                let totals = &counters.totals;
                row(
                    "served",
                    format!(
                        "{} jobs ({} ok, {} failed, {} refused; {} cancelled), {:.1} s compiling; {} running now",
                        totals.jobs,
                        totals.succeeded,
                        totals.failed,
                        totals.refused,
                        totals.cancelled,
                        totals.compile_ms as f64 / 1000.0,
                        counters.running
                    ),
                );
            }
        }
        let width = host
            .compilers
            .iter()
            .map(|compiler| compiler.entry.len())
            .max()
            .unwrap_or_default();
        for (index, compiler) in host.compilers.iter().enumerate() {
            row(
                if index == 0 { "compilers" } else { "" },
                format!("{:<width$}  {}", compiler.entry, describe(compiler)),
            );
        }
        out.push('\n');
    }
    let failing = report.hosts.iter().filter(|host| !host.ok).count();
    let checked = report.hosts.len();
    out.push_str(&match failing {
        0 => format!("{checked} host(s) checked: all ok\n"),
        n => format!("{checked} host(s) checked: {n} with problems\n"),
    });
    out
}

/// One compiler's status, with the digests that back it.
fn describe(compiler: &CompilerReport) -> String {
    let digest = |side: &Option<Toolchain>| {
        side.as_ref()
            .map_or_else(|| "?".to_string(), |toolchain| toolchain.digest.clone())
    };
    let status = compiler.status.text();
    match compiler.status {
        CompilerStatus::Match => format!("{status} ({})", digest(&compiler.local)),
        CompilerStatus::Mismatch => format!(
            "{status}: {} (here {}, box {})",
            compiler.detail.as_deref().unwrap_or_default(),
            digest(&compiler.local),
            digest(&compiler.remote)
        ),
        CompilerStatus::NotChecked => format!("{status} (toolchain_check off)"),
        CompilerStatus::MissingLocally => match &compiler.detail {
            Some(error) => format!("{status} (box: {error})"),
            None => format!("{status} (box {})", digest(&compiler.remote)),
        },
        CompilerStatus::BoxError | CompilerStatus::LocalError => format!(
            "{status}: {}",
            compiler.detail.as_deref().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcc(version: &str, cc1: &str) -> Fingerprint {
        Fingerprint {
            compiler: "/usr/bin/x86_64-linux-gnu-gcc-12".into(),
            target: "x86_64-linux-gnu".into(),
            version: version.into(),
            driver_sha256: "aa".repeat(32),
            programs: [("cc1".to_string(), cc1.repeat(32))].into(),
        }
    }

    fn entry(fingerprint: Option<Fingerprint>, error: Option<&str>) -> CompilerInfo {
        CompilerInfo {
            entry: "/usr/bin/gcc".into(),
            fingerprint,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn compilers_are_judged_by_the_hosts_policy() {
        let here = gcc("gcc 12.2.0", "bb");
        let local = |_: &str| Ok(Some(here.clone()));
        let same = entry(Some(here.clone()), None);
        assert_eq!(
            compare(&same, Policy::Strict, local).status,
            CompilerStatus::Match
        );
        let rebuilt = entry(Some(gcc("gcc 12.2.0", "cc")), None);
        let strict = compare(&rebuilt, Policy::Strict, local);
        assert_eq!(strict.status, CompilerStatus::Mismatch);
        assert!(strict.detail.unwrap().contains("cc1 differs"));
        assert_eq!(
            compare(&rebuilt, Policy::Version, local).status,
            CompilerStatus::Match
        );
        let other = entry(Some(gcc("gcc 13.1.0", "bb")), None);
        let report = compare(&other, Policy::Version, local);
        assert_eq!(report.status, CompilerStatus::Mismatch);
        assert!(
            describe(&report).contains("13.1.0"),
            "{}",
            describe(&report)
        );
        let never = |_: &str| -> Result<Option<Fingerprint>, String> {
            panic!("nothing is looked up when the check is off")
        };
        assert_eq!(
            compare(&other, Policy::Off, never).status,
            CompilerStatus::NotChecked
        );
    }

    #[test]
    fn errors_fail_only_for_compilers_that_exist_here() {
        let broken = entry(None, Some("compiler /usr/bin/gcc not found"));
        let missing = compare(&broken, Policy::Strict, |_| Ok(None));
        assert_eq!(missing.status, CompilerStatus::MissingLocally);
        assert!(!missing.status.fails());
        let here = gcc("gcc 12.2.0", "bb");
        let box_error = compare(&broken, Policy::Strict, |_| Ok(Some(here)));
        assert_eq!(box_error.status, CompilerStatus::BoxError);
        assert!(box_error.status.fails());
        let local_error = compare(&broken, Policy::Strict, |_| Err("cannot run gcc".into()));
        assert_eq!(local_error.status, CompilerStatus::LocalError);
        assert!(local_error.status.fails());
    }

    #[test]
    fn masquerade_links_to_sshcc_are_not_the_local_compiler() {
        let dir = tempfile::tempdir().unwrap();
        let (masquerade, real) = (dir.path().join("masquerade"), dir.path().join("bin"));
        std::fs::create_dir_all(&masquerade).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        let ours = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        std::os::unix::fs::symlink(&ours, masquerade.join("cc-x")).unwrap();
        std::fs::write(real.join("cc-x"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            real.join("cc-x"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let locals = LocalToolchains {
            path: Some(std::env::join_paths([&masquerade, &real]).unwrap()),
            ours: Some(ours),
            cache: FingerprintCache::at(dir.path().join("cache.json")),
            known: HashMap::new(),
        };
        assert_eq!(locals.find("cc-x"), Some(real.join("cc-x")));
        assert_eq!(locals.find("cc-y"), None);
    }
}
