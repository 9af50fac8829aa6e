//! The store's tests, each on a fresh temporary root (never the real home).

use std::fs::FileTimes;
use std::sync::{Arc, Barrier};

use super::*;

/// Content that differs for every `seed`, of `len` bytes.
fn blob(seed: u64, len: usize) -> (Digest, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let content: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    (Digest::of(&content), content)
}

/// Every file under `sha256/`, with its metadata.
fn on_disk(root: &Path) -> Vec<(PathBuf, Metadata)> {
    let mut files = Vec::new();
    for fan in fs::read_dir(root.join(BLOB_DIR)).unwrap() {
        for file in fs::read_dir(fan.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            files.push((path, meta));
        }
    }
    files
}

fn real_usage(root: &Path) -> u64 {
    on_disk(root).iter().map(|(_, meta)| cost(meta.len())).sum()
}

fn temps(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join(TMP_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect()
}

/// Every blob is complete, read-only and named by its content; no temporary is left.
fn assert_consistent(root: &Path) {
    for (path, meta) in on_disk(root) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let digest = layout::parse_blob_name(name).unwrap_or_else(|| panic!("stray {name}"));
        assert_eq!(
            Digest::of(&fs::read(&path).unwrap()),
            digest,
            "{} does not hold its content",
            path.display()
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "{name}");
        assert_eq!(
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            &name[..2]
        );
    }
    assert_eq!(temps(root), Vec::<PathBuf>::new(), "temporary files left");
}

fn set_atime(store: &Store, digest: &Digest, seconds_ago: u64) {
    let time = SystemTime::now() - Duration::from_secs(seconds_ago);
    File::open(store.blob_path(digest))
        .unwrap()
        .set_times(FileTimes::new().set_accessed(time))
        .unwrap();
}

fn estimate(store: &Store) -> u64 {
    store.usage.read().unwrap().unwrap().bytes
}

#[test]
fn inserted_blobs_are_found_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let (a, a_bytes) = blob(1, 5000);
    let (b, b_bytes) = blob(2, 10);
    let (c, _) = blob(3, 10);

    assert_eq!(store.find_missing(&[a, b]), vec![a, b]);
    assert_eq!(store.insert(&a, &a_bytes).unwrap(), Inserted::Stored);
    let source = dir.path().join("b.h");
    fs::write(&source, &b_bytes).unwrap();
    assert_eq!(store.insert_file(&b, &source).unwrap(), Inserted::Stored);
    assert_eq!(
        store.insert(&a, &a_bytes).unwrap(),
        Inserted::AlreadyPresent
    );
    assert_eq!(
        store.insert_reader(&b, &b_bytes[..]).unwrap(),
        Inserted::AlreadyPresent
    );

    // Asked once per digest, in order; the empty blob is always there.
    assert_eq!(store.find_missing(&[c, a, Digest::EMPTY, c, b]), vec![c]);
    assert!(store.contains(&a) && store.contains(&Digest::EMPTY) && !store.contains(&c));

    let hex = a.hash_hex();
    let path = root
        .join("sha256")
        .join(&hex[..2])
        .join(format!("{hex}-5000"));
    assert_eq!(fs::read(&path).unwrap(), a_bytes);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );

    assert_eq!(store.get(&a).unwrap(), a_bytes);
    assert_eq!(store.get(&Digest::EMPTY).unwrap(), b"");
    let mut read = Vec::new();
    store
        .open_verified(&b)
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, b_bytes);
    assert!(matches!(store.get(&c), Err(StoreError::Missing(d)) if d == c));
    assert!(matches!(
        store.open_verified(&c),
        Err(StoreError::Missing(_))
    ));

    assert_eq!(estimate(&store), cost(5000) + cost(10));
    let stats = store.stats();
    assert_eq!((stats.stored, stats.stored_bytes), (2, 5010));
    assert_eq!(stats.estimated_bytes, 12288);
    assert_consistent(&root);

    // Another process sees the same blobs and the same estimate.
    let other = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(other.find_missing(&[a, b, c]), vec![c]);
    assert_eq!(estimate(&other), 12288);
}

