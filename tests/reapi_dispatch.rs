//! REAPI host entries end to end (issue 14): the real `sshcc` wrapper and daemon with
//! `SSHCC_HOSTS=reapi://127.0.0.1:PORT/N` against a real BuildGrid (see
//! tests/reapi/README.md), whose one worker advertises the toolchains of this
//! machine's gcc and g++ as `sshcc --box-info` reports them:
//! - C and C++ objects byte-identical to local compiles, each run by the worker; a
//!   source using `__TIME__` is compiled again a second later, not a cache hit (also
//!   with `remote_preprocessing = true`);
//! - the same compiles again answered by the action cache (the worker runs nothing),
//!   counted as cache hits in `sshcc status` and `sshcc stats`; `SSHCC_REAPI_CACHE=off` runs them again;
//! - a compile error: the compiler's exit status and messages, no object;
//! - an action no worker can take (another ISA, or a compiler whose toolchain no
//!   worker advertises): no answer within `DISTCC_IO_TIMEOUT`, then a correct local
//!   compile, or a failure without fallback;
//! - a second worker advertising arm-none-eabi-gcc's toolchain only: cross compiles
//!   run there, gcc's on the first worker, never the other way round;
//! - TLS with a private CA, a client certificate and a name override from
//!   config.toml, and `sshcc check` on it;
//! - an instance that takes only JWTs: `sshcc check` passes with a valid token from
//!   `authorization_env`, and a wrong or missing token is a clear message (and, in a
//!   build, a local compile); the token is each build's own (exported after the
//!   daemon started, then changed); a credential helper's token that expires under a
//!   running daemon is fetched again and the next job still runs on the engine;
//! - the engine stopped under a running daemon, with a job in flight and before the
//!   next: correct local compiles, and the host backed off.
//!
//! One engine serves every case (starting one takes about 15 s); skipped, saying why,
//! on a machine without BuildGrid (scripts/install-deps.sh installs it).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::reapi_engine::{ReapiEngine, TLS_SERVER_NAME};
use common::{Scratch, project_copy, run, stderr, write_script};

/// The toolchain property value of each of `compilers` (absolute paths on this
/// machine), as a worker's admin would find it: `sshcc --box-info` with them
/// allowlisted.
fn toolchain_properties(scratch: &Scratch, compilers: &[&str]) -> String {
    let list = scratch.join("cmdlist");
    std::fs::write(&list, compilers.join("\n") + "\n").unwrap();
    let output = run(scratch
        .sshcc()
        .arg("--box-info")
        .env("DISTCC_CMDLIST", &list));
    assert!(output.status.success(), "--box-info: {}", stderr(&output));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let digests: Vec<String> = (info["compilers"].as_array().unwrap().iter())
        .map(|compiler| {
            let digest = compiler["digest"].as_str();
            let digest = digest.unwrap_or_else(|| panic!("no digest: {compiler}"));
            format!("sshcc-toolchain={digest}")
        })
        .collect();
    assert_eq!(digests.len(), compilers.len(), "{info}");
    digests.join(";")
}

/// A build directory, its client's private directories and config.toml.
struct Client {
    project: tempfile::TempDir,
    scratch: Scratch,
    hosts: String,
}

impl Client {
    fn new(hosts: String, config: &str) -> Client {
        let scratch = Scratch::new();
        let config_dir = scratch.join("config/sshcc");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config.toml"), config).unwrap();
        Client {
            project: project_copy(),
            scratch,
            hosts,
        }
    }

    fn dir(&self) -> &Path {
        self.project.path()
    }

    /// `sshcc COMPILER -O2 -c SOURCE -o OUTPUT` through the daemon, no fallback
    /// unless `env` turns it on.
    fn compile(&self, compiler: &str, source: &str, output: &str, env: &[(&str, &str)]) -> Output {
        run(self
            .sshcc()
            .args([compiler, "-O2", "-c", source, "-o", output])
            .envs(env.iter().copied()))
    }

