//! The `sshcc` wrapper, daemon and pooled SSH dispatch against real OpenSSH sshd boxes,
//! real gcc, ccache and Debian's distccd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Scratch, client_command, project, run, sshcc, stderr, write_script};
use sshcc::daemon::runtime_dir::SOCKET_NAME;
use sshcc::throwaway_box::ThrowawayBox;

/// The compilers a box allows (Debian's triple-prefixed names are what sshcc sends for
/// gcc/g++, as distcc does).
const ALLOWLIST: &str =
    "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n/usr/bin/gcc\n/usr/bin/g++\n";

/// A box, a client environment and scratch space (which stops the daemon when dropped).
struct Lab {
    build_box: ThrowawayBox,
    scratch: Scratch,
    hosts: String,
}

impl Lab {
    fn new() -> Self {
        Self::with_box(ThrowawayBox::builder(), "")
    }

    /// A box built by `builder` (plus the allowlist), used as `@box/8:<sshcc><options>`.
    fn with_box(builder: sshcc::throwaway_box::BoxBuilder, host_options: &str) -> Self {
        let scratch = Scratch::new();
        let list = scratch.join("DISTCC_CMDLIST");
        std::fs::write(&list, ALLOWLIST).unwrap();
        let build_box = builder
            .env("DISTCC_CMDLIST", list.to_str().unwrap())
            .start()
            .expect("box");
        let hosts = format!(
            "@{}/8:{}{host_options}",
            build_box.host_alias(),
            sshcc().display()
        );
        Lab {
            build_box,
            scratch,
            hosts,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `program` with the client environment: this lab's hosts, ssh config, a private
    /// daemon, and no local fallback unless a test turns it back on.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        client_command(
            program,
            &self.hosts,
            self.build_box.ssh_config(),
            self.scratch.path(),
        )
    }

    fn project(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(project()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    }
}

fn make(dir: &Path, command: &mut Command, args: &[&str]) -> Output {
    let output = run(command.current_dir(dir).arg("-j8").args(args));
    assert!(
        output.status.success(),
        "make in {} failed: {}",
        dir.display(),
        stderr(&output)
    );
    output
}

fn objects(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".o"))
        .collect();
    names.sort();
    names
}

fn assert_same_objects(remote: &Path, local: &Path) {
    let names = objects(local);
    assert!(!names.is_empty());
    assert_eq!(objects(remote), names);
    for name in names {
        let (a, b) = (
            std::fs::read(remote.join(&name)).unwrap(),
            std::fs::read(local.join(&name)).unwrap(),
        );
        assert!(a == b, "{name} differs from the local build");
    }
}

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

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
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
fn show_hosts_and_j_print_what_distcc_prints() {
    let scratch = Scratch::new();
    for hosts in [
        "@box/8:/x/sshcc,lzo localhost/2 other/3",
        "@a @b/12 # comment\n user@c/2:/opt/sshcc",
    ] {
        for flag in ["-j", "--show-hosts"] {
            let ours = run(scratch.sshcc().arg(flag).env("SSHCC_HOSTS", hosts));
            let theirs = run(scratch
                .command("distcc")
                .arg(flag)
                .env("DISTCC_HOSTS", hosts));
            assert!(ours.status.success(), "{}", stderr(&ours));
            assert_eq!(ours.stdout, theirs.stdout, "{flag} for {hosts:?}");
        }
    }
}

#[test]
fn a_stock_distccd_box_is_served_one_exec_channel_per_job() {
    let lab = Lab::new();
    let hosts = format!("@{}/40:/usr/bin/distccd,lzo", lab.build_box.host_alias());
    let dir = many_sources(&lab, "distccd", 40);
    let output = run(lab
        .command("make")
        .current_dir(&dir)
        .arg("-j40")
        .env("SSHCC_HOSTS", &hosts)
        .arg(format!("CC={} gcc", sshcc().display())));
    assert!(output.status.success(), "{}", stderr(&output));
    check_many_sources(&dir, 40);
}

#[test]
fn forty_concurrent_jobs_share_one_connection_under_default_max_sessions() {
    let lab = Lab::new();
    let hosts = format!("@{}/40:{}", lab.build_box.host_alias(), sshcc().display());
    let dir = many_sources(&lab, "forty", 40);
    let output = run(lab
        .command("make")
        .current_dir(&dir)
        .arg("-j40")
        .env("SSHCC_HOSTS", &hosts)
        .arg(format!("CC={} gcc", sshcc().display())));
    assert!(output.status.success(), "{}", stderr(&output));
    check_many_sources(&dir, 40);
}

