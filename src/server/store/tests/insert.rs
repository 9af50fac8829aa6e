//! Inserting: blobs found and read back, forged content refused, blobs too large for
//! the bound refused as full.

use std::io::Read;

use super::*;
use crate::server::store::{DEFAULT_MAX_BYTES, Inserted, Result, StoreError};

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
