//! sshd's process tree: spawning sshd, signalling and killing it together with every
//! session it spawned (found through /proc, since each session is its own setsid).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// sshd refuses to start from a relative path (it re-executes itself).
pub(super) const SSHD: &str = "/usr/sbin/sshd";

/// Spawns `sshd -D -e -f <sshd_config>` in the foreground, inside the network namespace
/// `netns` if given, with its output going to `log`.
pub(super) fn spawn_sshd(sshd_config: &Path, netns: Option<&str>, log: File) -> Result<Child> {
    let mut sshd = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, SSHD]);
            command
        }
        None => Command::new(SSHD),
    };
    sshd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(sshd_config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the sshd log handle")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {SSHD}"))
}

/// Kills sshd and all its descendants, then reaps sshd.
///
/// Killing only the listener would leave running sessions alone: sshd puts
/// each connection in its own session (setsid), so they escape a process-group
/// kill too. Tests that "kill a host mid-build" need those connections to
/// drop, so the tree is found through /proc. Everything is stopped first so
/// that nothing can fork a new process while the tree is being collected.
pub(super) fn kill_tree(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let root = child.id() as libc::pid_t;
    let signal = |pid: libc::pid_t, sig: libc::c_int| {
        // SAFETY: kill has no memory-safety preconditions; `pid` is sshd or
        // one of its descendants.
        unsafe { libc::kill(pid, sig) };
    };
    signal(root, libc::SIGSTOP);
    let mut frozen: HashSet<libc::pid_t> = HashSet::from([root]);
    loop {
        let fresh: Vec<_> = descendants(root)
            .into_iter()
            .filter(|pid| !frozen.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &pid in &fresh {
            signal(pid, libc::SIGSTOP);
        }
        frozen.extend(fresh);
    }
    for &pid in &frozen {
        signal(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

pub(super) fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // The command name may itself contain ") ", so parse after the last one.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &kid in children.get(&pid).into_iter().flatten() {
            found.push(kid);
            queue.push(kid);
        }
    }
    found
}
