//! `sshcc check`'s text output: one block per host, then a summary line.

use super::report::{CompilerReport, CompilerStatus, Report, Toolchain};

/// The report as text: one block per host, then a summary line.
pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for host in &report.hosts {
        out.push_str(&format!(
            "{} ({}, {} slots)\n",
            host.entry, host.kind, host.slots
        ));
        let mut row = |label: &str, value: String| {
            out.push_str(&format!("  {label:<11}{value}\n"));
        };
        let failing = host
            .compilers
            .iter()
            .filter(|compiler| compiler.status.fails())
            .count();
        row(
            "status",
            match (&host.error, failing) {
                (Some(error), _) => format!("UNUSABLE: {error}"),
                (None, 0) => "ok".to_string(),
                (None, 1) => "PROBLEM: 1 compiler does not match".to_string(),
                (None, n) => format!("PROBLEM: {n} compilers do not match"),
            },
        );
        if let Some(note) = &host.note {
            row("note", note.clone());
        }
        if let (Some(address), Some(ms)) = (&host.address, host.connect_ms) {
            row("connected", format!("{address} in {ms} ms"));
        }
        if let Some(auth) = &host.auth_method {
            row("auth", auth.clone());
        }
        if let Some(host_key) = &host.host_key {
            row("host key", host_key.clone());
        }
        if let Some(remote) = &host.remote {
            row(
                "box",
                format!(
                    "sshcc {} (protocol {}) on {}; `{} --box-info` took {} ms",
                    remote.sshcc_version,
                    remote.protocol,
                    remote.hostname,
                    host.command.as_deref().unwrap_or_default(),
                    host.box_info_ms.unwrap_or_default()
                ),
            );
            if let Some(allowlist) = &remote.allowlist {
                row(
                    "allowlist",
                    format!(
                        "{allowlist} (toolchain_check {})",
                        host.toolchain_check.unwrap_or_default().as_str()
                    ),
                );
            }
            if let Some(limits) = &remote.limits {
                let lifetime = match limits.job_lifetime {
                    0 => "none".to_string(),
                    seconds => format!("{seconds} s"),
                };
                row(
                    "limits",
                    format!(
                        "{} compiles at once (box-wide), nice {}, job lifetime {lifetime}, max input {} MiB",
                        limits.jobs,
                        limits.nice,
                        limits.max_input >> 20
                    ),
                );
                row("sandbox", limits.sandbox.clone());
            }
            row(
                "preprocessing",
                match (&remote.store, remote.preprocessing) {
                    (Some(store), "remote") => format!(
                        "on the box; content store {} ({} of {})",
                        store.root.as_deref().unwrap_or_default(),
                        crate::server::store::format_size(store.bytes),
                        crate::server::store::format_size(store.max_bytes)
                    ),
                    (Some(store), _) => format!(
                        "here: {}",
                        store
                            .error
                            .as_deref()
                            .unwrap_or("the box has no content store")
                    ),
                    (None, _) => "here: the box's sshcc predates remote preprocessing".to_string(),
                },
            );
            if let Some(counters) = &remote.counters {
                let totals = &counters.totals;
                row(
                    "served",
                    format!(
                        "{} jobs ({} ok, {} failed, {} refused; {} cancelled), {:.1} s compiling; {} running now",
                        totals.jobs,
                        totals.succeeded,
                        totals.failed,
                        totals.refused,
                        totals.cancelled,
                        totals.compile_ms as f64 / 1000.0,
                        counters.running
                    ),
                );
            }
        }
        let width = host
            .compilers
            .iter()
            .map(|compiler| compiler.entry.len())
            .max()
            .unwrap_or_default();
        for (index, compiler) in host.compilers.iter().enumerate() {
            row(
                if index == 0 { "compilers" } else { "" },
                format!("{:<width$}  {}", compiler.entry, describe(compiler)),
            );
        }
        out.push('\n');
    }
    let failing = report.hosts.iter().filter(|host| !host.ok).count();
    let checked = report.hosts.len();
    out.push_str(&match failing {
        0 => format!("{checked} host(s) checked: all ok\n"),
        n => format!("{checked} host(s) checked: {n} with problems\n"),
    });
    out
}

/// One compiler's status, with the digests that back it.
pub(super) fn describe(compiler: &CompilerReport) -> String {
    let digest = |side: &Option<Toolchain>| {
        side.as_ref()
            .map_or_else(|| "?".to_string(), |toolchain| toolchain.digest.clone())
    };
    let status = compiler.status.text();
    match compiler.status {
        CompilerStatus::Match => format!("{status} ({})", digest(&compiler.local)),
        CompilerStatus::Mismatch => format!(
            "{status}: {} (here {}, box {})",
            compiler.detail.as_deref().unwrap_or_default(),
            digest(&compiler.local),
            digest(&compiler.remote)
        ),
        CompilerStatus::NotChecked => format!("{status} (toolchain_check off)"),
        CompilerStatus::MissingLocally => match &compiler.detail {
            Some(error) => format!("{status} (box: {error})"),
            None => format!("{status} (box {})", digest(&compiler.remote)),
        },
        CompilerStatus::BoxError | CompilerStatus::LocalError => format!(
            "{status}: {}",
            compiler.detail.as_deref().unwrap_or_default()
        ),
    }
}
