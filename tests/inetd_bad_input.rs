//! Hostile and broken input straight into `sshcc --inetd`: every case ends in a clean
//! non-zero exit, no panic, no stray output and no file left in the temp directory.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{private_command, sshcc, write_script};

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/distcc-vectors")
            .join(name),
    )
    .expect("vector")
}

/// `sshcc --inetd` with a private TMPDIR, the private directories (slots, counters) of
/// its scratch and an allowlist holding `compiler`.
struct Worker {
    tmp: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl Worker {
    fn new() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(scratch.path().join("cmdlist"), "/usr/bin/gcc\n").unwrap();
        Worker {
            tmp: tempfile::tempdir().unwrap(),
            scratch,
        }
    }

    fn spawn(&self) -> Child {
        self.spawn_with(&[])
    }

    fn spawn_with(&self, env: &[(&str, &Path)]) -> Child {
        private_command(sshcc(), self.scratch.path())
            .envs(env.iter().copied())
            .arg("--inetd")
            .arg("--enable-tcp-insecure")
            .env("TMPDIR", self.tmp.path())
            .env("DISTCC_CMDLIST", self.scratch.path().join("cmdlist"))
            .env_remove("SSHCC_LOG")
            .env_remove("DISTCC_VERBOSE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sshcc --inetd")
    }

    /// Sends `request`, closes stdin, and returns (exit code, stdout, stderr).
    fn feed(&self, request: &[u8]) -> (Option<i32>, Vec<u8>, String) {
        let mut child = self.spawn();
        let mut stdin = child.stdin.take().unwrap();
        // The worker may stop reading early; a broken pipe is part of the test.
        let _ = stdin.write_all(request);
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            output.stdout,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn assert_temp_dir_empty(&self, case: &str) {
        let left: Vec<_> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{case}: left behind {left:?}");
    }
}

#[test]
fn malformed_requests_exit_cleanly_without_output_or_temp_files() {
    let worker = Worker::new();
    let good = vector("ex_req_v1.bin");
    let v2 = vector("ex_req_v2.bin");
    let mut cases: Vec<(String, Vec<u8>, i32)> = vec![
        ("empty".into(), vec![], 108),
        ("truncated header".into(), good[..7].to_vec(), 108),
        (
            "truncated body".into(),
            good[..good.len() - 3].to_vec(),
            108,
        ),
        (
            "wrong token order".into(),
            [&good[..12], b"ARGV00000003gcc".as_slice()].concat(),
            109,
        ),
        (
            "DIST version 9".into(),
            [b"DIST00000009".as_slice(), &good[12..]].concat(),
            109,
        ),
        (
            "non-hex length".into(),
            [&good[..12], b"ARGC0000000g".as_slice()].concat(),
            109,
        ),
        (
            "absurd ARGC".into(),
            [&good[..12], b"ARGCffffffff".as_slice()].concat(),
            105,
        ),
        (
            "absurd ARGV length".into(),
            [&good[..24], b"ARGVfffffff0gcc".as_slice()].concat(),
            105,
        ),
        (
            "absurd DOTI length".into(),
            [&good[..good.len() - 19], b"DOTIffffff00int x;\n".as_slice()].concat(),
            105,
        ),
        (
            "DOTI longer than sent".into(),
            [&good[..good.len() - 19], b"DOTI00100000int x;\n".as_slice()].concat(),
            108,
        ),
        (
            "corrupt LZO".into(),
            [
                &v2[..v2.len() - 23],
                b"DOTI0000000b\x18int x;\n\x11\xff\xff".as_slice(),
            ]
            .concat(),
            109,
        ),
        (
            "NUL in argument".into(),
            [&good[..24], b"ARGV00000003g\0c".as_slice()].concat(),
            101,
        ),
    ];
    // Deterministic pseudo-random garbage, some of it starting like a real request.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..12 {
        let len = 1 + (round * 37) % 300;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if round % 2 == 0 {
            bytes.splice(0..0, good[..24].iter().copied());
        }
        cases.push((format!("random bytes #{round}"), bytes, 0));
    }

