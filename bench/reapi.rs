//! A REAPI cluster against an SSH box, both on this machine (issue 14): the same
//! wrapper and daemon, `SSHCC_HOSTS="@box/4"` against `"reapi://127.0.0.1:PORT/4"`
//! (BuildGrid 0.9.1 with the test bot of tests/reapi as its one worker).
//!
//! Run with `cargo bench --bench reapi`. Sections (see docs/benchmarks.md):
//!
//! 1. a `-j4` build of Lua 5.4's library (the `lua-src` crate): through the SSH box
//!    cold and again on the same daemon; through the engine cold (its actions not in
//!    the action cache) and again on a fresh daemon (every job an action-cache hit),
//!    with jobs preprocessed here (the default) and by the workers
//!    (`remote_preprocessing = true`). Wall, the client's CPU per job (wrappers and
//!    daemon), bytes per job, cache hits, and objects checked against a local build;
//! 2. one tiny compile at a time on a warm daemon: the SSH box, the engine with
//!    `SSHCC_REAPI_CACHE=off` (every job executes), and the engine answering from its
//!    action cache: the per-job overhead and the cache-hit path's cost.
//!
//! `SSHCC_BENCH_RUNS` (default 21) sets the timed tiny compiles per route. Skipped,
//! saying why, without BuildGrid (scripts/install-deps.sh installs it). Machine facts
//! and markdown go to stdout, progress to stderr.
//!
//! The bot runs one action at a time, so the engine has one slot however many the
//! host entry names: section 1's cold engine build is serial on the worker, where
//! the SSH box runs four compiles at once.

#[path = "client/lua.rs"]
#[allow(dead_code)] // the client bench builds it with make
mod lua;
#[path = "../tests/common/reapi_engine.rs"]
#[allow(dead_code)] // the tests use more of it
mod reapi_engine;
#[path = "support.rs"]
mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lua::{CFLAGS, LuaSources};
use reapi_engine::ReapiEngine;
use support::{BOX_COMPILER, Login, children_cpu, env_count, machine_facts, process_cpu, stats};

/// Compiles in flight in section 1.
const JOBS: usize = 4;

/// Where one route sends jobs.
struct Route {
    label: &'static str,
    hosts: String,
    /// `SSHCC_REAPI_CACHE`, if set.
    cache: Option<&'static str>,
    /// config.toml (`SSHCC_CONFIG`), if any.
    config: Option<PathBuf>,
}

/// What the wrappers of one route share: the box's ssh config and a daemon.
struct Client<'a> {
    sshcc: &'a Path,
    ssh_config: &'a Path,
    runtime: PathBuf,
}

impl Client<'_> {
    fn command(&self, route: &Route) -> Command {
        let mut command = Command::new(self.sshcc);
        command
            .env("SSHCC_HOSTS", &route.hosts)
            .env("SSHCC_SSH_CONFIG", self.ssh_config)
            .env("SSHCC_RUNTIME_DIR", &self.runtime)
            .env("DISTCC_FALLBACK", "0")
            .env_remove("SSHCC_REAPI_CACHE")
            .env_remove("SSHCC_CONFIG");
        if let Some(cache) = route.cache {
            command.env("SSHCC_REAPI_CACHE", cache);
        }
        if let Some(config) = &route.config {
            command.env("SSHCC_CONFIG", config);
        }
        command
    }

    /// The daemon's CPU time so far (with its reaped children's), from /proc.
    fn daemon_cpu(&self, route: &Route) -> Result<Duration> {
        let status = self.status(route)?;
        let pid = status["daemon_pid"].as_u64().context("no daemon pid")?;
        process_cpu(pid as i32)
    }

    fn status(&self, route: &Route) -> Result<serde_json::Value> {
        let output = self.command(route).args(["status", "--json"]).output()?;
        ensure!(output.status.success(), "sshcc status failed");
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// (bytes sent, bytes received, cache hits) of the route's host so far.
    fn host_counts(&self, route: &Route) -> Result<(u64, u64, u64)> {
        let status = self.status(route)?;
        let row = (status["hosts"].as_array().context("hosts")?.iter())
            .find(|host| host["host"] == route.hosts.as_str())
            .context("no row for the route's host")?
            .clone();
        let count = |name: &str| row[name].as_u64().unwrap_or(0);
        Ok((
            count("bytes_sent"),
            count("bytes_received"),
            count("cache_hits"),
        ))
    }

    fn stop(&self) {
        let _ = Command::new(self.sshcc)
            .arg("--stop")
            .env("SSHCC_RUNTIME_DIR", &self.runtime)
            .output();
    }
}