/// A directory of `count` small C files and a Makefile building them.
fn many_sources(lab: &Lab, name: &str, count: usize) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut objects = Vec::new();
    for index in 0..count {
        std::fs::write(
            dir.join(format!("unit{index}.c")),
            format!(
                "int unit{index}(int x) {{ return x * {index} + {}; }}\n",
                index * 7
            ),
        )
        .unwrap();
        objects.push(format!("unit{index}.o"));
    }
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "all: {}\n%.o: %.c\n\t$(CC) -O2 -c $< -o $@\n",
            objects.join(" ")
        ),
    )
    .unwrap();
    dir
}

fn check_many_sources(dir: &Path, count: usize) {
    for index in 0..count {
        let source = format!("unit{index}.c");
        let local = dir.join(format!("local{index}.o"));
        let output = run(Command::new("gcc")
            .current_dir(dir)
            .args(["-O2", "-c", &source, "-o"])
            .arg(&local));
        assert!(output.status.success());
        assert_eq!(
            std::fs::read(dir.join(format!("unit{index}.o"))).unwrap(),
            std::fs::read(&local).unwrap(),
            "{source}"
        );
    }
}

#[test]
fn a_dead_host_falls_back_to_a_local_compile_unless_fallback_is_off() {
    let lab = Lab::new();
    let dead = lab.path("dead_config");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &dead,
        format!("Host dead\n  HostName 127.0.0.1\n  Port {closed_port}\n  ConnectTimeout 5\n"),
    )
    .unwrap();
    let dir = lab.project("dead");
    let started = Instant::now();
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", "@dead/4")
        .env("SSHCC_SSH_CONFIG", &dead)
        .env("DISTCC_FALLBACK", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("compiling geometry.c locally"),
        "{}",
        stderr(&output)
    );
    assert!(dir.join("g.o").exists());
    assert!(started.elapsed() < Duration::from_secs(30));

    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-c", "checksum.c", "-o", "c.o"])
        .env("SSHCC_HOSTS", "@dead/4")
        .env("SSHCC_SSH_CONFIG", &dead));
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    assert!(!dir.join("c.o").exists());
}

#[test]
fn a_box_killed_mid_build_still_yields_a_complete_correct_build() {
    let scratch = Scratch::new();
    // A compiler on the box that takes a while, so the build is mid-flight when the
    // box dies.
    let slow = scratch.path().join("bin/x86_64-linux-gnu-gcc");
    write_script(
        &slow,
        "sleep 0.3\nexec /usr/bin/x86_64-linux-gnu-gcc \"$@\"",
    );
    let list = scratch.path().join("list");
    std::fs::write(&list, format!("{}\n", slow.display())).unwrap();
    let lab = Lab::with_box(
        ThrowawayBox::builder().env("DISTCC_CMDLIST", list.to_str().unwrap()),
        "",
    );
    let dir = many_sources(&lab, "killed", 24);
    let mut make = lab
        .command("make")
        .current_dir(&dir)
        .arg("-j4")
        .arg(format!("CC={} gcc", sshcc().display()))
        .env("DISTCC_FALLBACK", "1")
        .env("DISTCC_IO_TIMEOUT", "20")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while walk(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lab = lab;
    lab.build_box.stop();
    let status = make.wait().unwrap();
    assert!(status.success());
    check_many_sources(&dir, 24);
    assert!(
        !walk(&dir).iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".sshcc-")),
        "no temporary files left"
    );
}

#[test]
fn sixty_four_wrappers_racing_start_exactly_one_daemon_and_stop_works() {
    let lab = Lab::new();
    let dir = many_sources(&lab, "race", 64);
    let children: Vec<_> = (0..64)
        .map(|index| {
            lab.command(sshcc())
                .current_dir(&dir)
                .args([
                    "gcc",
                    "-O2",
                    "-c",
                    &format!("unit{index}.c"),
                    "-o",
                    &format!("unit{index}.o"),
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    check_many_sources(&dir, 64);
    let log = std::fs::read_to_string(lab.path("runtime/daemon.log")).unwrap_or_default();
    assert_eq!(log.matches("daemon started").count(), 1, "{log}");
    let stop = run(lab.command(sshcc()).arg("--stop"));
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout).trim(),
        "sshcc: daemon stopped"
    );
    assert!(!lab.path(&format!("runtime/{SOCKET_NAME}")).exists());
    let again = run(lab.command(sshcc()).arg("--stop"));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "sshcc: no daemon running"
    );
}

#[test]
fn the_daemon_exits_when_idle_and_no_daemon_mode_works() {
    let lab = Lab::new();
    let dir = lab.project("idle");
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_IDLE_TIMEOUT", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lab.path(&format!("runtime/{SOCKET_NAME}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit when idle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["g++", "-std=c++17", "-c", "shapes.cpp", "-o", "s.o"])
        .env("SSHCC_NO_DAEMON", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !lab.path(&format!("runtime/{SOCKET_NAME}")).exists(),
        "SSHCC_NO_DAEMON must not start a daemon"
    );
    assert!(dir.join("s.o").exists());
}

