//! The [`Dispatcher`]: every host any wrapper has named, with the slots in use on each
//! (taken least-loaded first, released with a wake-up for waiting jobs) and the backoff
//! of hosts that failed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::host::Backoff;
use super::host::HostState;
use super::remote::KnownBlobs;
use super::route::Route;
use super::tracker::Tracker;
use crate::config::ReapiConfig;
use crate::hosts::HostSpec;
use crate::inputs::InputCache;
use crate::ssh::config::ClientOptions;
use crate::toolchain::FingerprintCache;

/// Slots, backoff and connections for every host any wrapper has named.
#[derive(Debug, Default)]
pub struct Dispatcher {
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
    /// Woken whenever a slot is released.
    pub(super) released: Notify,
    /// Local compilers' fingerprints, kept in memory for the daemon's life (each lookup
    /// still checks the files' size and mtime).
    pub(super) local_toolchains: Arc<FingerprintCache>,
    /// Notices already given, so each is given once per daemon life.
    pub(super) told: Mutex<HashSet<String>>,
    /// Jobs in flight and counts for `sshcc status` and `sshcc stats`.
    pub(super) tracker: Tracker,
    next_seq: AtomicU64,
    /// What remote-preprocessed jobs read, found and hashed for the daemon's life.
    inputs: Inputs,
}

/// The input discovery's caches, shared by every job.
#[derive(Default)]
struct Inputs(InputCache);

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputCache")
    }
}

impl Dispatcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The daemon's input discovery for remote-preprocessed jobs.
    pub fn inputs(&self) -> &InputCache {
        &self.inputs.0
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Every host used so far, without holding the lock.
    pub(super) fn host_states(&self) -> Vec<Arc<HostState>> {
        self.hosts
            .lock()
            .expect("hosts lock")
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn state(&self, spec: &HostSpec, ssh: &ClientOptions) -> Arc<HostState> {
        // Different ssh settings may reach a different machine under the same name.
        let key = format!("{}\u{0}{ssh:?}", spec.text);
        self.hosts
            .lock()
            .expect("hosts lock")
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(HostState {
                    key,
                    seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                    spec: spec.clone(),
                    ssh: ssh.clone(),
                    busy: Mutex::new(0),
                    done: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    meter: Arc::default(),
                    current: Mutex::new(None),
                    backoff: Mutex::new(None),
                    last_failure: Mutex::new(String::new()),
                    link: tokio::sync::Mutex::new(None),
                    known_blobs: KnownBlobs::default(),
                })
            })
            .clone()
    }

    /// Whether `host` is avoided for `route`: it failed less than a backoff period ago
    /// with the settings `route` gives it. A backoff that ran out is forgotten.
    pub(super) fn backed_off(&self, host: &HostState, route: &Route) -> bool {
        self.backoff_left(host, route).is_some()
    }

    /// How much longer `host` is avoided for `route`, if it is.
    pub(super) fn backoff_left(&self, host: &HostState, route: &Route) -> Option<Duration> {
        let mut backoff = host.backoff.lock().expect("backoff lock");
        let failed = backoff.as_ref()?;
        if Instant::now() >= failed.until {
            *backoff = None;
            return None;
        }
        failed.left_for(route.reapi_settings(&host.spec).as_ref())
    }

    /// Takes a slot on the host with the lowest busy/limit ratio (earlier entries win
    /// ties, as in distcc), or `None` when all are full.
    pub(super) fn take_least_loaded(
        &self,
        candidates: &[Arc<HostState>],
    ) -> Option<Arc<HostState>> {
        let _guard = self.hosts.lock().expect("hosts lock");
        let mut best: Option<(&Arc<HostState>, f64)> = None;
        for host in candidates {
            let busy = *host.busy.lock().expect("busy lock");
            if busy >= host.spec.slots {
                continue;
            }
            let load = f64::from(busy) / f64::from(host.spec.slots.max(1));
            if best.is_none_or(|(_, best_load)| load < best_load) {
                best = Some((host, load));
            }
        }
        let (host, _) = best?;
        *host.busy.lock().expect("busy lock") += 1;
        Some(host.clone())
    }

    pub(super) fn release(&self, host: &HostState) {
        {
            let _guard = self.hosts.lock().expect("hosts lock");
            let mut busy = host.busy.lock().expect("busy lock");
            *busy = busy.saturating_sub(1);
        }
        self.released.notify_waiters();
    }

    /// Records that `host` failed (`why`) with `reapi_settings` (an engine's; `None` for
    /// other hosts), so it is avoided for `period` while those are the settings.
    pub(super) fn back_off(
        &self,
        host: &HostState,
        reapi_settings: Option<ReapiConfig>,
        period: Duration,
        why: &str,
    ) {
        host.failed.fetch_add(1, Ordering::Relaxed);
        self.tracker.host_failed(&host.spec.text);
        if !period.is_zero() {
            *host.backoff.lock().expect("backoff lock") = Some(Backoff {
                until: Instant::now() + period,
                reapi_settings,
            });
        }
        *host.last_failure.lock().expect("failure lock") = why.to_string();
        // Drop a connection that failed so the next job after the backoff reconnects.
        if let Ok(mut link) = host.link.try_lock()
            && link.as_ref().is_some_and(|link| link.is_closed())
        {
            *link = None;
            *host.current.lock().expect("current lock") = None;
        }
        tracing::debug!(host = %host.key, "backing off for {period:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn route(hosts: &str, token: &str) -> Route {
        let mut settings = ReapiConfig {
            authorization_env: Some("RE_TOKEN".into()),
            ..ReapiConfig::default()
        };
        settings.read_environment(|_| Some(token.to_string()));
        Route {
            hosts: crate::hosts::parse(hosts).unwrap().hosts,
            ssh: ClientOptions::default(),
            backoff: Duration::from_secs(60),
            excluded: Vec::new(),
            toolchain: None,
            reapi: [("re:8980".to_string(), settings)].into(),
        }
    }

    #[test]
    fn a_backoff_holds_for_the_settings_the_host_failed_with() {
        let dispatcher = Dispatcher::new();
        let old = route("reapi://re:8980/4 @box/2", "old");
        let engine = dispatcher.state(&old.hosts[0], &old.ssh);
        let ssh_box = dispatcher.state(&old.hosts[1], &old.ssh);
        for host in [&engine, &ssh_box] {
            let settings = old.reapi_settings(&host.spec);
            dispatcher.back_off(host, settings, old.backoff, "refused");
            assert!(dispatcher.backed_off(host, &old));
        }
        // Another token for the engine: tried at once; the box's backoff stands.
        let new = route("reapi://re:8980/4 @box/2", "new");
        assert_eq!(
            new.reapi["re:8980"].authorization_env_value,
            Some(Secret("new".into()))
        );
        assert!(!dispatcher.backed_off(&engine, &new));
        assert!(dispatcher.backed_off(&ssh_box, &new));
        // Builds with the settings that failed still avoid it.
        assert!(dispatcher.backed_off(&engine, &old));
    }
}
