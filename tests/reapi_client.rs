//! `sshcc::reapi` against a real REAPI engine (BuildGrid, see tests/reapi/README.md):
//! capabilities; a `gcc -c` action on an uploaded input tree whose object is byte for
//! byte a local `gcc -c`'s; the same action again answered by the action cache; a
//! blob over the batch limit by ByteStream both ways; a compile error's exit status
//! and stderr; an Execute whose connection is cut mid-run taken up again by
//! WaitExecution; TLS with a private CA, a client certificate and a name override,
//! and what happens without each; a connection left idle for minutes is kept (the
//! engine's ping policy does not close it).
//!
//! One engine serves every case (starting one takes about 15 s), so the cases run in
//! order in one test, the idle connection's wait alongside them; the engine is
//! stopped however the test ends. Skipped, saying why, on a
//! machine without BuildGrid (scripts/install-deps.sh installs it).

mod common;
#[allow(dead_code)] // black-holing is for tests/faults.rs
#[path = "faults/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::reapi_engine::{ReapiEngine, TLS_SERVER_NAME};
use sshcc::digest::Digest;
use sshcc::reapi::{
    Authorization, ClientIdentity, CommandSpec, Endpoint, ReapiClient, ReapiError, TlsSettings,
    from_proto, proto,
};
use sshcc::tree::{Entry, InputTree, Timestamp};

/// The sources of the compile cases, by path under the input root.
const GREET_H: &str = "#pragma once\nstatic inline int greet(int x) { return x * 3 + 1; }\n";
const HELLO_C: &str = "#include \"greet.h\"\nint hello(int x) { return greet(x) - 2; }\n";
const BAD_C: &str = "int broken(void) { return undeclared + 1; }\n";

/// Exactly the environment of every command, remote and local.
const PATH: &str = "/usr/bin:/bin";

#[test]
fn reapi_client_against_buildgrid() {
    let Some(engine) = ReapiEngine::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let lab = Lab::new(&engine);
        // Waiting out the engine's ping policy takes minutes of nothing: meanwhile, the
        // other cases.
        let idle = an_idle_connection_is_kept(&engine);
        let cases = all_other_cases(&lab);
        tokio::join!(idle, cases);
    });
}

/// The cases that share one client, in order.
async fn all_other_cases(lab: &Lab<'_>) {
    let step = |name: &str, started: Instant| {
        eprintln!("{name}: {:.2} s", started.elapsed().as_secs_f64());
    };
    let started = Instant::now();
    capabilities(lab).await;
    step("capabilities", started);
    let started = Instant::now();
    compile_then_cache_hit(lab).await;
    step("compile and cache hit", started);
    let started = Instant::now();
    large_blob_by_bytestream(lab).await;
    step("large blob", started);
    let started = Instant::now();
    compile_error(lab).await;
    step("compile error", started);
    let started = Instant::now();
    execute_survives_a_cut_connection(lab).await;
    step("cut connection", started);
    let started = Instant::now();
    mutual_tls(lab).await;
    step("mutual TLS", started);
}

/// The engine, a client of it, and a scratch directory of sources.
struct Lab<'a> {
    engine: &'a ReapiEngine,
    client: ReapiClient,
    scratch: tempfile::TempDir,
}

