//! The [`Bench`]: the box, distccd and the networks the routes use, the compiler command
//! and environment of each route, and the checks that a job really ran where its route
//! says, from the evidence it leaves (distccd's log, sshd's logins, sshcc's wrapper
//! log). Timing one compile or one build is in [`tiny`](crate::tiny) and
//! [`build`](crate::build).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sshcc::throwaway_box::ThrowawayBox;

use crate::cgroup::CpuCgroup;
use crate::distccd::Distccd;
use crate::network::Network;
use crate::procs::{daemon_pid, find_daemon};
use crate::proxy::{DelayProxy, Traffic};
use crate::route::SLOTS;
use crate::route::{Net, Route, Via};
use crate::support::{DISTCCD, tail};

/// What the sshcc wrapper logs (at info) for a job that ran on a host, before the host's
/// name (`x.c → @box/4 (12 ms)`).
pub const SSHCC_REMOTE_MARK: &str = " → @";
/// What sshd logs (LogLevel VERBOSE) for each authenticated connection.
const SSHD_LOGIN_MARK: &str = "Accepted publickey";
/// What distccd logs for each finished job.
const DISTCCD_JOB_MARK: &str = "COMPILE_OK";

/// A compiler command and the environment it needs.
pub struct Compiler {
    pub words: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

/// Variables of the caller that could change what the routes do.
const SCRUBBED_ENV: &[&str] = &[
    "DISTCC_HOSTS",
    "DISTCC_SSH",
    "DISTCC_VERBOSE",
    "DISTCC_LOG",
    "DISTCC_POTENTIAL_HOSTS",
    "DISTCC_FALLBACK",
    "DISTCC_SKIP_LOCAL_RETRY",
    "DISTCC_DIR",
    "SSHCC_HOSTS",
    "SSHCC_SSH_CONFIG",
    "SSHCC_RUNTIME_DIR",
    "SSHCC_LOG",
    "SSHCC_NO_DAEMON",
    "SSHCC_CONFIG",
    "CCACHE_PREFIX",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
];

pub struct Bench {
    pub build_box: ThrowawayBox,
    pub sshcc: PathBuf,
    /// tiny.c lives here.
    pub work: PathBuf,
    pub distcc_dir: PathBuf,
    /// A config file that does not exist: sshcc must not read the user's.
    pub no_config: PathBuf,
    pub control_dir: PathBuf,
    pub distccd: Distccd,
    pub loopback: Network,
    pub delayed: Network,
    /// Section 6's network, set up only when that section runs.
    pub bastion: Option<Network>,
    /// Masters started, by config file and host, to stop at the end.
    pub masters: Vec<(PathBuf, &'static str)>,
    /// Runtime dirs whose daemon was started, to stop at the end.
    pub daemons: Vec<PathBuf>,
    /// Owns the proxies' tasks; declared after the networks so it outlives them.
    pub _runtime: tokio::runtime::Runtime,
    /// Holds the box's sshd and distccd with everything they start (`None` when no
    /// cgroup can be made); last, so it is removed after the box is gone.
    pub box_cgroup: Option<CpuCgroup>,
}

impl Bench {
    pub fn network(&self, net: Net) -> &Network {
        match net {
            Net::Loopback => &self.loopback,
            Net::Delayed => &self.delayed,
            Net::Bastion => self
                .bastion
                .as_ref()
                .expect("the bastion network is set up when section 6 runs"),
        }
    }

    /// The proxy the client's connections of `route` go through.
    pub fn proxy(&self, route: Route) -> Option<&DelayProxy> {
        self.network(route.net).proxies.as_ref()?.of(route.via)
    }

    /// Behind the bastion, the proxy between the bastion and the box for `route`.
    pub fn second_hop_proxy(&self, route: Route) -> Option<&DelayProxy> {
        self.network(route.net).second_hop.as_ref()?.of(route.via)
    }

    pub fn traffic(&self, route: Route) -> Traffic {
        self.proxy(route)
            .map(DelayProxy::traffic)
            .unwrap_or_default()
    }

    pub fn second_hop_traffic(&self, route: Route) -> Traffic {
        self.second_hop_proxy(route)
            .map(DelayProxy::traffic)
            .unwrap_or_default()
    }

    fn bastion_box(&self) -> Option<&ThrowawayBox> {
        self.bastion.as_ref()?.bastion_box.as_ref()
    }

