//! A private REAPI engine for the tests: `tests/reapi/engine.sh up` (BuildGrid 0.9.1,
//! its PostgreSQL 15 database and the host-tools bot `tests/reapi/bot.py`) in a fresh
//! directory, stopped (`engine.sh down`) and removed when dropped, a failing test's
//! unwinding included. Its processes get a private HOME, XDG directories and TMPDIR
//! under that directory.
//!
//! The engine also serves on a TLS port that requires a client certificate: a private
//! CA made here with openssl signs the server's certificate (for [`TLS_SERVER_NAME`]
//! only, not for 127.0.0.1) and the client's ([`ReapiEngine::tls_files`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The only name the TLS port's certificate is valid for.
pub const TLS_SERVER_NAME: &str = "reapi.test";

/// A running engine.
pub struct ReapiEngine {
    dir: tempfile::TempDir,
    /// The BuildGrid venv (its python makes JWTs).
    venv: PathBuf,
    endpoint: String,
    tls_endpoint: String,
}

/// The PEM files a client of the TLS port needs.
pub struct TlsFiles {
    /// The private CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    pub client_certificate: PathBuf,
    pub client_key: PathBuf,
}

impl ReapiEngine {
    /// Starts an engine, or returns None, saying why, when this machine cannot run one
    /// (no BuildGrid venv, no PostgreSQL 15: `scripts/install-deps.sh` provides both).
    /// Panics if the engine is there but does not start.
    pub fn start() -> Option<ReapiEngine> {
        Self::start_with_bot_properties("")
    }

