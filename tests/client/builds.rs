//! Builds through sshcc whose results are exactly a local compile's: objects, line
//! tables, messages, dependency files, ccache and masquerade links, outputs and options
//! a box would refuse; and the wrapper finding itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, sshcc, stderr};
use crate::lab::{Lab, assert_same_objects, make, objects, walk};

/// The decoded DWARF line table (addresses, files, lines, columns) of an object.
fn line_table(object: &Path) -> String {
    let output = run(Command::new("objdump")
        .arg("--dwarf=decodedline")
        .arg(object));
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(2)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn make_j8_builds_objects_identical_to_a_local_build() {
    let lab = Lab::new();
    let remote = lab.project("remote");
    let local = lab.project("local");
    let cc = format!("CC={} gcc", sshcc().display());
    let cxx = format!("CXX={} g++", sshcc().display());
    make(&remote, &mut lab.command("make"), &[&cc, &cxx]);
    make(&local, &mut Command::new("make"), &["CC=gcc", "CXX=g++"]);
    assert_same_objects(&remote, &local);

    // With -g the objects differ only in DW_AT_producer (it records the remote flags);
    // the line tables, with columns, are the local ones. Paths are part of them, so both
    // builds happen in the same directory.
    let flags = ["CFLAGS=-O2 -g -Wall", "CXXFLAGS=-O2 -g -std=c++17"];
    run(Command::new("make").current_dir(&remote).arg("clean"));
    make(
        &remote,
        &mut lab.command("make"),
        &[&cc, &cxx, flags[0], flags[1]],
    );
    let saved = lab.path("saved");
    std::fs::create_dir(&saved).unwrap();
    for name in objects(&remote) {
        std::fs::rename(remote.join(&name), saved.join(&name)).unwrap();
    }
    make(
        &remote,
        &mut Command::new("make"),
        &["CC=gcc", "CXX=g++", flags[0], flags[1]],
    );
    for name in objects(&remote) {
        let (ours, theirs) = (
            line_table(&saved.join(&name)),
            line_table(&remote.join(&name)),
        );
        if let Some((a, b)) = ours.lines().zip(theirs.lines()).find(|(a, b)| a != b) {
            panic!("{name}: line tables differ:\n  sshcc: {a}\n  local: {b}");
        }
        assert_eq!(ours.lines().count(), theirs.lines().count(), "{name}");
    }
}

#[test]
fn warnings_and_errors_read_exactly_as_a_local_compile() {
    let lab = Lab::new();
    let dir = lab.project("messages");
    for (source, flags) in [
        ("warns.c", &["-Wall"][..]),
        ("macro_warn.c", &["-Wall", "-Wextra"]),
    ] {
        let remote = run(lab
            .command(sshcc())
            .current_dir(&dir)
            .arg("gcc")
            .args(flags)
            .args(["-c", source, "-o", "remote.o"]));
        let local = run(Command::new("gcc")
            .current_dir(&dir)
            .args(flags)
            .args(["-c", source, "-o", "local.o"]));
        assert!(remote.status.success(), "{}", stderr(&remote));
        assert_eq!(stderr(&remote), stderr(&local), "{source}");
        assert!(stderr(&local).contains("warning"), "the fixture must warn");
    }
    // A compile error: with local retry (distcc's default) and without it.
    let local = run(Command::new("gcc")
        .current_dir(&dir)
        .args(["-c", "broken.c", "-o", "broken.o"]));
    for skip_local_retry in [false, true] {
        let mut command = lab.command(sshcc());
        command
            .current_dir(&dir)
            .args(["gcc", "-c", "broken.c", "-o", "broken.o"])
            .env("DISTCC_FALLBACK", "1");
        if skip_local_retry {
            command.env("DISTCC_SKIP_LOCAL_RETRY", "1");
        }
        let remote = run(&mut command);
        assert_eq!(remote.status.code(), Some(1));
        assert_eq!(
            stderr(&remote),
            stderr(&local),
            "the compiler's message, once"
        );
        assert!(!dir.join("broken.o").exists());
    }
}

#[test]
fn dependency_files_match_a_local_build() {
    let lab = Lab::new();
    let dir = lab.project("deps");
    std::fs::create_dir(dir.join("out")).unwrap();
    let cases: [&[&str]; 4] = [
        &["-MD", "-c", "geometry.c", "-o", "out/g3.o"],
        &[
            "-MMD",
            "-MF",
            "out/custom.d",
            "-MT",
            "target",
            "-c",
            "checksum.c",
            "-o",
            "out/c.o",
        ],
        &["-MMD", "-MP", "-c", "main.c"],
        &["-Wp,-MD,out/wp.d", "-c", "geometry.c", "-o", "out/wp.o"],
    ];
    for args in cases {
        let remote = run(lab.command(sshcc()).current_dir(&dir).arg("gcc").args(args));
        assert!(remote.status.success(), "{args:?}: {}", stderr(&remote));
        let mut deps: Vec<(PathBuf, String)> = Vec::new();
        for entry in walk(&dir) {
            if entry.extension().is_some_and(|e| e == "d") {
                deps.push((entry.clone(), std::fs::read_to_string(&entry).unwrap()));
                std::fs::remove_file(entry).unwrap();
            }
        }
        assert!(!deps.is_empty(), "{args:?} wrote no .d file");
        let local = run(Command::new("gcc").current_dir(&dir).args(args));
        assert!(local.status.success());
        for (path, remote_text) in deps {
            let local_text = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{args:?}: local build wrote no {}", path.display()));
            assert_eq!(remote_text, local_text, "{args:?}: {}", path.display());
            std::fs::remove_file(path).unwrap();
        }
    }
}

#[test]
fn ccache_prefix_and_masquerade_links_dispatch_through_the_box() {
    let lab = Lab::new();
    // CCACHE_PREFIX=sshcc: ccache runs `sshcc /usr/bin/gcc …` on a miss.
    let cached = lab.project("ccache");
    let local = lab.project("local");
    let mut command = lab.command("make");
    command
        .env("CCACHE_DIR", lab.path("ccache-dir"))
        .env("CCACHE_PREFIX", sshcc())
        .env("CCACHE_NOHASHDIR", "1");
    make(&cached, &mut command, &["CC=ccache gcc", "CXX=ccache g++"]);
    make(&local, &mut Command::new("make"), &["CC=gcc", "CXX=g++"]);
    assert_same_objects(&cached, &local);
    let stats = run(Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", lab.path("ccache-dir")));
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.contains("cache_miss\t6")
            || stats
                .lines()
                .any(|l| l.starts_with("cache_miss") && l.ends_with("\t6")),
        "{stats}"
    );

    // Masquerade: links named gcc/g++ to sshcc first on PATH.
    let masquerade = lab.path("masq");
    std::fs::create_dir(&masquerade).unwrap();
    for name in ["gcc", "g++"] {
        std::os::unix::fs::symlink(sshcc(), masquerade.join(name)).unwrap();
    }
    let path = format!(
        "{}:{}",
        masquerade.display(),
        std::env::var("PATH").unwrap()
    );
    let masked = lab.project("masquerade");
    make(
        &masked,
        lab.command("make").env("PATH", path),
        &["CC=gcc", "CXX=g++"],
    );
    assert_same_objects(&masked, &local);
}

#[test]
fn sshcc_finding_itself_as_the_compiler_stops_with_distccs_recursion_code() {
    let lab = Lab::new();
    let dir = lab.project("recursion");
    let link = lab.path("mycc");
    std::os::unix::fs::symlink(sshcc(), &link).unwrap();
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .arg(&link)
        .args(["-c", "geometry.c"])
        .env("_SSHCC_SAFEGUARD", "1"));
    assert_eq!(output.status.code(), Some(111), "{}", stderr(&output));
}

#[test]
fn special_outputs_and_options_the_box_would_refuse_still_build() {
    let lab = Lab::new();
    let dir = lab.project("special");
    // Written to, never replaced: /dev/null stays a device.
    let output = run(lab.command(sshcc()).current_dir(&dir).args([
        "gcc",
        "-c",
        "geometry.c",
        "-o",
        "/dev/null",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    // -gsplit-dwarf's .dwo would be lost on a box: compiled here, with no fallback
    // needed (DISTCC_FALLBACK=0) and the .dwo where the build expects it.
    let output = run(lab.command(sshcc()).current_dir(&dir).args([
        "gcc",
        "-g",
        "-gsplit-dwarf",
        "-c",
        "checksum.c",
        "-o",
        "c.o",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("c.dwo").exists());
}