    fn master_options(&self) -> [String; 6] {
        [
            "-o".to_owned(),
            "ControlMaster=auto".to_owned(),
            "-o".to_owned(),
            format!("ControlPath={}/cm-%C", self.control_dir.display()),
            "-o".to_owned(),
            "ControlPersist=120".to_owned(),
        ]
    }

    pub fn compiler(&self, route: Route) -> Compiler {
        let network = self.network(route.net);
        let lzo = if route.lzo { ",lzo" } else { "" };
        let distcc_env = |hosts: String, ssh: Option<String>| {
            let mut env = vec![
                ("DISTCC_HOSTS", hosts),
                ("DISTCC_DIR", self.distcc_dir.display().to_string()),
                // A job that cannot be distributed must fail, not run here.
                ("DISTCC_FALLBACK", "0".to_owned()),
                ("DISTCC_SKIP_LOCAL_RETRY", "1".to_owned()),
            ];
            if let Some(ssh) = ssh {
                env.push(("DISTCC_SSH", ssh));
            }
            env
        };
        let distcc = vec!["distcc".to_owned(), "gcc".to_owned()];
        let (host, slots) = (network.host, network.slots);
        let box_hosts = format!("@{host}/{slots}:{DISTCCD}{lzo}");
        match route.via {
            Via::Local => Compiler {
                words: vec!["gcc".to_owned()],
                env: Vec::new(),
            },
            Via::DistccTcp => Compiler {
                words: distcc,
                env: distcc_env(format!("127.0.0.1:{}/{SLOTS}{lzo}", network.tcp_port), None),
            },
            Via::DistccSsh => Compiler {
                words: distcc,
                env: distcc_env(
                    box_hosts,
                    Some(format!("ssh -F {}", network.ssh_config.display())),
                ),
            },
            Via::DistccSshMaster => Compiler {
                words: distcc,
                env: distcc_env(
                    box_hosts,
                    Some(format!(
                        "ssh -F {} {}",
                        network.master_config.display(),
                        self.master_options().join(" ")
                    )),
                ),
            },
            Via::Sshcc => Compiler {
                words: vec![self.sshcc.display().to_string(), "gcc".to_owned()],
                env: vec![
                    (
                        "SSHCC_HOSTS",
                        format!("@{host}/{slots}:{}", self.sshcc.display()),
                    ),
                    (
                        "SSHCC_SSH_CONFIG",
                        network.sshcc_config.display().to_string(),
                    ),
                    (
                        "SSHCC_RUNTIME_DIR",
                        network.runtime_dir.display().to_string(),
                    ),
                    ("SSHCC_IDLE_TIMEOUT", "3600".to_owned()),
                    ("SSHCC_CONFIG", self.no_config.display().to_string()),
                    // The wrapper then names the box of every job it sent (checked).
                    ("SSHCC_LOG", "info".to_owned()),
                    ("DISTCC_DIR", self.distcc_dir.display().to_string()),
                    ("DISTCC_FALLBACK", "0".to_owned()),
                    ("DISTCC_SKIP_LOCAL_RETRY", "1".to_owned()),
                ],
            },
        }
    }

    /// Counts of the evidence each route leaves per remote job.
    pub fn evidence(&self) -> Result<Evidence> {
        Ok(Evidence {
            distccd_jobs: self.distccd.log()?.matches(DISTCCD_JOB_MARK).count(),
            ssh_logins: self.build_box.log().matches(SSHD_LOGIN_MARK).count(),
            bastion_logins: self
                .bastion_box()
                .map_or(0, |b| b.log().matches(SSHD_LOGIN_MARK).count()),
        })
    }