fn check(output: Output, what: &str) -> Result<()> {
    ensure!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// One build's figures.
struct BuildRow {
    route: &'static str,
    build: &'static str,
    wall: Duration,
    client_cpu_per_job: Duration,
    daemon_cpu_per_job: Duration,
    sent_per_job: u64,
    received_per_job: u64,
    cache_hits: u64,
    identical: usize,
}

/// Compiles every library source of `lua` into `out` through `client`, `JOBS` at a
/// time, and checks the objects against `reference`.
fn build(
    client: &Client,
    route: &Route,
    build: &'static str,
    lua: &LuaSources,
    out: &Path,
    reference: &HashMap<String, Vec<u8>>,
) -> Result<BuildRow> {
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out)?;
    let (sent0, received0, hits0) = client.host_counts(route).unwrap_or((0, 0, 0));
    let daemon0 = client.daemon_cpu(route).unwrap_or_default();
    let cpu0 = children_cpu();
    let started = Instant::now();
    let queue = Mutex::new(lua.sources.iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..JOBS {
            scope.spawn(|| {
                loop {
                    let Some(source) = queue.lock().unwrap().next() else {
                        return;
                    };
                    let object = out.join(source.replace(".c", ".o"));
                    let output = client
                        .command(route)
                        .current_dir(&lua.dir)
                        .arg(BOX_COMPILER)
                        .args(CFLAGS)
                        .args(["-c", source, "-o"])
                        .arg(&object)
                        .output();
                    match output {
                        Ok(output) if output.status.success() => {}
                        Ok(output) => failures.lock().unwrap().push(format!(
                            "{source}: {}",
                            String::from_utf8_lossy(&output.stderr)
                        )),
                        Err(err) => failures.lock().unwrap().push(format!("{source}: {err}")),
                    }
                }
            });
        }
    });
    let wall = started.elapsed();
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        bail!("{} {build}: {}", route.label, failures.join("\n"));
    }
    let jobs = lua.sources.len() as u32;
    let client_cpu = children_cpu() - cpu0;
    let daemon_cpu = client.daemon_cpu(route)? - daemon0;
    let (sent, received, hits) = client.host_counts(route)?;
    let mut identical = 0;
    for source in &lua.sources {
        let name = source.replace(".c", ".o");
        if fs::read(out.join(&name))? == reference[&name] {
            identical += 1;
        }
    }
    Ok(BuildRow {
        route: route.label,
        build,
        wall,
        client_cpu_per_job: (client_cpu + daemon_cpu) / jobs,
        daemon_cpu_per_job: daemon_cpu / jobs,
        sent_per_job: (sent - sent0) / u64::from(jobs),
        received_per_job: (received - received0) / u64::from(jobs),
        cache_hits: hits - hits0,
        identical,
    })
}

/// `runs` tiny compiles one at a time on a warm daemon: wall and client CPU per job.
fn tiny(
    client: &Client,
    route: &Route,
    dir: &Path,
    runs: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let compile = || -> Result<Duration> {
        let started = Instant::now();
        let output = client
            .command(route)
            .current_dir(dir)
            .args([BOX_COMPILER, "-O2", "-c", "tiny.c", "-o", "tiny.o"])
            .output()?;
        check(output, route.label)?;
        Ok(started.elapsed())
    };
    compile()?;
    let daemon0 = client.daemon_cpu(route)?;
    let cpu0 = children_cpu();
    let walls = (0..runs).map(|_| compile()).collect::<Result<Vec<_>>>()?;
    let cpu = children_cpu() - cpu0 + (client.daemon_cpu(route)? - daemon0);
    Ok((walls, cpu / runs as u32))
}

