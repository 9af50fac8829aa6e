//! Directory listings shared by every job of the daemon, so that a candidate header that
//! does not exist costs no syscall.
//!
//! Finding a job's includes as libcpp does tries each name in every directory of the
//! search chain until one has it: a RocksDB unit makes about 6,000 such probes, 5,000 of
//! which fail. A directory's entries change only with its mtime and ctime (creating,
//! removing or renaming an entry updates both; ctime cannot be set back), so a listing
//! read once is valid while one `stat` of the directory shows the same version: each
//! directory is stat'ed once per job, and the names it lacks are answered from memory.
//!
//! The listing only ever says *absent*, or that the whole path is plain directories and
//! a regular file; anything else (a symlink on the way, `.` or `..`, a directory that
//! changed too recently to trust, see [`LISTING_WINDOW_NS`]) is [`Presence::Unknown`],
//! and the caller stats the path as it would without the cache.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::OsString;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use super::file_state::FileStat;
use super::file_state::RACY_WINDOW_NS;
use super::file_state::now_ns;

/// The shortest quiet time a directory needs before its listing is trusted: longer than
/// any filesystem's timestamp tick, so an entry added in the same tick as the listing was
/// read cannot hide behind an unchanged mtime. The file-state window applies when longer.
pub const LISTING_WINDOW_NS: i128 = 50_000_000;

/// Entries of one directory beyond which it is not listed (a build directory full of
/// objects): its names are stat'ed one by one instead.
const MAX_LISTED_ENTRIES: usize = 20_000;

/// Directories kept before the cache starts over (a bound on memory; refilling costs a
/// `readdir` per directory).
const MAX_DIRECTORIES: usize = 50_000;

/// What a listing says of `dir/name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No such entry: the path does not exist.
    Absent,
    /// Every component but the last is a directory and the last a regular file.
    File,
    /// The listing cannot tell: stat it.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    File,
    /// A symlink, a device, a socket: the caller must look.
    Other,
}

struct Listing {
    version: FileStat,
    /// `None`: too many to list; remembered, so the directory is not read again per job
    /// while it stays the same.
    entries: Option<foldhash::HashMap<OsString, Kind>>,
}

/// Listings by real directory path, shared by every job.
pub struct DirListings {
    listings: Mutex<HashMap<PathBuf, Arc<Listing>>>,
    window_ns: i128,
}

impl Default for DirListings {
    fn default() -> Self {
        DirListings::new(RACY_WINDOW_NS)
    }
}

impl DirListings {
    /// Listings trusted once their directory has been quiet for `window_ns` (at least
    /// [`LISTING_WINDOW_NS`]).
    pub fn new(window_ns: i128) -> Self {
        DirListings {
            listings: Mutex::default(),
            window_ns: window_ns.max(LISTING_WINDOW_NS),
        }
    }

    /// A job's view of the listings: each directory is checked once per job.
    pub fn for_job(&self) -> JobListings<'_> {
        JobListings {
            shared: self,
            checked: Default::default(),
        }
    }

    /// `dir`'s listing if it can be trusted now, reading it afresh when it changed.
    fn current(&self, dir: &Path) -> Option<Arc<Listing>> {
        let version = FileStat::of(&std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?);
        if let Some(known) = self.lock().get(dir)
            && known.version.same_version(&version)
        {
            return Some(known.clone());
        }
        if version.is_racy(now_ns(), self.window_ns) {
            return None;
        }
        let mut entries = foldhash::HashMap::default();
        for entry in std::fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            // d_type, or an lstat where the filesystem does not report it.
            let file_type = entry.file_type().ok()?;
            let kind = if file_type.is_dir() {
                Kind::Directory
            } else if file_type.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            entries.insert(entry.file_name(), kind);
            if entries.len() > MAX_LISTED_ENTRIES {
                break;
            }
        }
        let entries = (entries.len() <= MAX_LISTED_ENTRIES).then_some(entries);
        // An entry added or removed while reading moves the version: keep nothing.
        let after = FileStat::of(&std::fs::symlink_metadata(dir).ok()?);
        if !after.same_version(&version) {
            return None;
        }
        let listing = Arc::new(Listing { version, entries });
        let mut listings = self.lock();
        if listings.len() >= MAX_DIRECTORIES {
            listings.clear();
        }
        listings.insert(dir.to_path_buf(), listing.clone());
        Some(listing)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Listing>>> {
        self.listings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The listings one job has checked (or found untrustworthy), by directory.
pub struct JobListings<'a> {
    shared: &'a DirListings,
    /// By the directory path's bytes (the walker spells each one the same way).
    checked: foldhash::HashMap<OsString, Option<Arc<Listing>>>,
}

