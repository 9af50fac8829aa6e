//! Job directories kept for the next job of the same `--mux` process: a finished job's
//! tree is taken over by a later one, which prunes what it does not want and lays out
//! only what is new (see `materialise::prune`), instead of copying every header out of
//! the store and unlinking them all again.
//!
//! At most as many are kept as the box has slots, so the disk they hold is what a fully
//! busy box holds anyway; they go when the process ends (the daemon's link closes). A
//! tree is kept only after a compile that ran to its end: after an error, a cancelled
//! job or a killed compile it is removed, as every tree was before.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tempfile::TempDir;

use super::materialise::{SharedFiles, Tree};

/// The idle job directories of one process, the most recently used last, and the files
/// its trees share.
pub struct WarmTrees {
    idle: Mutex<Vec<WarmTree>>,
    max_idle: usize,
    shared: Arc<SharedFiles>,
}

/// A job directory and the tree laid out in it.
pub(super) struct WarmTree {
    pub job_dir: TempDir,
    pub tree: Tree,
}

impl WarmTrees {
    /// Keeps up to `max_idle` trees (0: none, every job lays its tree out afresh).
    pub fn new(max_idle: usize) -> WarmTrees {
        WarmTrees {
            idle: Mutex::new(Vec::new()),
            max_idle,
            shared: Arc::new(SharedFiles::new()),
        }
    }

    /// The read-only files every tree of the process links.
    pub(super) fn shared(&self) -> Arc<SharedFiles> {
        Arc::clone(&self.shared)
    }

    /// The most recently used idle tree: the likeliest to hold what the next job of
    /// the same build needs.
    pub(super) fn take(&self) -> Option<WarmTree> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Keeps `warm` for a later job, or hands it back when enough are kept (for the
    /// caller to remove, which is blocking I/O).
    pub(super) fn keep(&self, warm: WarmTree) -> Option<WarmTree> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= self.max_idle {
            return Some(warm);
        }
        idle.push(warm);
        None
    }
}

/// Removes from a reused job directory what the last job left beside its tree (the
/// compiler's temporaries, the box's own dependency file), keeping `tree` (blocking).
pub(super) fn clear_beside(job_dir: &Path, tree: &OsStr) -> io::Result<()> {
    for child in fs::read_dir(job_dir)? {
        let child = child?;
        if child.file_name() == tree {
            continue;
        }
        let path = child.path();
        match child.file_type()?.is_dir() {
            true => fs::remove_dir_all(&path)?,
            false => fs::remove_file(&path)?,
        }
    }
    Ok(())
}