/// The toolchain property values the worker advertises: each allowlisted compiler's
/// digest from `sshcc --box-info`, as a cluster admin would find them.
fn toolchain_properties(sshcc: &Path, scratch: &Path) -> Result<String> {
    let list = scratch.join("worker-cmdlist");
    fs::write(&list, format!("{BOX_COMPILER}\n"))?;
    let output = Command::new(sshcc)
        .arg("--box-info")
        .env("DISTCC_CMDLIST", &list)
        .output()?;
    ensure!(output.status.success(), "sshcc --box-info failed");
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let digests: Vec<String> = (info["compilers"].as_array().context("compilers")?.iter())
        .filter_map(|compiler| compiler["digest"].as_str())
        .map(|digest| format!("sshcc-toolchain={digest}"))
        .collect();
    ensure!(!digests.is_empty(), "no compiler digest in {info}");
    Ok(digests.join(";"))
}

fn kb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1000.0)
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let _user_dirs = support::private_user_dirs()?;
    let runs = env_count("SSHCC_BENCH_RUNS", 21)?;
    let sshcc = PathBuf::from(env!("CARGO_BIN_EXE_sshcc"));
    let login = Login::choose(&sshcc)?;
    let scratch = tempfile::Builder::new()
        .prefix("sshcc-bench-")
        .tempdir_in("/tmp")?;
    let scratch = scratch.path();
    fs::set_permissions(scratch, fs::Permissions::from_mode(0o755))?;
    let cmdlist = scratch.join("DISTCC_CMDLIST");
    fs::write(&cmdlist, format!("{BOX_COMPILER}\n"))?;
    fs::set_permissions(&cmdlist, fs::Permissions::from_mode(0o644))?;
    fs::write(
        scratch.join("tiny.c"),
        "int tiny(int x) { return x * 2; }\n",
    )?;

    eprintln!("fetching Lua, starting the box and the engine…");
    let lua = LuaSources::fetch(scratch)?;
    let (build_box, box_shell) = support::start_box(&cmdlist, &login, &sshcc)?;
    let Some(engine) =
        ReapiEngine::start_with_bot_properties(&toolchain_properties(&sshcc, scratch)?)
    else {
        return Ok(());
    };

    let reference_dir = scratch.join("reference");
    fs::create_dir_all(&reference_dir)?;
    let mut reference = HashMap::new();
    for source in &lua.sources {
        let name = source.replace(".c", ".o");
        let output = Command::new(BOX_COMPILER)
            .current_dir(&lua.dir)
            .args(CFLAGS)
            .args(["-c", source, "-o"])
            .arg(reference_dir.join(&name))
            .output()?;
        check(output, source)?;
        reference.insert(name.clone(), fs::read(reference_dir.join(&name))?);
    }

    let ssh = Route {
        label: "SSH box (`@box/4`)",
        hosts: format!("@box/4:{}", sshcc.display()),
        cache: None,
        config: None,
    };
    let reapi = Route {
        label: "REAPI engine (`reapi://…/4`)",
        hosts: format!("reapi://127.0.0.1:{}/4", engine.port()),
        cache: None,
        config: None,
    };
    let workers_preprocess = scratch.join("workers-preprocess.toml");
    fs::write(
        &workers_preprocess,
        format!(
            "[reapi.\"127.0.0.1:{}\"]\nremote_preprocessing = true\n",
            engine.port()
        ),
    )?;
    let reapi_remote = Route {
        label: "REAPI engine, `remote_preprocessing = true`",
        config: Some(workers_preprocess),
        hosts: reapi.hosts.clone(),
        cache: None,
    };
    let client = |name: &str| Client {
        sshcc: &sshcc,
        ssh_config: build_box.ssh_config(),
        runtime: scratch.join(format!("runtime-{name}")),
    };

    let mut rows = Vec::new();
    let out = scratch.join("objects");
    eprintln!("section 1: builds");
    let ssh_client = client("ssh");
    rows.push(build(&ssh_client, &ssh, "cold", &lua, &out, &reference)?);
    rows.push(build(
        &ssh_client,
        &ssh,
        "again, same daemon",
        &lua,
        &out,
        &reference,
    )?);
    ssh_client.stop();
    // Each engine route: a cold build on an empty action cache, then the same build
    // on a fresh daemon, answered by the cache; and how many actions the worker ran.
    let mut ran = Vec::new();
    for (route, name) in [(&reapi, "reapi"), (&reapi_remote, "reapi-remote")] {
        for build_name in [
            "cold (not in the action cache)",
            "again, fresh daemon (cached)",
        ] {
            let before = engine.actions_run();
            let daemon = client(&format!("{name}-{}", ran.len()));
            rows.push(build(&daemon, route, build_name, &lua, &out, &reference)?);
            daemon.stop();
            ran.push(engine.actions_run() - before);
        }
    }

    eprintln!("section 2: tiny compiles");
    let tiny_ssh = client("tiny-ssh");
    let (ssh_walls, ssh_cpu) = tiny(&tiny_ssh, &ssh, scratch, runs)?;
    tiny_ssh.stop();
    let uncached = Route {
        label: "REAPI engine, `SSHCC_REAPI_CACHE=off`",
        cache: Some("off"),
        ..reapi
    };
    let tiny_reapi = client("tiny-reapi");
    let (off_walls, off_cpu) = tiny(&tiny_reapi, &uncached, scratch, runs)?;
    let cached = Route {
        label: "REAPI engine, action-cache hit",
        cache: None,
        hosts: uncached.hosts.clone(),
        config: None,
    };
    let (hit_walls, hit_cpu) = tiny(&tiny_reapi, &cached, scratch, runs)?;
    tiny_reapi.stop();

    println!(
        "{}",
        machine_facts(&[
            ("box login", login.describe(&box_shell)),
            (
                "project",
                format!("{} library, {} files", lua.release, lua.sources.len())
            ),
            (
                "engine",
                "BuildGrid 0.9.1, PostgreSQL 15, one test bot (one action at a time)".into()
            ),
        ])?
    );
    println!("\n#### 1. Lua library, `-j{JOBS}`\n");
    println!(
        "| route | build | wall s | client CPU ms/job | of which daemon | KB up/job | KB down/job | cache hits | objects = local |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {} of {} |",
            row.route,
            row.build,
            row.wall.as_secs_f64(),
            ms(row.client_cpu_per_job),
            ms(row.daemon_cpu_per_job),
            kb(row.sent_per_job),
            kb(row.received_per_job),
            row.cache_hits,
            row.identical,
            lua.sources.len()
        );
    }
    println!(
        "\nThe worker ran {} actions for the cold engine build and {} for the cached one; \
         with remote preprocessing, {} and {}.",
        ran[0], ran[1], ran[2], ran[3]
    );
    println!("\n#### 2. One tiny compile at a time, warm daemon ({runs} per route)\n");
    println!("| route | wall ms (median) | min | p90 | client CPU ms/job |");
    println!("|---|--:|--:|--:|--:|");
    for (label, walls, cpu) in [
        (ssh.label, &ssh_walls, ssh_cpu),
        (uncached.label, &off_walls, off_cpu),
        (cached.label, &hit_walls, hit_cpu),
    ] {
        let s = stats(walls);
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {} |",
            s.median,
            s.min,
            s.p90,
            ms(cpu)
        );
    }
    drop(engine);
    Ok(())
}