    for (case, request, expected_code) in cases {
        let started = Instant::now();
        let (code, stdout, stderr) = worker.feed(&request);
        let code = code.unwrap_or_else(|| panic!("{case}: killed by a signal; stderr: {stderr}"));
        assert_ne!(code, 0, "{case}: must fail");
        if expected_code != 0 {
            assert_eq!(code, expected_code, "{case}: {stderr}");
        } else {
            assert!((100..=120).contains(&code), "{case}: exit {code}: {stderr}");
        }
        assert!(
            stdout.is_empty(),
            "{case}: wrote {} bytes of stdout",
            stdout.len()
        );
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        assert!(
            stderr.contains("bad request"),
            "{case}: the reason must be logged: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}: took {:?}",
            started.elapsed()
        );
        worker.assert_temp_dir_empty(&case);
    }
}

#[test]
fn pump_requests_get_a_clean_refusal_in_version_3() {
    let worker = Worker::new();
    let (code, stdout, stderr) = worker.feed(&vector("ex_req_v3.bin"));
    assert_eq!(code, Some(101), "{stderr}");
    assert!(
        stdout.starts_with(b"DONE00000003STAT00006500SERR"),
        "{}",
        String::from_utf8_lossy(&stdout)
    );
    assert!(stderr.contains("pump mode"), "{stderr}");
    worker.assert_temp_dir_empty("pump");
}

#[test]
fn successful_failed_and_refused_jobs_leave_no_temp_files() {
    let worker = Worker::new();
    for (name, expected_status) in [
        ("ex_req_v1.bin", b"STAT00000000".as_slice()),
        ("ex_req_v2.bin", b"STAT00000000"),
        ("ex_req_err_v1.bin", b"STAT00000100"),
        ("ex_req_err_v2.bin", b"STAT00000100"),
    ] {
        let mut child = worker.spawn();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vector(name)).unwrap();
        // Like distcc, keep our side open until the answer has arrived.
        let mut stdout = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        drop(stdin);
        let status = child.wait().unwrap();
        assert_eq!(&stdout[12..24], expected_status, "{name}");
        assert_eq!(
            status.success(),
            expected_status == b"STAT00000000",
            "{name}"
        );
        worker.assert_temp_dir_empty(name);
    }

    let refused = [
        b"DIST00000001ARGC00000003ARGV00000004bashARGV00000002-cARGV00000003x.c".as_slice(),
        b"DOTI00000000",
    ]
    .concat();
    let (code, stdout, _) = worker.feed(&refused);
    assert_eq!(code, Some(110));
    assert!(String::from_utf8_lossy(&stdout).contains("\"bash\" is not in the allowlist"));
    worker.assert_temp_dir_empty("refused compiler");

    let hostile = [
        b"DIST00000001ARGC00000005ARGV00000003gccARGV00000015-fplugin=/tmp/evil.soARGV00000002-c"
            .as_slice(),
        b"ARGV00000003x.cARGV00000002-cDOTI00000000",
    ]
    .concat();
    let (code, stdout, _) = worker.feed(&hostile);
    assert_eq!(code, Some(101));
    let text = String::from_utf8_lossy(&stdout);
    assert!(
        text.contains("-fplugin=/tmp/evil.so") && text.contains("loads code"),
        "{text}"
    );
    worker.assert_temp_dir_empty("hostile argument");
}

#[test]
fn client_going_away_kills_the_compiler_and_cleans_up() {
    let worker = Worker::new();
    let pid_file = worker.scratch.path().join("compiler.pid");
    let slow = worker.scratch.path().join("slow-gcc");
    // A "compiler" that runs a long child in its process group, like gcc running cc1.
    write_script(
        &slow,
        &format!("sleep 60 &\necho $! > '{}'\nwait", pid_file.display()),
    );
    std::fs::write(
        worker.scratch.path().join("cmdlist"),
        format!("{}\n", slow.display()),
    )
    .unwrap();

    // Its pid file is outside the job, where the sandbox lets no compiler write.
    let mut child = worker.spawn_with(&[("SSHCC_SANDBOX_WRITE", worker.scratch.path())]);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"DIST00000001ARGC00000005ARGV00000008slow-gccARGV00000002-cARGV00000003x.cARGV00000002-oARGV00000003x.oDOTI00000007int x;\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists()
        || std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the compiler never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed EOF only after {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(107));
    assert!(output.stdout.is_empty());
    // SIGKILL is delivered asynchronously: give the kernel a moment to finish it.
    let is_running = || {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        !stat.is_empty() && !stat.contains(") Z ") && !stat.contains(") X ")
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!is_running(), "the compiler's child {grandchild} survived");
    worker.assert_temp_dir_empty("client gone");
}
