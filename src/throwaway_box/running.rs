//! A running [`ThrowawayBox`]: how clients reach it, and what tests do to it (stop,
//! restart, freeze and thaw it as a host that dies, reboots or hangs).

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::builder::BoxBuilder;
use super::layout::{BoxPaths, HOST_ALIAS, read_log};
use super::process::{descendants, kill_tree, spawn_sshd};
use super::readiness::{NotReady, wait_until_ready};

/// A running throwaway sshd; see the [module docs](super).
#[derive(Debug)]
pub struct ThrowawayBox {
    pub(super) child: Option<Child>,
    pub(super) port: u16,
    pub(super) paths: BoxPaths,
    // Declared last so the directory outlives the Drop impl's kill of sshd.
    pub(super) _dir: tempfile::TempDir,
}

impl ThrowawayBox {
    pub fn builder() -> BoxBuilder {
        BoxBuilder::default()
    }

    /// The TCP port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` name to use together with [`ssh_config`](Self::ssh_config).
    pub fn host_alias(&self) -> &str {
        HOST_ALIAS
    }

    /// Client configuration defining [`host_alias`](Self::host_alias); pass
    /// it as `ssh -F <path>`.
    pub fn ssh_config(&self) -> &Path {
        &self.paths.ssh_config
    }

    pub fn known_hosts(&self) -> &Path {
        &self.paths.known_hosts
    }

    /// The private key the box accepts.
    pub fn client_key(&self) -> &Path {
        &self.paths.client_key
    }

    /// The box's temporary directory, deleted when the box is dropped.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// `ssh -F <ssh_config>`, suitable for distcc's `DISTCC_SSH`. distcc
    /// splits that variable at spaces, which is why the box's paths never
    /// contain any.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.paths.ssh_config.display())
    }

    /// `ssh -F <ssh_config> box`, ready for the remote command's arguments.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.paths.ssh_config).arg(HOST_ALIAS);
        cmd
    }

    /// Everything sshd has logged so far (LogLevel VERBOSE).
    pub fn log(&self) -> String {
        read_log(&self.paths.log)
    }

    /// Kills sshd and every session it spawned, as if the host had died, and
    /// waits for sshd to exit. Calling it again does nothing.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child);
        }
    }

    /// The box reboots: sshd and every session die as in [`stop`](Self::stop), nothing
    /// listens for `downtime`, then sshd starts again on the same port with the same
    /// keys and configuration. Returns once `ssh box true` succeeds again, so not for
    /// boxes in a network namespace or with a [forced
    /// command](BoxBuilder::forced_command).
    pub fn restart(&mut self, downtime: Duration) -> Result<()> {
        self.stop();
        thread::sleep(downtime);
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.paths.log)
            .context("opening the sshd log")?;
        let mut child = spawn_sshd(&self.paths.sshd_config, None, log)?;
        match wait_until_ready(&mut child, &self.paths, None, self.port) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(NotReady::Exited(status)) => bail!(
                "restarted sshd exited ({status}); sshd log:\n{}",
                self.log()
            ),
            Err(NotReady::Failed(err)) => {
                kill_tree(&mut child);
                Err(err.context(format!(
                    "restarted sshd on port {} did not become usable; sshd log:\n{}",
                    self.port,
                    self.log()
                )))
            }
        }
    }

    /// The box hangs: sshd and every session are stopped (SIGSTOP). The kernel still
    /// accepts TCP connections and acknowledges data, but nothing answers.
    pub fn freeze(&self) {
        self.signal_tree(libc::SIGSTOP);
    }

    /// Undoes [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal_tree(libc::SIGCONT);
    }

    fn signal_tree(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let root = child.id() as libc::pid_t;
            for pid in std::iter::once(root).chain(descendants(root)) {
                // SAFETY: kill has no memory-safety preconditions; `pid` is sshd or
                // one of its descendants.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }
}

impl Drop for ThrowawayBox {
    fn drop(&mut self) {
        self.stop();
    }
}
