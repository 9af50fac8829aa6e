//! From a compile the wrapper may distribute to a job on its way: the host list (or a
//! local compile when there is none), the compiler name for the box, options a box
//! would refuse caught here, and the request to the daemon with the toolchain check.

use super::broker::Broker;
use super::invocation::{self, Invocation};
use super::local::compile_locally;
use super::placement::place_and_run;
use super::preprocess::{self, Mode};
use crate::client_settings::{self, ClientSettings};
use crate::compiler::args::Distributable;
use crate::config::{Config, Secret};
use crate::daemon::ipc::Acquire;
use crate::daemon::stats_file;
use crate::dispatch::tracker::LocalReason;
use crate::exit_code::ExitCode;
use crate::hosts::{HostKind, HostList};
use crate::status::Stats;
use crate::toolchain::{self, Policy};

/// Finds a host, preprocesses for it, runs the job there and writes the results;
/// falls back to a local compile as distcc does.
pub(super) async fn distribute(
    invocation: &Invocation,
    scan: &Distributable,
    settings: &ClientSettings,
    config: &Config,
) -> u8 {
    let input = invocation.argv[scan.input].as_str();
    let host_list = match client_settings::load_hosts(config) {
        Ok(Some(list)) if !list.hosts.is_empty() => list,
        Ok(_) => {
            tracing::warn!(
                "no hosts configured (SSHCC_HOSTS, DISTCC_HOSTS or a hosts file); compiling {input} locally"
            );
            return count_alone(compile_locally(invocation), Some(LocalReason::Slot));
        }
        Err(err) if settings.fallback => {
            tracing::warn!("{err}; compiling {input} locally");
            return count_alone(compile_locally(invocation), Some(LocalReason::Fallback));
        }
        Err(err) => {
            eprintln!("sshcc: {err}");
            return count_alone(ExitCode::BadHostSpec as u8, None);
        }
    };
    // An option an sshcc box would refuse (side files that would be lost, paths outside
    // the job) is better compiled here at once than refused remotely.
    let remote_compiler = invocation::remote_compiler_name(
        &invocation.argv[0],
        invocation
            .path
            .as_ref()
            .or(std::env::var_os("PATH").as_ref()),
        settings.no_rewrite_cross,
    );
    let remote_argv = preprocess::remote_command(&invocation.argv, &remote_compiler, Mode::Classic);
    if let Err(refusal) =
        crate::server::argument_policy::prepare(&remote_argv, "input.i", "output.o")
    {
        tracing::debug!("{refusal}; compiling {input} locally");
        return count_alone(compile_locally(invocation), Some(LocalReason::Slot));
    }
    let mut broker = Broker::open(settings).await;
    let acquire = Acquire {
        hosts: client_settings::entries_for_dispatch(&host_list, config),
        ssh_config: settings.ssh_config.clone(),
        ssh_options: settings.ssh_options.clone(),
        unchecked_host_keys: settings.unchecked_host_keys.clone(),
        backoff_secs: settings.backoff_secs,
        io_timeout_secs: settings.io_timeout_secs,
        excluded: Vec::new(),
        compiler: remote_compiler.clone(),
        local_compiler: local_compiler_for_check(invocation, settings, &host_list),
        toolchain_policies: toolchain_policies(settings, config),
        file: input.to_string(),
        pid: std::process::id(),
        reapi_settings: reapi_settings(settings, config, &host_list),
        reapi_environment: reapi_environment(config),
    };
    let status = place_and_run(
        &mut broker,
        acquire,
        invocation,
        scan,
        settings,
        &remote_compiler,
    )
    .await;
    broker.finish(status).await;
    status
}

/// config.toml's REAPI endpoint settings for the daemon, `SSHCC_REAPI_CACHE` over
/// the `cache` of each endpoint the host list names.
fn reapi_settings(settings: &ClientSettings, config: &Config, hosts: &HostList) -> String {
    let Some(cache) = settings.reapi_cache else {
        return Config::reapi_to_toml(&config.reapi);
    };
    let mut reapi = config.reapi.clone();
    for spec in &hosts.hosts {
        if let HostKind::Reapi { authority, .. } = &spec.kind {
            reapi.entry(authority.clone()).or_default().cache = Some(cache);
        }
    }
    Config::reapi_to_toml(&reapi)
}

/// `NAME=VALUE` of each variable config.toml's REAPI endpoints take their token from
/// (`authorization_env`), as this build has it.
fn reapi_environment(config: &Config) -> Vec<Secret> {
    let names: std::collections::BTreeSet<&str> = (config.reapi.values())
        .filter_map(|endpoint| endpoint.authorization_env.as_deref())
        .collect();
    (names.into_iter())
        .filter_map(|name| Some(Secret(format!("{name}={}", std::env::var(name).ok()?))))
        .collect()
}

/// The real local compiler, for the dispatcher's toolchain check; empty (no check)
/// when the check is off everywhere (and no REAPI engine, whose actions name the
/// compiler by its fingerprint, is listed) or the compiler cannot be found.
fn local_compiler_for_check(
    invocation: &Invocation,
    settings: &ClientSettings,
    hosts: &HostList,
) -> String {
    let reapi_listed = (hosts.hosts.iter()).any(|spec| matches!(spec.kind, HostKind::Reapi { .. }));
    if settings.toolchain_check == Some(Policy::Off) && !reapi_listed {
        return String::new();
    }
    let path = invocation.path.clone().or_else(|| std::env::var_os("PATH"));
    invocation::find_on_path(&invocation.argv[0], path.as_ref())
        .and_then(|found| toolchain::real_compiler(&found, path.as_deref()).ok())
        .map(|real| real.display().to_string())
        .unwrap_or_default()
}

/// `host=policy` entries: config.toml's per-host settings, then the global one
/// (`SSHCC_TOOLCHAIN_CHECK` over config.toml's `toolchain_check`) as `*`.
fn toolchain_policies(settings: &ClientSettings, config: &Config) -> Vec<String> {
    let mut policies: Vec<String> = config
        .host
        .iter()
        .filter_map(|(host, settings)| {
            Some(format!("{host}={}", settings.toolchain_check?.as_str()))
        })
        .collect();
    if let Some(global) = settings.toolchain_check {
        policies.push(format!("*={}", global.as_str()));
    }
    policies
}

/// Counts a job that ran without the dispatcher (no hosts, or an option only a local
/// compile handles) straight into the stats file; `reason` is why it compiled here,
/// `None` if it did not compile at all.
fn count_alone(status: u8, reason: Option<LocalReason>) -> u8 {
    let delta = Stats {
        local_jobs: u64::from(reason == Some(LocalReason::Slot)),
        fallback_jobs: u64::from(reason == Some(LocalReason::Fallback)),
        errors: u64::from(status != 0),
        ..Stats::default()
    };
    if let Err(err) = stats_file::merge(&delta) {
        tracing::debug!("cannot count the job: {err:#}");
    }
    status
}
