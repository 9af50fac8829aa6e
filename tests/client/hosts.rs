//! Which hosts get the jobs: what `--show-hosts` and `-j` print, a stock distccd box,
//! forty jobs on one connection, dead and killed hosts, jobs spread over two boxes, and
//! hosts from the config file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{Scratch, run, sshcc, stderr, write_script};
use crate::lab::{Lab, check_many_sources, many_sources, walk};
use sshcc::throwaway_box::ThrowawayBox;

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
