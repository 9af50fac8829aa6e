//! `sshcc status`'s view of the dispatcher: a row per host entry (slots, counts,
//! backoff, connection, round-trip time, traffic, the box's store), and booking the
//! bytes each host moved into the tracker's counts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::dispatcher::Dispatcher;
use super::host::HostState;
use crate::hosts::HostKind;
use crate::status::{self, HostStatus, JobStatus};

/// How old a round-trip time may be before `sshcc status` has it measured again.
const RTT_MAX_AGE: Duration = Duration::from_secs(5);

impl Dispatcher {
    /// Every host entry used so far (remote hosts in order of first use, then one row
    /// for this machine), and the jobs in flight. Has round-trip times older than a few
    /// seconds measured again in the background (so it must be called within a tokio
    /// runtime), so a monitor sees fresh ones.
    pub fn status(&self) -> (Vec<HostStatus>, Vec<JobStatus>) {
        let mut hosts = self.host_states();
        hosts.sort_by_key(|host| host.seq);
        let (local, remote): (Vec<_>, Vec<_>) = hosts
            .into_iter()
            .partition(|host| matches!(host.spec.kind, HostKind::Local));
        let mut rows: Vec<HostStatus> = remote.iter().map(|host| self.host_status(host)).collect();
        let local_name = local
            .first()
            .map_or_else(|| "localhost".to_string(), |host| host.spec.text.clone());
        rows.push(HostStatus {
            host: local_name.clone(),
            kind: status::HostKind::Local,
            slots_total: local.iter().map(|host| host.spec.slots).sum(),
            slots_busy: self.tracker.local_busy(),
            jobs_done: self.tracker.local_done(),
            connected: true,
            ..HostStatus::default()
        });
        (rows, self.tracker.jobs(&local_name))
    }

    fn host_status(&self, host: &HostState) -> HostStatus {
        let link = host.current.lock().expect("current lock").clone();
        if let Some(link) = &link {
            link.refresh_rtt(RTT_MAX_AGE);
        }
        let traffic = host.meter.traffic.counts();
        let backoff = (host.backoff.lock().expect("backoff lock").as_ref())
            .and_then(|failed| failed.until.checked_duration_since(Instant::now()));
        let last_error = host.last_failure.lock().expect("failure lock").clone();
        let store = &host.known_blobs.counts;
        HostStatus {
            host: host.spec.text.clone(),
            kind: match host.spec.kind {
                HostKind::Tcp { .. } => status::HostKind::Tcp,
                HostKind::Ssh { .. } => status::HostKind::Ssh,
                HostKind::Local => status::HostKind::Local,
                HostKind::Reapi { .. } => status::HostKind::Reapi,
            },
            slots_total: host.spec.slots,
            slots_busy: *host.busy.lock().expect("busy lock"),
            jobs_done: host.done.load(Ordering::Relaxed),
            jobs_failed: host.failed.load(Ordering::Relaxed),
            backoff_remaining_ms: backoff.map(|left| left.as_millis().max(1) as u64),
            last_error: (!last_error.is_empty()).then_some(last_error),
            connected: link.as_ref().is_some_and(|link| link.is_connected()),
            rtt_ms: host.meter.rtt().map(|(rtt, _)| rtt.as_secs_f64() * 1000.0),
            bytes_sent: traffic.wire_sent,
            bytes_received: traffic.wire_received,
            compression_ratio: traffic.compression_ratio(),
            preprocessing: link.as_ref().map(|link| {
                match link.no_remote_preprocessing() {
                    None => "remote",
                    Some(_) => "local",
                }
                .to_string()
            }),
            preprocessing_note: link
                .as_ref()
                .and_then(|link| link.no_remote_preprocessing()),
            remote_jobs: store.jobs.load(Ordering::Relaxed),
            blobs_looked_up: store.looked_up.load(Ordering::Relaxed),
            blobs_missing: store.missing.load(Ordering::Relaxed),
            blobs_sent: store.sent.load(Ordering::Relaxed),
            blob_bytes_sent: store.bytes_sent.load(Ordering::Relaxed),
            cache_hits: host.meter.reapi_cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Moves the bytes every host sent and received, and REAPI cache hits, since the
    /// last call into the tracker's counts (before they are written to the stats file).
    pub fn book_traffic(&self) {
        for host in self.host_states() {
            let (sent, received) = host.meter.traffic.take_unbooked();
            self.tracker.bytes(&host.spec.text, sent, received);
            (self.tracker).cache_hits(&host.spec.text, host.meter.take_unbooked_cache_hits());
        }
    }
}
