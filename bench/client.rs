//! The sshcc client (wrapper + daemon + one multiplexed SSH channel) against stock
//! distcc over TCP, over per-job ssh and over ssh with a ControlMaster, on this machine.
//!
//! Run with `cargo bench --bench client`. Sections (see docs/benchmarks.md):
//!
//! 1. one tiny compile at a time on loopback, interleaved round-robin;
//! 2. the same through a userspace proxy adding 10 ms each way (20 ms round trip);
//! 3. a clean `-j4` build of Lua 5.4's library (from the `lua-src` crate) on loopback:
//!    wall time and client CPU per job, objects checked against a local build;
//! 4. bytes on the wire per job for that build through the proxy;
//! 5. ratio and speed of LZO1X-1, zstd 1/3 and LZ4 on the build's payloads;
//! 6. one tiny compile at a time to a target behind a bastion (`ProxyJump`), both hops
//!    through the delay proxy, against distcc TCP through one delayed hop.
//!
//! `SSHCC_BENCH_RUNS` (default 21) sets the timed tiny compiles per route,
//! `SSHCC_BENCH_BUILDS` (default 5) the timed builds per route, and
//! `SSHCC_BENCH_SECTIONS` (e.g. `1,3`; default all six) which sections run. For diagnosis,
//! `SSHCC_BENCH_DISTCCD_NICE` overrides the TCP distccd's niceness (default 5) and
//! `SSHCC_BENCH_TRACE_PROXY=1` prints every chunk the proxies forward. Machine facts and
//! markdown tables go to stdout, progress to stderr.
//!
//! The box is a [`ThrowawayBox`] (OpenSSH sshd on 127.0.0.1 with sshd's default
//! `MaxSessions`/`MaxStartups`), logged into as the system user `sshcc-bench` with
//! `/bin/sh` when run as root, like `per_job`. distccd for the TCP routes runs as
//! `distccd --daemon` on an ephemeral port of 127.0.0.1. Every distributed job runs with
//! `DISTCC_FALLBACK=0`, and each run is checked to have really compiled remotely.
//! Section 6 adds a second box as the bastion (see [`bastion`]); the build box is its
//! target.

#[path = "client/bastion.rs"]
mod bastion;
#[path = "client/cgroup.rs"]
mod cgroup;
#[path = "client/compression.rs"]
mod compression;
#[path = "client/lua.rs"]
mod lua;
#[path = "client/proxy.rs"]
mod proxy;
#[path = "support.rs"]
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sshcc::throwaway_box::ThrowawayBox;

use cgroup::CpuCgroup;
use compression::{Codec, Corpus};
use lua::LuaSources;
use proxy::{DelayProxy, Traffic};
use support::{BOX_COMPILER, BOX_USER, DISTCCD, Login, machine_facts, stats, tail};

const DEFAULT_RUNS: usize = 21;
const DEFAULT_BUILDS: usize = 5;
/// One-way delay of the proxy (round trip twice this).
const DELAY: Duration = Duration::from_millis(10);
/// Debian's distcc client (and sshcc) send `gcc` as the target-prefixed name.
/// Job slots of every remote host entry, and make's `-j` for the distributed builds.
const SLOTS: usize = 4;
/// make's `-j` for the local build: one job per core.
const LOCAL_JOBS: usize = 2;
const TINY_SOURCE: &str = "tiny.c";
const TINY_OBJECT: &str = "tiny.o";
/// What the sshcc wrapper logs (at info) for a job that ran on a host, before the host's
/// name (`x.c → @box/4 (12 ms)`).
const SSHCC_REMOTE_MARK: &str = " → @";
/// What sshd logs (LogLevel VERBOSE) for each authenticated connection.
const SSHD_LOGIN_MARK: &str = "Accepted publickey";
/// What distccd logs for each finished job.
const DISTCCD_JOB_MARK: &str = "COMPILE_OK";

/// How the compiler is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// gcc on this machine.
    Local,
    /// distcc → `distccd --daemon` over TCP.
    DistccTcp,
    /// distcc → a new `ssh` per job → `distccd --inetd`.
    DistccSsh,
    /// distcc → `ssh` through an already open OpenSSH ControlMaster → `distccd --inetd`.
    DistccSshMaster,
    /// `sshcc gcc` → the warm per-user daemon → one `sshcc --mux` channel.
    Sshcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Loopback,
    /// Through a [`DelayProxy`].
    Delayed,
    /// To the host `target` (the box) with `ProxyJump bastion`: client → proxy →
    /// bastion's sshd, then bastion → proxy → the box's sshd (section 6).
    Bastion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    via: Via,
    net: Net,
    /// distcc's `,lzo` (protocol 2).
    lzo: bool,
}

impl Route {
    const fn new(via: Via, net: Net) -> Self {
        Route {
            via,
            net,
            lzo: false,
        }
    }

    const fn lzo(self) -> Self {
        Route { lzo: true, ..self }
    }

    fn label(self) -> String {
        let base = match self.via {
            Via::Local => "local gcc",
            Via::DistccTcp => "distcc → TCP → `distccd --daemon`",
            Via::DistccSsh => "distcc → ssh per job → `distccd --inetd`",
            Via::DistccSshMaster => "distcc → ssh via ControlMaster → `distccd --inetd`",
            Via::Sshcc => "sshcc → daemon → one `sshcc --mux` channel",
        };
        let mut label = base.to_owned();
        if self.lzo {
            label.push_str(", lzo");
        }
        match self.net {
            Net::Delayed if self.via != Via::Local => label.push_str(" (20 ms RTT)"),
            Net::Bastion => label.push_str(" via bastion (2 hops × 20 ms RTT)"),
            _ => {}
        }
        label
    }

    /// make's `-j` for this route.
    fn jobs(self) -> usize {
        if self.via == Via::Local {
            LOCAL_JOBS
        } else {
            SLOTS
        }
    }
}

