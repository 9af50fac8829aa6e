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
//! The box is a [`ThrowawayBox`](sshcc::throwaway_box::ThrowawayBox) (OpenSSH sshd on
//! 127.0.0.1 with sshd's default `MaxSessions`/`MaxStartups`), logged into as the system
//! user `sshcc-bench` with `/bin/sh` when run as root, like `per_job`. distccd for the
//! TCP routes runs as `distccd --daemon` on an ephemeral port of 127.0.0.1. Every
//! distributed job runs with `DISTCC_FALLBACK=0`, and each run is checked to have really
//! compiled remotely. Section 6 adds a second box as the bastion (see [`bastion`]); the
//! build box is its target.
//!
//! Layout: [`route`] (the paths compared), [`harness`] (the [`Bench`](harness::Bench):
//! one compile or build through a route, checked to have run remotely), [`network`]
//! (loopback, delayed, behind the bastion), [`distccd`], [`procs`] (CPU and processes
//! from /proc), and a module per kind of section: [`tiny`] (1, 2 and 6), [`build`] (3 and
//! 4) and [`compression`] (5). This file reads the settings, sets everything up and
//! prints the sections in order.

#[path = "client/bastion.rs"]
mod bastion;
#[path = "client/build.rs"]
mod build;
#[path = "client/cgroup.rs"]
mod cgroup;
#[path = "client/compression.rs"]
mod compression;
#[path = "client/distccd.rs"]
mod distccd;
#[path = "client/harness.rs"]
mod harness;
#[path = "client/lua.rs"]
mod lua;
#[path = "client/network.rs"]
mod network;
#[path = "client/procs.rs"]
mod procs;
#[path = "client/proxy.rs"]
mod proxy;
#[path = "client/route.rs"]
mod route;
#[path = "support.rs"]
mod support;
#[path = "client/tiny.rs"]
mod tiny;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

use build::{Project, build_section, build_table, bytes_section};
use cgroup::CpuCgroup;
use compression::compression_section;
use distccd::{Distccd, distccd_nice};
use harness::Bench;
use lua::LuaSources;
use network::{DELAY, Network, Proxies, bastion_network, proxied_ssh_config};
use procs::box_cgroup;
use proxy::DelayProxy;
use route::{BUILD_ROUTES, Net, Route, SLOTS, TINY_DELAYED, TINY_LOOPBACK, Via};
use support::{BOX_COMPILER, BOX_USER, Login, env_count, machine_facts};
use tiny::{TINY_SOURCE, bastion_section, tiny_section, tiny_table};

const DEFAULT_RUNS: usize = 21;
const DEFAULT_BUILDS: usize = 5;

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
    let _user_dirs = support::private_user_dirs()?;
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
