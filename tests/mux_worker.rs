//! `sshcc --mux` driven through pipes by the daemon's mux client: many concurrent jobs
//! over one stream, cancellation, and a clean exit when the client hangs up.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{compile_locally, private_env, project_copy, sshcc, write_script};
use sshcc::mux::client::MuxClient;
use sshcc::protocol::{JobContext, Limits, Request, Response, Version};
use tokio::process::{Child, Command};

/// `sshcc --mux` as a box runs it: the allowlist `scratch/cmdlist`, the private
/// directories (fingerprint cache, slots, counters) of `scratch`, job directories in
/// `tmp`.
fn spawn_worker(
    scratch: &std::path::Path,
    tmp: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> Child {
    Command::new(sshcc())
        .arg("--mux")
        .envs(private_env(scratch))
        .envs(env.iter().copied())
        .env("DISTCC_CMDLIST", scratch.join("cmdlist"))
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sshcc --mux")
}

async fn connect(child: &mut Child) -> MuxClient {
    let (reader, writer) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    MuxClient::handshake(reader, writer, Duration::from_secs(10))
        .await
        .expect("handshake")
}

/// Runs `request` over the link the way the daemon does: encoded in, encoded out.
async fn run_job(client: &MuxClient, request: &Request) -> Response {
    let payload = sshcc::protocol::job::encode_job(request, &JobContext::default());
    let answer = client.run(payload).await.expect("job");
    let mut input = &answer[..];
    sshcc::protocol::read_response(&mut input, Version::V1, &Limits::default())
        .await
        .expect("a valid response")
}

fn preprocess(dir: &std::path::Path, compiler: &str, flags: &[&str], source: &str) -> Vec<u8> {
    let output = std::process::Command::new(compiler)
        .current_dir(dir)
        .args(flags)
        .args(["-E", source])
        .output()
        .unwrap();
    assert!(output.status.success());
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_jobs_over_one_stream_match_local_objects() {
    let scratch = tempfile::tempdir().unwrap();
    let cmdlist = scratch.path().join("cmdlist");
    std::fs::write(&cmdlist, "/usr/bin/gcc\n/usr/bin/g++\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut worker = spawn_worker(scratch.path(), tmp.path(), &[]);
    let client = std::sync::Arc::new(connect(&mut worker).await);
    assert_eq!(
        client.hello().protocol,
        sshcc::protocol::mux::PROTOCOL_VERSION
    );

    let project = project_copy();
    let dir = project.path();
    let sources = [
        ("gcc", "geometry.c"),
        ("gcc", "checksum.c"),
        ("g++", "shapes.cpp"),
        ("g++", "report.cc"),
    ];
    let mut jobs = Vec::new();
    for round in 0..10 {
        for (compiler, source) in sources {
            let flags: &[&str] = if compiler == "g++" {
                &["-O2", "-std=c++17"]
            } else {
                &["-O2"]
            };
            let request = Request {
                version: Version::V1,
                argv: [compiler]
                    .iter()
                    .chain(flags)
                    .chain(&["-c", source, "-o", "x.o"])
                    .map(|s| s.to_string())
                    .collect(),
                source: preprocess(dir, compiler, flags, source),
            };
            let local = format!("{source}.{round}.local.o");
            compile_locally(dir, compiler, flags, source, &local);
            let expected = std::fs::read(dir.join(&local)).unwrap();
            let client = client.clone();
            jobs.push(tokio::spawn(async move {
                let response = run_job(&client, &request).await;
                assert_eq!(
                    response.status,
                    0,
                    "{}",
                    String::from_utf8_lossy(&response.stderr)
                );
                assert!(
                    response.object == expected,
                    "{source} differs from a local compile"
                );
            }));
        }
    }
    assert_eq!(jobs.len(), 40);
    for job in jobs {
        job.await.unwrap();
    }
    drop(client);
    let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the worker exits cleanly when the client hangs up: {status}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "job directories are removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_job_is_cancelled_on_the_box() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("started");
    let slow = scratch.path().join("slow-gcc");
    write_script(&slow, &format!("touch '{}'\nsleep 30", marker.display()));
    let cmdlist = scratch.path().join("cmdlist");
    std::fs::write(&cmdlist, format!("{}\n/usr/bin/gcc\n", slow.display())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The marker is outside the job, where the sandbox lets no compiler write.
    let mut worker = spawn_worker(
        scratch.path(),
        tmp.path(),
        &[("SSHCC_SANDBOX_WRITE", scratch.path())],
    );
    let client = connect(&mut worker).await;

    let slow_job = Request {
        version: Version::V1,
        argv: ["slow-gcc", "-c", "x.c", "-o", "x.o"]
            .map(String::from)
            .to_vec(),
        source: b"int x;\n".to_vec(),
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(2), run_job(&client, &slow_job)).await;
    assert!(outcome.is_err(), "the slow job must still be running");
    assert!(marker.exists());
    // The link still works, and the cancelled job's directory disappears.
    let quick = Request {
        version: Version::V1,
        argv: ["gcc", "-c", "y.c", "-o", "y.o"].map(String::from).to_vec(),
        source: b"int y;\n".to_vec(),
    };
    assert_eq!(run_job(&client, &quick).await.status, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(tmp.path()).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the cancelled job's directory remains"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}
