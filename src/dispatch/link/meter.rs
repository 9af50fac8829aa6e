//! [`LinkMeter`]: what is measured about a host's connections, kept across
//! reconnections (the bytes and the last round-trip time).

use std::sync::atomic::AtomicBool;
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
}

impl LinkMeter {
    pub fn record_rtt(&self, rtt: Duration) {
        *self.rtt.lock().expect("rtt lock") = Some((rtt, Instant::now()));
    }

    /// The last round-trip time and when it was measured.
    pub fn rtt(&self) -> Option<(Duration, Instant)> {
        *self.rtt.lock().expect("rtt lock")
    }
}
