//! Handing blobs to jobs: corruption detected, removed and reported missing;
//! materialised links read-only and surviving eviction.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::server::store::{DEFAULT_MAX_BYTES, Inserted, StoreError};

#[test]
fn a_corrupt_blob_is_detected_removed_and_reported_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let jobs = dir.path().join("job");
    fs::create_dir(&jobs).unwrap();
    let store = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
    let (digest, content) = blob(3, 20_000);
    store.insert(&digest, &content).unwrap();
    store.materialize(&digest, &jobs.join("first.h")).unwrap();
    fs::remove_file(jobs.join("first.h")).unwrap();

    // Bytes flipped in place: the mtime changes, so even this process, which verified
    // the blob already, hashes it again.
    let path = store.blob_path(&digest);
    let flip = |path: &Path| {
        fs::set_permissions(path, Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(path).unwrap();
        bytes[100] ^= 0x20;
        fs::write(path, bytes).unwrap();
    };
    flip(&path);
    let dest = jobs.join("second.h");
    assert!(matches!(
        store.materialize(&digest, &dest),
        Err(StoreError::Missing(d)) if d == digest
    ));
    assert!(!dest.exists(), "a corrupt blob was left in the job");
    assert!(!path.exists(), "the corrupt blob stayed in the store");
    assert_eq!(store.find_missing(&[digest]), vec![digest]);
    assert_eq!(store.stats().corrupt, 1);
    assert_eq!(estimate(&store), 0);

    // The client sends it again and all is well.
    assert_eq!(store.insert(&digest, &content).unwrap(), Inserted::Stored);
    store.materialize(&digest, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), content);

    // Bit rot that keeps the mtime: a process that has not verified the blob yet (every
    // new `--mux`) catches it, whichever way it reads.
    for read in ["get", "open_verified", "materialize", "copy"] {
        let (digest, content) = blob(read.len() as u64 * 100, 5000);
        store.insert(&digest, &content).unwrap();
        let path = store.blob_path(&digest);
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        flip(&path);
        File::open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
        let fresh = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
        let dest = jobs.join(read);
        let result = match read {
            "get" => fresh.get(&digest).map(drop),
            "open_verified" => fresh.open_verified(&digest).map(drop),
            "materialize" => fresh.materialize(&digest, &dest),
            _ => fresh.copy_out(&digest, &path, &dest),
        };
        assert!(
            matches!(result, Err(StoreError::Missing(_))),
            "{read}: {result:?}"
        );
        assert!(!path.exists() && !dest.exists(), "{read}");
    }

    // A blob of the wrong size is caught by a mere stat.
    let (digest, content) = blob(4, 5000);
    store.insert(&digest, &content).unwrap();
    let path = store.blob_path(&digest);
    fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, &content[..4000]).unwrap();
    assert_eq!(store.find_missing(&[digest]), vec![digest]);
    assert!(!path.exists());
    assert_consistent(&root);
}

#[test]
fn materialize_links_read_only_into_the_job_and_survives_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let job = dir.path().join("job");
    fs::create_dir_all(job.join("include")).unwrap();
    let store = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
    let (digest, content) = blob(5, 7000);
    store.insert(&digest, &content).unwrap();

    let dest = job.join("include/config.h");
    store.materialize(&digest, &dest).unwrap();
    let linked = fs::metadata(&dest).unwrap();
    let stored = fs::metadata(store.blob_path(&digest)).unwrap();
    assert_eq!((linked.dev(), linked.ino()), (stored.dev(), stored.ino()));
    assert_eq!(linked.permissions().mode() & 0o777, 0o444);
    assert_eq!(fs::read(&dest).unwrap(), content);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            OpenOptions::new().write(true).open(&dest).is_err(),
            "a job could write to a blob"
        );
    }

    // Taken from the store after the link: the job keeps its input.
    fs::remove_file(store.blob_path(&digest)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), content);
    assert!(matches!(
        store.materialize(&digest, &job.join("again.h")),
        Err(StoreError::Missing(_))
    ));
    assert!(!job.join("again.h").exists());
    store.insert(&digest, &content).unwrap();

    // An existing destination or a missing directory is the caller's error, not a
    // missing blob.
    assert!(matches!(
        store.materialize(&digest, &dest),
        Err(StoreError::Io { .. })
    ));
    assert!(matches!(
        store.materialize(&digest, &job.join("no/such/dir.h")),
        Err(StoreError::Io { .. })
    ));

    let empty = job.join("empty.h");
    store.materialize(&Digest::EMPTY, &empty).unwrap();
    assert_eq!(fs::read(&empty).unwrap(), b"");
    assert_eq!(
        fs::metadata(&empty).unwrap().permissions().mode() & 0o777,
        0o444
    );

    // Where no link can be made (another filesystem): a verified read-only copy.
    let copy = job.join("copy.h");
    store
        .copy_out(&digest, &store.blob_path(&digest), &copy)
        .unwrap();
    let copied = fs::metadata(&copy).unwrap();
    assert_ne!(
        copied.ino(),
        fs::metadata(store.blob_path(&digest)).unwrap().ino()
    );
    assert_eq!(copied.permissions().mode() & 0o777, 0o444);
    assert_eq!(fs::read(&copy).unwrap(), content);
    assert_consistent(&root);
}

#[test]
fn a_blob_verified_once_is_hashed_again_after_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), DEFAULT_MAX_BYTES).unwrap();
    let (digest, content) = blob(11, 9000);
    store.insert(&digest, &content).unwrap();
    let path = store.blob_path(&digest);
    // Written long enough ago for its stamp to be remembered once it is read.
    let old = SystemTime::now() - Duration::from_secs(60);
    File::open(&path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(old))
        .unwrap();
    let mut read = Vec::new();
    for _ in 0..2 {
        read.clear();
        std::io::Read::read_to_end(&mut store.open_verified(&digest).unwrap(), &mut read).unwrap();
        assert_eq!(read, content);
    }
    // A write moves the mtime, so the remembered stamp no longer holds.
    fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    let mut bytes = content.clone();
    bytes[7] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    assert!(matches!(
        store.open_verified(&digest),
        Err(StoreError::Missing(d)) if d == digest
    ));
    assert_eq!(store.stats().corrupt, 1);
}
