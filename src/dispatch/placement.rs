//! Placing a job ([`Dispatcher::acquire`]): the least-loaded usable host of the route,
//! connected on first use, passed over when unreachable (then backed off) or when its
//! compiler is not the local one; and what the user is told about it, once.

use std::sync::Arc;
use std::time::Duration;

use super::dispatcher::Dispatcher;
use super::host::HostState;
use super::link::{Flavour, HostLink, RemoteIdentity};
use super::route::{Route, ToolchainCheck};
use super::slots::{Assignment, LocalSlot, RemoteSlot};
use crate::hosts::HostKind;
use crate::ssh::config;
use crate::toolchain::{Fingerprint, Policy};

/// The remote command when the host entry names none.
pub const DEFAULT_REMOTE_COMMAND: &str = "sshcc";

/// Whether a box may take a job for a compiler, and what to tell the user.
enum ToolchainVerdict {
    /// Use it; with the local compiler's fingerprint when it was looked up.
    Use(Option<Fingerprint>),
    Avoid(String),
}

impl Dispatcher {
    /// Waits for a slot on the least-loaded usable host of `route`, connecting to it if
    /// needed. A host that cannot be reached is backed off and the next one tried; a
    /// host whose compiler differs from the local one is passed over for this compiler.
    /// Also returns what the user should be told (each notice once per daemon life).
    pub async fn acquire(self: &Arc<Self>, route: &Route) -> (Assignment, Vec<String>) {
        let mut notices = Vec::new();
        let assignment = self.place(route, &mut notices).await;
        (assignment, notices)
    }

