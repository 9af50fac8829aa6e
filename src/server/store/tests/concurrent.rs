//! Many jobs and processes on one root: one blob inserted by many threads at once, two
//! stores and several processes filling it together, all staying consistent.

use std::sync::{Arc, Barrier};

use super::*;
use crate::server::store::{Inserted, StoreError};

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
                    "server::store::tests::concurrent::child_process_filling_the_store",
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
