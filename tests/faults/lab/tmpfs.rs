//! Small tmpfs mounts for the full-disk tests, unmounted when dropped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, stderr};

/// A small tmpfs, unmounted when dropped.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Whether this process may mount (root); tests that need a small disk skip
    /// otherwise, as the bastion tests do without network namespaces.
    pub fn can_mount() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("skipped: mounting a small tmpfs needs root");
        }
        root
    }

    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let output = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        assert!(output.status.success(), "mount: {}", stderr(&output));
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills every free block with a file named `name`.
    pub fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.dir.join(name)).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling {}: {err}", self.dir.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a process still inside cannot make the unmount fail.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
