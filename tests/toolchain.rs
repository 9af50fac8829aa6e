//! Toolchain identity end to end: a box whose allowlisted compiler is another build
//! than the local one gets no job, ccache wrapper paths resolve to the real compiler
//! on both sides, and fingerprints are hashed once, then read from the cache.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{compile_locally, private_command, project_copy, run, sshcc, stderr, write_script};
use sshcc::throwaway_box::ThrowawayBox;

/// `sshcc gcc -c geometry.c -o g.o` in `dir` through `build_box`, without a daemon,
/// with the private directories (the fingerprint cache `scratch/cache`) of `scratch`
/// and `env` added.
fn compile(build_box: &ThrowawayBox, dir: &Path, scratch: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = private_command(sshcc(), scratch);
    command
        .current_dir(dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", format!("@box/4:{}", sshcc().display()))
        .env("SSHCC_SSH_CONFIG", build_box.ssh_config())
        .env("SSHCC_NO_DAEMON", "1")
        .env("SSHCC_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command)
}

#[test]
fn a_box_with_another_compiler_build_gets_no_job() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // Another build of gcc: the same compiler underneath, another version string.
    let bin = dir.join("other-gcc");
    std::fs::create_dir_all(&bin).unwrap();
    let compiles = dir.join("compiles.log");
    let fake = bin.join("x86_64-linux-gnu-gcc");
    write_script(
        &fake,
        &format!(
            "#!/bin/sh\n\
             case \"$1\" in --version) echo 'gcc (Other Distro 99.1.0-1) 99.1.0'; exit 0;; esac\n\
             case \" $* \" in *' -c '*) echo \"$@\" >> {};; esac\n\
             exec /usr/bin/x86_64-linux-gnu-gcc \"$@\"\n",
            compiles.display()
        ),
    );
    let list = dir.join("list");
    std::fs::write(&list, format!("{}\n", fake.display())).unwrap();
    let build_box = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        // The wrapper's log is outside the job, where the sandbox lets no compiler write.
        .env("SSHCC_SANDBOX_WRITE", dir.to_str().unwrap())
        .start()
        .unwrap();
    let project = project_copy();
    let project = project.path();

    // Falls back to a local compile, and says why, naming both versions.
    let output = compile(&build_box, project, dir, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("not sending x86_64-linux-gnu-gcc jobs there")
            && text.contains("99.1.0")
            && text.contains(&local_version()),
        "{text}"
    );
    compile_locally(project, "gcc", &[], "geometry.c", "local.o");
    assert_eq!(
        std::fs::read(project.join("g.o")).unwrap(),
        std::fs::read(project.join("local.o")).unwrap()
    );

    // Without fallback: distcc's "no host" exit, and still nothing sent there.
    let output = compile(&build_box, project, dir, &[("DISTCC_FALLBACK", "0")]);
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the compiler differs"),
        "{}",
        stderr(&output)
    );
    assert!(!compiles.exists(), "a job reached the other compiler");

    // Relaxed to the version string it still differs; switched off, the box is used.
    let output = compile(
        &build_box,
        project,
        dir,
        &[
            ("DISTCC_FALLBACK", "0"),
            ("SSHCC_TOOLCHAIN_CHECK", "version"),
        ],
    );
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    let output = compile(
        &build_box,
        project,
        dir,
        &[("DISTCC_FALLBACK", "0"), ("SSHCC_TOOLCHAIN_CHECK", "off")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(compiles.exists());
}

fn local_version() -> String {
    let output = run(Command::new("gcc").arg("-dumpfullversion"));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn ccache_wrappers_match_the_real_compiler_and_fingerprints_are_cached() {
    let ccache_gcc = Path::new("/usr/lib/ccache/x86_64-linux-gnu-gcc");
    if !ccache_gcc.exists() {
        eprintln!("skipped: ccache is not installed");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let list = dir.join("list");
    std::fs::write(&list, format!("{}\n", ccache_gcc.display())).unwrap();
    let build_box = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .env("XDG_CACHE_HOME", dir.join("box-cache").to_str().unwrap())
        .env("CCACHE_DIR", dir.join("box-ccache").to_str().unwrap())
        .start()
        .unwrap();
    let project = project_copy();
    let project = project.path();
    // The local compiler is reached through ccache's wrapper directory too.
    let path = format!("/usr/lib/ccache:{}", std::env::var("PATH").unwrap());
    let env = [("DISTCC_FALLBACK", "0"), ("PATH", path.as_str())];

    let first = compile(&build_box, project, dir, &env);
    assert!(first.status.success(), "{}", stderr(&first));
    let hashed = |output: &Output| stderr(output).matches(": hashed (").count();
    // Both sides fingerprinted the real compiler, not ccache.
    assert_eq!(hashed(&first), 1, "{}", stderr(&first));
    assert!(
        stderr(&first).contains("x86_64-linux-gnu-gcc-12: hashed"),
        "{}",
        stderr(&first)
    );
    let box_cache = dir.join("box-cache/sshcc/toolchains.json");
    let box_entries = std::fs::read_to_string(&box_cache).unwrap();
    assert!(
        box_entries.contains("/usr/bin/x86_64-linux-gnu-gcc-12"),
        "{box_entries}"
    );
    assert!(!box_entries.contains("ccache"), "{box_entries}");
    let written = std::fs::metadata(&box_cache).unwrap().modified().unwrap();

    // The next build reads both fingerprints from the caches.
    let second = compile(&build_box, project, dir, &env);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(hashed(&second), 0, "{}", stderr(&second));
    assert_eq!(
        std::fs::metadata(&box_cache).unwrap().modified().unwrap(),
        written
    );
}
