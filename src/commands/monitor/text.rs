//! `sshcc mon --once` (and `sshcc mon` whose stdout is not a terminal): one snapshot
//! as plain text, the live view's information without colours or truncation.

use std::fmt::Write as _;

use super::format::{self, HOST_COLUMNS, JOB_COLUMNS};
use crate::status::Status;

/// The snapshot of `status`, ending with a newline.
pub fn snapshot(status: &Status) -> String {
    let mut out = format!(
        "sshcc {}: {}\n",
        status.sshcc_version,
        format::summary(status, ", ")
    );
    if status.daemon_pid.is_none() {
        return out;
    }
    out.push('\n');
    let hosts = format::hosts_with_local_row(status);
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|host| format::host_cells(host).to_vec())
        .collect();
    // Text columns are left-aligned, numbers right-aligned.
    table(&mut out, &HOST_COLUMNS, &rows, &[0, 1, 8]);
    for host in &hosts {
        if let Some(error) = &host.last_error {
            let _ = writeln!(out, "  {}: {error}", host.host);
        }
    }
    let _ = writeln!(out, "{}", format::totals(status, ", "));
    out.push('\n');
    let jobs = format::jobs_by_elapsed(status);
    if jobs.is_empty() {
        out.push_str("no jobs in flight\n");
    } else {
        let rows: Vec<Vec<String>> = jobs
            .iter()
            .map(|job| format::job_cells(job).to_vec())
            .collect();
        table(&mut out, &JOB_COLUMNS, &rows, &[0, 1, 2]);
    }
    out
}

/// Appends `rows` under `titles`, columns padded to their widest cell; the columns in
/// `left` are left-aligned, the others right-aligned. The last column is not padded.
fn table(out: &mut String, titles: &[&str], rows: &[Vec<String>], left: &[usize]) {
    let widths: Vec<usize> = (0..titles.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([titles[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let titles: Vec<String> = titles.iter().map(|title| title.to_string()).collect();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let width = widths[column];
            if left.contains(&column) {
                let _ = write!(line, "{cell:<width$}");
            } else {
                let _ = write!(line, "{cell:>width$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::monitor::sample;

    #[test]
    fn a_snapshot_shows_hosts_jobs_and_the_local_row() {
        let text = snapshot(&sample::status());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("sshcc 0.1.0: daemon 4242, up 5m03s"),
            "{text}"
        );
        assert!(
            text.contains("@box/8") && text.contains("[####    ] 4/8"),
            "{text}"
        );
        assert!(text.contains("backoff 42s"), "{text}");
        assert!(text.contains("@flaky/4: connection refused"), "{text}");
        assert!(text.contains("localhost/2") && text.contains("[####    ] 1/2"));
        for job in &sample::status().jobs {
            assert!(text.contains(&job.file), "{} missing:\n{text}", job.file);
        }
        // Longest-running first.
        let oldest = text.find("src/oldest.c").unwrap();
        let newest = text.find("src/newest.c").unwrap();
        assert!(oldest < newest, "{text}");
        let header = lines
            .iter()
            .position(|line| line.starts_with("HOST"))
            .unwrap();
        // The text has room for whole host entries.
        assert!(
            lines[header + 1].starts_with("@box/8:/opt/sshcc/bin/sshcc,lzo "),
            "{text}"
        );
    }

    #[test]
    fn without_a_daemon_the_snapshot_says_so() {
        let status = Status {
            sshcc_version: "0.1.0".into(),
            ..Status::default()
        };
        assert_eq!(
            snapshot(&status),
            "sshcc 0.1.0: no daemon running (the first compile starts it)\n"
        );
    }
}
