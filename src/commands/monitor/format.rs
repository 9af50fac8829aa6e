//! How `sshcc mon` writes numbers and rows, shared by the live view and the text
//! snapshot so that both say the same thing the same way.

use crate::status::{HostKind, HostStatus, JobStatus, Phase, Status};

/// Cells of the bar between the brackets of a slot bar (`[####    ] 4/8`).
pub const BAR_WIDTH: usize = 8;

/// Column titles of the hosts table, in the order [`host_cells`] fills them.
pub const HOST_COLUMNS: [&str; 9] = [
    "HOST", "SLOTS", "DONE", "FAIL", "RTT", "SENT", "RECV", "RATIO", "STATE",
];

/// Column titles of the jobs table, in the order [`job_cells`] fills them.
pub const JOB_COLUMNS: [&str; 5] = ["FILE", "HOST", "PHASE", "ELAPSED", "IN PHASE"];

/// The busy/total slot bar: `[####    ] 4/8`. A host without slots (a local row the
/// daemon gives no limit) shows only the count.
pub fn slot_bar(busy: u32, total: u32) -> String {
    let filled = if total == 0 {
        0
    } else {
        let share = (busy.min(total) as usize * BAR_WIDTH + total as usize / 2) / total as usize;
        // Any work at all is visible.
        if busy > 0 { share.max(1) } else { share }
    };
    format!(
        "[{}{}] {busy}/{total}",
        "#".repeat(filled),
        " ".repeat(BAR_WIDTH - filled)
    )
}

/// A duration in milliseconds, at most 6 characters: `350ms`, `2.1s`, `42s`, `5m03s`,
/// `2h05m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", ms / 1_000, ms % 1_000 / 100),
        10_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A size in bytes, at most 6 characters, binary units: `512B`, `1.5K`, `340K`, `12M`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count}B")
    } else if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// A round-trip time in milliseconds, at most 6 characters: `0.42ms`, `12.3ms`,
/// `180ms`, `1.2s`.
pub fn rtt(ms: f64) -> String {
    if ms < 9.995 {
        format!("{ms:.2}ms")
    } else if ms < 99.95 {
        format!("{ms:.1}ms")
    } else if ms < 999.5 {
        format!("{ms:.0}ms")
    } else {
        duration(ms as u64)
    }
}

/// A compression ratio: `3.1x`.
pub fn ratio(ratio: f64) -> String {
    if ratio < 99.95 {
        format!("{ratio:.1}x")
    } else {
        format!("{ratio:.0}x")
    }
}

/// What a host is doing, in at most 11 characters.
pub fn host_state(host: &HostStatus) -> String {
    if let Some(ms) = host.backoff_remaining_ms {
        return format!("backoff {}", duration(ms.div_ceil(1_000) * 1_000));
    }
    match host.kind {
        HostKind::Local => "local".into(),
        HostKind::Tcp => "tcp".into(),
        // Connected, and the box preprocesses: how often its store already held what
        // a job needed.
        HostKind::Ssh if host.connected => match host.preprocessing.as_deref() {
            Some("remote") => match host.store_hit_rate() {
                Some(rate) => format!("pp there {rate}%"),
                None => "pp there".into(),
            },
            _ => "connected".into(),
        },
        HostKind::Ssh => "idle".into(),
        // Jobs its action cache answered.
        HostKind::Reapi if host.cache_hits > 0 => format!("hits {}", host.cache_hits),
        HostKind::Reapi if host.connected => "reapi".into(),
        HostKind::Reapi => "idle".into(),
    }
}

/// How a host's state reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Good,
    Idle,
    Bad,
}

