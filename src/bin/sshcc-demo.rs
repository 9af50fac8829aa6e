//! The quick-start demo: a throwaway local sshd stands in for a build box, and the
//! bundled sample project is built through sshcc with `make -j8`, printing where each
//! job ran and the total.
//!
//! Run with `scripts/demo.sh` (which installs what is missing and builds sshcc).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use sshcc::throwaway_box::ThrowawayBox;

/// The sample project, compiled into the demo so it runs from anywhere.
const PROJECT: &[(&str, &str)] = &[
    (
        "Makefile",
        include_str!("../../tests/fixtures/project/Makefile"),
    ),
    (
        "geometry.h",
        include_str!("../../tests/fixtures/project/geometry.h"),
    ),
    (
        "geometry.c",
        include_str!("../../tests/fixtures/project/geometry.c"),
    ),
    (
        "checksum.c",
        include_str!("../../tests/fixtures/project/checksum.c"),
    ),
    (
        "main.c",
        include_str!("../../tests/fixtures/project/main.c"),
    ),
    (
        "shapes.hpp",
        include_str!("../../tests/fixtures/project/shapes.hpp"),
    ),
    (
        "shapes.cpp",
        include_str!("../../tests/fixtures/project/shapes.cpp"),
    ),
    (
        "report.cc",
        include_str!("../../tests/fixtures/project/report.cc"),
    ),
    (
        "warns.c",
        include_str!("../../tests/fixtures/project/warns.c"),
    ),
];

fn main() -> anyhow::Result<()> {
    let sshcc = sibling_sshcc()?;
    let work = tempfile::Builder::new().prefix("sshcc-demo-").tempdir()?;
    let project = work.path().join("project");
    std::fs::create_dir(&project)?;
    for (name, text) in PROJECT {
        std::fs::write(project.join(name), text)?;
    }
    // The box may run exactly the compilers the build uses, as a real box's
    // ~/.distcc/DISTCC_CMDLIST would say.
    let allowlist = work.path().join("DISTCC_CMDLIST");
    std::fs::write(
        &allowlist,
        "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n/usr/bin/gcc\n/usr/bin/g++\n",
    )?;

    println!("sshcc demo: starting a throwaway sshd on 127.0.0.1 as the build box…");
    let build_box = ThrowawayBox::builder()
        .env(
            "DISTCC_CMDLIST",
            allowlist.to_str().context("temp path is not UTF-8")?,
        )
        .start()?;
    let hosts = format!("@{}/8:{}", build_box.host_alias(), sshcc.display());
    println!("  box: 127.0.0.1:{}  hosts: {hosts}", build_box.port());
    println!(
        "building {} with `make -j8 CC=\"sshcc gcc\" CXX=\"sshcc g++\"`:",
        project.display()
    );

    let started = Instant::now();
    let output = Command::new("make")
        .current_dir(&project)
        .args([
            "-j8",
            &format!("CC={} gcc", sshcc.display()),
            &format!("CXX={} g++", sshcc.display()),
        ])
        .env("SSHCC_HOSTS", &hosts)
        .env("SSHCC_SSH_CONFIG", build_box.ssh_config())
        .env("SSHCC_RUNTIME_DIR", work.path().join("runtime"))
        .env("SSHCC_LOG", "info")
        .env("SSHCC_IDLE_TIMEOUT", "30")
        .output()
        .context("cannot run make")?;
    let elapsed = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr);
    let (mut remote, mut local) = (0, 0);
    for line in log.lines() {
        if let Some(job) = line.split("INFO ").nth(1).filter(|job| job.contains(" → ")) {
            println!("  {job}");
            if job.contains("→ localhost") {
                local += 1
            } else {
                remote += 1
            }
        } else if !line.trim().is_empty() {
            println!("  | {line}");
        }
    }
    let _ = Command::new(&sshcc)
        .arg("--stop")
        .env("SSHCC_RUNTIME_DIR", work.path().join("runtime"))
        .output();
    if !output.status.success() {
        bail!("the build failed ({})", output.status);
    }
    let objects = std::fs::read_dir(&project)?
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|ext| ext == "o"))
        })
        .count();
    println!(
        "done: {objects} objects, {remote} compiled on the box, {local} locally, in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// The `sshcc` binary built alongside this demo.
fn sibling_sshcc() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let sshcc = me.parent().unwrap_or(Path::new(".")).join("sshcc");
    if !sshcc.exists() {
        bail!(
            "{} not found; build it with `cargo build --release`",
            sshcc.display()
        );
    }
    Ok(sshcc)
}