const TINY_LOOPBACK: [Route; 5] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Loopback),
    Route::new(Via::DistccSsh, Net::Loopback),
    Route::new(Via::DistccSshMaster, Net::Loopback),
    Route::new(Via::Sshcc, Net::Loopback),
];
const TINY_DELAYED: [Route; 4] = [
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccSsh, Net::Delayed),
    Route::new(Via::DistccSshMaster, Net::Delayed),
    Route::new(Via::Sshcc, Net::Delayed),
];
/// Section 6: the reference is distcc TCP through one delayed hop.
const TINY_BASTION: [Route; 5] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccSsh, Net::Bastion),
    Route::new(Via::DistccSshMaster, Net::Bastion),
    Route::new(Via::Sshcc, Net::Bastion),
];
const BUILD_ROUTES: [Route; 4] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Loopback),
    Route::new(Via::DistccSsh, Net::Loopback),
    Route::new(Via::Sshcc, Net::Loopback),
];
const BYTES_ROUTES: [Route; 4] = [
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccTcp, Net::Delayed).lzo(),
    Route::new(Via::DistccSsh, Net::Delayed).lzo(),
    Route::new(Via::Sshcc, Net::Delayed),
];

/// A compiler command and the environment it needs.
struct Compiler {
    words: Vec<String>,
    env: Vec<(&'static str, String)>,
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

/// Everything one network (loopback, delayed or behind the bastion) offers the routes.
struct Network {
    /// Where distcc finds distccd (the daemon, or a proxy in front of it); 0 where no
    /// distcc TCP route goes (behind the bastion).
    tcp_port: u16,
    /// The `Host` the SSH routes name, and the job slots of its host entry.
    host: &'static str,
    slots: usize,
    /// ssh_config for per-job ssh, for the ControlMaster, and for sshcc; on loopback
    /// all three are the box's own, behind the proxy each has its own proxy.
    ssh_config: PathBuf,
    master_config: PathBuf,
    sshcc_config: PathBuf,
    /// `SSHCC_RUNTIME_DIR` of this network's sshcc daemon.
    runtime_dir: PathBuf,
    /// The proxies the client connects to.
    proxies: Option<Proxies>,
    /// Behind the bastion: the proxies the bastion connects to (in front of the box).
    second_hop: Option<Proxies>,
    /// Behind the bastion: the bastion itself.
    bastion_box: Option<ThrowawayBox>,
}

struct Proxies {
    /// `None` where no distcc TCP route goes.
    tcp: Option<DelayProxy>,
    ssh: DelayProxy,
    master: DelayProxy,
    sshcc: DelayProxy,
}

impl Proxies {
    fn of(&self, via: Via) -> Option<&DelayProxy> {
        match via {
            Via::Local => None,
            Via::DistccTcp => self.tcp.as_ref(),
            Via::DistccSsh => Some(&self.ssh),
            Via::DistccSshMaster => Some(&self.master),
            Via::Sshcc => Some(&self.sshcc),
        }
    }
}

struct Bench {
    build_box: ThrowawayBox,
    sshcc: PathBuf,
    /// tiny.c lives here.
    work: PathBuf,
    distcc_dir: PathBuf,
    /// A config file that does not exist: sshcc must not read the user's.
    no_config: PathBuf,
    control_dir: PathBuf,
    distccd: Distccd,
    loopback: Network,
    delayed: Network,
    /// Section 6's network, set up only when that section runs.
    bastion: Option<Network>,
    /// Masters started, by config file and host, to stop at the end.
    masters: Vec<(PathBuf, &'static str)>,
    /// Runtime dirs whose daemon was started, to stop at the end.
    daemons: Vec<PathBuf>,
    /// Owns the proxies' tasks; declared after the networks so it outlives them.
    _runtime: tokio::runtime::Runtime,
    /// Holds the box's sshd and distccd with everything they start (`None` when no
    /// cgroup can be made); last, so it is removed after the box is gone.
    box_cgroup: Option<CpuCgroup>,
}

impl Bench {
    fn network(&self, net: Net) -> &Network {
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
    fn proxy(&self, route: Route) -> Option<&DelayProxy> {
        self.network(route.net).proxies.as_ref()?.of(route.via)
    }

    /// Behind the bastion, the proxy between the bastion and the box for `route`.
    fn second_hop_proxy(&self, route: Route) -> Option<&DelayProxy> {
        self.network(route.net).second_hop.as_ref()?.of(route.via)
    }

    fn traffic(&self, route: Route) -> Traffic {
        self.proxy(route)
            .map(DelayProxy::traffic)
            .unwrap_or_default()
    }

    fn second_hop_traffic(&self, route: Route) -> Traffic {
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

    fn compiler(&self, route: Route) -> Compiler {
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
    fn evidence(&self) -> Result<Evidence> {
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
    fn check_remote(
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

    /// Compiles tiny.c once through `route`.
    fn tiny(&self, route: Route) -> Result<TinySample> {
        let object = self.work.join(TINY_OBJECT);
        match fs::remove_file(&object) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err).context("removing tiny.o"),
        }
        let compiler = self.compiler(route);
        let mut cmd = Command::new(&compiler.words[0]);
        cmd.args(&compiler.words[1..])
            .args(["-c", TINY_SOURCE, "-o", TINY_OBJECT])
            .current_dir(&self.work);
        prepare(&mut cmd, &compiler);
        let evidence = self.evidence()?;
        let traffic = self.traffic(route);
        let second_hop = self.second_hop_traffic(route);
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running {}", route.label()))?;
        let elapsed = started.elapsed();
        let traffic = self.traffic(route) - traffic;
        let second_hop = self.second_hop_traffic(route) - second_hop;
        self.check_output(route, &output)?;
        let size = fs::metadata(&object).map(|m| m.len()).unwrap_or(0);
        ensure!(
            size > 0,
            "{} exited 0 but produced no tiny.o; stderr:\n{}",
            route.label(),
            String::from_utf8_lossy(&output.stderr)
        );
        self.check_remote(route, 1, evidence, &output)?;
        Ok(TinySample {
            wall: elapsed,
            traffic,
            second_hop,
            reported_ms: reported_ms(&String::from_utf8_lossy(&output.stderr)),
        })
    }

    fn check_output(&self, route: Route, output: &Output) -> Result<()> {
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

    /// One clean build of the project in `dir` through `route`.
    fn build(&self, route: Route, project: &Project) -> Result<BuildSample> {
        for object in &project.objects {
            match fs::remove_file(project.dir.join(object)) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("removing {object}")),
            }
        }
        let compiler = self.compiler(route);
        let mut cmd = Command::new("make");
        cmd.arg(format!("-j{}", route.jobs()))
            .arg(format!("CC={}", compiler.words.join(" ")))
            .current_dir(&project.dir);
        prepare(&mut cmd, &compiler);
        // The first sshcc build may start the daemon; its CPU is then not measured.
        let daemon = match route.via {
            Via::Sshcc => find_daemon(&self.network(route.net).runtime_dir)?,
            _ => None,
        };
        let evidence = self.evidence()?;
        let traffic = self.traffic(route);
        let box_cpu = self.box_cpu()?;
        let box_parts = self.box_cgroup.as_ref().map(BoxParts::now);
        let daemon_cpu = daemon.map(process_cpu).transpose()?;
        let children_cpu = children_cpu();
        let started = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running make for {}", route.label()))?;
        let wall = started.elapsed();
        let children_cpu = children_cpu_since(children_cpu);
        // Let the box reap what the build left (distccd's children log and exit after
        // answering) before reading its side.
        std::thread::sleep(Duration::from_millis(100));
        let box_cpu = match (self.box_cpu()?, box_cpu) {
            (Some(after), Some(before)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let box_parts = match (self.box_cgroup.as_ref().map(BoxParts::now), box_parts) {
            (Some(after), Some(before)) => Some(BoxParts {
                worker: after.worker.saturating_sub(before.worker),
                sshd: after.sshd.saturating_sub(before.sshd),
            }),
            _ => None,
        };
        let daemon_cpu = match (daemon, daemon_cpu) {
            (Some(pid), Some(before)) => process_cpu(pid)
                .with_context(|| format!("the sshcc daemon {pid} went away during the build"))?
                .saturating_sub(before),
            _ => Duration::ZERO,
        };
        let traffic = self.traffic(route) - traffic;
        self.check_output(route, &output)?;
        self.check_remote(route, project.objects.len(), evidence, &output)?;
        Ok(BuildSample {
            wall,
            make_cpu: children_cpu,
            daemon_cpu,
            daemon_measured: daemon.is_some(),
            box_cpu,
            box_parts,
            warnings: String::from_utf8_lossy(&output.stderr)
                .matches("warning:")
                .count(),
            traffic,
        })
    }

    fn box_cpu(&self) -> Result<Option<Duration>> {
        self.box_cgroup.as_ref().map(CpuCgroup::usage).transpose()
    }

    /// Starts the ControlMaster for `host` of `config` (untimed) and remembers to stop it.
    fn start_master(&mut self, config: &Path, host: &'static str) -> Result<()> {
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
fn prepare(cmd: &mut Command, compiler: &Compiler) {
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(compiler.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

/// One tiny compile.
#[derive(Debug, Clone, Copy)]
struct TinySample {
    wall: Duration,
    /// Through the proxy the client connects to.
    traffic: Traffic,
    /// Behind the bastion, through the proxy between the bastion and the box.
    second_hop: Traffic,
    /// What the sshcc wrapper logged as the job's time in the daemon and on the box.
    reported_ms: Option<f64>,
}

/// The `(N ms)` of the sshcc wrapper's remote-job line.
fn reported_ms(stderr: &str) -> Option<f64> {
    let line = stderr
        .lines()
        .find(|line| line.contains(SSHCC_REMOTE_MARK))?;
    let (_, rest) = line.rsplit_once('(')?;
    rest.strip_suffix(" ms)")?.trim().parse().ok()
}

#[derive(Debug, Clone, Copy)]
struct Evidence {
    distccd_jobs: usize,
    ssh_logins: usize,
    /// Logins to section 6's bastion (0 when it is not set up).
    bastion_logins: usize,
}

#[derive(Debug, Clone, Copy)]
struct BuildSample {
    wall: Duration,
    /// user+sys of everything make ran (reaped children of this process).
    make_cpu: Duration,
    /// user+sys of the sshcc daemon during the build.
    daemon_cpu: Duration,
    /// Whether a daemon was running when the build started.
    daemon_measured: bool,
    /// user+sys of the box side (its sshd, distccd and all they ran) during the build.
    box_cpu: Option<Duration>,
    /// Of that, the live `sshcc --mux` workers' and sshd session processes' own CPU.
    box_parts: Option<BoxParts>,
    /// Compiler warnings make's output shows (a local build of Lua has none).
    warnings: usize,
    traffic: Traffic,
}

impl BuildSample {
    fn client_cpu(&self) -> Duration {
        self.make_cpu + self.daemon_cpu
    }
}

/// The Lua library, ready to build.
struct Project {
    dir: PathBuf,
    objects: Vec<String>,
}

impl Project {
    fn read_objects(&self) -> Result<HashMap<String, Vec<u8>>> {
        self.objects
            .iter()
            .map(|name| {
                fs::read(self.dir.join(name))
                    .map(|bytes| (name.clone(), bytes))
                    .with_context(|| format!("reading {name}"))
            })
            .collect()
    }

    /// Fails unless every object equals the reference build's.
    fn check_objects(&self, route: Route, reference: &HashMap<String, Vec<u8>>) -> Result<()> {
        for (name, bytes) in self.read_objects()? {
            ensure!(
                reference.get(&name) == Some(&bytes),
                "{}: {name} differs from the local build's",
                route.label()
            );
        }
        Ok(())
    }
}

/// `distccd --daemon` on an ephemeral port of 127.0.0.1, stopped when dropped.
struct Distccd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Distccd {
    fn start(dir: &Path, cmdlist: &Path) -> Result<Self> {
        let log = dir.join("distccd.log");
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let log_file = fs::File::create(&log).context("creating the distccd log")?;
            let mut child = Command::new(DISTCCD)
                .args([
                    "--daemon",
                    "--no-detach",
                    "--log-stderr",
                    "--log-level=notice",
                ])
                .args(["--listen", "127.0.0.1", "--allow", "127.0.0.1"])
                .args(["--port", &port.to_string(), "--jobs", &SLOTS.to_string()])
                .args(distccd_nice().map(|nice| format!("--nice={nice}")))
                .env("DISTCC_CMDLIST", cmdlist)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                // distccd signals its whole process group when it stops.
                .process_group(0)
                .spawn()
                .context("starting distccd")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Ok(Distccd { child, port, log });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("distccd did not listen on port {port} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!(
            "distccd exited on each of 5 ports; log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    }

    fn log(&self) -> Result<String> {
        Ok(
            String::from_utf8_lossy(&fs::read(&self.log).context("reading the distccd log")?)
                .into_owned(),
        )
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `SSHCC_BENCH_DISTCCD_NICE`: a niceness for the TCP distccd instead of its default
/// (5), to see how much the priority matters on a machine that is client and box at once.
fn distccd_nice() -> Option<i32> {
    std::env::var("SSHCC_BENCH_DISTCCD_NICE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// user+sys CPU of this process's reaped children so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to writable memory of the right type.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn children_cpu_since(before: Duration) -> Duration {
    children_cpu().saturating_sub(before)
}

/// utime+stime (plus that of reaped children) of `pid`, from /proc.
fn process_cpu(pid: i32) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&stat)
        .map(|(_, cpu)| cpu)
        .with_context(|| format!("malformed /proc/{pid}/stat"))
}

/// The parent and the CPU time (utime+stime+cutime+cstime) in a /proc stat line.
fn parse_stat(stat: &str) -> Option<(i32, Duration)> {
    let (ppid, own, children) = parse_stat_parts(stat)?;
    Some((ppid, own + children))
}

/// The parent, the process's own CPU time (utime+stime) and that of its reaped
/// children (cutime+cstime) in a /proc stat line.
fn parse_stat_parts(stat: &str) -> Option<(i32, Duration, Duration)> {
    // Fields after the command name (which may contain ") "): state is field 3, so
    // ppid (4) is at 1, utime (14), stime (15), cutime (16) and cstime (17) at 11..=14.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let mut ticks = [0u64; 4];
    for (tick, field) in ticks.iter_mut().zip(fields.get(11..=14)?) {
        *tick = field.parse().ok()?;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let time = |t: u64| Duration::from_nanos(t * 1_000_000_000 / per_second);
    Some((ppid, time(ticks[0] + ticks[1]), time(ticks[2] + ticks[3])))
}

/// Own CPU time (without children) of the live box processes that carry sshcc's jobs:
/// the `sshcc --mux` workers and the sshd processes of their connections.
#[derive(Debug, Clone, Copy, Default)]
struct BoxParts {
    worker: Duration,
    sshd: Duration,
}

impl BoxParts {
    fn now(cgroup: &CpuCgroup) -> Self {
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
fn box_cgroup(build_box: &ThrowawayBox, distccd: &Distccd) -> Result<CpuCgroup> {
    let cgroup = CpuCgroup::create(&format!("sshcc-bench-{}", std::process::id()))?;
    for root in [sshd_pid(build_box)?, distccd.child.id() as i32] {
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
fn daemon_pid(runtime_dir: &Path) -> Result<i32> {
    find_daemon(runtime_dir)?
        .with_context(|| format!("no sshcc daemon runs for {}", runtime_dir.display()))
}

/// Like [`daemon_pid`], but `None` when no daemon runs.
fn find_daemon(runtime_dir: &Path) -> Result<Option<i32>> {
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

/// Section 6's network: the bastion box, a delay proxy per SSH route in front of it and
/// one in front of the build box, and an ssh_config per route naming `target` with
/// `ProxyJump bastion` (see [`bastion`]).
fn bastion_network(
    target: &ThrowawayBox,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    login_user: Option<&str>,
    user: &str,
) -> Result<Network> {
    let bastion_box = bastion::start(login_user)?;
    let proxies = |to: u16| -> Result<Proxies> {
        Ok(Proxies {
            tcp: None,
            ssh: DelayProxy::start(runtime, to, DELAY)?,
            master: DelayProxy::start(runtime, to, DELAY)?,
            sshcc: DelayProxy::start(runtime, to, DELAY)?,
        })
    };
    let first = proxies(bastion_box.port())?;
    let second = proxies(target.port())?;
    let config = |name: &str, via: Via| -> Result<PathBuf> {
        let port = |p: &Proxies| p.of(via).map(DelayProxy::port).expect("an SSH route");
        bastion::ssh_config(
            &bastion_box,
            target,
            dir,
            name,
            port(&first),
            port(&second),
            user,
        )
    };
    Ok(Network {
        tcp_port: 0,
        host: bastion::TARGET_HOST,
        slots: 1,
        ssh_config: config("ssh", Via::DistccSsh)?,
        master_config: config("master", Via::DistccSshMaster)?,
        sshcc_config: config("sshcc", Via::Sshcc)?,
        runtime_dir: dir.join("rt-bastion"),
        proxies: Some(first),
        second_hop: Some(second),
        bastion_box: Some(bastion_box),
    })
}

/// An ssh_config reaching the box through the proxy on `port`, with a known_hosts file
/// holding the box's real host key under `[127.0.0.1]:<port>`.
fn proxied_ssh_config(
    build_box: &ThrowawayBox,
    dir: &Path,
    name: &str,
    port: u16,
    user: &str,
) -> Result<PathBuf> {
    let key = bastion::host_key(build_box)?;
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

fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => {
            let n: usize = value
                .trim()
                .parse()
                .with_context(|| format!("{name}={value:?} is not a number"))?;
            ensure!(n >= 1, "{name} must be at least 1");
            Ok(n)
        }
    }
}

fn sections() -> Result<Vec<u8>> {
    let Ok(text) = std::env::var("SSHCC_BENCH_SECTIONS") else {
        return Ok(vec![1, 2, 3, 4, 5, 6]);
    };
    text.split(',')
        .map(|s| {
            let n: u8 = s.trim().parse().context("SSHCC_BENCH_SECTIONS: 1 to 6")?;
            ensure!(
                (1..=6).contains(&n),
                "SSHCC_BENCH_SECTIONS: 1 to 6, not {n}"
            );
            Ok(n)
        })
        .collect()
}

fn main() -> Result<()> {
    let runs = env_count("SSHCC_BENCH_RUNS", DEFAULT_RUNS)?;
    let builds = env_count("SSHCC_BENCH_BUILDS", DEFAULT_BUILDS)?;
    let sections = sections()?;
    let sshcc = PathBuf::from(env!("CARGO_BIN_EXE_sshcc"));
    ensure!(
        !sshcc.to_string_lossy().contains(char::is_whitespace),
        "the sshcc path {} contains whitespace, which host lists cannot carry",
        sshcc.display()
    );
    let login = Login::choose(&sshcc)?;
    let user = match &login {
        Login::BoxUser => BOX_USER.to_owned(),
        Login::CurrentUser(name) => name.clone(),
    };

    // World-readable: the box account reads the allowlist. Short: ControlPath lives here.
    let scratch = tempfile::Builder::new()
        .prefix("sshcc-bc-")
        .tempdir_in("/tmp")
        .context("creating the scratch directory")?;
    let scratch_path = scratch.path().to_path_buf();
    fs::set_permissions(&scratch_path, fs::Permissions::from_mode(0o755))?;
    let cmdlist = scratch_path.join("DISTCC_CMDLIST");
    fs::write(&cmdlist, format!("{BOX_COMPILER}\n")).context("writing DISTCC_CMDLIST")?;
    fs::set_permissions(&cmdlist, fs::Permissions::from_mode(0o644))?;
    let work = scratch_path.join("work");
    let distcc_dir = scratch_path.join("distcc-dir");
    let control_dir = scratch_path.join("cm");
    for dir in [&work, &distcc_dir, &control_dir] {
        fs::create_dir_all(dir)?;
    }
    fs::set_permissions(&control_dir, fs::Permissions::from_mode(0o700))?;
    fs::write(work.join(TINY_SOURCE), "int x;\n").context("writing tiny.c")?;

    eprintln!("starting the box and distccd");
    let (build_box, box_shell) = support::start_box(&cmdlist, &login, &sshcc)?;
    let sshd_limits = {
        let config = fs::read_to_string(build_box.dir().join("sshd_config")).unwrap_or_default();
        let set: Vec<&str> = config
            .lines()
            .filter(|line| line.starts_with("MaxSessions") || line.starts_with("MaxStartups"))
            .collect();
        if set.is_empty() {
            "OpenSSH defaults (MaxSessions 10, MaxStartups 10:30:100; the box sets neither)"
                .to_owned()
        } else {
            format!("set by the box: {}", set.join(", "))
        }
    };
    let distccd = Distccd::start(&scratch_path, &cmdlist)?;
    let box_cgroup = match box_cgroup(&build_box, &distccd) {
        Ok(cgroup) => Some(cgroup),
        Err(err) => {
            eprintln!("no box CPU accounting: {err:#}");
            None
        }
    };
    let box_accounting = box_cgroup.as_ref().map_or_else(
        || "not available (needs root and a cgroup hierarchy)".to_owned(),
        CpuCgroup::describe,
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let proxies = Proxies {
        tcp: Some(DelayProxy::start(&runtime, distccd.port, DELAY)?),
        ssh: DelayProxy::start(&runtime, build_box.port(), DELAY)?,
        master: DelayProxy::start(&runtime, build_box.port(), DELAY)?,
        sshcc: DelayProxy::start(&runtime, build_box.port(), DELAY)?,
    };
    let delayed = Network {
        tcp_port: proxies.tcp.as_ref().map_or(0, DelayProxy::port),
        host: "box",
        slots: SLOTS,
        ssh_config: proxied_ssh_config(
            &build_box,
            &scratch_path,
            "ssh",
            proxies.ssh.port(),
            &user,
        )?,
        master_config: proxied_ssh_config(
            &build_box,
            &scratch_path,
            "master",
            proxies.master.port(),
            &user,
        )?,
        sshcc_config: proxied_ssh_config(
            &build_box,
            &scratch_path,
            "sshcc",
            proxies.sshcc.port(),
            &user,
        )?,
        runtime_dir: scratch_path.join("rt-delayed"),
        proxies: Some(proxies),
        second_hop: None,
        bastion_box: None,
    };
    let loopback = Network {
        tcp_port: distccd.port,
        host: "box",
        slots: SLOTS,
        ssh_config: build_box.ssh_config().to_path_buf(),
        master_config: build_box.ssh_config().to_path_buf(),
        sshcc_config: build_box.ssh_config().to_path_buf(),
        runtime_dir: scratch_path.join("rt-loopback"),
        proxies: None,
        second_hop: None,
        bastion_box: None,
    };
    let bastion = if sections.contains(&6) {
        eprintln!("starting the bastion");
        let login_user = (login == Login::BoxUser).then_some(BOX_USER);
        Some(bastion_network(
            &build_box,
            &runtime,
            &scratch_path,
            login_user,
            &user,
        )?)
    } else {
        None
    };
    let mut bench = Bench {
        no_config: scratch_path.join("no-sshcc-config.toml"),
        build_box,
        sshcc,
        work,
        distcc_dir,
        control_dir,
        distccd,
        loopback,
        delayed,
        bastion,
        masters: Vec::new(),
        daemons: Vec::new(),
        _runtime: runtime,
        box_cgroup,
    };

    let lua = if sections.iter().any(|s| (3..=5).contains(s)) {
        eprintln!("fetching lua-src {}", lua::LUA_SRC_VERSION);
        Some(LuaSources::fetch(&scratch_path)?)
    } else {
        None
    };
    let mut facts = vec![
        ("box login", login.describe(&box_shell)),
        ("box sshd limits", sshd_limits),
        (
            "delay proxy",
            format!(
                "{} ms each way ({} ms round trip), tokio timers (≥ 1 ms granularity)",
                DELAY.as_millis(),
                2 * DELAY.as_millis()
            ),
        ),
        ("tiny compile runs per route", runs.to_string()),
        ("box CPU accounting", box_accounting),
        (
            "load average at start",
            fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        ),
        (
            "priorities",
            match distccd_nice() {
                None => "distccd runs compiles at its default nice 5 (both modes); sshcc's box \
                         worker and everything on the client at nice 0"
                    .to_owned(),
                Some(nice) => format!(
                    "TCP distccd at nice {nice} (SSHCC_BENCH_DISTCCD_NICE), distccd --inetd at \
                     its default 5; sshcc's box worker and everything on the client at nice 0"
                ),
            },
        ),
    ];
    if let Some(lua) = &lua {
        facts.push((
            "project",
            format!(
                "{} library from lua-src {} ({} files, `{}`)",
                lua.release,
                lua::LUA_SRC_VERSION,
                lua.sources.len(),
                lua::CFLAGS.join(" ")
            ),
        ));
        facts.push(("clean builds per route", builds.to_string()));
    }
    if sections.contains(&6) {
        facts.push((
            "bastion (section 6)",
            "a second throwaway sshd (OpenSSH defaults, same login account) with its own delay \
             proxy; the target is the build box behind another delay proxy, which the bastion \
             connects to (`ProxyJump bastion`)"
                .to_owned(),
        ));
    }
    println!("{}", machine_facts(&facts)?);

    let mut tiny_routes: Vec<Route> = Vec::new();
    if sections.contains(&1) {
        tiny_routes.extend(TINY_LOOPBACK);
    }
    if sections.contains(&2) {
        tiny_routes.extend(TINY_DELAYED);
    }
    if !tiny_routes.is_empty() {
        let loopback_config = bench.loopback.master_config.clone();
        let delayed_config = bench.delayed.master_config.clone();
        if sections.contains(&1) {
            bench.start_master(&loopback_config, "box")?;
        }
        if sections.contains(&2) {
            bench.start_master(&delayed_config, "box")?;
        }
        let samples = tiny_section(&mut bench, &tiny_routes, runs)?;
        if sections.contains(&1) {
            println!(
                "{}",
                tiny_table(
                    "1. Tiny compile, one job at a time, loopback",
                    &TINY_LOOPBACK,
                    &tiny_routes,
                    &samples,
                    false
                )
            );
        }
        if sections.contains(&2) {
            let mut routes = vec![Route::new(Via::Local, Net::Loopback)];
            routes.extend(TINY_DELAYED);
            println!(
                "{}",
                tiny_table(
                    "2. Tiny compile, one job at a time, 10 ms each way (20 ms RTT)",
                    &routes,
                    &tiny_routes,
                    &samples,
                    true
                )
            );
        }
    }

    if let Some(lua) = lua {
        let project = Project {
            dir: scratch_path.join("lua"),
            objects: lua.objects(),
        };
        lua.make_project(&project.dir)?;
        eprintln!("reference build (local)");
        bench.build(BUILD_ROUTES[0], &project)?;
        let reference = project.read_objects()?;

        if sections.contains(&3) {
            let samples = build_section(&mut bench, &project, &reference, builds)?;
            println!("{}", build_table(&samples, project.objects.len()));
        }
        if sections.contains(&4) {
            println!("{}", bytes_section(&mut bench, &project, &reference)?);
        }
        if sections.contains(&5) {
            println!("{}", compression_section(&project, &reference)?);
        }
    }
    if sections.contains(&6) {
        println!("{}", bastion_section(&mut bench, runs)?);
    }
    drop(bench);
    Ok(())
}

/// Makes sure `route`'s sshcc daemon is started and remembered for `--stop`.
fn note_daemon(bench: &mut Bench, route: Route) -> Result<()> {
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

/// Section 1 and 2: samples (wall, traffic) per route, in `routes` order.
fn tiny_section(bench: &mut Bench, routes: &[Route], runs: usize) -> Result<Vec<Vec<TinySample>>> {
    for &route in routes {
        eprintln!("warm-up: {}", route.label());
        bench
            .tiny(route)
            .with_context(|| format!("warm-up of {}", route.label()))?;
        note_daemon(bench, route)?;
    }
    let mut samples = vec![Vec::with_capacity(runs); routes.len()];
    let total = Instant::now();
    for round in 0..runs {
        for step in 0..routes.len() {
            let index = (round + step) % routes.len();
            let sample = bench
                .tiny(routes[index])
                .with_context(|| format!("round {} of {runs}", round + 1))?;
            samples[index].push(sample);
        }
        eprint!(
            "\rtiny compiles: round {}/{runs} ({:.0?})",
            round + 1,
            total.elapsed()
        );
    }
    eprintln!();
    Ok(samples)
}

fn tiny_table(
    title: &str,
    shown: &[Route],
    routes: &[Route],
    samples: &[Vec<TinySample>],
    traffic: bool,
) -> String {
    let index = |route: Route| routes.iter().position(|r| *r == route);
    let walls = |i: usize| samples[i].iter().map(|s| s.wall).collect::<Vec<_>>();
    // The distcc TCP route shown is the reference, and sshcc's pairwise partner.
    let tcp = shown
        .iter()
        .find(|r| r.via == Via::DistccTcp)
        .and_then(|r| index(*r));
    let reference = tcp.map(|i| stats(&walls(i)).median);
    let mut out = format!("### {title}\n\n");
    out.push_str("| path | median ms | min ms | p90 ms | median / distcc TCP |");
    if traffic {
        out.push_str(" bytes up/job | bytes down/job |");
    }
    out.push_str("\n|------|----------:|-------:|-------:|--------------------:|");
    if traffic {
        out.push_str("-------------:|---------------:|");
    }
    out.push('\n');
    let mut notes = String::new();
    for &route in shown {
        let Some(i) = index(route) else { continue };
        let s = stats(&walls(i));
        let ratio = reference.map_or("—".to_owned(), |r| format!("{:.2}×", s.median / r));
        let _ = write!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {ratio} |",
            route.label(),
            s.median,
            s.min,
            s.p90
        );
        if traffic {
            if route.via == Via::Local {
                out.push_str(" — | — |");
            } else {
                let mut sum = Traffic::default();
                for sample in &samples[i] {
                    sum += sample.traffic;
                }
                let n = samples[i].len() as u64;
                let _ = write!(out, " {} | {} |", sum.up / n, sum.down / n);
            }
        }
        out.push('\n');
        if let (Via::Sshcc, Some(tcp)) = (route.via, tcp) {
            // Sample k of every route comes from round k of the interleaved loop.
            let ratios: Vec<f64> = samples[i]
                .iter()
                .zip(&samples[tcp])
                .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
                .collect();
            let _ = writeln!(
                notes,
                "\nPairwise, round by round: sshcc / distcc TCP = {}.",
                ratio_summary(&ratios)
            );
        }
        let reported: Vec<f64> = samples[i].iter().filter_map(|s| s.reported_ms).collect();
        if route.via == Via::Sshcc && !reported.is_empty() {
            let _ = writeln!(
                notes,
                "\nsshcc's wrapper log (`SSHCC_LOG=info`) puts the median job's time in the daemon and \
                 on the box at {:.0} ms (its own resolution: whole ms); the remaining {:.0} ms of the median \
                 are the wrapper's start-up, local preprocessing and writing tiny.o.",
                median(reported.clone()),
                s.median - median(reported)
            );
        }
    }
    out.push_str(&notes);
    out
}

/// Section 6: tiny compiles to the box behind the bastion, interleaved with local gcc and
/// distcc TCP through one delayed hop (the reference).
fn bastion_section(bench: &mut Bench, runs: usize) -> Result<String> {
    let config = bench.network(Net::Bastion).master_config.clone();
    bench.start_master(&config, bastion::TARGET_HOST)?;
    let samples = tiny_section(bench, &TINY_BASTION, runs)?;
    // sshcc's one connection really took the jump: it came in through the proxy in
    // front of the bastion and the bastion's went out through the one in front of the
    // box (the client could reach that one directly on loopback).
    let sshcc = Route::new(Via::Sshcc, Net::Bastion);
    let index = TINY_BASTION.iter().position(|r| *r == sshcc);
    let timed_connections: u64 = index.map_or(0, |i| {
        samples[i]
            .iter()
            .map(|s| s.traffic.connections + s.second_hop.connections)
            .sum()
    });
    ensure!(
        timed_connections == 0,
        "sshcc opened {timed_connections} connections during timed jobs; its daemon was not warm"
    );
    for (hop, proxy) in [
        ("client → bastion", bench.proxy(sshcc)),
        ("bastion → box", bench.second_hop_proxy(sshcc)),
    ] {
        let connections = proxy.map_or(0, |p| p.traffic().connections);
        ensure!(
            connections >= 1,
            "sshcc's connection never went through the {hop} proxy"
        );
    }
    let mut out = tiny_table(
        "6. Tiny compile, one job at a time, behind one bastion hop (20 ms RTT on each hop)",
        &TINY_BASTION,
        &TINY_BASTION,
        &samples,
        true,
    );
    out.push_str(
        "\nPer job and hop (bytes above are the client's hop; TCP connections counted by each \
         hop's proxy):\n\n\
         | path | TCP connections/job, client → bastion | TCP connections/job, bastion → box | \
         bytes up/job, bastion → box | bytes down/job, bastion → box |\n\
         |------|-------------------------------------:|-----------------------------------:|\
         ----------------------------:|------------------------------:|\n",
    );
    for (route, samples) in TINY_BASTION.iter().zip(&samples) {
        if route.via == Via::Local {
            continue;
        }
        let n = samples.len() as f64;
        let per_job = |f: fn(&TinySample) -> u64| samples.iter().map(f).sum::<u64>() as f64 / n;
        let (first, second) = (
            per_job(|s| s.traffic.connections),
            per_job(|s| s.second_hop.connections),
        );
        let second_hop = if route.net == Net::Bastion {
            format!(
                "{second:.2} | {:.0} | {:.0}",
                per_job(|s| s.second_hop.up),
                per_job(|s| s.second_hop.down)
            )
        } else {
            "— | — | —".to_owned()
        };
        let _ = writeln!(out, "| {} | {first:.2} | {second_hop} |", route.label());
    }
    Ok(out)
}

/// Section 3: interleaved clean builds on loopback, every object checked.
fn build_section(
    bench: &mut Bench,
    project: &Project,
    reference: &HashMap<String, Vec<u8>>,
    builds: usize,
) -> Result<Vec<Vec<BuildSample>>> {
    for &route in &BUILD_ROUTES {
        eprintln!("warm-up build: {}", route.label());
        bench.build(route, project)?;
        project.check_objects(route, reference)?;
        note_daemon(bench, route)?;
    }
    let mut samples = vec![Vec::with_capacity(builds); BUILD_ROUTES.len()];
    let total = Instant::now();
    for round in 0..builds {
        for step in 0..BUILD_ROUTES.len() {
            let index = (round + step) % BUILD_ROUTES.len();
            let route = BUILD_ROUTES[index];
            let sample = bench
                .build(route, project)
                .with_context(|| format!("build round {} of {builds}", round + 1))?;
            project.check_objects(route, reference)?;
            ensure!(
                route.via != Via::Sshcc || sample.daemon_measured,
                "the sshcc daemon was not running before a timed build"
            );
            samples[index].push(sample);
        }
        eprintln!(
            "builds: round {}/{builds} ({:.0?})",
            round + 1,
            total.elapsed()
        );
    }
    Ok(samples)
}

/// "median X× (min A×, max B×, N of M ≤ 1)" for per-round ratios.
fn ratio_summary(ratios: &[f64]) -> String {
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    let at_most_one = ratios.iter().filter(|r| **r <= 1.0).count();
    format!(
        "median {:.2}× (min {min:.2}×, max {max:.2}×; ≤ 1.00× in {at_most_one} of {} rounds)",
        median(ratios.to_vec()),
        ratios.len()
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn build_table(samples: &[Vec<BuildSample>], files: usize) -> String {
    let wall = |i: usize| median(samples[i].iter().map(|s| s.wall.as_secs_f64()).collect());
    let cpu = |i: usize, part: fn(&BuildSample) -> Duration| {
        median(
            samples[i]
                .iter()
                .map(|s| part(s).as_secs_f64() * 1e3 / files as f64)
                .collect(),
        )
    };
    let warnings = |i: usize| {
        let counts: Vec<usize> = samples[i].iter().map(|s| s.warnings).collect();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        match (min, max) {
            (Some(min), Some(max)) if min == max => min.to_string(),
            (Some(min), Some(max)) => format!("{min}–{max}"),
            _ => "—".to_owned(),
        }
    };
    let tcp = BUILD_ROUTES
        .iter()
        .position(|r| r.via == Via::DistccTcp)
        .expect("a TCP route");
    let mut out = String::from(
        "### 3. Clean build of the Lua library, loopback\n\n\
         | path | make -j | median s | min s | max s | wall / distcc TCP | client CPU ms/job | of which sshcc daemon | client CPU / distcc TCP | box CPU ms/job | warnings shown |\n\
         |------|--------:|---------:|------:|------:|------------------:|------------------:|----------------------:|------------------------:|---------------:|---------------:|\n",
    );
    for (i, route) in BUILD_ROUTES.iter().enumerate() {
        let walls: Vec<f64> = samples[i].iter().map(|s| s.wall.as_secs_f64()).collect();
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(0.0, f64::max);
        let client = cpu(i, BuildSample::client_cpu);
        let daemon = if route.via == Via::Sshcc {
            format!("{:.1}", cpu(i, |s| s.daemon_cpu))
        } else {
            "—".to_owned()
        };
        let box_cpu = if route.via == Via::Local {
            "—".to_owned()
        } else if samples[i].iter().all(|s| s.box_cpu.is_some()) {
            format!("{:.1}", cpu(i, |s| s.box_cpu.unwrap_or_default()))
        } else {
            "n/a".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.1} | {daemon} | {:.2}× | {box_cpu} | {} |",
            route.label(),
            route.jobs(),
            wall(i),
            min,
            max,
            wall(i) / wall(tcp),
            client,
            client / cpu(tcp, BuildSample::client_cpu),
            warnings(i),
        );
    }
    if let Some(sshcc) = BUILD_ROUTES.iter().position(|r| r.via == Via::Sshcc) {
        let pairs = samples[sshcc].iter().zip(&samples[tcp]);
        let wall: Vec<f64> = pairs
            .clone()
            .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
            .collect();
        let cpu: Vec<f64> = pairs
            .map(|(a, b)| a.client_cpu().as_secs_f64() / b.client_cpu().as_secs_f64())
            .collect();
        let _ = write!(
            out,
            "\nPairwise, round by round, sshcc / distcc TCP: wall time {}; client CPU {}.\n",
            ratio_summary(&wall),
            ratio_summary(&cpu)
        );
        if samples[sshcc].iter().all(|s| s.box_parts.is_some()) {
            let part = |f: fn(&BoxParts) -> Duration| {
                median(
                    samples[sshcc]
                        .iter()
                        .filter_map(|s| s.box_parts.as_ref())
                        .map(|p| f(p).as_secs_f64() * 1e3 / files as f64)
                        .collect(),
                )
            };
            let _ = write!(
                out,
                "\nOf sshcc's box CPU, the `sshcc --mux` worker itself (without the compilers it \
                 runs) used {:.1} ms/job and the sshd processes of its connection {:.1} ms/job.\n",
                part(|p| p.worker),
                part(|p| p.sshd)
            );
        }
    }
    out
}

/// Section 4: one clean build per route through the proxies, counting bytes.
fn bytes_section(
    bench: &mut Bench,
    project: &Project,
    reference: &HashMap<String, Vec<u8>>,
) -> Result<String> {
    let files = project.objects.len() as u64;
    let mut out = String::from(
        "### 4. Bytes on the wire per job, Lua library build through the proxy (20 ms RTT)\n\n\
         | path | bytes up/job | bytes down/job | total KB/job | TCP connections | wall s (one build, -j4) |\n\
         |------|-------------:|---------------:|-------------:|----------------:|------------------------:|\n",
    );
    for &route in &BYTES_ROUTES {
        eprintln!("bytes build: {}", route.label());
        if route.via == Via::Sshcc {
            // Warm: the connection is open before the build, as in section 2.
            bench.tiny(route)?;
            note_daemon(bench, route)?;
        }
        let sample = bench.build(route, project)?;
        project.check_objects(route, reference)?;
        let t = sample.traffic;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {:.2} |",
            route.label(),
            t.up / files,
            t.down / files,
            (t.up + t.down) as f64 / files as f64 / 1e3,
            t.connections,
            sample.wall.as_secs_f64(),
        );
    }
    Ok(out)
}

/// Section 5: the payloads of the build, compressed per file.
fn compression_section(project: &Project, reference: &HashMap<String, Vec<u8>>) -> Result<String> {
    eprintln!("compression: preprocessing");
    let preprocess = |extra: &[&str]| -> Result<Vec<Vec<u8>>> {
        project
            .objects
            .iter()
            .map(|object| {
                let source = format!("{}.c", object.trim_end_matches(".o"));
                let out = Command::new("gcc")
                    .args(lua::CFLAGS)
                    .arg("-E")
                    .args(extra)
                    .arg(&source)
                    .current_dir(&project.dir)
                    .stdin(Stdio::null())
                    .output()
                    .context("running gcc -E")?;
                ensure!(out.status.success(), "gcc -E {source} failed");
                Ok(out.stdout)
            })
            .collect()
    };
    let corpora = [
        Corpus {
            name: "`gcc -E`".to_owned(),
            files: preprocess(&[])?,
        },
        Corpus {
            name: "`gcc -E -fdirectives-only`".to_owned(),
            files: preprocess(&["-fdirectives-only"])?,
        },
        Corpus {
            name: "objects (`-O2`)".to_owned(),
            files: project
                .objects
                .iter()
                .map(|name| reference[name].clone())
                .collect(),
        },
    ];
    let mut results = Vec::new();
    for corpus in &corpora {
        let mut measured = Vec::new();
        for codec in Codec::ALL {
            eprintln!("compression: {} on {}", codec.label(), corpus.name);
            measured.push(compression::measure(codec, corpus)?);
        }
        results.push((corpus, measured));
    }
    Ok(format!(
        "### 5. Compression of the build's payloads (per file, fastest of ≥ 3 passes)\n\n{}",
        compression::table(&results)
    ))
}
