//! Synthetic daemon states for the monitor's unit tests.

use crate::status::{HostKind, HostStatus, JobStatus, Phase, SCHEMA, Status};

/// A busy build: a connected box, a backed-off one, a TCP distccd, the local row and
/// jobs in every phase.
pub fn status() -> Status {
    Status {
        schema: SCHEMA,
        sshcc_version: "0.1.0".into(),
        daemon_pid: Some(4242),
        uptime_ms: 303_000,
        hosts: vec![
            HostStatus {
                host: "@box/8:/opt/sshcc/bin/sshcc,lzo".into(),
                kind: HostKind::Ssh,
                slots_total: 8,
                slots_busy: 4,
                jobs_done: 120,
                jobs_failed: 1,
                connected: true,
                rtt_ms: Some(1.234),
                bytes_sent: 3 * 1024 * 1024,
                bytes_received: 700 * 1024,
                compression_ratio: Some(3.06),
                ..HostStatus::default()
            },
            HostStatus {
                host: "@flaky/4".into(),
                kind: HostKind::Ssh,
                slots_total: 4,
                jobs_failed: 3,
                backoff_remaining_ms: Some(41_200),
                last_error: Some("connection refused".into()),
                ..HostStatus::default()
            },
            HostStatus {
                host: "buildbox:3632/2".into(),
                kind: HostKind::Tcp,
                slots_total: 2,
                slots_busy: 1,
                jobs_done: 7,
                bytes_sent: 90_000,
                bytes_received: 30_000,
                compression_ratio: Some(1.0),
                ..HostStatus::default()
            },
            HostStatus {
                host: "localhost/2".into(),
                kind: HostKind::Local,
                slots_total: 2,
                slots_busy: 1,
                jobs_done: 5,
                ..HostStatus::default()
            },
        ],
        jobs: vec![
            job(
                1,
                "src/oldest.c",
                Some("@box/8:/opt/sshcc/bin/sshcc,lzo"),
                Phase::Compile,
                9_500,
                8_000,
            ),
            job(
                2,
                "src/net/socket.cc",
                Some("@box/8:/opt/sshcc/bin/sshcc,lzo"),
                Phase::Send,
                1_200,
                100,
            ),
            job(
                3,
                "src/parser.c",
                Some("@box/8:/opt/sshcc/bin/sshcc,lzo"),
                Phase::Receive,
                2_500,
                50,
            ),
            job(
                4,
                "lib/util.c",
                Some("@box/8:/opt/sshcc/bin/sshcc,lzo"),
                Phase::Preprocess,
                800,
                700,
            ),
            job(
                5,
                "lib/tcp.c",
                Some("buildbox:3632/2"),
                Phase::Compile,
                3_000,
                2_000,
            ),
            job(6, "main.c", Some("localhost/2"), Phase::Local, 4_000, 3_900),
            job(7, "src/newest.c", None, Phase::Queue, 20, 20),
        ],
    }
}

/// [`status`] with `extra` more jobs in flight than any 80×24 screen can list.
pub fn crowded(extra: usize) -> Status {
    let mut status = status();
    for n in 0..extra {
        status.jobs.push(job(
            100 + n as u64,
            &format!("gen/generated_{n:03}.c"),
            Some("@box/8:/opt/sshcc/bin/sshcc,lzo"),
            Phase::Compile,
            100 + n as u64,
            50,
        ));
    }
    status
}

pub fn job(
    id: u64,
    file: &str,
    host: Option<&str>,
    phase: Phase,
    elapsed_ms: u64,
    phase_elapsed_ms: u64,
) -> JobStatus {
    JobStatus {
        id,
        file: file.into(),
        pid: 10_000 + id as u32,
        host: host.map(String::from),
        phase,
        elapsed_ms,
        phase_elapsed_ms,
    }
}
