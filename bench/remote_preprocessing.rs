//! Remote preprocessing (issue 13) against today's local preprocessing, side by side in
//! one run, on RocksDB's sources (from the `librocksdb-sys` crate).
//!
//! Run with `cargo bench --bench remote_preprocessing`. Sections (see
//! docs/benchmarks.md, "Remote preprocessing (issue 13)"):
//!
//! 1. a seeded sample of heavy RocksDB translation units built through sshcc with the
//!    flags of the crate's `build.rs`, `SSHCC_PREPROCESS=directives-only` and `remote`,
//!    a cold build (fresh daemon, empty box store) and a second one with a widely
//!    included header changed, through a link of 20 ms RTT capped at 20 Mbit/s: wall
//!    time, client CPU per job (make's children: the wrappers and their preprocessors;
//!    the daemon from /proc), bytes per job on the link, box CPU; every object compared
//!    with a local compile;
//! 2. the same builds against a box whose compiles are emulated (2 s, no CPU), so the
//!    wall time shows the link and the client rather than this machine's two cores
//!    compiling;
//! 3. saturation: the emulated box with 128 slots, `make -j128` over copies of the
//!    sample, 20 ms RTT without a cap: how many slots the client keeps busy (from the
//!    emulated compiles' own log, and the daemon's status sampled every 100 ms).
//!
//! Knobs: `SSHCC_BENCH_TUS` (sample size, default 24), `SSHCC_BENCH_SEED` (default 13),
//! `SSHCC_BENCH_SATURATION_JOBS` (default 384), `SSHCC_BENCH_SECTIONS` (e.g. `1,3`;
//! default all), `SSHCC_BENCH_BOX_NICE` (the emulated box's niceness, default 0).
//! Machine facts and markdown tables go to stdout, progress to stderr.
//!
//! Layout: [`rocksdb`] (fetch, sample, flags), [`reference`] (the local compile every
//! object must equal), [`link`] (the delay and rate-cap proxy), [`emulated`] (the box's
//! sleeping compiler), [`run`] (one measured build), [`sections`] and [`report`].

#[allow(dead_code)]
#[path = "client/cgroup.rs"]
mod cgroup;
#[path = "remote_preprocessing/emulated.rs"]
mod emulated;
#[path = "remote_preprocessing/link.rs"]
mod link;
#[path = "remote_preprocessing/reference.rs"]
mod reference;
#[path = "remote_preprocessing/report.rs"]
mod report;
#[path = "remote_preprocessing/rocksdb.rs"]
mod rocksdb;
#[path = "remote_preprocessing/run.rs"]
mod run;
#[path = "remote_preprocessing/sections.rs"]
mod sections;
#[path = "support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use emulated::{Emulator, SECONDS};
use link::{Link, Shape};
use reference::Reference;
use report::{Versus, pair_table, saturation_table, targets_table};
use rocksdb::{Sources, write_makefile};
use run::{Client, Mode, Target, box_cgroup, linked_ssh_config, renice, sshd_pid};
use sections::{Project, cold_and_second, saturate, saturation_units};
use support::{BOX_USER, Login, machine_facts};

/// The link of sections 1 and 2.
const CAPPED: Shape = Shape {
    delay: Duration::from_millis(10),
    rate: Some(20_000_000),
};
/// The link of section 3.
const UNCAPPED: Shape = Shape {
    delay: Duration::from_millis(10),
    rate: None,
};
/// Slots and `make -j` of section 1 (the real box runs 4 compiles at once: nproc + 2).
const REAL_SLOTS: usize = 8;
/// Slots of the emulated box.
const EMULATED_SLOTS: usize = 128;
/// Niceness of the emulated box's sshd and all it starts (`SSHCC_BENCH_BOX_NICE`).
const EMULATED_BOX_NICE: u64 = 0;

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => {
            let n: u64 = value
                .trim()
                .parse()
                .with_context(|| format!("{name}={value:?} is not a number"))?;
            ensure!(n >= 1, "{name} must be at least 1");
            Ok(n)
        }
    }
}