    fn sshcc(&self) -> Command {
        let mut command = self.scratch.sshcc();
        command
            .current_dir(self.dir())
            .env("SSHCC_HOSTS", &self.hosts)
            .env("SSHCC_IDLE_TIMEOUT", "60")
            .env("DISTCC_FALLBACK", "0")
            .env("SSHCC_LOG", "info")
            .env_remove("SSHCC_CONFIG")
            .env_remove("DISTCC_HOSTS")
            .env_remove("SSHCC_NO_DAEMON")
            .env_remove("SSHCC_REAPI_CACHE");
        command
    }

    /// The object a local `COMPILER -O2 -c SOURCE` makes.
    fn local_object(&self, compiler: &str, source: &str) -> Vec<u8> {
        let output = format!("{source}.local.o");
        common::compile_locally(self.dir(), compiler, &["-O2"], source, &output);
        std::fs::read(self.dir().join(output)).unwrap()
    }

    fn object(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
    }

    /// This client's row in `sshcc status --json` for its REAPI entry.
    fn status_row(&self) -> serde_json::Value {
        let output = run(self.sshcc().args(["status", "--json"]));
        assert!(output.status.success(), "status: {}", stderr(&output));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (status["hosts"].as_array().unwrap().iter())
            .find(|host| host["kind"] == "reapi")
            .unwrap_or_else(|| panic!("no reapi row in {status}"))
            .clone()
    }
}

#[test]
fn reapi_hosts_build_through_a_real_engine() {
    let setup = Scratch::new();
    let properties = toolchain_properties(&setup, &["/usr/bin/gcc", "/usr/bin/g++"]);
    let Some(engine) = ReapiEngine::start_with_bot_properties(&properties) else {
        return;
    };
    let endpoint = format!("127.0.0.1:{}", engine.port());
    let hosts = format!("reapi://{endpoint}/4");

    compiles_then_cache_hits(&engine, &Client::new(hosts.clone(), ""));
    workers_preprocess(&engine, &endpoint, &hosts);
    compile_error(&engine, &Client::new(hosts.clone(), ""));
    no_worker_matches(&endpoint, &hosts);
    another_compiler_finds_no_worker(&engine, &hosts);
    workers_take_only_their_toolchains(&engine, &setup, &hosts);
    mutual_tls(&engine);
    tokens(&engine, &endpoint, &hosts);
    engine_stopped_under_a_daemon(engine, &Client::new(hosts, ""));
}

