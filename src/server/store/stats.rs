//! What a store counts: this process's [`StoreStats`], kept as relaxed atomics so that
//! every job of a `sshcc --mux` process counts without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::evict::ScanReport;

/// This process's counts since the store was opened, and the shared size estimate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub max_bytes: u64,
    /// The shared estimate of the whole store (every process's blobs).
    pub estimated_bytes: u64,
    /// Digests asked about that were present / absent.
    pub found: u64,
    pub missing: u64,
    /// Blobs written, and their bytes.
    pub stored: u64,
    pub stored_bytes: u64,
    /// Inserts refused because the content did not match the digest.
    pub refused: u64,
    /// Blobs found corrupt on disk and removed.
    pub corrupt: u64,
    /// Blobs evicted by this process, and their cost.
    pub evicted: u64,
    pub evicted_bytes: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) found: AtomicU64,
    pub(super) missing: AtomicU64,
    pub(super) stored: AtomicU64,
    pub(super) stored_bytes: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) evicted: AtomicU64,
    pub(super) evicted_bytes: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Counts what a scan evicted and found corrupt.
    pub(super) fn count_scan(&self, report: Option<ScanReport>) {
        if let Some(report) = report {
            Counters::bump(&self.evicted, report.evicted);
            Counters::bump(&self.evicted_bytes, report.evicted_bytes);
            Counters::bump(&self.corrupt, report.removed_corrupt);
        }
    }

    /// The counts, with the store's bound and the shared estimate of its size.
    pub(super) fn snapshot(&self, max_bytes: u64, estimated_bytes: u64) -> StoreStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreStats {
            max_bytes,
            estimated_bytes,
            found: count(&self.found),
            missing: count(&self.missing),
            stored: count(&self.stored),
            stored_bytes: count(&self.stored_bytes),
            refused: count(&self.refused),
            corrupt: count(&self.corrupt),
            evicted: count(&self.evicted),
            evicted_bytes: count(&self.evicted_bytes),
        }
    }
}
