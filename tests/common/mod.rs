//! Shared helpers for the integration tests: paths to the real binary and fixtures,
//! running commands with their output captured, and the private directories every
//! process a test starts here uses instead of the real home's.
//!
//! Nothing a test runs may write into the home of the user running the suite (nor use
//! that user's daemon): every `sshcc`, `distcc`, `ccache` or `make` a test starts gets
//! [`private_dirs`] (through [`client_command`], [`Scratch::command`] or directly), and
//! the boxes' sessions get theirs from [`sshcc::throwaway_box`]. `scripts/no-trace.sh`
//! checks both after a run.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod reapi_engine;

/// The `sshcc` binary under test.
pub fn sshcc() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sshcc"))
}

/// The bundled sample project.
pub fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project")
}

/// A copy of the sample project in a fresh directory (builds write next to sources).
pub fn project_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(project()).expect("fixture project") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    dir
}

/// Runs `command`, returning its output, and panics with a readable message if it could
/// not start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

/// stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("script dir");
    }
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Compiles `source` locally with `compiler args` into `output`, panicking on failure.
pub fn compile_locally(dir: &Path, compiler: &str, args: &[&str], source: &str, output: &str) {
    let result = run(Command::new(compiler)
        .current_dir(dir)
        .args(args)
        .args(["-c", source, "-o", output]));
    assert!(
        result.status.success(),
        "local {compiler} {source}: {}",
        stderr(&result)
    );
}

/// A throwaway box's `Host box` stanza renamed to `alias`, with `extra` options added.
pub fn ssh_stanza(
    build_box: &sshcc::throwaway_box::ThrowawayBox,
    alias: &str,
    extra: &str,
) -> String {
    let text = std::fs::read_to_string(build_box.ssh_config())
        .expect("box ssh_config")
        .replacen("Host box", &format!("Host {alias}"), 1);
    format!("{}\n  {extra}\n", text.trim_end())
}

/// `sshcc gcc -O2 -c geometry.c -o g.o` in `dir` through the host `alias` of `config`,
/// with no daemon and no local fallback (success means it ran on the box), logging
/// where it ran, with the private directories of `scratch`.
pub fn compile_via(config: &Path, alias: &str, dir: &Path, scratch: &Path) -> Output {
    run(private_command(sshcc(), scratch)
        .current_dir(dir)
        .args(["gcc", "-O2", "-c", "geometry.c", "-o", "g.o"])
        .env("SSHCC_HOSTS", format!("@{alias}/4:{}", sshcc().display()))
        .env("SSHCC_SSH_CONFIG", config)
        .env("SSHCC_NO_DAEMON", "1")
        .env("DISTCC_FALLBACK", "0")
        .env("SSHCC_LOG", "info"))
}

/// Sends one distcc request through `ssh` (an `ssh … box` command) to `remote` (the
/// box's `sshcc --inetd` or `distccd --inetd`, as stock distcc runs it) and decodes the
/// answer. Panics with what ssh said when no answer comes.
pub fn distcc_over_ssh(
    mut ssh: Command,
    remote: &[&str],
    argv: &[&str],
    source: &[u8],
) -> sshcc::protocol::Response {
    use sshcc::protocol::{Limits, Request, Version};
    use std::io::Write;
    let request = Request {
        version: Version::V1,
        argv: argv.iter().map(|word| word.to_string()).collect(),
        source: source.to_vec(),
    };
    let mut child = ssh
        .args(remote)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut stdin = child.stdin.take().expect("ssh stdin");
    // The box may stop reading once it refuses.
    let _ = stdin.write_all(&sshcc::protocol::distcc::encode_request(&request));
    // distcc keeps its side open until the answer is in: EOF means it gave up.
    let output = child.wait_with_output().expect("ssh output");
    drop(stdin);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(sshcc::protocol::read_response(
            &mut &output.stdout[..],
            Version::V1,
            &Limits::default(),
        ))
        .unwrap_or_else(|err| {
            panic!(
                "{argv:?}: no response ({err}); ssh said: {}",
                stderr(&output)
            )
        })
}