/// An ssh_config with the lab's box plus a `dead` alias whose port nobody listens on.
fn config_with_dead_host(lab: &Lab) -> PathBuf {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut text = std::fs::read_to_string(lab.build_box.ssh_config()).unwrap();
    text.push_str(&format!(
        "\nHost dead\n  HostName 127.0.0.1\n  Port {closed_port}\n  ConnectTimeout 5\n"
    ));
    let path = lab.path("ssh_config_with_dead");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn jobs_avoid_a_dead_host_and_localhost_slots_compile_here() {
    let lab = Lab::new();
    let config = config_with_dead_host(&lab);
    let dir = many_sources(&lab, "mixed", 12);
    let hosts = format!("@dead/4 {}", lab.hosts);
    let output = run(lab
        .command("make")
        .current_dir(&dir)
        .arg("-j8")
        .arg(format!("CC={} gcc", sshcc().display()))
        .env("SSHCC_HOSTS", &hosts)
        .env("SSHCC_SSH_CONFIG", &config)
        .env("SSHCC_LOG", "info"));
    assert!(output.status.success(), "{}", stderr(&output));
    check_many_sources(&dir, 12);
    let log = stderr(&output);
    assert_eq!(
        log.matches(&format!("→ {}", lab.hosts)).count(),
        12,
        "{log}"
    );

    // A localhost entry is a slot on this machine: the job runs here, not on a box.
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-O2", "-c", "unit0.c", "-o", "unit0.o"])
        .env("SSHCC_HOSTS", "localhost/2")
        .env("SSHCC_LOG", "info"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unit0.c → localhost"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn jobs_spread_over_two_boxes() {
    let lab = Lab::new();
    let second = Lab::new();
    let mut config = std::fs::read_to_string(lab.build_box.ssh_config()).unwrap();
    config.push_str(
        &std::fs::read_to_string(second.build_box.ssh_config())
            .unwrap()
            .replacen("Host box", "Host box2", 1),
    );
    let config_path = lab.path("two_boxes");
    std::fs::write(&config_path, config).unwrap();
    let first_host = format!("@box/2:{}", sshcc().display());
    let second_host = format!("@box2/2:{}", sshcc().display());
    let dir = many_sources(&lab, "spread", 16);
    let output = run(lab
        .command("make")
        .current_dir(&dir)
        .arg("-j4")
        .arg(format!("CC={} gcc", sshcc().display()))
        .env("SSHCC_HOSTS", format!("{first_host} {second_host}"))
        .env("SSHCC_SSH_CONFIG", &config_path)
        .env("SSHCC_LOG", "info"));
    assert!(output.status.success(), "{}", stderr(&output));
    check_many_sources(&dir, 16);
    let log = stderr(&output);
    let (on_first, on_second) = (
        log.matches(&format!("→ {first_host}")).count(),
        log.matches(&format!("→ {second_host}")).count(),
    );
    assert_eq!(on_first + on_second, 16, "{log}");
    assert!(
        on_first > 0 && on_second > 0,
        "both boxes get work: {on_first} + {on_second}"
    );
}

#[test]
fn the_config_file_supplies_hosts_and_the_remote_command() {
    let lab = Lab::new();
    let config = lab.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "hosts = \"@box/4\"\nssh_config = \"{}\"\n[host.box]\ncommand = \"{}\"\n",
            lab.build_box.ssh_config().display(),
            sshcc().display()
        ),
    )
    .unwrap();
    let dir = lab.project("configured");
    let output = run(lab
        .command(sshcc())
        .current_dir(&dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env_remove("SSHCC_HOSTS")
        .env_remove("SSHCC_SSH_CONFIG")
        .env("SSHCC_CONFIG", &config)
        .env("SSHCC_LOG", "info"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("→ @box/4:{}", sshcc().display())),
        "{}",
        stderr(&output)
    );
    let slots = run(lab
        .command(sshcc())
        .arg("-j")
        .env_remove("SSHCC_HOSTS")
        .env("SSHCC_CONFIG", &config));
    assert_eq!(String::from_utf8_lossy(&slots.stdout).trim(), "4");
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
fn the_daemon_keeps_none_of_the_builds_descriptors_open() {
    let lab = Lab::new();
    let dir = lab.project("descriptors");
    // Like make's jobserver pipe or ccache's UNCACHED_ERR_FD: a descriptor inherited
    // without close-on-exec. If the daemon the wrapper starts kept it, this command's
    // output would not end until the daemon exits.
    let script = format!(
        "exec 5>&2; UNCACHED_ERR_FD=5 {} gcc -c geometry.c -o g.o",
        sshcc().display()
    );
    let output = run(lab.command("sh").current_dir(&dir).args(["-c", &script]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        lab.path(&format!("runtime/{SOCKET_NAME}")).exists(),
        "the build's output ended only because the daemon exited"
    );
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
