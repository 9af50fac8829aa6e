//! One build through sshcc, measured: the boxes and links ([`Target`]), the client's
//! environment per preprocessing [`Mode`], and [`build`]: wall time, the CPU of make's
//! children (wrappers and the preprocessors they run) and of the daemon, bytes through
//! the link, the daemon's own counters, the box's CPU, and where each job ran.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use sshcc::status::{HostKind, HostStatus, Phase, Status};
use sshcc::throwaway_box::ThrowawayBox;

use crate::cgroup::CpuCgroup;
use crate::link::{Link, Traffic};
use crate::support::{children_cpu, process_cpu, tail};

/// What the wrapper logs (at info) for a job that ran on a host.
const ON_BOX: &str = " → @box/";
/// ... and adds when the box preprocessed it.
const PREPROCESSED_THERE: &str = ", preprocessed there";

/// Where jobs are preprocessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `SSHCC_PREPROCESS=directives-only`: today's path.
    Local,
    /// `SSHCC_PREPROCESS=remote`.
    Remote,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Local, Mode::Remote];

    fn variable(self) -> &'static str {
        match self {
            Mode::Local => "directives-only",
            Mode::Remote => "remote",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Local => "local preprocessing (`directives-only`)",
            Mode::Remote => "remote preprocessing (`remote`)",
        }
    }
}

/// A box as the client reaches it: through which link, with how many slots.
#[derive(Clone)]
pub struct Target<'a> {
    pub build_box: &'a ThrowawayBox,
    pub cgroup: Option<&'a CpuCgroup>,
    pub link: &'a Link,
    pub ssh_config: PathBuf,
    pub slots: usize,
    /// The emulated compiler is a stand-in, not the client's gcc.
    pub toolchain_check_off: bool,
}

/// What the client side needs for every build.
pub struct Client {
    pub sshcc: PathBuf,
    /// A config file that does not exist: sshcc must not read the user's.
    pub no_config: PathBuf,
    pub distcc_dir: PathBuf,
}

/// One build to run.
pub struct Build<'a> {
    pub dir: &'a Path,
    pub makefile: &'a str,
    pub objects: &'a [String],
    pub make_jobs: usize,
    pub runtime_dir: &'a Path,
    pub mode: Mode,
    /// Sample `sshcc status` every 100 ms during the build.
    pub sample_status: bool,
}

/// One status sample: when, the box row's busy slots, jobs in the compile phase.
#[derive(Debug, Clone, Copy)]
pub struct StatusSample {
    pub at_ns: u128,
    pub slots_busy: u32,
    pub compiling: u32,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub jobs: usize,
    pub wall: Duration,
    pub started_ns: u128,
    pub ended_ns: u128,
    /// user+sys of everything make ran (its reaped children), make included.
    pub make_cpu: Duration,
    /// user+sys of the daemon (and its reaped children) during the build.
    pub daemon_cpu: Duration,
    /// user+sys of the box's sshd and all it ran (cgroup), when measurable.
    pub box_cpu: Option<Duration>,
    /// Through the link.
    pub traffic: Traffic,
    /// The daemon's counters for the box: wire bytes and blobs sent during the build.
    pub wire_sent: u64,
    pub blobs_sent: u64,
    pub blob_bytes_sent: u64,
    /// Jobs the box preprocessed (all ran on the box: checked).
    pub preprocessed_there: usize,
    pub status_samples: Vec<StatusSample>,
}