impl<'a> Lab<'a> {
    fn new(engine: &'a ReapiEngine) -> Lab<'a> {
        let mut endpoint = Endpoint::parse(engine.endpoint()).expect("endpoint");
        // BuildGrid here authorizes no one in particular; the header must not hurt.
        endpoint.authorization = Some(Authorization("Bearer test-token".into()));
        let client = ReapiClient::connect(&endpoint).expect("client");
        let scratch = tempfile::tempdir().expect("scratch");
        for (path, text) in [
            ("include/greet.h", GREET_H),
            ("src/hello.c", HELLO_C),
            ("src/bad.c", BAD_C),
        ] {
            let path = scratch.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Lab {
            engine,
            client,
            scratch,
        }
    }

    /// The input tree of `paths` (relative to the scratch directory, placed at the
    /// same place under the input root), uploaded with its files: every blob is
    /// checked missing first, and present after.
    async fn upload_tree(&self, paths: &[&str]) -> InputTree {
        let mut contents = BTreeMap::new();
        let mut entries = Vec::new();
        for path in paths {
            let local = self.scratch.path().join(path);
            let data = std::fs::read(&local).unwrap();
            let digest = Digest::of(&data);
            let mtime = Timestamp::mtime_of(&std::fs::metadata(&local).unwrap());
            entries.push((
                format!("/{path}"),
                Entry::File {
                    digest,
                    executable: false,
                    mtime,
                },
            ));
            contents.insert(digest, data);
        }
        let tree = InputTree::build(entries).expect("tree");
        let mut blobs: Vec<(Digest, &[u8])> = tree
            .directories()
            .map(|(digest, blob)| (*digest, blob))
            .collect();
        blobs.extend(
            contents
                .iter()
                .map(|(digest, data)| (*digest, data.as_slice())),
        );
        let digests: Vec<Digest> = blobs.iter().map(|(digest, _)| *digest).collect();
        let missing = self
            .client
            .find_missing(&digests)
            .await
            .expect("find missing");
        let blobs: Vec<(Digest, &[u8])> = (blobs.into_iter())
            .filter(|(digest, _)| missing.contains(digest))
            .collect();
        self.client.upload(&blobs).await.expect("upload tree");
        let still = self
            .client
            .find_missing(&digests)
            .await
            .expect("find missing");
        assert!(
            still.is_empty(),
            "blobs missing after their upload: {still:?}"
        );
        tree
    }

    /// `gcc -c SOURCE -o OUTPUT` (with `-Iinclude`) on the engine, in canonical form,
    /// its Command and Action uploaded.
    async fn compile_action(
        &self,
        tree: &InputTree,
        source: &str,
        output: &str,
        do_not_cache: bool,
    ) -> sshcc::reapi::BuiltAction {
        let spec = CommandSpec {
            arguments: gcc_arguments(source, output),
            environment: vec![("PATH".into(), PATH.into())],
            output_files: vec![output.into()],
            working_directory: String::new(),
            platform: vec![
                ("OSFamily".into(), "linux".into()),
                ("ISA".into(), "x86-64".into()),
            ],
            input_root: tree.root(),
            timeout: Duration::from_secs(60),
            do_not_cache,
        };
        let action = spec.build();
        self.client
            .upload(&action.blobs())
            .await
            .expect("upload action");
        action
    }

    /// What the same gcc command does here: (exit status, stderr, the object).
    fn compile_locally(&self, source: &str, output: &str) -> (i32, Vec<u8>, Option<Vec<u8>>) {
        let dir = self.scratch.path();
        std::fs::create_dir_all(dir.join(Path::new(output).parent().unwrap())).unwrap();
        let arguments = gcc_arguments(source, output);
        let ran = Command::new(&arguments[0])
            .args(&arguments[1..])
            .current_dir(dir)
            .env_clear()
            .env("PATH", PATH)
            .output()
            .expect("local gcc");
        let object = std::fs::read(dir.join(output)).ok();
        (ran.status.code().unwrap(), ran.stderr, object)
    }

    async fn execute(&self, action: &Digest) -> proto::ExecuteResponse {
        match self.client.execute(action, false).await {
            Ok(response) => response,
            Err(err) => panic!("{err}\n{}", self.engine.logs()),
        }
    }
}

fn gcc_arguments(source: &str, output: &str) -> Vec<String> {
    [
        "/usr/bin/gcc",
        "-O2",
        "-Iinclude",
        "-c",
        source,
        "-o",
        output,
    ]
    .map(String::from)
    .to_vec()
}

/// The one output file of `result`, downloaded (and checked against its digest).
async fn only_output(client: &ReapiClient, result: &proto::ActionResult, path: &str) -> Vec<u8> {
    let paths: Vec<&str> = result
        .output_files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, [path], "output files");
    let digest = from_proto("test", result.output_files[0].digest.as_ref().unwrap()).unwrap();
    client.download(&digest).await.expect("download output")
}

async fn capabilities(lab: &Lab<'_>) {
    let capabilities = lab.client.capabilities().await.expect("capabilities");
    assert!(capabilities.supports_sha256(), "{capabilities:?}");
    assert!(capabilities.exec_enabled, "{capabilities:?}");
    assert!(capabilities.action_cache_update_enabled, "{capabilities:?}");
    // BuildGrid's: 4 MiB less 1 KiB.
    assert_eq!(capabilities.max_batch_total_size_bytes, 4_193_280);
}

async fn compile_then_cache_hit(lab: &Lab<'_>) {
    let client = &lab.client;
    let tree = lab.upload_tree(&["include/greet.h", "src/hello.c"]).await;
    let action = lab
        .compile_action(&tree, "src/hello.c", "out/hello.o", false)
        .await;
    assert_eq!(
        client
            .get_action_result(&action.action_digest)
            .await
            .unwrap(),
        None,
        "a result cached before the first run"
    );

    let runs_before = lab.engine.actions_run();
    let first = lab.execute(&action.action_digest).await;
    assert!(!first.cached_result);
    let result = first.result.as_ref().unwrap();
    assert_eq!(result.exit_code, 0, "{:?}", client.stderr(result).await);
    assert_eq!(client.stderr(result).await.unwrap(), b"");
    assert_eq!(client.stdout(result).await.unwrap(), b"");
    let remote = only_output(client, result, "out/hello.o").await;
    let (status, stderr, local) = lab.compile_locally("src/hello.c", "out/hello.o");
    assert_eq!((status, stderr), (0, Vec::new()));
    assert!(
        Some(&remote) == local.as_ref(),
        "the engine's object differs from a local gcc -c's"
    );
    assert_eq!(lab.engine.actions_run(), runs_before + 1);

    let again = lab.execute(&action.action_digest).await;
    assert!(
        again.cached_result,
        "the second Execute was not a cache hit"
    );
    assert_eq!(again.result, first.result);
    let cached = client
        .get_action_result(&action.action_digest)
        .await
        .unwrap();
    let cached = cached.expect("no action cache entry after a successful run");
    assert_eq!(cached.output_files, result.output_files);
    assert_eq!(only_output(client, &cached, "out/hello.o").await, remote);
    assert_eq!(
        lab.engine.actions_run(),
        runs_before + 1,
        "the action ran again"
    );
}

async fn large_blob_by_bytestream(lab: &Lab<'_>) {
    let client = &lab.client;
    // 6 MiB that no other blob shares, beside two small ones in the same upload.
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let large: Vec<u8> = (0..6 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let limit = client
        .capabilities()
        .await
        .unwrap()
        .max_batch_total_size_bytes;
    assert!(large.len() as u64 > limit);
    let (small, other) = (b"small blob".as_slice(), b"another small blob".as_slice());
    let blobs = [
        (Digest::of(small), small),
        (Digest::of(&large), large.as_slice()),
        (Digest::of(other), other),
    ];
    let digests = blobs.map(|(digest, _)| digest);
    assert_eq!(client.find_missing(&digests).await.unwrap().len(), 3);
    client
        .upload(&blobs)
        .await
        .expect("upload with a large blob");
    let missing = client.find_missing(&digests).await.unwrap();
    assert!(missing.is_empty(), "missing after upload: {missing:?}");
    let back = client.download(&digests[1]).await.expect("download large");
    assert!(back == large, "the large blob came back different");
    assert_eq!(client.download(&digests[2]).await.unwrap(), other);

    // A blob the engine never had is missing, not an empty answer.
    let absent = Digest::of(b"never uploaded");
    match client.download(&absent).await {
        Err(ReapiError::MissingBlob { digest, .. }) => assert_eq!(digest, absent),
        other => panic!("download of an absent blob: {other:?}"),
    }
    let absent_large = Digest {
        size_bytes: 5 << 20,
        ..absent
    };
    match client.download(&absent_large).await {
        Err(ReapiError::MissingBlob { digest, .. }) => assert_eq!(digest, absent_large),
        other => panic!("ByteStream read of an absent blob: {other:?}"),
    }
}

async fn compile_error(lab: &Lab<'_>) {
    let client = &lab.client;
    let tree = lab.upload_tree(&["src/bad.c"]).await;
    let action = lab
        .compile_action(&tree, "src/bad.c", "out/bad.o", false)
        .await;
    let response = lab.execute(&action.action_digest).await;
    let result = response.result.as_ref().unwrap();
    let (status, local_stderr, _) = lab.compile_locally("src/bad.c", "out/bad.o");
    assert_eq!((result.exit_code, status), (1, 1));
    let stderr = client.stderr(result).await.unwrap();
    assert!(
        String::from_utf8_lossy(&stderr).contains("'undeclared' undeclared"),
        "{}",
        String::from_utf8_lossy(&stderr)
    );
    assert_eq!(stderr, local_stderr, "remote and local gcc disagree");
    assert!(result.output_files.is_empty());
    // BuildGrid caches no failed action here (cache-failed-actions: false).
    assert_eq!(
        client
            .get_action_result(&action.action_digest)
            .await
            .unwrap(),
        None
    );
}

async fn execute_survives_a_cut_connection(lab: &Lab<'_>) {
    // A slow action that may not be merged with another (do_not_cache; BuildGrid's
    // scheduler never deduplicates such jobs): one run only shows that the client
    // waited for the same operation (WaitExecution) rather than executing anew.
    let tree = lab.upload_tree(&["include/greet.h", "src/hello.c"]).await;
    let spec = CommandSpec {
        arguments: ["/bin/sh", "-c", "sleep 3 && exec \"$@\"", "sh"]
            .into_iter()
            .map(String::from)
            .chain(gcc_arguments("src/hello.c", "out/slow.o"))
            .collect(),
        environment: vec![("PATH".into(), PATH.into())],
        output_files: vec!["out/slow.o".into()],
        working_directory: String::new(),
        platform: Vec::new(),
        input_root: tree.root(),
        timeout: Duration::from_secs(60),
        do_not_cache: true,
    };
    let action = spec.build();
    lab.client.upload(&action.blobs()).await.unwrap();

    let proxy = proxy::Proxy::start(lab.engine.port());
    let endpoint = Endpoint::parse(&format!("grpc://127.0.0.1:{}", proxy.port())).unwrap();
    let client = ReapiClient::connect(&endpoint).unwrap();
    let runs_before = lab.engine.actions_run();
    let execute = client.execute(&action.action_digest, true);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.cut();
    };
    let (response, ()) = tokio::join!(execute, cut);
    let response = response.unwrap_or_else(|err| panic!("{err}\n{}", lab.engine.logs()));
    assert!(proxy.accepted() >= 2, "the connection was not cut");
    let result = response.result.as_ref().unwrap();
    assert_eq!(result.exit_code, 0);
    let remote = only_output(&client, result, "out/slow.o").await;
    let (_, _, local) = lab.compile_locally("src/hello.c", "out/slow.o");
    assert!(Some(&remote) == local.as_ref(), "the slow object differs");
    assert_eq!(
        lab.engine.actions_run(),
        runs_before + 1,
        "the action ran twice"
    );
}

/// How long the idle case leaves its connection alone: past the fourth keepalive ping
/// a client sending one every 30 s would have sent, the third the engine counts as
/// too early (gRPC servers allow a ping without a call in flight every two hours by
/// default, one during a call every five minutes, and after two strikes close the
/// connection with GOAWAY "too_many_pings", breaking any stream on it).
const IDLE: Duration = Duration::from_secs(150);

async fn an_idle_connection_is_kept(engine: &ReapiEngine) {
    let proxy = proxy::Proxy::start(engine.port());
    let endpoint = Endpoint::parse(&format!("grpc://127.0.0.1:{}", proxy.port())).unwrap();
    let client = ReapiClient::connect(&endpoint).unwrap();
    let probe = [Digest::of(b"an idle connection")];
    client.find_missing(&probe).await.expect("first call");
    tokio::time::sleep(IDLE).await;
    client
        .find_missing(&probe)
        .await
        .expect("call after idling");
    assert_eq!(
        proxy.accepted(),
        1,
        "the engine closed the idle connection\n{}",
        engine.logs()
    );
    eprintln!("idle connection kept: {} s", IDLE.as_secs());
}

async fn mutual_tls(lab: &Lab<'_>) {
    let files = lab.engine.tls_files();
    // The host list's spelling of grpcs://.
    let url = lab.engine.tls_endpoint().replace("grpcs://", "reapis://");
    let mut endpoint = Endpoint::parse(&url).unwrap();
    endpoint.tls = Some(TlsSettings {
        ca_certificates: Some(files.ca.clone()),
        client_identity: Some(ClientIdentity {
            certificate: files.client_certificate.clone(),
            key: files.client_key.clone(),
        }),
        domain_name: Some(TLS_SERVER_NAME.into()),
    });
    let client = ReapiClient::connect(&endpoint).expect("TLS client");
    let capabilities = client.capabilities().await.expect("capabilities over TLS");
    assert!(capabilities.exec_enabled);
    // The same CAS as the plaintext port's.
    let blob = b"sent over TLS".as_slice();
    client
        .upload(&[(Digest::of(blob), blob)])
        .await
        .expect("upload over TLS");
    assert_eq!(lab.client.download(&Digest::of(blob)).await.unwrap(), blob);

    let without = |change: fn(&mut TlsSettings)| {
        let mut endpoint = endpoint.clone();
        change(endpoint.tls.as_mut().unwrap());
        endpoint
    };
    // The engine ends the handshake of a client without a certificate (TLS 1.3: after
    // the client thinks it is done, so the call sees its connection go, CANCELLED);
    // the client refuses a server certificate it cannot verify, saying why.
    for (what, endpoint, says) in [
        (
            "no client certificate",
            without(|tls| tls.client_identity = None),
            "",
        ),
        (
            "the system's roots",
            without(|tls| tls.ca_certificates = None),
            "UnknownIssuer",
        ),
        (
            "no name override",
            without(|tls| tls.domain_name = None),
            "not valid for name",
        ),
    ] {
        let client = ReapiClient::connect(&endpoint).expect("TLS client");
        let err = client.capabilities().await.expect_err(what);
        assert!(err.to_string().contains(says), "{what}: {err}");
        // A certificate the client refuses is no outage to wait out.
        if !says.is_empty() {
            assert!(matches!(err, ReapiError::Untrusted { .. }), "{what}: {err}");
        }
    }
}
