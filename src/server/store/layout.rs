//! Where things are in a store root, and what a blob counts for against the bound.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Blobs, fanned out on the first byte of the hash. Named after the digest function, as
/// REAPI names it, so a store of another function could sit beside it.
pub(super) const BLOB_DIR: &str = "sha256";
/// Inserts in progress, on the blobs' filesystem so that publishing is a rename.
pub(super) const TMP_DIR: &str = "tmp";
/// The shared size estimate (see `usage`).
pub(super) const USAGE_FILE: &str = "usage";
/// Held (`flock`) by whoever scans or evicts.
pub(super) const EVICT_LOCK: &str = "evict.lock";

/// What a blob is counted as: its length rounded up to a 4 KiB block, which is close to
/// what it occupies on ext4 or xfs. Headers are small, so counting bare lengths would
/// let the store take twice its bound on disk.
pub(super) const BLOCK: u64 = 4096;

/// What a blob of `size` bytes is counted as (see [`BLOCK`]).
pub(super) fn cost(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// `BLOBS/ab/abcdef…-SIZE`.
pub(super) fn blob_path(blobs: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hash_hex();
    blobs
        .join(&hex[..2])
        .join(format!("{hex}-{}", digest.size_bytes))
}

/// `abcdef…-SIZE` → its digest; `None` for any other name.
pub(super) fn parse_blob_name(name: &str) -> Option<Digest> {
    let (hash, size) = name.split_once('-')?;
    format!("{hash}/{size}").parse().ok()
}

/// Whether `name` is a fan-out directory's: two lowercase hex digits.
pub(super) fn is_fan_out_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_costs_round_up() {
        let digest = Digest::of(b"x");
        let path = blob_path(Path::new("/s"), &digest);
        let hex = digest.hash_hex();
        assert_eq!(
            path,
            Path::new("/s").join(&hex[..2]).join(format!("{hex}-1"))
        );
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_blob_name(name), Some(digest));
        for bad in [
            "",
            "x-1",
            &format!("{hex}/1"),
            &format!("{hex}-"),
            &format!("{hex}-1-2"),
        ] {
            assert_eq!(parse_blob_name(bad), None, "{bad:?}");
        }
        assert!(is_fan_out_name(&hex[..2]) && !is_fan_out_name("AB") && !is_fan_out_name("abc"));
        assert_eq!(
            (cost(0), cost(1), cost(4096), cost(4097)),
            (0, 4096, 4096, 8192)
        );
        assert_eq!(cost(u64::MAX), u64::MAX);
    }
}