    async fn place(self: &Arc<Self>, route: &Route, notices: &mut Vec<String>) -> Assignment {
        let mut unreachable: Vec<String> = Vec::new();
        // Each unreachable host with the error, for the message when no host is left.
        let mut unreachable_why: Vec<String> = Vec::new();
        let mut mismatched: Vec<String> = Vec::new();
        loop {
            let candidates: Vec<Arc<HostState>> = route
                .hosts
                .iter()
                .filter(|spec| {
                    !spec.down
                        && !route.excluded.contains(&spec.text)
                        && !unreachable.contains(&spec.text)
                        && !mismatched.contains(&spec.text)
                })
                .map(|spec| self.state(spec, &route.ssh))
                .filter(|host| !self.backed_off(host, route))
                .collect();
            if candidates.is_empty() {
                let mut why = Vec::new();
                if !unreachable_why.is_empty() {
                    why.push(format!("cannot reach {}", unreachable_why.join("; ")));
                }
                if !mismatched.is_empty() {
                    why.push(format!("the compiler differs on {}", mismatched.join(", ")));
                }
                why.extend(self.backed_off_hosts(route, &unreachable));
                return Assignment::NoHosts(if why.is_empty() {
                    "no usable hosts (none listed, or all failed this job)".to_string()
                } else {
                    why.join("; ")
                });
            }
            // Register for the wake-up before looking, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let Some(host) = self.take_least_loaded(&candidates) else {
                released.await;
                continue;
            };
            if matches!(host.spec.kind, HostKind::Local) {
                return Assignment::Local(LocalSlot {
                    host,
                    dispatcher: self.clone(),
                });
            }
            match self.link(&host, route).await {
                Ok(link) => {
                    let toolchain = match &route.toolchain {
                        Some(check) => {
                            match self.check_toolchain(&host, &link, check, notices).await {
                                ToolchainVerdict::Use(local) => local,
                                ToolchainVerdict::Avoid(why) => {
                                    self.release(&host);
                                    tracing::debug!("{}: {why}", host.spec.text);
                                    mismatched.push(host.spec.text.clone());
                                    continue;
                                }
                            }
                        }
                        None => None,
                    };
                    return Assignment::Remote(RemoteSlot {
                        host,
                        link,
                        dispatcher: self.clone(),
                        toolchain,
                    });
                }
                Err(err) => {
                    tracing::warn!("{}: {err:#}", host.spec.text);
                    let settings = route.reapi_settings(&host.spec);
                    self.back_off(&host, settings, route.backoff, &format!("{err:#}"));
                    self.release(&host);
                    unreachable.push(host.spec.text.clone());
                    unreachable_why.push(format!("{}: {err:#}", host.spec.text));
                }
            }
        }
    }

    /// Compares the box's toolchain for the job's compiler with the local one (a REAPI
    /// engine's workers are matched on the fingerprint the action carries instead).
    async fn check_toolchain(
        &self,
        host: &HostState,
        link: &HostLink,
        check: &ToolchainCheck,
        notices: &mut Vec<String>,
    ) -> ToolchainVerdict {
        let policy = check.policy_for(&host.spec);
        // A REAPI action names the local compiler by its fingerprint whatever the policy.
        let reapi = link.flavour() == Flavour::Reapi;
        if policy == Policy::Off && !reapi {
            return ToolchainVerdict::Use(None);
        }
        let name = &host.spec.text;
        let compiler = &check.compiler;
        let mut tell = |key: String, notice: String| {
            if self.told.lock().expect("told lock").insert(key) {
                tracing::info!("{notice}");
                notices.push(notice);
            }
        };
        let local = match self.local_fingerprint(&check.local).await {
            Ok(local) => local,
            Err(err) => {
                tell(
                    format!("local\0{}", check.local.display()),
                    format!(
                        "cannot fingerprint the local compiler ({err:#}); its jobs go to boxes unchecked"
                    ),
                );
                return ToolchainVerdict::Use(None);
            }
        };
        if policy == Policy::Off {
            return ToolchainVerdict::Use(Some(local));
        }
        let remote = match link.identity(compiler).await {
            Ok(RemoteIdentity::Known(remote)) => remote,
            Ok(RemoteIdentity::Unverifiable(why)) => {
                // Not worth a warning on every build of a distcc user who switched only
                // the client; `sshcc check` shows it.
                tracing::debug!("{name}: cannot check that its compilers match: {why}");
                return ToolchainVerdict::Use(Some(local));
            }
            Ok(RemoteIdentity::Missing(why)) => {
                let notice = format!("{name}: not sending {compiler} jobs there: {why}");
                tell(format!("missing\0{}\0{compiler}", host.key), notice.clone());
                return ToolchainVerdict::Avoid(notice);
            }
            Err(err) => return ToolchainVerdict::Avoid(err.to_string()),
        };
        match local.difference(&remote, policy == Policy::Version) {
            None => ToolchainVerdict::Use(Some(local)),
            Some(difference) => {
                let notice = format!(
                    "{name}: not sending {compiler} jobs there: its compiler is not the local one: \
                     {difference} (here {}, there {}){}",
                    local.compiler.display(),
                    remote.compiler.display(),
                    if policy == Policy::Strict {
                        "; toolchain_check = \"version\" in config.toml accepts the same version string"
                    } else {
                        ""
                    }
                );
                tell(
                    format!("mismatch\0{}\0{compiler}\0{}", host.key, remote.digest()),
                    notice.clone(),
                );
                ToolchainVerdict::Avoid(notice)
            }
        }
    }

    /// The local compiler's fingerprint, from the caches when its files have not
    /// changed since they were hashed.
    async fn local_fingerprint(&self, compiler: &std::path::Path) -> anyhow::Result<Fingerprint> {
        let (cache, compiler) = (self.local_toolchains.clone(), compiler.to_path_buf());
        tokio::task::spawn_blocking(move || cache.fingerprint(&compiler))
            .await?
            .map(|lookup| lookup.fingerprint)
    }

    /// Why each host of `route` that is backed off (and not in `skip`) cannot be used.
    fn backed_off_hosts(&self, route: &Route, skip: &[String]) -> Vec<String> {
        route
            .hosts
            .iter()
            .filter(|spec| !skip.contains(&spec.text))
            .filter_map(|spec| {
                let host = self.state(spec, &route.ssh);
                let left = self.backoff_left(&host, route)?;
                Some(format!(
                    "{} is avoided for another {}s (DISTCC_BACKOFF_PERIOD) after: {}",
                    spec.text,
                    left.as_secs_f64().ceil(),
                    host.last_failure.lock().expect("failure lock")
                ))
            })
            .collect()
    }

    /// The live connection to `host`, opened on first use and replaced when it died
    /// (or, for a REAPI engine, when the route's settings for it changed).
    async fn link(&self, host: &HostState, route: &Route) -> anyhow::Result<Arc<HostLink>> {
        let reapi_config = route.reapi_settings(&host.spec);
        let mut link = host.link.lock().await;
        if let Some(existing) = link.as_ref()
            && !existing.is_closed()
            && existing.reapi_config() == reapi_config.as_ref()
        {
            return Ok(existing.clone());
        }
        // Jobs that queued behind a connection attempt that just failed must not each
        // try again, one connect timeout after another.
        if self.backed_off(host, route) {
            anyhow::bail!(
                "{} (moments ago; backing off)",
                host.last_failure.lock().expect("failure lock")
            );
        }
        let opened = match &host.spec.kind {
            HostKind::Ssh {
                user,
                host: name,
                command,
            } => {
                let target = config::resolve_with(name, user.as_deref(), None, &host.ssh)?;
                let command = command.as_deref().unwrap_or(DEFAULT_REMOTE_COMMAND);
                Arc::new(HostLink::open(&target, &host.ssh, command, host.meter.clone()).await?)
            }
            HostKind::Tcp { host: name, port } => {
                Arc::new(HostLink::tcp(name, *port, host.meter.clone()))
            }
            HostKind::Reapi { .. } => {
                let url = host.spec.kind.reapi_url().expect("a REAPI entry");
                let config = reapi_config.unwrap_or_default();
                Arc::new(HostLink::reapi(&url, &config, host.meter.clone()).await?)
            }
            HostKind::Local => anyhow::bail!("{} runs locally", host.spec.text),
        };
        *link = Some(opened.clone());
        *host.current.lock().expect("current lock") = Some(opened.clone());
        // The channel-open time measured while connecting includes sshd's set-up of a
        // new login; one request over the open link is the round trip jobs will see.
        opened.refresh_rtt(Duration::ZERO);
        Ok(opened)
    }
}