pub fn host_health(host: &HostStatus) -> Health {
    if host.backoff_remaining_ms.is_some() {
        Health::Bad
    } else if host.connected || host.kind == HostKind::Local {
        Health::Good
    } else {
        Health::Idle
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// The cells of one host row, in [`HOST_COLUMNS`] order.
pub fn host_cells(host: &HostStatus) -> [String; 9] {
    let remote = host.kind != HostKind::Local;
    [
        host.host.clone(),
        slot_bar(host.slots_busy, host.slots_total),
        host.jobs_done.to_string(),
        host.jobs_failed.to_string(),
        or_dash(host.rtt_ms.map(rtt)),
        or_dash(remote.then(|| bytes(host.bytes_sent))),
        or_dash(remote.then(|| bytes(host.bytes_received))),
        or_dash(host.compression_ratio.map(ratio)),
        host_state(host),
    ]
}

/// The phase as the jobs table names it.
pub fn phase(phase: Phase) -> &'static str {
    match phase {
        Phase::Queue => "queue",
        Phase::Preprocess => "preprocess",
        Phase::Send => "send",
        Phase::Compile => "compile",
        Phase::Receive => "receive",
        Phase::Local => "local",
    }
}

/// The cells of one job row, in [`JOB_COLUMNS`] order.
pub fn job_cells(job: &JobStatus) -> [String; 5] {
    let host = match (&job.host, job.phase) {
        (Some(host), _) => host.clone(),
        (None, Phase::Local) => "local".into(),
        (None, _) => "-".into(),
    };
    [
        job.file.clone(),
        host,
        phase(job.phase).into(),
        duration(job.elapsed_ms),
        duration(job.phase_elapsed_ms),
    ]
}

/// The hosts to show: the daemon's rows, with a local row added when the daemon sent
/// none, counting the jobs compiling here.
pub fn hosts_with_local_row(status: &Status) -> Vec<HostStatus> {
    let mut hosts = status.hosts.clone();
    if status.daemon_pid.is_some() && !hosts.iter().any(|host| host.kind == HostKind::Local) {
        let busy = status
            .jobs
            .iter()
            .filter(|job| job.phase == Phase::Local)
            .count();
        hosts.push(HostStatus {
            host: "local".into(),
            kind: HostKind::Local,
            slots_busy: busy as u32,
            ..HostStatus::default()
        });
    }
    hosts
}

/// Jobs in flight, longest-running first.
pub fn jobs_by_elapsed(status: &Status) -> Vec<&JobStatus> {
    let mut jobs: Vec<&JobStatus> = status.jobs.iter().collect();
    jobs.sort_by(|a, b| b.elapsed_ms.cmp(&a.elapsed_ms).then(a.id.cmp(&b.id)));
    jobs
}

/// The one-line summary of the daemon: `daemon 1234 · up 5m03s · 7/18 slots busy ·
/// 9 jobs in flight`, or that none runs.
pub fn summary(status: &Status, separator: &str) -> String {
    let Some(pid) = status.daemon_pid else {
        return "no daemon running (the first compile starts it)".into();
    };
    let (busy, total) = status
        .hosts
        .iter()
        .filter(|host| host.kind != HostKind::Local)
        .fold((0, 0), |(busy, total), host| {
            (busy + host.slots_busy, total + host.slots_total)
        });
    let jobs = status.jobs.len();
    format!(
        "daemon {pid}{separator}up {}{separator}{busy}/{total} remote slots busy{separator}{jobs} job{} in flight",
        duration(status.uptime_ms),
        if jobs == 1 { "" } else { "s" }
    )
}

/// Totals over every host: `done 120 · failed 2 · sent 3.4M · received 1.2M`.
pub fn totals(status: &Status, separator: &str) -> String {
    let (done, failed, sent, received) =
        status
            .hosts
            .iter()
            .fold((0, 0, 0, 0), |(done, failed, sent, received), host| {
                (
                    done + host.jobs_done,
                    failed + host.jobs_failed,
                    sent + host.bytes_sent,
                    received + host.bytes_received,
                )
            });
    format!(
        "done {done}{separator}failed {failed}{separator}sent {}{separator}received {}",
        bytes(sent),
        bytes(received)
    )
}

/// A host entry without its remote command, for narrow columns: `@box/8` for
/// `@box/8:/home/build/.local/bin/sshcc,lzo`. Only SSH entries (those with an `@`)
/// name a command after a `:`; TCP entries keep their port.
pub fn short_host(entry: &str) -> &str {
    let Some(at) = entry.find('@') else {
        return entry;
    };
    match entry[at..].find(':') {
        Some(colon) => &entry[..at + colon],
        None => entry,
    }
}

/// `text` cut to `width` characters, keeping its end (the file name of a path):
/// `…/deep/dir/file.c`.
pub fn truncate_left(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

/// `text` cut to `width` characters, keeping its start: `build@very-long-ho…`.
pub fn truncate_right(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let head: String = text.chars().take(width - 1).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_bars_fill_in_proportion_and_show_any_work() {
        assert_eq!(slot_bar(4, 8), "[####    ] 4/8");
        assert_eq!(slot_bar(0, 8), "[        ] 0/8");
        assert_eq!(slot_bar(8, 8), "[########] 8/8");
        assert_eq!(slot_bar(1, 64), "[#       ] 1/64");
        assert_eq!(slot_bar(9, 8), "[########] 9/8");
        assert_eq!(slot_bar(2, 0), "[        ] 2/0");
    }

    #[test]
    fn numbers_fit_their_columns() {
        assert_eq!(duration(350), "350ms");
        assert_eq!(duration(2_150), "2.1s");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(303_000), "5m03s");
        assert_eq!(duration(7_500_000), "2h05m");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1_536), "1.5K");
        assert_eq!(bytes(348_160), "340K");
        assert_eq!(bytes(1_023_000), "999K");
        assert_eq!(bytes(1_024_000), "1.0M");
        assert_eq!(bytes(12 * 1024 * 1024), "12M");
        assert_eq!(rtt(0.4215), "0.42ms");
        assert_eq!(rtt(12.34), "12.3ms");
        assert_eq!(rtt(180.0), "180ms");
        assert_eq!(rtt(1_250.0), "1.2s");
        assert_eq!(ratio(3.06), "3.1x");
        for n in [0, 1, 999, 1_000, 1 << 20, u64::MAX / 2, u64::MAX] {
            assert!(bytes(n).chars().count() <= 6, "{n}: {}", bytes(n));
            assert!(duration(n % (100 * 3_600_000)).chars().count() <= 6);
        }
        for ms in [0.01, 9.999, 10.0, 99.96, 999.4, 999.6, 59_999.0] {
            assert!(rtt(ms).chars().count() <= 6, "{ms}: {}", rtt(ms));
        }
    }

    #[test]
    fn backoff_reads_in_whole_seconds() {
        let host = HostStatus {
            backoff_remaining_ms: Some(41_200),
            ..HostStatus::default()
        };
        assert_eq!(host_state(&host), "backoff 42s");
        assert_eq!(host_health(&host), Health::Bad);
    }

    #[test]
    fn truncation_keeps_the_useful_end() {
        assert_eq!(truncate_left("src/deep/file.c", 10), "…ep/file.c");
        assert_eq!(truncate_left("a.c", 10), "a.c");
        assert_eq!(
            truncate_right("build@long.example.com/8", 12),
            "build@long.…"
        );
    }

    #[test]
    fn short_host_names_drop_the_remote_command_only() {
        assert_eq!(short_host("@box/8:/home/b/.local/bin/sshcc,lzo"), "@box/8");
        assert_eq!(short_host("build@box:/opt/sshcc"), "build@box");
        assert_eq!(short_host("@box/8"), "@box/8");
        assert_eq!(short_host("buildbox:3632/2"), "buildbox:3632/2");
        assert_eq!(short_host("localhost/2"), "localhost/2");
    }

    #[test]
    fn a_local_row_is_added_when_the_daemon_sent_none() {
        let status = Status {
            daemon_pid: Some(1),
            jobs: vec![JobStatus {
                phase: Phase::Local,
                ..JobStatus::default()
            }],
            ..Status::default()
        };
        let hosts = hosts_with_local_row(&status);
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].kind, HostKind::Local);
        assert_eq!(hosts[0].slots_busy, 1);
        assert!(hosts_with_local_row(&Status::default()).is_empty());
    }
}
