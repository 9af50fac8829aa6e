//! The box-wide cap on compiles running at once, shared by every `sshcc --inetd` and
//! `--mux` of every user of the box.
//!
//! Several developers share a box, each with their own daemon and connections, so no
//! single process can count the compiles. They meet in a lock directory instead: slot `i`
//! is the file `slot-i`, held by an exclusive `flock` for as long as a compile runs. The
//! kernel drops the lock when the holder exits, however it dies, so a crashed job never
//! leaks a slot. Over the cap, jobs wait (cancellably) rather than thrash the box.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting job looks for a free slot; short next to any compile.
const POLL: Duration = Duration::from_millis(25);

/// The shared slots: `count` lock files in `dir`.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
    count: usize,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _lock: File,
}

impl Slots {
    pub fn new(dir: PathBuf, count: usize) -> Self {
        Slots {
            dir,
            count: count.max(1),
        }
    }

    /// How many compiles may run at once.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The lock directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many slots are held right now, by anyone.
    pub fn busy(&self) -> usize {
        (0..self.count)
            .filter(|index| {
                let path = self.slot_path(*index);
                // Probing a slot holds it for an instant, which a job may notice as one
                // more 25 ms wait; a missing file has never been held.
                path.exists() && matches!(self.try_lock(*index), Ok(None))
            })
            .count()
    }

    fn slot_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("slot-{index}"))
    }

    /// Waits for a free slot. `Err` means the lock directory is unusable (the caller then
    /// runs uncapped rather than fail builds over a resource limit).
    pub async fn acquire(&self) -> std::io::Result<Slot> {
        prepare_shared_dir(&self.dir)?;
        let mut waited = false;
        loop {
            for index in 0..self.count {
                if let Some(slot) = self.try_lock(index)? {
                    if waited {
                        tracing::debug!("got compile slot {index} of {}", self.count);
                    }
                    return Ok(slot);
                }
            }
            if !waited {
                tracing::info!(
                    "all {} compile slots of this box are busy; waiting",
                    self.count
                );
                waited = true;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn try_lock(&self, index: usize) -> std::io::Result<Option<Slot>> {
        let file = open_shared_file(&self.slot_path(index), libc::O_RDONLY)?;
        let locked = crate::system::flock(&file, true, crate::system::LockWait::Try)?;
        Ok(locked.then_some(Slot { _lock: file }))
    }
}

/// Creates the lock directory shared by all users: world-writable and sticky, like
/// /tmp, so each user can add files but not remove another's.
pub(super) fn prepare_shared_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::symlink_metadata(dir)?.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    dir.display()
                )))
            }
        }
        Err(err) => Err(err),
    }
}

/// Opens (creating if needed) a file in the shared lock directory with `access`
/// (`O_RDONLY` is all `flock` needs, so another user's slot file works too). Never
/// follows a symlink planted in the shared directory.
pub(super) fn open_shared_file(path: &Path, access: libc::c_int) -> std::io::Result<File> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("slot path contains NUL"))?;
    // SAFETY: `name` is a valid C string; the flags and mode are plain integers.
    let fd = unsafe {
        libc::open(
            name.as_ptr(),
            access | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open(2) just gave us this descriptor.
    let file = unsafe { File::from_raw_fd(fd) };
    // A restrictive umask must not lock other users out of a slot we created.
    use std::os::unix::fs::PermissionsExt;
    if file.metadata()?.permissions().mode() & 0o044 != 0o044 {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_box_makes_the_next_job_wait_until_a_slot_frees() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().join("slots"), 2);
        let first = slots.acquire().await.unwrap();
        let _second = slots.acquire().await.unwrap();
        let other_process = Slots::new(dir.path().join("slots"), 2);
        let waiting = tokio::spawn(async move { other_process.acquire().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a third job ran over a cap of 2");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the freed slot was taken")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_symlink_in_the_lock_dir_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("slot-0")).unwrap();
        let slots = Slots::new(dir.path().to_path_buf(), 1);
        assert!(slots.try_lock(0).is_err());
    }
}