impl Sample {
    pub fn client_cpu(&self) -> Duration {
        self.make_cpu + self.daemon_cpu
    }
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Client {
    /// Runs `build` through `target` and measures it; fails unless every job ran on the
    /// box and make succeeded.
    pub fn build(&self, target: &Target, build: &Build) -> Result<Sample> {
        for object in build.objects {
            match fs::remove_file(build.dir.join(object)) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("removing {object}")),
            }
        }
        let mut make = Command::new("make");
        make.arg("-f")
            .arg(build.makefile)
            .arg(format!("-j{}", build.make_jobs))
            .arg(format!("CXX={} g++", self.sshcc.display()))
            .current_dir(build.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in SCRUBBED_ENV {
            make.env_remove(name);
        }
        make.env(
            "SSHCC_HOSTS",
            format!("@box/{}:{}", target.slots, self.sshcc.display()),
        )
        .env("SSHCC_SSH_CONFIG", &target.ssh_config)
        .env("SSHCC_RUNTIME_DIR", build.runtime_dir)
        .env("SSHCC_IDLE_TIMEOUT", "3600")
        .env("SSHCC_CONFIG", &self.no_config)
        .env("SSHCC_LOG", "info")
        .env("SSHCC_PREPROCESS", build.mode.variable())
        .env("DISTCC_DIR", &self.distcc_dir)
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_SKIP_LOCAL_RETRY", "1");
        if target.toolchain_check_off {
            make.env("SSHCC_TOOLCHAIN_CHECK", "off");
        }

        let before_status = status(build.runtime_dir)?;
        let daemon_before = match before_status.as_ref().and_then(|s| s.daemon_pid) {
            Some(pid) => Some((pid, process_cpu(pid as i32)?)),
            None => None,
        };
        let before_row = before_status.as_ref().and_then(box_row).unwrap_or_default();
        let traffic = target.link.traffic();
        let box_before = target.cgroup.map(CpuCgroup::usage).transpose()?;
        let children_before = children_cpu();
        let started_ns = now_ns();
        let started = Instant::now();
        let stop = AtomicBool::new(false);
        let (output, status_samples) = std::thread::scope(|scope| -> Result<_> {
            let sampler = build.sample_status.then(|| {
                scope.spawn(|| {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let tick = Instant::now();
                        if let Ok(Some(status)) = status(build.runtime_dir) {
                            let row = box_row(&status).unwrap_or_default();
                            samples.push(StatusSample {
                                at_ns: now_ns(),
                                slots_busy: row.slots_busy,
                                compiling: status
                                    .jobs
                                    .iter()
                                    .filter(|job| job.phase == Phase::Compile)
                                    .count() as u32,
                            });
                        }
                        std::thread::sleep(
                            Duration::from_millis(100).saturating_sub(tick.elapsed()),
                        );
                    }
                    samples
                })
            });
            let output = make.output().context("running make");
            stop.store(true, Ordering::Relaxed);
            let samples = match sampler {
                Some(handle) => handle.join().expect("the status sampler panicked"),
                None => Vec::new(),
            };
            Ok((output?, samples))
        })?;
        let wall = started.elapsed();
        let ended_ns = now_ns();
        let make_cpu = children_cpu().saturating_sub(children_before);
        // The box removes a job's tree after answering.
        std::thread::sleep(Duration::from_millis(300));
        let box_cpu = match (target.cgroup.map(CpuCgroup::usage).transpose()?, box_before) {
            (Some(after), Some(before)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let traffic = target.link.traffic() - traffic;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        ensure!(
            output.status.success(),
            "make ({:?}) failed ({}):\n{}\nsshd log (tail):\n{}",
            build.mode,
            output.status,
            tail(&stderr, 40),
            tail(&target.build_box.log(), 10)
        );
        let after_status = status(build.runtime_dir)?.context("no daemon after the build")?;
        let pid = after_status.daemon_pid.context("no daemon pid")?;
        let daemon_cpu = match daemon_before {
            Some((before_pid, before)) => {
                ensure!(
                    before_pid == pid,
                    "the daemon was replaced during the build"
                );
                process_cpu(pid as i32)?.saturating_sub(before)
            }
            // A fresh daemon: all it has used is this build's.
            None => process_cpu(pid as i32)?,
        };
        let row = box_row(&after_status).context("no box row in the daemon's status")?;
        let jobs = build.objects.len();
        let on_box = stderr.matches(ON_BOX).count();
        let preprocessed_there = stderr.matches(PREPROCESSED_THERE).count();
        ensure!(
            on_box == jobs,
            "{:?}: {on_box} of {jobs} jobs ran on the box:\n{}",
            build.mode,
            tail(&stderr, 30)
        );
        match build.mode {
            Mode::Local => ensure!(preprocessed_there == 0, "directives-only jobs went remote"),
            Mode::Remote if preprocessed_there < jobs => {
                for line in stderr.lines().filter(|l| l.contains("preprocessed here")) {
                    eprintln!("  {line}");
                }
            }
            Mode::Remote => {}
        }
        for object in build.objects {
            ensure!(build.dir.join(object).is_file(), "{object} was not written");
        }
        Ok(Sample {
            jobs,
            wall,
            started_ns,
            ended_ns,
            make_cpu,
            daemon_cpu,
            box_cpu,
            traffic,
            wire_sent: row.bytes_sent.saturating_sub(before_row.bytes_sent),
            blobs_sent: row.blobs_sent.saturating_sub(before_row.blobs_sent),
            blob_bytes_sent: row
                .blob_bytes_sent
                .saturating_sub(before_row.blob_bytes_sent),
            preprocessed_there,
            status_samples,
        })
    }

    /// Stops the daemon of `runtime_dir`, if one runs.
    pub fn stop_daemon(&self, runtime_dir: &Path) {
        let _ = Command::new(&self.sshcc)
            .arg("--stop")
            .env("SSHCC_RUNTIME_DIR", runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Variables of the caller that could change what the builds do.
const SCRUBBED_ENV: &[&str] = &[
    "DISTCC_HOSTS",
    "DISTCC_VERBOSE",
    "DISTCC_LOG",
    "DISTCC_FALLBACK",
    "SSHCC_HOSTS",
    "SSHCC_SSH_CONFIG",
    "SSHCC_RUNTIME_DIR",
    "SSHCC_LOG",
    "SSHCC_NO_DAEMON",
    "SSHCC_CONFIG",
    "SSHCC_PREPROCESS",
    "SSHCC_TOOLCHAIN_CHECK",
    "CCACHE_PREFIX",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
];

/// The remote box's row of a status.
fn box_row(status: &Status) -> Option<HostStatus> {
    status
        .hosts
        .iter()
        .find(|host| host.kind == HostKind::Ssh)
        .cloned()
}

/// The daemon's status from its socket in `runtime_dir` (as `sshcc status --json`
/// reads it), or `None` when no daemon listens. In-process, so sampling it costs the
/// client no process start.
pub fn status(runtime_dir: &Path) -> Result<Option<Status>> {
    use sshcc::daemon::ipc::kind;
    let socket = runtime_dir.join(sshcc::daemon::runtime_dir::SOCKET_NAME);
    let Ok(mut stream) = UnixStream::connect(&socket) else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // A frame: length (kind, flags, job id and payload), kind, flags, job id.
    let mut request = Vec::with_capacity(14);
    request.extend_from_slice(&10u32.to_be_bytes());
    request.extend_from_slice(&[kind::STATUS, 0]);
    request.extend_from_slice(&0u64.to_be_bytes());
    stream.write_all(&request)?;
    let mut header = [0u8; 14];
    stream.read_exact(&mut header)?;
    let length = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    ensure!(
        header[4] == kind::STATUS_REPLY && header[5] == 0 && length >= 10,
        "unexpected status frame from the daemon"
    );
    let mut body = vec![0u8; length - 10];
    stream.read_exact(&mut body)?;
    Ok(Some(
        serde_json::from_slice(&body).context("parsing the status")?,
    ))
}

/// The pid of `build_box`'s sshd listener: our child running with its sshd_config.
pub fn sshd_pid(build_box: &ThrowawayBox) -> Result<i32> {
    let config = build_box.dir().join("sshd_config");
    let config = config.as_os_str().as_encoded_bytes();
    let me = std::process::id().to_string();
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
        let parent = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
            });
        if cmdline.windows(config.len()).any(|w| w == config) && parent.as_deref() == Some(&me) {
            return Ok(pid);
        }
    }
    bail!("cannot find the box's sshd process")
}

/// A cgroup holding the sshd `pid` (and so every session it starts later).
pub fn box_cgroup(pid: i32, name: &str) -> Result<CpuCgroup> {
    let cgroup = CpuCgroup::create(&format!("sshcc-bench-rp-{}-{name}", std::process::id()))?;
    cgroup.add(pid)?;
    Ok(cgroup)
}

/// Sets the niceness of `pid` (sessions sshd starts later inherit it).
pub fn renice(pid: i32, nice: i32) -> Result<()> {
    // SAFETY: setpriority has no memory-safety preconditions.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) };
    ensure!(
        rc == 0,
        "setpriority({pid}, {nice}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// An ssh_config reaching `build_box` through the proxy on `port`, with a known_hosts
/// file holding the box's real host key under `[127.0.0.1]:<port>`.
pub fn linked_ssh_config(
    build_box: &ThrowawayBox,
    dir: &Path,
    name: &str,
    port: u16,
    user: &str,
) -> Result<PathBuf> {
    let known = fs::read_to_string(build_box.known_hosts()).context("reading known_hosts")?;
    let key = known
        .lines()
        .find_map(|line| line.split_once(' ').map(|(_, key)| key.trim().to_owned()))
        .context("the box's known_hosts is empty")?;
    let known_hosts = dir.join(format!("known_hosts-{name}"));
    fs::write(&known_hosts, format!("[127.0.0.1]:{port} {key}\n"))?;
    let config = dir.join(format!("ssh_config-{name}"));
    fs::write(
        &config,
        format!(
            "Host box\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key_file}\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  LogLevel ERROR\n",
            key_file = build_box.client_key().display(),
            known_hosts = known_hosts.display(),
        ),
    )?;
    Ok(config)
}
