//! The daemon's private directory: its socket, start-up lock and log.
//!
//! Anyone who can connect to the socket can make the daemon run compilers on the
//! user's boxes with the user's keys, so the directory must be the user's alone (0700);
//! one that is not is refused rather than used.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The socket's name carries the wrapper ↔ daemon protocol version, so after an
/// upgrade the new wrappers start a daemon of their own instead of talking to the old
/// one, which exits when idle.
pub const SOCKET_NAME: &str = "daemon-5.sock";

/// Paths of one user's daemon.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    dir: PathBuf,
}

impl RuntimeDir {
    /// `$SSHCC_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/sshcc`, else `$TMPDIR/sshcc-<uid>`
    /// (default `/tmp`); created 0700 if missing, checked if present.
    pub fn prepare() -> anyhow::Result<Self> {
        // SAFETY: getuid(2) cannot fail and has no preconditions.
        let uid = unsafe { libc::getuid() };
        let dir = match (
            std::env::var_os("SSHCC_RUNTIME_DIR"),
            std::env::var_os("XDG_RUNTIME_DIR"),
        ) {
            (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
            (_, Some(xdg)) if !xdg.is_empty() && Path::new(&xdg).is_dir() => {
                Path::new(&xdg).join("sshcc")
            }
            _ => std::env::temp_dir().join(format!("sshcc-{uid}")),
        };
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            Ok(()) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot create {}", dir.display()));
            }
        }
        let meta = std::fs::symlink_metadata(&dir)
            .with_context(|| format!("cannot inspect {}", dir.display()))?;
        if !meta.is_dir() || meta.uid() != uid {
            bail!(
                "{} is not a directory owned by you; refusing to use it for the daemon socket",
                dir.display()
            );
        }
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is accessible to other users (mode {:o}); run `chmod 700 {}`",
                dir.display(),
                meta.permissions().mode() & 0o777,
                dir.display()
            );
        }
        Ok(RuntimeDir { dir })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }

    pub fn start_lock(&self) -> PathBuf {
        self.dir.join("start.lock")
    }

    /// Locked by the daemon for as long as its process lives: the kernel releases it
    /// only when the process has exited, so whoever can lock it knows no daemon runs.
    pub fn alive_lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
}
