//! The client side: an environment with a private daemon, and `make` builds that
//! cannot hang the suite (signalled, waited for with a limit, their logs counted).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::boxes::Compilers;
use super::wait::{BUILD_LIMIT, WAIT_LIMIT};
use crate::common::{client_command, sshcc};

/// The client side: an ssh_config, a host list and a private daemon (stopped when
/// dropped).
pub struct Client {
    dir: PathBuf,
    hosts: String,
}

impl Client {
    /// `hosts` are `(alias, slots)` pairs of the aliases `stanzas` define.
    pub fn new(dir: &Path, stanzas: &[String], hosts: &[(&str, u32)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ssh_config"), stanzas.join("\n")).unwrap();
        let hosts = hosts
            .iter()
            .map(|(alias, slots)| format!("@{alias}/{slots}:{}", sshcc().display()))
            .collect::<Vec<_>>()
            .join(" ");
        Client {
            dir: dir.to_path_buf(),
            hosts,
        }
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.join("runtime")
    }

    /// `program` in the client environment: this client's hosts, ssh config and daemon,
    /// no toolchain check (the boxes' compilers are scripts), per-job logging.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = client_command(
            program,
            &self.hosts,
            &self.dir.join("ssh_config"),
            &self.dir,
        );
        command
            .env("SSHCC_CONFIG", self.dir.join("no-config.toml"))
            .env("SSHCC_IDLE_TIMEOUT", "120")
            .env("SSHCC_TOOLCHAIN_CHECK", "off")
            .env("SSHCC_LOG", "info")
            .env("DISTCC_IO_TIMEOUT", "120")
            .env("DISTCC_BACKOFF_PERIOD", "1")
            .env("DISTCC_FALLBACK", "1");
        for name in [
            "DISTCC_SKIP_LOCAL_RETRY",
            "DISTCC_SSH",
            "DISTCC_VERBOSE",
            "SSHCC_PREPROCESS",
            "CCACHE_PREFIX",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Starts `make -j8` of the project in `project` in its own process group, with
    /// `env` on top of the client environment; output goes to a file.
    pub fn build(&self, project: &Path, env: &[(&str, &str)]) -> Build {
        self.build_with(project, env, &[])
    }

    /// [`build`](Self::build) with more arguments for make.
    pub fn build_with(&self, project: &Path, env: &[(&str, &str)], args: &[&str]) -> Build {
        let log = tempfile::NamedTempFile::new_in(&self.dir).unwrap();
        let mut command = self.command("make");
        command
            .current_dir(project)
            .arg("-j8")
            .arg(format!("CC={} gcc", sshcc().display()))
            .arg(format!("CXX={} g++", sshcc().display()))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .process_group(0);
        // A suite started in the background of a script (`cargo test &`) inherits
        // SIGINT ignored, and make would ignore the test's Ctrl-C too.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        Build {
            child: command.spawn().expect("make"),
            log,
            started: Instant::now(),
        }
    }

    /// The pids of this client's daemons.
    pub fn daemon_pids(&self) -> Vec<i32> {
        let wanted = format!("SSHCC_RUNTIME_DIR={}", self.runtime_dir().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let environ = std::fs::read(entry.path().join("environ")).ok()?;
                let is_daemon = cmdline.split(|b| *b == 0).any(|arg| arg == b"--daemon");
                let ours = environ
                    .split(|b| *b == 0)
                    .any(|var| var == wanted.as_bytes());
                (is_daemon && ours).then_some(pid)
            })
            .collect()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.runtime_dir().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.command(sshcc()).arg("--stop").output();
        for pid in self.daemon_pids() {
            // SAFETY: kill(2) on a daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A running `make`.
pub struct Build {
    child: Child,
    log: tempfile::NamedTempFile,
    started: Instant,
}

/// How a build ended.
pub struct Finished {
    pub status: ExitStatus,
    pub log: String,
}

impl Build {
    /// Sends `signal` to make and every compile it started (make's process group), as
    /// a terminal's Ctrl-C does.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the process group this test created for make.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// What make and the compiles printed so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until at least `count` compiles reached the box through `compilers`; the
    /// build must still be running then.
    pub fn wait_for_jobs(&mut self, compilers: &Compilers, count: usize) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while compilers.started().len() < count {
            assert!(
                self.is_running() && Instant::now() < deadline,
                "no {count} jobs reached the box; build log:\n{}",
                self.log_so_far()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the build to end; a build still running after [`BUILD_LIMIT`] hung,
    /// and is killed.
    pub fn finish(mut self) -> Finished {
        let deadline = self.started + BUILD_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "the build hung (still running after {BUILD_LIMIT:?}):\n{}",
                    std::fs::read_to_string(self.log.path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        // Shown with --nocapture, and with a failing test's output.
        eprintln!(
            "--- build ended ({status}) after {:?}:\n{log}",
            self.started.elapsed()
        );
        Finished { status, log }
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

impl Finished {
    /// Asserts a successful build.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "the build failed:\n{}", self.log);
        self
    }

    /// Jobs that ran on a box, by the wrapper's `→ host` lines.
    pub fn remote_jobs(&self) -> usize {
        self.log
            .lines()
            .filter(|line| line.contains(" → @"))
            .count()
    }

    /// Jobs the wrapper compiled here after a failure.
    pub fn local_fallbacks(&self) -> usize {
        self.log
            .lines()
            .filter(|line| line.contains("locally"))
            .count()
    }
}