fn main() -> Result<()> {
    let _user_dirs = support::private_user_dirs()?;
    let tus = env_number("SSHCC_BENCH_TUS", 24)? as usize;
    let seed = env_number("SSHCC_BENCH_SEED", 13)?;
    let saturation_jobs = env_number("SSHCC_BENCH_SATURATION_JOBS", 384)? as usize;
    let box_nice = match std::env::var("SSHCC_BENCH_BOX_NICE") {
        Err(_) => EMULATED_BOX_NICE as i32,
        Ok(text) => text
            .trim()
            .parse()
            .context("SSHCC_BENCH_BOX_NICE: 0 to 19")?,
    };
    let sections: Vec<u8> = match std::env::var("SSHCC_BENCH_SECTIONS") {
        Err(_) => vec![1, 2, 3],
        Ok(text) => text
            .split(',')
            .map(|s| s.trim().parse().context("SSHCC_BENCH_SECTIONS: 1 to 3"))
            .collect::<Result<_>>()?,
    };
    let sshcc = PathBuf::from(env!("CARGO_BIN_EXE_sshcc"));
    // target/<profile>/sshcc: the cache lives beside the profiles.
    let cache = sshcc
        .parent()
        .and_then(|p| p.parent())
        .context("no target directory")?
        .join("bench-remote-preprocessing");
    let login = Login::choose(&sshcc)?;
    let user = match &login {
        Login::BoxUser => BOX_USER.to_owned(),
        Login::CurrentUser(name) => name.clone(),
    };
    let load_at_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let scratch = tempfile::Builder::new()
        .prefix("sshcc-rp-")
        .tempdir_in("/tmp")
        .context("creating the scratch directory")?;
    let scratch_path = scratch.path().to_path_buf();
    fs::set_permissions(&scratch_path, fs::Permissions::from_mode(0o755))?;

    eprintln!("librocksdb-sys {}: fetching", rocksdb::CRATE_VERSION);
    let sources = Sources::fetch(&cache)?;
    let units = sources.sample(tus, seed)?;
    let project_dir = scratch_path.join("p");
    sources.make_project(&project_dir)?;
    write_makefile(&project_dir, "Makefile", &units)?;
    let reference = Reference::get(&cache, &project_dir, &units)?;
    let (header, includers) = reference
        .widest_header(&units)
        .context("no project header in the dependency lists")?;
    let project = Project {
        dir: &project_dir,
        units: &units,
        reference: &reference,
        header: &header,
    };

    // The boxes: one runs the real compiler, one the emulated one with 128 slots.
    let real_list = scratch_path.join("DISTCC_CMDLIST-real");
    fs::write(
        &real_list,
        "/usr/bin/x86_64-linux-gnu-g++\n/usr/bin/x86_64-linux-gnu-gcc\n",
    )?;
    let emulator = Emulator::create(
        &scratch_path.join("emulated"),
        &units
            .iter()
            .map(|u| {
                (
                    u.clone(),
                    reference.objects[&u.key].clone(),
                    reference.deps[&u.key].clone(),
                )
            })
            .collect::<Vec<_>>(),
    )?;
    let emulated_list = scratch_path.join("DISTCC_CMDLIST-emulated");
    fs::write(&emulated_list, format!("{}\n", emulator.compiler.display()))?;
    for list in [&real_list, &emulated_list] {
        fs::set_permissions(list, fs::Permissions::from_mode(0o644))?;
    }
    eprintln!("starting the boxes");
    let (real_box, box_shell) = support::start_box(&real_list, &login, &sshcc)?;
    let slots = EMULATED_SLOTS.to_string();
    let allow = emulator.data.display().to_string();
    let write = emulator.log_dir.display().to_string();
    let (emulated_box, _) = support::start_box_with(
        &emulated_list,
        &login,
        &sshcc,
        &[
            ("SSHCC_JOBS", &slots),
            ("SSHCC_SANDBOX_ALLOW", &allow),
            ("SSHCC_SANDBOX_WRITE", &write),
        ],
    )?;
    // The emulated box stands in for one on other hardware; at nice 19 its own work
    // (sshd, storing blobs, laying out job trees) gets only the CPU the client leaves,
    // but also next to none when other load shares the machine, hence the default 0.
    let emulated_sshd = sshd_pid(&emulated_box)?;
    renice(emulated_sshd, box_nice)?;
    let cgroups = [
        sshd_pid(&real_box).and_then(|pid| box_cgroup(pid, "real")),
        box_cgroup(emulated_sshd, "emulated"),
    ];
    let box_accounting = match &cgroups[0] {
        Ok(cgroup) => cgroup.describe(),
        Err(err) => format!("not available ({err:#})"),
    };
    let [real_cgroup, emulated_cgroup] = cgroups.map(Result::ok);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let real_link = Link::start(&runtime, real_box.port(), CAPPED)?;
    let emulated_link = Link::start(&runtime, emulated_box.port(), CAPPED)?;
    let fast_link = Link::start(&runtime, emulated_box.port(), UNCAPPED)?;
    let config =
        |b, name, link: &Link| linked_ssh_config(b, &scratch_path, name, link.port(), &user);
    let real = Target {
        build_box: &real_box,
        cgroup: real_cgroup.as_ref(),
        link: &real_link,
        ssh_config: config(&real_box, "real", &real_link)?,
        slots: REAL_SLOTS,
        toolchain_check_off: false,
    };
    let emulated = Target {
        build_box: &emulated_box,
        cgroup: emulated_cgroup.as_ref(),
        link: &emulated_link,
        ssh_config: config(&emulated_box, "emulated", &emulated_link)?,
        slots: EMULATED_SLOTS,
        toolchain_check_off: true,
    };
    let saturated = Target {
        link: &fast_link,
        ssh_config: config(&emulated_box, "saturation", &fast_link)?,
        ..emulated.clone()
    };
    let client = Client {
        sshcc: sshcc.clone(),
        no_config: scratch_path.join("no-sshcc-config.toml"),
        distcc_dir: scratch_path.join("distcc-dir"),
    };
    fs::create_dir_all(&client.distcc_dir)?;

    let local_cpu = reference.local_cpu.as_secs_f64() * 1e3 / units.len() as f64;
    let facts = vec![
        ("box login", login.describe(&box_shell)),
        (
            "project",
            format!(
                "RocksDB from librocksdb-sys {} ({} library sources; sample of {} from the heavier \
                 half by source size, seed {seed})",
                rocksdb::CRATE_VERSION,
                sources.library.len(),
                units.len()
            ),
        ),
        ("flags", format!("`{}`", rocksdb::FLAGS.join(" "))),
        (
            "local reference build",
            format!(
                "`make -j2` with g++: {:.1} s, {local_cpu:.0} ms CPU per TU{}",
                reference.local_wall.as_secs_f64(),
                if reference.cached {
                    " (measured when first built; objects cached under target/)"
                } else {
                    ""
                }
            ),
        ),
        (
            "header changed for the second builds",
            format!(
                "`{header}` (included by {includers} of {} units): a comment appended",
                units.len()
            ),
        ),
        (
            "links",
            format!(
                "userspace proxy: sections 1–2 {}, section 3 {}",
                CAPPED.describe(),
                UNCAPPED.describe()
            ),
        ),
        (
            "real box",
            format!(
                "sshcc --mux, default slots (nproc + 2 = 4), client `@box/{REAL_SLOTS}`, `make -j{REAL_SLOTS}`"
            ),
        ),
        (
            "emulated box",
            format!(
                "SSHCC_JOBS={EMULATED_SLOTS}, client `@box/{EMULATED_SLOTS}`; an allowlisted C program \
                 (bench/remote_preprocessing/emulated_cc.c) sleeping {SECONDS} s and writing the reference object and dependency list; \
                 SSHCC_TOOLCHAIN_CHECK=off; its sshd and all it starts at nice {box_nice} \
                 (SSHCC_BENCH_BOX_NICE)"
            ),
        ),
        ("box CPU accounting", box_accounting),
        (
            "client CPU accounting",
            "make and its children (wrappers, the preprocessors they run) by \
             getrusage(RUSAGE_CHILDREN) around make; the daemon by /proc/PID/stat \
             (utime+stime+cutime+cstime) before and after"
                .to_owned(),
        ),
        (
            "load average at start",
            load_at_start
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ];
    println!("{}", machine_facts(&facts)?);

    let mut versus = Vec::new();
    if sections.contains(&1) {
        let pair = cold_and_second(
            &client,
            &real,
            &project,
            "Makefile",
            REAL_SLOTS,
            &scratch_path.join("rt-1"),
            1,
            true,
        )?;
        println!(
            "{}",
            pair_table(
                &format!(
                    "1. Real compiles, {} RocksDB TUs, {}",
                    units.len(),
                    CAPPED.describe()
                ),
                &pair
            )
        );
        add_versus(&mut versus, &pair, "real compiles");
    }
    if sections.contains(&2) {
        let pair = cold_and_second(
            &client,
            &emulated,
            &project,
            "Makefile",
            units.len(),
            &scratch_path.join("rt-2"),
            2,
            false,
        )?;
        println!(
            "{}",
            pair_table(
                &format!(
                    "2. Emulated {SECONDS} s compiles, {} RocksDB TUs, `make -j{}`, {}",
                    units.len(),
                    units.len(),
                    CAPPED.describe()
                ),
                &pair
            )
        );
        let walls = |s: &[run::Sample; 2]| (s[0].wall.as_secs_f64(), s[1].wall.as_secs_f64());
        let (l, r) = walls(&pair.cold);
        versus.push(Versus::new(
            "wall, cold build, emulated compiles",
            l,
            r,
            "s",
            0.5,
        ));
        let (l, r) = walls(&pair.second);
        versus.push(Versus::new(
            "wall, second build, emulated compiles",
            l,
            r,
            "s",
            0.5,
        ));
    }
    let mut saturation = None;
    if sections.contains(&3) {
        let copies = saturation_units(&project, saturation_jobs)?;
        let runtime_dir = scratch_path.join("rt-3");
        let local = saturate(
            &client,
            &saturated,
            &emulator,
            &project,
            &copies,
            &runtime_dir,
            Mode::Local,
        )?;
        let remote = saturate(
            &client,
            &saturated,
            &emulator,
            &project,
            &copies,
            &runtime_dir,
            Mode::Remote,
        )?;
        let runs = [local, remote];
        println!("{}", saturation_table(&runs));
        versus.push(Versus::new(
            "client CPU per job, saturation",
            runs[0].sample.client_cpu().as_secs_f64() * 1e3 / runs[0].sample.jobs as f64,
            runs[1].sample.client_cpu().as_secs_f64() * 1e3 / runs[1].sample.jobs as f64,
            "ms",
            0.2,
        ));
        saturation = Some(runs);
    }
    if !versus.is_empty() || saturation.is_some() {
        println!("{}", targets_table(&versus, saturation.as_ref()));
    }
    println!(
        "load average at the end: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(runtime);
    // The boxes go first, so that their cgroups are empty when they are removed.
    drop(real_box);
    drop(emulated_box);
    drop(real_cgroup);
    drop(emulated_cgroup);
    Ok(())
}

fn add_versus(versus: &mut Vec<Versus>, pair: &sections::Pair, what: &str) {
    let ms = |s: &run::Sample| s.client_cpu().as_secs_f64() * 1e3 / s.jobs as f64;
    let kb = |s: &run::Sample| s.traffic.up as f64 / 1e3 / s.jobs as f64;
    let wall = |s: &run::Sample| s.wall.as_secs_f64();
    for (build, samples, bytes_target) in
        [("cold", &pair.cold, 0.1), ("second", &pair.second, 0.02)]
    {
        versus.push(Versus::new(
            &format!("client CPU per job, {build} build"),
            ms(&samples[0]),
            ms(&samples[1]),
            "ms",
            0.2,
        ));
        versus.push(Versus::new(
            &format!("bytes up per job, {build} build"),
            kb(&samples[0]),
            kb(&samples[1]),
            "KB",
            bytes_target,
        ));
        versus.push(Versus::new(
            &format!("wall, {build} build, {what}"),
            wall(&samples[0]),
            wall(&samples[1]),
            "s",
            0.5,
        ));
    }
}
