//! [`LinkMeter`]: what is measured about a host's connections, kept across
//! reconnections (the bytes, the last round-trip time, REAPI cache hits).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mux::client::Traffic;

/// What is measured about a host's connections, kept across reconnections: the bytes
/// ([`Traffic`]) and the last round-trip time.
#[derive(Debug, Default)]
pub struct LinkMeter {
    pub traffic: Arc<Traffic>,
    /// The last round-trip time measured, and when.
    rtt: Mutex<Option<(Duration, Instant)>>,
    /// Set while a round-trip probe is under way.
    pub(super) probing: AtomicBool,
    /// Jobs a REAPI engine answered from its action cache.
    pub reapi_cache_hits: AtomicU64,
    /// How many of those the stats file counts already.
    reapi_cache_hits_booked: AtomicU64,
}

impl LinkMeter {
    pub fn record_rtt(&self, rtt: Duration) {
        *self.rtt.lock().expect("rtt lock") = Some((rtt, Instant::now()));
    }

    /// Cache hits since the last call, for the stats file.
    pub fn take_unbooked_cache_hits(&self) -> u64 {
        let hits = self.reapi_cache_hits.load(Ordering::Relaxed);
        hits - self.reapi_cache_hits_booked.swap(hits, Ordering::Relaxed)
    }

    /// The last round-trip time and when it was measured.
    pub fn rtt(&self) -> Option<(Duration, Instant)> {
        *self.rtt.lock().expect("rtt lock")
    }
}
