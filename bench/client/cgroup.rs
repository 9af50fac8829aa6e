//! CPU accounting for the box side through a cgroup of our own.
//!
//! The box's processes cannot be counted through their parents: for a non-root login,
//! sshd lets go of the remote command when the client disconnects, so a per-job
//! `distccd --inetd` may end up reparented to init and its CPU (and its compiler's) is
//! lost to `cutime`. A cgroup keeps every descendant, orphaned or not. Uses cgroup v1's
//! `cpuacct` controller when mounted, else cgroup v2; needs root.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const V1_CPUACCT: &str = "/sys/fs/cgroup/cpuacct";
const V2_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
enum Kind {
    V1,
    V2,
}

/// A cgroup created for the bench, removed when dropped (once empty).
#[derive(Debug)]
pub struct CpuCgroup {
    dir: PathBuf,
    kind: Kind,
}

impl CpuCgroup {
    /// Creates `name` in the first usable hierarchy.
    pub fn create(name: &str) -> Result<Self> {
        let (root, kind) = if fs::metadata(format!("{V1_CPUACCT}/cpuacct.usage")).is_ok() {
            (V1_CPUACCT, Kind::V1)
        } else if fs::metadata(format!("{V2_ROOT}/cgroup.controllers")).is_ok() {
            (V2_ROOT, Kind::V2)
        } else {
            bail!("neither cgroup v1 cpuacct nor cgroup v2 is mounted");
        };
        let dir = PathBuf::from(root).join(name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cgroup = CpuCgroup { dir, kind };
        cgroup.usage()?;
        Ok(cgroup)
    }

    /// Moves `pid` into the cgroup; processes it starts later stay there too.
    pub fn add(&self, pid: i32) -> Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.dir.display()))
    }

    /// CPU time (user+system) used by everything that has run in the cgroup.
    pub fn usage(&self) -> Result<Duration> {
        match self.kind {
            Kind::V1 => {
                let text = fs::read_to_string(self.dir.join("cpuacct.usage"))?;
                Ok(Duration::from_nanos(text.trim().parse()?))
            }
            Kind::V2 => {
                let text = fs::read_to_string(self.dir.join("cpu.stat"))?;
                let usec = text
                    .lines()
                    .find_map(|line| line.strip_prefix("usage_usec "))
                    .context("no usage_usec in cpu.stat")?;
                Ok(Duration::from_micros(usec.trim().parse()?))
            }
        }
    }

    /// The cgroup's name (as the last component of /proc/PID/cgroup lines).
    pub fn name(&self) -> &str {
        self.dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }

    pub fn describe(&self) -> String {
        match self.kind {
            Kind::V1 => format!("cgroup v1 cpuacct ({})", self.dir.display()),
            Kind::V2 => format!("cgroup v2 cpu.stat ({})", self.dir.display()),
        }
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        // Succeeds once the box's processes are gone (killed just before); a leftover
        // empty group would be harmless.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
