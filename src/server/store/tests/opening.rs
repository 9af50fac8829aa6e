//! Opening a store: temporaries of dead inserts swept, live ones kept, and where the
//! default root is.

use super::*;
use crate::server::store::blobs::default_root_from;

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