#[test]
fn forged_content_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, DEFAULT_MAX_BYTES).unwrap();
    let (digest, content) = blob(7, 3000);
    let mut forged = content.clone();
    forged[1234] ^= 1;
    let longer = [&content[..], b"x"].concat();

    let refused = |result: Result<Inserted>| match result {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, digest);
            actual
        }
        other => panic!("forged content was not refused: {other:?}"),
    };
    assert_eq!(refused(store.insert(&digest, &forged)), Digest::of(&forged));
    assert_eq!(
        refused(store.insert_reader(&digest, &forged[..])),
        Digest::of(&forged)
    );
    // A longer stream is cut one byte past the announced size.
    assert_eq!(
        refused(store.insert_reader(&digest, &longer[..])),
        Digest::of(&longer)
    );
    refused(store.insert_reader(&digest, &content[..2999]));
    assert!(matches!(
        store.insert(&Digest::EMPTY, b"x"),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(matches!(
        store.insert_reader(&Digest::EMPTY, &b"x"[..]),
        Err(StoreError::DigestMismatch { .. })
    ));

    assert!(on_disk(&root).is_empty(), "a forged blob reached the store");
    assert!(temps(&root).is_empty());
    assert_eq!(store.find_missing(&[digest]), vec![digest]);
    assert_eq!(estimate(&store), 0);

    // Forged content for a blob already present is refused too, and harms nothing.
    store.insert(&digest, &content).unwrap();
    refused(store.insert(&digest, &forged));
    refused(store.insert_reader(&digest, &forged[..]));
    assert_eq!(store.get(&digest).unwrap(), content);
    assert_eq!(store.stats().refused, 8);
    assert_consistent(&root);
}

#[test]
fn a_blob_too_large_for_the_bound_is_refused_as_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 64 * 1024).unwrap();
    let (fits, fits_bytes) = blob(1, 8192);
    let (big, big_bytes) = blob(2, 8193);
    store.insert(&fits, &fits_bytes).unwrap();
    assert!(matches!(
        store.insert(&big, &big_bytes),
        Err(StoreError::Full { digest, .. }) if digest == big
    ));
    assert!(matches!(
        store.insert_reader(&big, &big_bytes[..]),
        Err(StoreError::Full { .. })
    ));
    assert_eq!(on_disk(dir.path()).len(), 1);

    // A bound of 0: no store at all.
    let none = Store::open(dir.path(), 0).unwrap();
    assert!(on_disk(dir.path()).is_empty());
    assert!(matches!(
        none.insert(&fits, &fits_bytes),
        Err(StoreError::Full { .. })
    ));
    assert_eq!(
        none.insert(&Digest::EMPTY, b"").unwrap(),
        Inserted::AlreadyPresent
    );
}

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

#[test]
fn opening_sweeps_temporaries_of_dead_inserts_but_not_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), 1 << 20).unwrap();
    let old = SystemTime::now() - Duration::from_secs(600);
    let make = |name: &str, mtime: SystemTime| {
        let path = dir.path().join(TMP_DIR).join(name);
        let file = File::create(&path).unwrap();
        file.set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
        (path, file)
    };
    let (dead, _) = make(".blob-dead", old);
    let (live, live_file) = make(".blob-live", old);
    live_file.lock().unwrap();
    let (young, _) = make(".blob-young", SystemTime::now());
    Store::open(dir.path(), 1 << 20).unwrap();
    assert!(!dead.exists());
    assert!(live.exists(), "a live insert's temporary was removed");
    assert!(
        young.exists(),
        "a temporary may be swept before its writer locks it"
    );
    drop(live_file);
}

