//! The store's tests, each on a fresh temporary root (never the real home), grouped by
//! what they exercise; the fixtures they share are here.

use std::fs::{self, File, FileTimes, Metadata};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Store;
use super::layout;
use super::layout::{BLOB_DIR, TMP_DIR, cost};
use crate::digest::Digest;

mod concurrent;
mod eviction;
mod insert;
mod materialize;
mod opening;

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
