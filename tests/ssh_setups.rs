//! Real SSH setups: boxes reached through a ProxyJump bastion or a ProxyCommand, and
//! keys held only by `ssh-agent`. Both hosts live on loopback here; tests/bastion.rs
//! puts the target where only the bastions can reach it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{compile_via, project_copy, run, ssh_stanza, sshcc, stderr};
use sshcc::throwaway_box::ThrowawayBox;

const ALLOWLIST: &str = "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/gcc\n";

/// An ssh_config naming the bastion `jump` and the target `target` with `extra` lines.
fn config(
    bastion: &ThrowawayBox,
    target: &ThrowawayBox,
    extra: &str,
    dir: &Path,
) -> std::path::PathBuf {
    let path = dir.join("ssh_config");
    let text = ssh_stanza(bastion, "jump", "") + &ssh_stanza(target, "target", extra);
    std::fs::write(&path, text).unwrap();
    path
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
    let output = compile_via(&jump, "target", dir);
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
    let output = compile_via(&proxied, "target", dir);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(dir.join("g.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );
}

#[test]
fn a_key_held_only_by_ssh_agent_authenticates() {
    let scratch = tempfile::tempdir().unwrap();
    let list = scratch.path().join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap();
    // The same host, but no key file: only what the agent holds.
    let config_text: String = std::fs::read_to_string(target.ssh_config())
        .unwrap()
        .lines()
        .filter(|line| {
            !line.trim_start().starts_with("IdentityFile")
                && !line.trim_start().starts_with("IdentitiesOnly")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = scratch.path().join("agent_config");
    std::fs::write(&config, config_text).unwrap();
    let socket = scratch.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = run(Command::new("ssh-add")
        .arg(target.client_key())
        .env("SSH_AUTH_SOCK", &socket));
    assert!(added.status.success(), "{}", stderr(&added));

    let project = project_copy();
    let dir = project.path();
    let compile = |agent_socket: Option<&Path>| {
        let mut command = Command::new(sshcc());
        command
            .current_dir(dir)
            .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
            .env("SSHCC_HOSTS", format!("@box/4:{}", sshcc().display()))
            .env("SSHCC_SSH_CONFIG", &config)
            .env("SSHCC_NO_DAEMON", "1")
            .env("DISTCC_FALLBACK", "0")
            .env_remove("SSH_AUTH_SOCK");
        if let Some(socket) = agent_socket {
            command.env("SSH_AUTH_SOCK", socket);
        }
        run(&mut command)
    };
    let output = compile(Some(&socket));
    assert!(output.status.success(), "{}", stderr(&output));
    // Without the agent nothing can authenticate, and the error says what was tried.
    let output = compile(None);
    assert_eq!(output.status.code(), Some(116));
    assert!(
        stderr(&output).contains("authentication to"),
        "{}",
        stderr(&output)
    );
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn distcc_ssh_options_reach_ssh_like_they_do_for_distcc() {
    let scratch = tempfile::tempdir().unwrap();
    let list = scratch.path().join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap();
    let project = project_copy();
    let dir = project.path();
    // The ssh_config comes only from DISTCC_SSH, as a distcc user would have it.
    let output = run(Command::new(sshcc())
        .current_dir(dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", format!("@box/4:{}", sshcc().display()))
        .env(
            "DISTCC_SSH",
            format!(
                "ssh -o ConnectTimeout=5 -F {}",
                target.ssh_config().display()
            ),
        )
        .env_remove("SSHCC_SSH_CONFIG")
        .env("SSHCC_NO_DAEMON", "1")
        .env("DISTCC_FALLBACK", "0"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("g.o").exists());
}