#[test]
fn many_threads_inserting_one_blob_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), 1 << 20).unwrap());
    let (digest, content) = blob(11, 30_000);
    let content = Arc::new(content);
    let barrier = Arc::new(Barrier::new(16));
    let results: Vec<Inserted> = (0..16)
        .map(|index| {
            let (store, content, barrier) = (store.clone(), content.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                if index % 2 == 0 {
                    store.insert(&digest, &content)
                } else {
                    store.insert_reader(&digest, &content[..])
                }
                .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    let stored = results.iter().filter(|r| **r == Inserted::Stored).count();
    assert_eq!(stored, 1, "{results:?}");
    assert_eq!(on_disk(dir.path()).len(), 1);
    assert_eq!(estimate(&store), cost(30_000), "counted once");
    assert_consistent(dir.path());
}

/// Inserts blobs from a pool shared with other fillers (so some collide), materialising
/// earlier ones as it goes: each materialisation must give the right content or report
/// the blob missing (evicted meanwhile), never anything else.
fn fill(store: &Store, seed: u64, job: &Path) {
    let mut state = seed;
    for round in 0..120 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (state >> 33) % 300;
        let (digest, content) = blob(pick, (pick as usize * 41) % 12_000 + 1);
        store.insert(&digest, &content).unwrap();
        let earlier = (state >> 40) % 300;
        let (digest, content) = blob(earlier, (earlier as usize * 41) % 12_000 + 1);
        let dest = job.join(format!("{round}.h"));
        match store.materialize(&digest, &dest) {
            Ok(()) => assert_eq!(fs::read(&dest).unwrap(), content),
            Err(StoreError::Missing(_)) => assert!(!dest.exists()),
            Err(err) => panic!("materialize: {err}"),
        }
    }
}

fn assert_bound_and_estimate(root: &Path, max: u64) {
    assert_consistent(root);
    let real = real_usage(root);
    assert!(real <= max, "{real} bytes in a store bounded to {max}");
    let store = Store::open(root, max).unwrap();
    assert!(
        estimate(&store) >= real,
        "the estimate {} is below the {real} bytes stored",
        estimate(&store)
    );
    assert_eq!(store.scan().unwrap().bytes, real);
    assert_eq!(estimate(&store), real);
}

#[test]
fn two_stores_on_one_root_filling_it_at_once_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let max = 128 * 1024;
    // Two instances stand for two `sshcc --mux` processes; each serves four jobs.
    let stores = [
        Arc::new(Store::open(&root, max).unwrap()),
        Arc::new(Store::open(&root, max).unwrap()),
    ];
    let threads: Vec<_> = (0..8u64)
        .map(|index| {
            let store = stores[index as usize % 2].clone();
            let job = dir.path().join(format!("job{index}"));
            fs::create_dir(&job).unwrap();
            std::thread::spawn(move || fill(&store, index, &job))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let evicted: u64 = stores.iter().map(|store| store.stats().evicted).sum();
    assert!(evicted > 0, "the test never filled the store");
    assert_bound_and_estimate(&root, max);
}

const CHILD_ROOT: &str = "SSHCC_TEST_STORE_CHILD_ROOT";

/// Not a test by itself: the body of each child process of
/// `separate_processes_filling_one_store_stay_consistent`.
#[test]
#[ignore = "run as a child process by separate_processes_filling_one_store_stay_consistent"]
fn child_process_filling_the_store() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else {
        return;
    };
    let root = PathBuf::from(root);
    let seed: u64 = std::env::var("SSHCC_TEST_STORE_CHILD_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(&root, 128 * 1024).unwrap();
    let job = root.parent().unwrap().join(format!("child{seed}"));
    fs::create_dir(&job).unwrap();
    fill(&store, seed, &job);
}

#[test]
fn separate_processes_filling_one_store_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let max = 128 * 1024;
    let store = Store::open(&root, max).unwrap();
    let children: Vec<_> = (0..3)
        .map(|seed| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "server::store::tests::child_process_filling_the_store",
                    "--ignored",
                    "--quiet",
                ])
                .env(CHILD_ROOT, &root)
                .env("SSHCC_TEST_STORE_CHILD_SEED", (100 + seed).to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let job = dir.path().join("parent");
    fs::create_dir(&job).unwrap();
    fill(&store, 7, &job);
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child process failed");
    }
    for seed in 100..103 {
        assert!(
            dir.path().join(format!("child{seed}")).is_dir(),
            "child {seed} did not run"
        );
    }
    assert_bound_and_estimate(&root, max);
}

#[test]
fn the_default_root_follows_xdg_then_home() {
    let root = |xdg: Option<&str>, home: Option<&str>| {
        default_root_from(xdg.map(Into::into), home.map(Into::into))
    };
    assert_eq!(
        root(Some("/xdg"), Some("/home/u")),
        Some(PathBuf::from("/xdg/sshcc/store"))
    );
    assert_eq!(
        root(Some("relative"), Some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/sshcc/store"))
    );
    assert_eq!(
        root(None, Some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/sshcc/store"))
    );
    assert_eq!(root(None, Some("")), None);
    assert_eq!(root(None, None), None);
}
