//! The layout's own checks: client mtimes, symlinks kept in the tree, missing blobs
//! reported together, hostile trees refused.

use super::*;

fn store(dir: &Path) -> Store {
    Store::open(dir.join("store"), 1 << 30).unwrap()
}

fn file(store: &Store, content: &[u8], mtime: Option<Timestamp>) -> WalkEntry {
    let digest = Digest::of(content);
    store.insert(&digest, content).unwrap();
    WalkEntry::File {
        digest,
        executable: false,
        mtime,
    }
}

#[test]
fn files_carry_the_client_mtime_and_symlinks_stay_in_the_tree() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut tree = Tree::create(dir.path().join("root")).unwrap();
    let entries = vec![
        (PathBuf::from("home"), WalkEntry::Directory),
        (
            PathBuf::from("home/p/x.h"),
            file(
                &store,
                b"x",
                Some(Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 123,
                }),
            ),
        ),
        (
            PathBuf::from("home/p/abs"),
            WalkEntry::Symlink {
                target: "/home/p/x.h".into(),
            },
        ),
        (
            PathBuf::from("home/p/rel"),
            WalkEntry::Symlink {
                target: "../p/x.h".into(),
            },
        ),
        (PathBuf::from("usr/include"), WalkEntry::Directory),
    ];
    tree.fill(&entries, &store, &SharedFiles::none()).unwrap();
    let root = dir.path().join("root");
    let meta = fs::metadata(root.join("home/p/x.h")).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 123));
    assert_eq!(meta.mode() & 0o777, 0o644);
    assert_eq!(fs::read(root.join("home/p/abs")).unwrap(), b"x");
    assert_eq!(
        fs::read_link(root.join("home/p/abs")).unwrap(),
        root.join("home/p/x.h")
    );
    assert_eq!(fs::read(root.join("home/p/rel")).unwrap(), b"x");
    assert!(root.join("usr/include").is_dir());
    assert_eq!(tree.read(Path::new("home/p/x.h")).unwrap(), b"x");
    // Not even a symlink into the tree is read back.
    assert!(tree.read(Path::new("home/p/abs")).is_err());
}

#[test]
fn missing_blobs_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut tree = Tree::create(dir.path().join("root")).unwrap();
    let absent = |content: &[u8]| WalkEntry::File {
        digest: Digest::of(content),
        executable: false,
        mtime: None,
    };
    let entries = vec![
        (PathBuf::from("a/1.h"), absent(b"1")),
        (PathBuf::from("a/2.h"), file(&store, b"2", None)),
        (PathBuf::from("b/3.h"), absent(b"3")),
    ];
    match tree.fill(&entries, &store, &SharedFiles::new()) {
        Err(LayoutError::Missing(digests)) => {
            assert_eq!(digests, [Digest::of(b"1"), Digest::of(b"3")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_trees_cannot_reach_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    let escape = WalkEntry::Symlink {
        target: outside.display().to_string(),
    };
    let climb = WalkEntry::Symlink {
        target: "../../../../../../../..".into(),
    };

    // A file written through a symlinked directory.
    let mut tree = Tree::create(dir.path().join("r1")).unwrap();
    let entries = vec![
        (PathBuf::from("p/link"), escape.clone()),
        (PathBuf::from("p/link/x.h"), file(&store, b"evil", None)),
    ];
    assert!(matches!(
        tree.fill(&entries, &store, &SharedFiles::new()),
        Err(LayoutError::Refused(_))
    ));

    // An absolute target lands inside the tree, a climbing one is refused.
    let mut tree = Tree::create(dir.path().join("r2")).unwrap();
    let entries = vec![(PathBuf::from("p/link"), escape)];
    tree.fill(&entries, &store, &SharedFiles::new()).unwrap();
    let root = dir.path().join("r2");
    assert_eq!(
        fs::read_link(root.join("p/link")).unwrap(),
        PathBuf::from(format!("{}{}", root.display(), outside.display()))
    );
    // Outputs through it, or at it, are refused; reading through it fails.
    assert!(tree.output(Path::new("p"), "link/secret").is_err());
    assert!(tree.output(Path::new("p"), "link").is_err());
    assert!(tree.output(Path::new("p"), "/p/link/x.o").is_err());
    assert!(tree.output(Path::new("p"), "../../x.o").is_err());
    assert_eq!(
        tree.output(Path::new("p"), "out/../x.o").unwrap(),
        PathBuf::from("p/x.o")
    );
    let mut tree = Tree::create(dir.path().join("r3")).unwrap();
    assert!(matches!(
        tree.fill(
            &[(PathBuf::from("p/link"), climb)],
            &store,
            &SharedFiles::new()
        ),
        Err(LayoutError::Refused(_))
    ));
    // A symlink the compile might leave, pointing out: never read.
    std::os::unix::fs::symlink(outside.join("secret"), dir.path().join("r3/p/obj")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("r3/p/dir")).unwrap();
    assert!(tree.read(Path::new("p/obj")).is_err());
    assert!(tree.read(Path::new("p/dir/secret")).is_err());
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
}
