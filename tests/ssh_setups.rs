//! Real SSH setups: boxes reached through a ProxyJump bastion or a ProxyCommand, and
//! keys held only by `ssh-agent`. Both hosts live on loopback here; tests/bastion.rs
//! puts the target where only the bastions can reach it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    compile_locally, compile_via, private_command, project_copy, run, ssh_stanza, sshcc, stderr,
};
use sshcc::throwaway_box::{CertificateRequest, ThrowawayBox, certify};

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
    compile_locally(dir, "gcc", &["-O2"], "geometry.c", "local.o");

    let jump = config(&bastion, &target, "ProxyJump jump", scratch.path());
    let output = compile_via(&jump, "target", dir, scratch.path());
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
    let output = compile_via(&proxied, "target", dir, scratch.path());
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
    let _agent = start_agent(&socket, target.client_key());

    let project = project_copy();
    let dir = project.path();
    let output = compile_with_agent(&config, "box", dir, scratch.path(), Some(&socket));
    assert!(output.status.success(), "{}", stderr(&output));
    // Without the agent nothing can authenticate, and the error says what was tried.
    let output = compile_with_agent(&config, "box", dir, scratch.path(), None);
    assert_eq!(output.status.code(), Some(116));
    assert!(
        stderr(&output).contains("authentication to"),
        "{}",
        stderr(&output)
    );
}

