//! What the kernel says about the processes the benchmark runs (the CPU-time readers
//! themselves are in `support`): the box's processes by kind, and finding the box's sshd and each network's sshcc daemon.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sshcc::throwaway_box::ThrowawayBox;

use crate::cgroup::CpuCgroup;
use crate::distccd::Distccd;
use crate::support::{parse_stat, parse_stat_parts};

/// Own CPU time (without children) of the live box processes that carry sshcc's jobs:
/// the `sshcc --mux` workers and the sshd processes of their connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoxParts {
    pub worker: Duration,
    pub sshd: Duration,
}

impl BoxParts {
    pub fn now(cgroup: &CpuCgroup) -> Self {
        let mut parts = BoxParts::default();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
                .is_none()
            {
                continue;
            }
            let in_box = fs::read_to_string(entry.path().join("cgroup")).is_ok_and(|groups| {
                groups
                    .lines()
                    .any(|line| line.ends_with(&format!("/{}", cgroup.name())))
            });
            if !in_box {
                continue;
            }
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let Some((_, own, _)) = fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_stat_parts(&stat))
            else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            if args.iter().any(|arg| *arg == b"--mux") {
                parts.worker += own;
            } else if cmdline.starts_with(b"sshd: ")
                && !cmdline.windows(10).any(|w| w == b"[listener]")
            {
                // "sshd: USER [priv]" and "sshd: USER@notty" (and per-job connections,
                // which do not exist during an sshcc build).
                parts.sshd += own;
            }
        }
        parts
    }
}

/// `root` and all its descendants alive now.
fn process_tree(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((ppid, _)) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
        {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    tree
}

/// A cgroup holding the box's sshd and distccd process trees.
pub fn box_cgroup(build_box: &ThrowawayBox, distccd: &Distccd) -> Result<CpuCgroup> {
    let cgroup = CpuCgroup::create(&format!("sshcc-bench-{}", std::process::id()))?;
    for root in [sshd_pid(build_box)?, distccd.pid()] {
        for pid in process_tree(root) {
            cgroup.add(pid)?;
        }
    }
    Ok(cgroup)
}

/// The box's sshd listener: our child running with the box's sshd_config.
fn sshd_pid(build_box: &ThrowawayBox) -> Result<i32> {
    let config = build_box.dir().join("sshd_config");
    let me = std::process::id() as i32;
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // sshd rewrites its command line into one string ("sshd: /usr/sbin/sshd -D … -f
        // CONFIG [listener] …"), so look for the path anywhere in it.
        let config = config.as_os_str().as_encoded_bytes();
        let mentions_config = cmdline.windows(config.len()).any(|w| w == config);
        let parent = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
            .map(|(ppid, _)| ppid);
        if mentions_config && parent == Some(me) {
            return Ok(pid);
        }
    }
    bail!("cannot find the box's sshd process")
}

/// The pid of the `sshcc --daemon` serving `runtime_dir` (found by its command line
/// and its `SSHCC_RUNTIME_DIR`).
pub fn daemon_pid(runtime_dir: &Path) -> Result<i32> {
    find_daemon(runtime_dir)?
        .with_context(|| format!("no sshcc daemon runs for {}", runtime_dir.display()))
}

/// Like [`daemon_pid`], but `None` when no daemon runs.
pub fn find_daemon(runtime_dir: &Path) -> Result<Option<i32>> {
    let wanted = format!("SSHCC_RUNTIME_DIR={}", runtime_dir.display());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if !(args.len() >= 2
            && args[0].ends_with(b"sshcc")
            && args[1..].iter().any(|arg| *arg == b"--daemon"))
        {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            found.push(pid);
        }
    }
    match found[..] {
        [pid] => Ok(Some(pid)),
        [] => Ok(None),
        _ => bail!(
            "several sshcc daemons run for {}: {found:?}",
            runtime_dir.display()
        ),
    }
}