    /// Checks that `jobs` jobs of `route` ran remotely, from the evidence before and
    /// after and the command's stderr.
    pub fn check_remote(
        &self,
        route: Route,
        jobs: usize,
        before: Evidence,
        output: &Output,
    ) -> Result<()> {
        let mut after = self.evidence()?;
        // distccd logs a job after sending its result, so the line may lag a little.
        let deadline = Instant::now() + Duration::from_secs(2);
        while route.via == Via::DistccTcp
            && after.distccd_jobs - before.distccd_jobs < jobs
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
            after = self.evidence()?;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if route.net == Net::Bastion {
            // Per-job ssh logs in to the bastion once per job, the ControlMaster route
            // never, and sshcc only when its daemon connects to the box (a warm-up).
            let expected = match route.via {
                Via::DistccSsh => jobs,
                Via::Sshcc => after.ssh_logins - before.ssh_logins,
                _ => 0,
            };
            let logins = after.bastion_logins - before.bastion_logins;
            ensure!(
                logins == expected,
                "{}: expected {expected} new logins to the bastion, saw {logins}; stderr:\n{}",
                route.label(),
                tail(&stderr, 20)
            );
        }
        let (what, seen) = match route.via {
            Via::Local => return Ok(()),
            Via::DistccTcp => (
                "COMPILE_OK lines in the distccd log",
                after.distccd_jobs - before.distccd_jobs,
            ),
            Via::DistccSsh => (
                "new ssh logins to the box",
                after.ssh_logins - before.ssh_logins,
            ),
            Via::DistccSshMaster => {
                let logins = after.ssh_logins - before.ssh_logins;
                ensure!(
                    logins == 0,
                    "{}: {logins} new ssh logins; the ControlMaster was not used",
                    route.label()
                );
                return Ok(());
            }
            Via::Sshcc => (
                "remote-job lines from the sshcc wrapper",
                stderr
                    .matches(&format!(
                        "{SSHCC_REMOTE_MARK}{}/",
                        self.network(route.net).host
                    ))
                    .count(),
            ),
        };
        ensure!(
            seen == jobs,
            "{}: expected {jobs} {what}, saw {seen}; stderr:\n{}",
            route.label(),
            tail(&stderr, 20)
        );
        Ok(())
    }

    pub fn check_output(&self, route: Route, output: &Output) -> Result<()> {
        if output.status.success() {
            return Ok(());
        }
        let bastion = match (route.net, self.bastion_box()) {
            (Net::Bastion, Some(bastion)) => {
                format!("\nbastion sshd log (tail):\n{}", tail(&bastion.log(), 10))
            }
            _ => String::new(),
        };
        bail!(
            "{} failed ({}):\n{}{}\nsshd log (tail):\n{}\ndistccd log (tail):\n{}{bastion}",
            route.label(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.build_box.log(), 10),
            tail(&self.distccd.log().unwrap_or_default(), 10),
        )
    }

    /// Starts the ControlMaster for `host` of `config` (untimed) and remembers to stop it.
    pub fn start_master(&mut self, config: &Path, host: &'static str) -> Result<()> {
        let status = Command::new("ssh")
            .arg("-F")
            .arg(config)
            .args(self.master_options())
            .args([host, "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("starting the ControlMaster")?;
        ensure!(
            status.success(),
            "starting the ControlMaster failed ({status})"
        );
        self.masters.push((config.to_path_buf(), host));
        let check = Command::new("ssh")
            .arg("-F")
            .arg(config)
            .args(self.master_options())
            .args(["-O", "check", host])
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            check.status.success(),
            "no ControlMaster running for {}: {}",
            config.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for (config, host) in &self.masters {
            let _ = Command::new("ssh")
                .arg("-F")
                .arg(config)
                .args(self.master_options())
                .args(["-O", "exit", host])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // A daemon started by a job that then failed its checks was never noted; stop
        // those too rather than leave them to their hour-long idle timeout.
        let mut dirs = self.daemons.clone();
        for network in [
            Some(&self.loopback),
            Some(&self.delayed),
            self.bastion.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !dirs.contains(&network.runtime_dir)
                && matches!(find_daemon(&network.runtime_dir), Ok(Some(_)))
            {
                dirs.push(network.runtime_dir.clone());
            }
        }
        for dir in &dirs {
            let _ = Command::new(&self.sshcc)
                .arg("--stop")
                .env("SSHCC_RUNTIME_DIR", dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Applies the route's environment to `cmd` on top of a scrubbed caller environment.
pub fn prepare(cmd: &mut Command, compiler: &Compiler) {
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(compiler.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

#[derive(Debug, Clone, Copy)]
pub struct Evidence {
    distccd_jobs: usize,
    ssh_logins: usize,
    /// Logins to section 6's bastion (0 when it is not set up).
    bastion_logins: usize,
}

/// Makes sure `route`'s sshcc daemon is started and remembered for `--stop`.
pub fn note_daemon(bench: &mut Bench, route: Route) -> Result<()> {
    if route.via == Via::Sshcc {
        let dir = bench.network(route.net).runtime_dir.clone();
        daemon_pid(&dir)?;
        let log = fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        ensure!(
            !log.contains("using one distccd channel per job"),
            "the sshcc daemon fell back to distccd channels:\n{}",
            tail(&log, 10)
        );
        if !bench.daemons.contains(&dir) {
            bench.daemons.push(dir);
        }
    }
    Ok(())
}