impl JobListings<'_> {
    /// What the listings say of `name` (a relative path of plain components) inside
    /// `dir`, a symlink-free directory.
    pub fn presence(&mut self, dir: &Path, name: &str) -> Presence {
        let mut components = name.split('/').peekable();
        let mut current = dir.to_path_buf();
        while let Some(component) = components.next() {
            if matches!(component, "" | "." | "..") {
                return Presence::Unknown;
            }
            let Some(listing) = self.listing(&current) else {
                return Presence::Unknown;
            };
            let last = components.peek().is_none();
            let Some(entries) = &listing.entries else {
                return Presence::Unknown;
            };
            match (entries.get(OsStr::new(component)), last) {
                (None, _) => return Presence::Absent,
                (Some(Kind::File), true) => return Presence::File,
                (Some(Kind::Directory), false) => current.push(component),
                _ => return Presence::Unknown,
            }
        }
        Presence::Unknown
    }

    fn listing(&mut self, dir: &Path) -> Option<Arc<Listing>> {
        if let Some(known) = self.checked.get(dir.as_os_str()) {
            return known.clone();
        }
        let listing = self.shared.current(dir);
        self.checked
            .insert(dir.as_os_str().to_os_string(), listing.clone());
        listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle() {
        std::thread::sleep(std::time::Duration::from_nanos(
            LISTING_WINDOW_NS as u64 * 2,
        ));
    }

    #[test]
    fn absent_names_are_answered_from_the_listing_until_the_directory_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.h"), "").unwrap();
        std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
        settle();
        let listings = DirListings::new(0);
        let mut job = listings.for_job();
        assert_eq!(job.presence(&root, "sub/a.h"), Presence::File);
        assert_eq!(job.presence(&root, "sub/b.h"), Presence::Absent);
        assert_eq!(job.presence(&root, "nothing/b.h"), Presence::Absent);
        assert_eq!(job.presence(&root, "sub"), Presence::Unknown);
        assert_eq!(job.presence(&root, "link/a.h"), Presence::Unknown);
        assert_eq!(job.presence(&root, "sub/../x.h"), Presence::Unknown);
        assert_eq!(job.presence(&root, "sub/a.h/x"), Presence::Unknown);

        // A header that appears is seen by the next job, even straight away: the
        // directory's version moved, and a listing that recent is not trusted.
        std::fs::write(root.join("sub/b.h"), "").unwrap();
        assert_eq!(
            listings.for_job().presence(&root, "sub/b.h"),
            Presence::Unknown
        );
        settle();
        assert_eq!(
            listings.for_job().presence(&root, "sub/b.h"),
            Presence::File
        );
        std::fs::remove_file(root.join("sub/a.h")).unwrap();
        settle();
        assert_eq!(
            listings.for_job().presence(&root, "sub/a.h"),
            Presence::Absent
        );
    }

    #[test]
    fn a_directory_changed_within_the_window_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let listings = DirListings::new(60_000_000_000);
        std::fs::write(root.join("a.h"), "").unwrap();
        assert_eq!(listings.for_job().presence(&root, "b.h"), Presence::Unknown);
        assert!(listings.lock().is_empty());
    }
}