fn compiles_then_cache_hits(engine: &ReapiEngine, client: &Client) {
    let ran_before = engine.actions_run();
    for (compiler, source) in [("gcc", "geometry.c"), ("g++", "shapes.cpp")] {
        let output = client.compile(compiler, source, "remote.o", &[]);
        assert!(
            output.status.success(),
            "{source}: {}\n{}",
            stderr(&output),
            engine.logs()
        );
        assert_eq!(
            client.object("remote.o"),
            client.local_object(compiler, source),
            "{source}: the engine's object is not the local one"
        );
    }
    assert_eq!(
        engine.actions_run(),
        ran_before + 2,
        "the worker ran both: {}",
        engine.logs()
    );

    // The same jobs again: the action cache answers, the worker sees nothing.
    for (compiler, source) in [("gcc", "geometry.c"), ("g++", "shapes.cpp")] {
        std::fs::remove_file(client.dir().join("remote.o")).unwrap();
        let output = client.compile(compiler, source, "remote.o", &[]);
        assert!(output.status.success(), "{source}: {}", stderr(&output));
        assert_eq!(
            client.object("remote.o"),
            client.local_object(compiler, source)
        );
    }
    assert_eq!(engine.actions_run(), ran_before + 2, "{}", engine.logs());
    let row = client.status_row();
    assert_eq!(row["cache_hits"], 2, "{row}");
    assert_eq!(row["jobs_done"], 4, "{row}");
    assert!(row["connected"].as_bool().unwrap(), "{row}");
    let stats = run(client.sshcc().args(["stats", "--json"]));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let host = (stats["hosts"].as_array().unwrap().iter())
        .find(|host| host["host"].as_str().unwrap().starts_with("reapi://"))
        .unwrap_or_else(|| panic!("no reapi host in {stats}"));
    assert_eq!(host["cache_hits"], 2, "{stats}");
    assert_eq!(host["remote_jobs"], 4, "{stats}");

    // With the cache off every job runs.
    let output = client.compile(
        "gcc",
        "geometry.c",
        "again.o",
        &[("SSHCC_REAPI_CACHE", "off")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(engine.actions_run(), ran_before + 3, "{}", engine.logs());
    assert_eq!(
        client.object("again.o"),
        client.local_object("gcc", "geometry.c")
    );
    let output = client.compile(
        "gcc",
        "geometry.c",
        "x.o",
        &[("SSHCC_REAPI_CACHE", "sometimes")],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("SSHCC_REAPI_CACHE"),
        "{}",
        stderr(&output)
    );
    // __TIME__ is expanded here (classic -E): the action changes with the time.
    time_is_never_cached(client, "");
}

/// A source that uses `__TIME__`, compiled twice a second apart on the engine (each
/// job's log saying `route`): two objects, not the first one again from the cache.
fn time_is_never_cached(client: &Client, route: &str) {
    std::fs::write(
        client.dir().join("stamp.c"),
        "const char *built_at = __TIME__;\n",
    )
    .unwrap();
    let hits = client.status_row()["cache_hits"].clone();
    for (round, object) in ["stamp1.o", "stamp2.o"].into_iter().enumerate() {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let output = client.compile("gcc", "stamp.c", object, &[]);
        assert!(
            output.status.success() && stderr(&output).contains(route),
            "__TIME__: {}",
            stderr(&output)
        );
    }
    assert!(
        client.object("stamp1.o") != client.object("stamp2.o"),
        "a second later, the __TIME__ object came from the cache"
    );
    assert_eq!(client.status_row()["cache_hits"], hits);
}

/// With `remote_preprocessing = true` the action's input root is the job's own files
/// and the worker runs the preprocessor: objects (with -g) and dependency files equal
/// local ones, and the second build is answered by the action cache.
fn workers_preprocess(engine: &ReapiEngine, endpoint: &str, hosts: &str) {
    let config = format!("[reapi.\"{endpoint}\"]\nremote_preprocessing = true\n");
    let client = Client::new(hosts.to_string(), &config);
    let flags = ["-O2", "-g", "-I.", "-MD", "-MF", "deps.d", "-MT", "target"];
    let build = |compiler: &str, source: &str| -> (Vec<u8>, String, String) {
        let output = run(client
            .sshcc()
            .arg(compiler)
            .args(flags)
            .args(["-c", source, "-o", "remote.o"]));
        assert!(output.status.success(), "{source}: {}", stderr(&output));
        let deps = std::fs::read_to_string(client.dir().join("deps.d")).unwrap();
        (client.object("remote.o"), deps, stderr(&output))
    };
    let local = |compiler: &str, source: &str| -> (Vec<u8>, String) {
        common::compile_locally(client.dir(), compiler, &flags, source, "local.o");
        let deps = std::fs::read_to_string(client.dir().join("deps.d")).unwrap();
        (client.object("local.o"), deps)
    };
    let ran_before = engine.actions_run();
    for round in 0..2 {
        for (compiler, source) in [("gcc", "geometry.c"), ("g++", "shapes.cpp")] {
            let (object, deps, log) = build(compiler, source);
            assert!(log.contains("preprocessed there"), "{source}: {log}");
            let (local_object, local_deps) = local(compiler, source);
            assert_eq!(deps, local_deps, "{source}: {log}");
            assert!(deps.contains("/usr/include/"), "{deps}");
            assert!(
                object == local_object,
                "round {round}, {source}: the worker's object is not the local one"
            );
        }
    }
    assert_eq!(
        engine.actions_run(),
        ran_before + 2,
        "the worker ran each once, the cache answered again: {}",
        engine.logs()
    );
    // The worker expands __TIME__, which the action's key does not hold: such a job
    // is neither answered nor kept by the cache.
    time_is_never_cached(&client, "preprocessed there");
}

fn compile_error(engine: &ReapiEngine, client: &Client) {
    let ran_before = engine.actions_run();
    let output = client.compile(
        "gcc",
        "broken.c",
        "broken.o",
        &[("DISTCC_SKIP_LOCAL_RETRY", "1")],
    );
    let local = run(Command::new("gcc").current_dir(client.dir()).args([
        "-O2",
        "-c",
        "broken.c",
        "-o",
        "broken-local.o",
    ]));
    assert!(!local.status.success());
    assert_eq!(
        output.status.code(),
        local.status.code(),
        "{}",
        stderr(&output)
    );
    let message = |output: &Output| {
        (stderr(output).lines())
            .filter(|line| line.contains("error"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(message(&output), message(&local), "{}", stderr(&output));
    assert!(!client.dir().join("broken.o").exists());
    assert_eq!(
        engine.actions_run(),
        ran_before + 1,
        "the worker compiled it"
    );
}

/// An action whose platform no worker has waits in the engine's queue forever: the
/// job gives up after `DISTCC_IO_TIMEOUT`, then compiles here (or fails with distcc's
/// I/O timeout exit code when fallback is off).
fn no_worker_matches(endpoint: &str, hosts: &str) {
    let config =
        format!("[reapi.\"{endpoint}\"]\nplatform = {{ OSFamily = \"linux\", ISA = \"sparc\" }}\n");
    let client = Client::new(hosts.to_string(), &config);
    let output = client.compile("gcc", "geometry.c", "late.o", &[("DISTCC_IO_TIMEOUT", "3")]);
    assert!(!output.status.success());
    assert!(!client.dir().join("late.o").exists());
    assert!(
        stderr(&output).contains("DISTCC_IO_TIMEOUT"),
        "{}",
        stderr(&output)
    );
    let client = Client::new(hosts.to_string(), &config);
    let output = client.compile(
        "gcc",
        "geometry.c",
        "late.o",
        &[("DISTCC_IO_TIMEOUT", "3"), ("DISTCC_FALLBACK", "1")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        client.object("late.o"),
        client.local_object("gcc", "geometry.c")
    );
}

/// The worker advertises this machine's gcc and g++ only: an arm-none-eabi-gcc job
/// names another toolchain, so no worker takes it, and after `DISTCC_IO_TIMEOUT` it
/// compiles here (where installed).
fn another_compiler_finds_no_worker(engine: &ReapiEngine, hosts: &str) {
    if Command::new("arm-none-eabi-gcc")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping the cross-compiler case: no arm-none-eabi-gcc");
        return;
    }
    let ran_before = engine.actions_run();
    let client = Client::new(hosts.to_string(), "");
    let output = client.compile(
        "arm-none-eabi-gcc",
        "geometry.c",
        "arm.o",
        &[("DISTCC_IO_TIMEOUT", "3"), ("DISTCC_FALLBACK", "1")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("DISTCC_IO_TIMEOUT"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        client.object("arm.o"),
        client.local_object("arm-none-eabi-gcc", "geometry.c")
    );
    assert_eq!(engine.actions_run(), ran_before, "{}", engine.logs());
}

/// A second worker that advertises only arm-none-eabi-gcc's toolchain: the cross
/// compiles now run there (no fallback), gcc's only on the first worker, and neither
/// worker ever gets the other's compiler.
fn workers_take_only_their_toolchains(engine: &ReapiEngine, setup: &Scratch, hosts: &str) {
    if !Path::new("/usr/bin/arm-none-eabi-gcc").exists() {
        eprintln!("skipping the second worker's case: no /usr/bin/arm-none-eabi-gcc");
        return;
    }
    engine.add_worker(
        "arm",
        &toolchain_properties(setup, &["/usr/bin/arm-none-eabi-gcc"]),
    );
    let first_before = engine.programs_run_by("bot").len();
    let client = Client::new(hosts.to_string(), "");
    // Each compile executed, none answered by the cache.
    let cache_off = [("SSHCC_REAPI_CACHE", "off")];
    let arm_local = client.local_object("arm-none-eabi-gcc", "geometry.c");
    let gcc_local = client.local_object("gcc", "geometry.c");
    for round in 0..3 {
        for (compiler, local) in [("arm-none-eabi-gcc", &arm_local), ("gcc", &gcc_local)] {
            let object = format!("{compiler}-{round}.o");
            let output = client.compile(compiler, "geometry.c", &object, &cache_off);
            assert!(
                output.status.success(),
                "{compiler}: {}\n{}",
                stderr(&output),
                engine.logs()
            );
            assert!(&client.object(&object) == local, "{compiler}: {object}");
        }
    }
    let first = engine.programs_run_by("bot").split_off(first_before);
    let second = engine.programs_run_by("bot-arm");
    let is_cross = |program: &String| program.contains("arm-none-eabi");
    assert!(
        first.len() >= 3 && !first.iter().any(is_cross),
        "first worker: {first:?}"
    );
    assert!(
        second.len() >= 3 && second.iter().all(is_cross),
        "second worker: {second:?}"
    );
}

fn mutual_tls(engine: &ReapiEngine) {
    let files = engine.tls_files();
    let endpoint = engine
        .tls_endpoint()
        .strip_prefix("grpcs://")
        .expect("grpcs endpoint")
        .to_string();
    let hosts = format!("reapis://{endpoint}/2");
    let config = format!(
        "[reapi.\"{endpoint}\"]\nca_certificates = {:?}\nclient_certificate = {:?}\n\
         client_key = {:?}\ntls_server_name = {TLS_SERVER_NAME:?}\n",
        files.ca, files.client_certificate, files.client_key
    );
    let client = Client::new(hosts.clone(), &config);
    let output = client.compile("gcc", "main.c", "main.o", &[("SSHCC_REAPI_CACHE", "off")]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stderr(&output),
        engine.logs()
    );
    assert_eq!(
        client.object("main.o"),
        client.local_object("gcc", "main.c")
    );

    let check = run(client.sshcc().args(["check", "--json"]));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "check: {text}{}", stderr(&check));
    assert!(text.contains("\"reapi\""), "{text}");

    // Without the client certificate the engine refuses the connection: the job
    // says so and, with fallback, compiles here.
    let config = format!(
        "[reapi.\"{endpoint}\"]\nca_certificates = {:?}\ntls_server_name = {TLS_SERVER_NAME:?}\n",
        files.ca
    );
    let client = Client::new(hosts, &config);
    let output = client.compile("gcc", "main.c", "main.o", &[("DISTCC_FALLBACK", "1")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot use the REAPI engine"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        client.object("main.o"),
        client.local_object("gcc", "main.c")
    );
}

fn tokens(engine: &ReapiEngine, endpoint: &str, hosts: &str) {
    let config = format!(
        "[reapi.\"{endpoint}\"]\ninstance_name = \"secured\"\nauthorization_env = \"RE_TOKEN\"\n"
    );
    let client = Client::new(hosts.to_string(), &config);
    let check = |token: Option<&str>| {
        let mut command = client.sshcc();
        command.arg("check").env_remove("RE_TOKEN");
        if let Some(token) = token {
            command.env("RE_TOKEN", token);
        }
        let output = run(&mut command);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        (output.status.success(), text)
    };
    let (ok, text) = check(Some(&engine.token(true)));
    assert!(ok, "a valid token: {text}\n{}", engine.logs());
    let (ok, text) = check(Some(&engine.token(false)));
    assert!(
        !ok && text.contains("refused this client"),
        "a wrong token: {text}"
    );
    let (ok, text) = check(None);
    assert!(
        !ok && text.contains("RE_TOKEN, which is not set"),
        "no token: {text}"
    );

    // One daemon, started by a build without the token: each build's own token is the
    // one used (exported later, then changed), not the daemon's environment; and the
    // backoff earned without it does not hold once there is one.
    let local = client.local_object("gcc", "geometry.c");
    let mut command = client.sshcc();
    command.env_remove("RE_TOKEN").env("DISTCC_FALLBACK", "1");
    let output = run(command.args(["gcc", "-O2", "-c", "geometry.c", "-o", "none.o"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("RE_TOKEN, which is not set"),
        "{}",
        stderr(&output)
    );
    assert_eq!(client.object("none.o"), local);
    let valid = engine.token(true);
    let output = client.compile("gcc", "geometry.c", "valid.o", &[("RE_TOKEN", &valid)]);
    assert!(
        output.status.success(),
        "a token exported after the daemon started (and backed off): {}\n{}",
        stderr(&output),
        engine.logs()
    );
    assert_eq!(client.object("valid.o"), local);
    let wrong = engine.token(false);
    let output = client.compile(
        "gcc",
        "geometry.c",
        "t.o",
        &[("RE_TOKEN", &wrong), ("DISTCC_FALLBACK", "1")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("refused this client"),
        "a token changed under the daemon: {}",
        stderr(&output)
    );
    assert_eq!(client.object("t.o"), local);
    expired_token_fetched_again(engine, endpoint, hosts);
}

/// A credential helper's token expires under a running daemon: the engine refuses it,
/// the daemon runs the helper again and the job still runs on the engine. The engine
/// asks for the token from GetCapabilities on, so the link must open while it is good:
/// a first compile with a token of a few seconds (longer, until that compile fits in
/// them on this machine), then a wait past its expiry, with the helper printing a new one.
fn expired_token_fetched_again(engine: &ReapiEngine, endpoint: &str, hosts: &str) {
    let scratch = Scratch::new();
    let token_file = scratch.join("token");
    let helper = scratch.join("print-token");
    write_script(&helper, &format!("cat '{}'", token_file.display()));
    let config = format!(
        "[reapi.\"{endpoint}\"]\ninstance_name = \"secured\"\nauthorization_command = \"{}\"\n",
        helper.display()
    );
    let mut lifetime = 3;
    let (client, expires) = loop {
        let client = Client::new(hosts.to_string(), &config);
        std::fs::write(&token_file, engine.token_lasting(true, lifetime)).unwrap();
        let expires = Instant::now() + Duration::from_secs(lifetime as u64);
        let output = client.compile("gcc", "geometry.c", "a.o", &[]);
        if output.status.success() {
            break (client, expires);
        }
        assert!(lifetime < 200, "a good token: {}", stderr(&output));
        lifetime *= 2;
    };
    // Past its expiry (JWT times are whole seconds); the helper now has a new one.
    std::thread::sleep(expires.saturating_duration_since(Instant::now()) + Duration::from_secs(2));
    std::fs::write(&token_file, engine.token(true)).unwrap();
    let output = client.compile("g++", "shapes.cpp", "b.o", &[]);
    assert!(
        output.status.success(),
        "with the helper's new token, without fallback: {}\n{}",
        stderr(&output),
        engine.logs()
    );
    assert_eq!(
        client.object("b.o"),
        client.local_object("g++", "shapes.cpp")
    );
}

/// The engine goes away while the daemon holds its channel: the next job compiles
/// here, and the host is backed off with the reason.
fn engine_stopped_under_a_daemon(engine: ReapiEngine, client: &Client) {
    let output = client.compile("gcc", "checksum.c", "a.o", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A job in flight when the engine goes: uploaded and queued or running (a worker
    // takes a lease within about a second here). However far it got, the object is
    // the local one.
    let in_flight = client
        .sshcc()
        .args(["g++", "-O2", "-c", "shapes.cpp", "-o", "mid.o"])
        .env("SSHCC_REAPI_CACHE", "off")
        .env("DISTCC_FALLBACK", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sshcc g++");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(engine);
    let output = in_flight.wait_with_output().expect("sshcc g++");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        client.object("mid.o"),
        client.local_object("g++", "shapes.cpp")
    );
    let output = client.compile("gcc", "checksum.c", "b.o", &[("DISTCC_FALLBACK", "1")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        client.object("b.o"),
        client.local_object("gcc", "checksum.c")
    );
    let row = client.status_row();
    assert!(row["backoff_remaining_ms"].is_u64(), "{row}");
    assert!(row["last_error"].as_str().is_some(), "{row}");
}