/// The directories a process started here uses instead of the real ones, all under
/// `scratch`: sshcc's state (`stats.json`), cache (toolchain fingerprints) and config
/// (`XDG_*_HOME`), its daemon (`SSHCC_RUNTIME_DIR`; a test that starts one stops it, see
/// [`stop_daemon`]), its box-wide slots and counters when it serves as a box
/// (`SSHCC_LOCK_DIR`), distcc's state (`DISTCC_DIR`) and ccache's (`CCACHE_DIR`). For
/// commands that are not a `std::process::Command` (tokio's); [`private_dirs`] applies
/// them to one.
pub fn private_env(scratch: &Path) -> [(&'static str, PathBuf); 7] {
    [
        ("XDG_STATE_HOME", scratch.join("state")),
        ("XDG_CACHE_HOME", scratch.join("cache")),
        ("XDG_CONFIG_HOME", scratch.join("config")),
        ("SSHCC_RUNTIME_DIR", scratch.join("runtime")),
        ("SSHCC_LOCK_DIR", scratch.join("slots")),
        ("DISTCC_DIR", scratch.join("distcc")),
        ("CCACHE_DIR", scratch.join("ccache")),
    ]
}

/// Points `command` at the [private directories](private_env) under `scratch`, creating
/// `DISTCC_DIR` (distcc does not). A later `env` wins, so a test can still choose one
/// of them.
pub fn private_dirs<'a>(command: &'a mut Command, scratch: &Path) -> &'a mut Command {
    let env = private_env(scratch);
    for (key, dir) in &env {
        if *key == "DISTCC_DIR" {
            std::fs::create_dir_all(dir).expect("creating DISTCC_DIR");
        }
    }
    command.envs(env)
}

/// `program` with the [private directories](private_env) under `scratch`.
pub fn private_command(program: impl AsRef<std::ffi::OsStr>, scratch: &Path) -> Command {
    let mut command = Command::new(program);
    private_dirs(&mut command, scratch);
    command
}

/// Stops the daemon a test started with the private directories of `scratch`, if any
/// (`sshcc --stop`; nothing to do if no command ever ran there). Test daemons exit
/// when idle only after their `SSHCC_IDLE_TIMEOUT`, long after the test.
pub fn stop_daemon(scratch: &Path) {
    if scratch.join("runtime").exists() {
        let _ = private_command(sshcc(), scratch).arg("--stop").output();
    }
}

/// A test's scratch directory, which is also the home of the private directories of
/// the commands [`command`](Self::command) makes. Dropping it stops the daemon they may
/// have started, then deletes it.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Self {
        Scratch(tempfile::tempdir().expect("scratch dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(name)
    }

    /// `program` with this scratch's private directories.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        private_command(program, self.path())
    }

    /// `sshcc` with this scratch's private directories.
    pub fn sshcc(&self) -> Command {
        self.command(sshcc())
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        stop_daemon(self.path());
    }
}

/// `program` as a build runs it through sshcc on this machine: `hosts` reached through
/// `ssh_config`, the [private directories](private_env) under `scratch` (a daemon of its
/// own under `scratch/runtime`, which the caller stops, e.g. with a [`Scratch`]), no
/// local fallback (a success means the box compiled), and none of the caller's own
/// sshcc or distcc settings. Tests add what they need; a later `env` wins.
pub fn client_command(
    program: impl AsRef<std::ffi::OsStr>,
    hosts: &str,
    ssh_config: &Path,
    scratch: &Path,
) -> Command {
    let mut command = Command::new(program);
    private_dirs(&mut command, scratch)
        .env("SSHCC_HOSTS", hosts)
        .env("SSHCC_SSH_CONFIG", ssh_config)
        .env("SSHCC_IDLE_TIMEOUT", "60")
        .env("DISTCC_FALLBACK", "0")
        .env_remove("SSHCC_CONFIG")
        .env_remove("SSHCC_LOG")
        .env_remove("DISTCC_HOSTS")
        .env_remove("SSHCC_NO_DAEMON");
    command
}