    /// [`ReapiEngine::start`], the bot advertising `properties` (`KEY=VALUE;…`) besides
    /// OSFamily and ISA.
    pub fn start_with_bot_properties(properties: &str) -> Option<ReapiEngine> {
        let venv = std::env::var_os("BUILDGRID_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/buildgrid-venv"));
        for (needed, what) in [
            (venv.join("bin/bgd"), "BuildGrid"),
            (
                PathBuf::from("/usr/lib/postgresql/15/bin/initdb"),
                "PostgreSQL 15",
            ),
            (PathBuf::from("/usr/bin/openssl"), "openssl"),
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
            venv,
            endpoint: String::new(),
            tls_endpoint: String::new(),
            dir,
        };
        for private in ["home", "tmp", "xdg/state", "xdg/cache", "xdg/config", "tls"] {
            std::fs::create_dir_all(engine.dir.path().join(private)).expect("private dir");
        }
        engine.make_certificates();
        let output = engine
            .engine_sh("up")
            .env("ENGINE_TLS_DIR", engine.dir.path().join("tls"))
            .env("BOT_PROPERTIES", properties)
            .output()
            .expect("running tests/reapi/engine.sh up");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = |scheme: &str| {
            let line = stdout.lines().find(|line| line.starts_with(scheme));
            line.unwrap_or_default().trim().to_owned()
        };
        (engine.endpoint, engine.tls_endpoint) = (line("grpc://"), line("grpcs://"));
        assert!(
            output.status.success()
                && !engine.endpoint.is_empty()
                && !engine.tls_endpoint.is_empty(),
            "engine.sh up failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        Some(engine)
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `grpcs://127.0.0.1:PORT`: TLS, with a client certificate required.
    pub fn tls_endpoint(&self) -> &str {
        &self.tls_endpoint
    }

    /// The CA and client certificate for [`ReapiEngine::tls_endpoint`].
    pub fn tls_files(&self) -> TlsFiles {
        let tls = self.dir.path().join("tls");
        TlsFiles {
            ca: tls.join("ca.crt"),
            client_certificate: tls.join("client.crt"),
            client_key: tls.join("client.key"),
        }
    }

    /// A JWT for the instance "secured", valid for an hour: signed with the engine's
    /// key, or (`valid` false) with another one.
    pub fn token(&self, valid: bool) -> String {
        self.token_lasting(valid, 3600)
    }

    /// A JWT for the "secured" instance that expires `seconds` from now (negative: one
    /// that has expired).
    pub fn token_lasting(&self, valid: bool, seconds: i64) -> String {
        let key = if valid {
            std::fs::read_to_string(self.root().join("jwt.secret")).expect("jwt.secret")
        } else {
            "not-the-engine's-key".to_string()
        };
        let output = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import jwt, sys, time; print(jwt.encode({'sub': 'sshcc-test', \
                 'exp': int(time.time()) + int(sys.argv[2])}, sys.argv[1].strip(), 'HS256'))",
                &key,
                &seconds.to_string(),
            ])
            .env("HOME", self.dir.path().join("home"))
            .output()
            .expect("running the venv's python");
        assert!(
            output.status.success(),
            "making a JWT: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// The port the engine serves on.
    pub fn port(&self) -> u16 {
        let port = self.endpoint.rsplit(':').next().expect("endpoint port");
        port.parse().expect("endpoint port")
    }

    /// Starts one more worker, `bot-NAME`, advertising `properties` (`KEY=VALUE;…`)
    /// besides OSFamily and ISA; it runs until the engine stops.
    pub fn add_worker(&self, name: &str, properties: &str) {
        let output = self
            .engine_sh("worker")
            .arg(name)
            .env("BOT_PROPERTIES", properties)
            .output()
            .expect("running tests/reapi/engine.sh worker");
        assert!(
            output.status.success(),
            "engine.sh worker failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// How many actions the workers have run so far, all of them together.
    pub fn actions_run(&self) -> usize {
        (self.worker_names().iter())
            .map(|name| self.programs_run_by(name).len())
            .sum()
    }

    /// The program (the command's first argument) of every action the worker `name`
    /// ran so far, in order: `bot` is the first worker, `bot-NAME` one added later.
    pub fn programs_run_by(&self, name: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.root().join(format!("{name}.log")));
        (log.unwrap_or_default().lines())
            .filter_map(|line| line.strip_prefix("[bot] ran "))
            .filter_map(|ran| ran.rsplit_once(" exit="))
            .map(|(program, _)| program.to_owned())
            .collect()
    }

    /// Every worker's name: its log is ROOT/NAME.log.
    fn worker_names(&self) -> Vec<String> {
        let entries = std::fs::read_dir(self.root()).expect("engine root");
        let mut names: Vec<String> = (entries.filter_map(Result::ok))
            .filter_map(|entry| {
                let file = entry.file_name().into_string().ok()?;
                let name = file.strip_suffix(".log")?;
                (name == "bot" || name.starts_with("bot-")).then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// Everything the engine's processes logged, for a failing test's message.
    pub fn logs(&self) -> String {
        (self.worker_names().into_iter().chain(["server".to_owned()]))
            .map(|name| {
                let path = self.root().join(format!("{name}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name}.log (last lines)\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// A CA, and the server's and the client's certificates it signs (P-256 keys).
    fn make_certificates(&self) {
        let tls = self.dir.path().join("tls");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .env("HOME", self.dir.path().join("home"))
                .output()
                .expect("running openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=sshcc test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        openssl(&[&["req", "-x509"][..], &new_key, &ca].concat());
        for (name, extensions, serial) in [
            (
                "server",
                format!("extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{TLS_SERVER_NAME}"),
                "2",
            ),
            ("client", "extendedKeyUsage=clientAuth".to_owned(), "3"),
        ] {
            let file = |extension: &str| format!("{name}.{extension}");
            std::fs::write(
                tls.join(file("ext")),
                format!("basicConstraints=CA:FALSE\n{extensions}\n"),
            )
            .unwrap();
            let subject = format!("/CN=sshcc test {name}");
            let request = [
                "-keyout",
                &file("key"),
                "-out",
                &file("csr"),
                "-subj",
                &subject,
            ];
            openssl(&[&["req"][..], &new_key, &request].concat());
            openssl(&[
                "x509",
                "-req",
                "-in",
                &file("csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-extfile",
                &file("ext"),
                "-out",
                &file("crt"),
            ]);
        }
        std::fs::copy(tls.join("ca.crt"), tls.join("client-ca.crt")).unwrap();
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
