//! A private REAPI engine for the tests: `tests/reapi/engine.sh up` (BuildGrid 0.9.1,
//! its PostgreSQL 15 database and the host-tools bot `tests/reapi/bot.py`) in a fresh
//! directory, stopped (`engine.sh down`) and removed when dropped, a failing test's
//! unwinding included. Its processes get a private HOME, XDG directories and TMPDIR
//! under that directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running engine.
pub struct ReapiEngine {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl ReapiEngine {
    /// Starts an engine, or returns None, saying why, when this machine cannot run one
    /// (no BuildGrid venv, no PostgreSQL 15: `scripts/install-deps.sh` provides both).
    /// Panics if the engine is there but does not start.
    pub fn start() -> Option<ReapiEngine> {
        let venv = std::env::var_os("BUILDGRID_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/buildgrid-venv"));
        for (needed, what) in [
            (venv.join("bin/bgd"), "BuildGrid"),
            (
                PathBuf::from("/usr/lib/postgresql/15/bin/initdb"),
                "PostgreSQL 15",
            ),
        ] {
            if !needed.exists() {
                eprintln!(
                    "skipping: no {what} ({} is missing; scripts/install-deps.sh installs it)",
                    needed.display()
                );
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("engine dir");
        // PostgreSQL runs as its own account when we are root: it must reach its
        // cluster under this directory.
        set_mode(dir.path(), 0o755);
        let mut engine = ReapiEngine {
            endpoint: String::new(),
            dir,
        };
        for private in ["home", "tmp", "xdg/state", "xdg/cache", "xdg/config"] {
            std::fs::create_dir_all(engine.dir.path().join(private)).expect("private dir");
        }
        let output = engine
            .engine_sh("up")
            .output()
            .expect("running tests/reapi/engine.sh up");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let endpoint = stdout.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            output.status.success() && endpoint.starts_with("grpc://"),
            "engine.sh up failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        engine.endpoint = endpoint;
        Some(engine)
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port the engine serves on.
    pub fn port(&self) -> u16 {
        let port = self.endpoint.rsplit(':').next().expect("endpoint port");
        port.parse().expect("endpoint port")
    }

    /// How many actions the bot has run so far.
    pub fn actions_run(&self) -> usize {
        let log = std::fs::read_to_string(self.root().join("bot.log")).unwrap_or_default();
        log.lines()
            .filter(|line| line.starts_with("[bot] ran "))
            .count()
    }

    /// Everything the engine's processes logged, for a failing test's message.
    pub fn logs(&self) -> String {
        ["bot.log", "server.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.root().join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name} (last lines)\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("engine")
    }

    fn engine_sh(&self, action: &str) -> Command {
        let private = |name: &str| self.dir.path().join(name);
        let mut command = Command::new(repo().join("tests/reapi/engine.sh"));
        command
            .args([Path::new(action), &self.root()])
            .env("HOME", private("home"))
            .env("TMPDIR", private("tmp"))
            .env("XDG_STATE_HOME", private("xdg/state"))
            .env("XDG_CACHE_HOME", private("xdg/cache"))
            .env("XDG_CONFIG_HOME", private("xdg/config"));
        command
    }
}

impl Drop for ReapiEngine {
    fn drop(&mut self) {
        match self.engine_sh("down").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "engine.sh down failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => eprintln!("cannot run engine.sh down: {err}"),
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
