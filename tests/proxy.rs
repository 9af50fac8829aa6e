//! Boxes reached through a ProxyJump bastion or a ProxyCommand, over pooled russh
//! connections. (Both "hosts" live on loopback here; the network-namespace test that
//! makes the target unreachable except through the bastion is still to come.)

mod common;

use std::path::Path;
use std::process::Command;

use common::{project_copy, run, sshcc, stderr};
use sshcc::throwaway_box::ThrowawayBox;

const ALLOWLIST: &str = "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/gcc\n";

/// An ssh_config naming the bastion `jump` and the target `target` with `extra` lines.
fn config(
    bastion: &ThrowawayBox,
    target: &ThrowawayBox,
    extra: &str,
    dir: &Path,
) -> std::path::PathBuf {
    let bastion_config = std::fs::read_to_string(bastion.ssh_config())
        .unwrap()
        .replacen("Host box", "Host jump", 1);
    let target_config = std::fs::read_to_string(target.ssh_config())
        .unwrap()
        .replacen("Host box", "Host target", 1);
    let path = dir.join("ssh_config");
    std::fs::write(
        &path,
        format!(
            "{bastion_config}\n{}\n  {extra}\n",
            target_config.trim_end()
        ),
    )
    .unwrap();
    path
}

fn compile_through(config: &Path, dir: &Path) -> std::process::Output {
    run(Command::new(sshcc())
        .current_dir(dir)
        .args(["gcc", "-O2", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", format!("@target/4:{}", sshcc().display()))
        .env("SSHCC_SSH_CONFIG", config)
        .env("SSHCC_NO_DAEMON", "1")
        .env("DISTCC_FALLBACK", "0")
        .env("SSHCC_LOG", "info"))
}

#[test]
fn proxy_jump_and_proxy_command_reach_the_box() {
    let scratch = tempfile::tempdir().unwrap();
    let list = scratch.path().join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let bastion = ThrowawayBox::builder().start().unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap();
    let project = project_copy();
    let dir = project.path();
    let local = run(Command::new("gcc").current_dir(dir).args([
        "-O2",
        "-c",
        "geometry.c",
        "-o",
        "local.o",
    ]));
    assert!(local.status.success());

    let jump = config(&bastion, &target, "ProxyJump jump", scratch.path());
    let output = compile_through(&jump, dir);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("geometry.c → @target/4"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read(dir.join("g.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );
    std::fs::remove_file(dir.join("g.o")).unwrap();

    let command = format!(
        "ProxyCommand ssh -F {} -W %h:%p jump",
        scratch.path().join("ssh_config").display()
    );
    let proxied = config(&bastion, &target, &command, &scratch.path().join(""));
    let output = compile_through(&proxied, dir);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(dir.join("g.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );
}
