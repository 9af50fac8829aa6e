//! Eviction: the bound kept, least recently used first, and a wrong estimate corrected
//! by the next scan.

use super::*;
use crate::server::store::layout::USAGE_FILE;
use crate::server::store::usage;

#[test]
fn eviction_keeps_the_bound_and_takes_the_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, 64 * 1024).unwrap();
    // Sixteen blobs of one block each fill the bound exactly.
    let blobs: Vec<_> = (0..17).map(|seed| blob(seed, 4000)).collect();
    for (index, (digest, content)) in blobs[..16].iter().enumerate() {
        store.insert(digest, content).unwrap();
        set_atime(&store, digest, 1000 - index as u64);
    }
    assert_eq!(real_usage(&root), 64 * 1024);
    // Using the two oldest makes them the newest.
    assert!(store.find_missing(&[blobs[0].0, blobs[1].0]).is_empty());

    // One more: over the bound, so down to 90% of it, oldest first.
    store.insert(&blobs[16].0, &blobs[16].1).unwrap();
    let all: Vec<Digest> = blobs.iter().map(|(digest, _)| *digest).collect();
    assert_eq!(
        store.find_missing(&all),
        vec![blobs[2].0, blobs[3].0, blobs[4].0]
    );
    assert_eq!(real_usage(&root), 14 * 4096);
    assert_eq!(estimate(&store), 14 * 4096);
    let stats = store.stats();
    assert_eq!((stats.evicted, stats.evicted_bytes), (3, 3 * 4096));

    // Under a steady stream of inserts of all sizes the bound always holds.
    for seed in 100..400 {
        let (digest, content) = blob(seed, (seed as usize * 37) % 8192 + 1);
        store.insert(&digest, &content).unwrap();
        assert!(real_usage(&root) <= 64 * 1024, "over the bound at {seed}");
    }
    assert_consistent(&root);

    // A smaller bound applies from the next open.
    let smaller = Store::open(&root, 32 * 1024).unwrap();
    assert!(real_usage(&root) <= 32 * 1024);
    assert_eq!(smaller.scan().unwrap().bytes, real_usage(&root));
}

#[test]
fn a_blob_confirmed_to_a_client_outlasts_those_used_earlier_in_the_same_minute() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 64 * 1024).unwrap();
    let blobs: Vec<_> = (0..17).map(|seed| blob(seed, 4000)).collect();
    for (index, (digest, content)) in blobs[..16].iter().enumerate() {
        store.insert(digest, content).unwrap();
        set_atime(&store, digest, 30 - index as u64);
    }
    // A client's FIND_MISSING marks the oldest used although they were used within
    // the minute; a job's own check does not write the atime again.
    assert!(store.find_missing(&[blobs[0].0]).is_empty());
    assert!(store.missing_for_job(&[blobs[1].0]).is_empty());
    store.insert(&blobs[16].0, &blobs[16].1).unwrap();
    let all: Vec<Digest> = blobs.iter().map(|(digest, _)| *digest).collect();
    assert_eq!(
        store.find_missing(&all),
        vec![blobs[1].0, blobs[2].0, blobs[3].0]
    );
}

#[test]
fn a_wrong_estimate_is_corrected_by_the_next_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    for seed in 0..5 {
        let (digest, content) = blob(seed, 100);
        store.insert(&digest, &content).unwrap();
    }
    // As if a process had died after publishing blobs it never counted.
    store
        .usage
        .update(|_| usage::Hint {
            bytes: 0,
            scanned_at: 1,
        })
        .unwrap();
    // The figure is a day old, so the next process to open the store counts.
    Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(estimate(&store), 5 * 4096);
    // As if blobs had been removed by hand: too high, so the next insert scans.
    store.usage.add(10 << 20).unwrap();
    let (digest, content) = blob(9, 100);
    store.insert(&digest, &content).unwrap();
    assert_eq!(estimate(&store), 6 * 4096);
    assert_eq!(store.stats().evicted, 0, "nothing needed evicting");
    // Garbage in the usage file reads as no estimate: open scans.
    fs::write(dir.path().join(USAGE_FILE), b"garbage").unwrap();
    Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(estimate(&store), 6 * 4096);
}