/// `sshcc gcc -c geometry.c -o g.o` in `dir` through `alias` of `config`, with no
/// daemon and no fallback, with the private directories of `scratch`, seeing only the
/// agent on `agent_socket` (if any) and no way to ask for a passphrase.
fn compile_with_agent(
    config: &Path,
    alias: &str,
    dir: &Path,
    scratch: &Path,
    agent_socket: Option<&Path>,
) -> std::process::Output {
    let mut command = private_command(sshcc(), scratch);
    command
        .current_dir(dir)
        .args(["gcc", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", format!("@{alias}/4:{}", sshcc().display()))
        .env("SSHCC_SSH_CONFIG", config)
        .env("SSHCC_NO_DAEMON", "1")
        .env("DISTCC_FALLBACK", "0")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .env_remove("SSH_ASKPASS")
        .stdin(std::process::Stdio::null());
    if let Some(socket) = agent_socket {
        command.env("SSH_AUTH_SOCK", socket);
    }
    run(&mut command)
}

/// Kills the agent when the test ends, also when it fails.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `ssh-agent` on `socket`, holding `key` (and `key-cert.pub` if it exists).
fn start_agent(socket: &Path, key: &Path) -> Agent {
    let agent = Agent(
        Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = run(Command::new("ssh-add")
        .arg(key)
        .env("SSH_AUTH_SOCK", socket));
    assert!(added.status.success(), "{}", stderr(&added));
    agent
}

#[test]
fn user_certificates_authenticate_from_files_and_from_the_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let keygen = |name: &str| {
        let made = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(dir.join(name)));
        assert!(made.status.success(), "{}", stderr(&made));
        dir.join(name)
    };
    let ca = keygen("user_ca");
    let key = keygen("build_key");
    let list = dir.join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .trusted_user_ca_keys(dir.join("user_ca.pub"))
        .start()
        .unwrap();
    let user = sshcc::ssh::config::resolve("box", None, Some(target.ssh_config()))
        .unwrap()
        .user;
    // The same host with build_key, which authorized_keys does not list.
    let stanza = |extra: &str| {
        let text = ssh_stanza(&target, "certbox", extra).replace(
            &target.client_key().display().to_string(),
            &key.display().to_string(),
        );
        let path = dir.join("ssh_config");
        std::fs::write(&path, text).unwrap();
        path
    };
    let project = project_copy();
    let project = project.path();

    let output = compile_via(&stanza(""), "certbox", project, dir);
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("build_key (refused)"),
        "{}",
        stderr(&output)
    );

    let request = CertificateRequest {
        ca_key: ca.clone(),
        principals: Some(user),
        validity: "always:forever".into(),
    };
    let certificate = certify(&dir.join("build_key.pub"), "sshcc-user", false, &request).unwrap();
    let output = compile_via(&stanza(""), "certbox", project, dir);
    assert!(
        output.status.success(),
        "beside the key: {}",
        stderr(&output)
    );

    let elsewhere = dir.join("elsewhere-cert.pub");
    std::fs::rename(&certificate, &elsewhere).unwrap();
    let config = stanza(&format!("CertificateFile {}", elsewhere.display()));
    let output = compile_via(&config, "certbox", project, dir);
    assert!(
        output.status.success(),
        "CertificateFile: {}",
        stderr(&output)
    );

    // Only the agent holds the key and its certificate.
    std::fs::rename(&elsewhere, &certificate).unwrap();
    let socket = dir.join("agent.sock");
    let _agent = start_agent(&socket, &key);
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&certificate).unwrap();
    let output = compile_with_agent(&stanza(""), "certbox", project, dir, Some(&socket));
    assert!(output.status.success(), "agent: {}", stderr(&output));
    let accepted = target
        .log()
        .lines()
        .filter(|line| line.starts_with("Accepted publickey") && line.contains("ID sshcc-user"))
        .count();
    assert_eq!(accepted, 3, "sshd log:\n{}", target.log());
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
    let output = run(private_command(sshcc(), scratch.path())
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

#[test]
fn an_encrypted_key_file_is_used_through_the_agent_and_never_prompted_for() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let list = dir.join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap();
    // The box's client key, encrypted, as the only IdentityFile (IdentitiesOnly yes).
    let locked = dir.join("locked_key");
    std::fs::copy(target.client_key(), &locked).unwrap();
    let mut public = target.client_key().as_os_str().to_owned();
    public.push(".pub");
    std::fs::copy(&public, dir.join("locked_key.pub")).unwrap();
    let encrypted = run(Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "correct horse", "-f"])
        .arg(&locked));
    assert!(encrypted.status.success(), "{}", stderr(&encrypted));
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        ssh_stanza(&target, "locked", "").replace(
            &target.client_key().display().to_string(),
            &locked.display().to_string(),
        ),
    )
    .unwrap();
    let project = project_copy();
    let project = project.path();
    let output = compile_with_agent(&config, "locked", project, dir, None);
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("locked_key (encrypted: load it into ssh-agent)"),
        "{}",
        stderr(&output)
    );
    // The agent holds the same key (unlocked): IdentitiesOnly still lets it sign for
    // the configured file, as in OpenSSH.
    let socket = dir.join("agent.sock");
    let _agent = start_agent(&socket, target.client_key());
    let output = compile_with_agent(&config, "locked", project, dir, Some(&socket));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn rsa_and_ecdsa_key_files_authenticate() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let list = dir.join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let target = ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap();
    let authorized_keys = target.dir().join("authorized_keys");
    let existing = std::fs::read_to_string(&authorized_keys).unwrap();
    // Same options (the environment) as the box's own key.
    let options = existing.split(" ssh-ed25519 ").next().unwrap().to_owned();
    let project = project_copy();
    for (kind, bits) in [("rsa", "3072"), ("ecdsa", "384")] {
        let key = dir.join(format!("id_{kind}"));
        let made = run(Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-b", bits, "-N", "", "-C", kind, "-f"])
            .arg(&key));
        assert!(made.status.success(), "{}", stderr(&made));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut lines = std::fs::read_to_string(&authorized_keys).unwrap();
        lines.push_str(&format!("{options} {public}"));
        std::fs::write(&authorized_keys, lines).unwrap();
        let config = dir.join(format!("{kind}_config"));
        std::fs::write(
            &config,
            ssh_stanza(&target, kind, "").replace(
                &target.client_key().display().to_string(),
                &key.display().to_string(),
            ),
        )
        .unwrap();
        let output = compile_via(&config, kind, project.path(), dir);
        assert!(output.status.success(), "{kind}: {}", stderr(&output));
    }
    let log = target.log();
    assert!(
        log.contains("Accepted publickey") && log.contains(": RSA SHA256:"),
        "{log}"
    );
    assert!(log.contains(": ECDSA SHA256:"), "{log}");
}
