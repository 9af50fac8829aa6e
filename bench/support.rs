//! What the bench targets share: the box account, running and capturing commands,
//! machine facts, summary statistics, CPU time of processes and counts from the
//! environment.
//!
//! Included by each bench with `#[path = "support.rs"] mod support;`, so every bench
//! compiles its own copy and uses a different subset.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sshcc::throwaway_box::ThrowawayBox;

/// The box account used when a bench runs as root.
pub const BOX_USER: &str = "sshcc-bench";

/// Who the box logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The dedicated system user [`BOX_USER`] (bench run as root).
    BoxUser,
    /// The current user, named here (bench not run as root).
    CurrentUser(String),
}

impl Login {
    /// Picks the box login: as root, creates and unlocks [`BOX_USER`] if needed and
    /// checks that it can execute `binary`; otherwise the current user.
    pub fn choose(binary: &Path) -> Result<Self> {
        if running_as_root()? {
            ensure_box_user()?;
            check_world_executable(binary)?;
            Ok(Login::BoxUser)
        } else {
            Ok(Login::CurrentUser(capture("id", &["-un"])?))
        }
    }

    /// The "box login" fact, given the login shell the box reported.
    pub fn describe(&self, box_shell: &str) -> String {
        match self {
            Login::BoxUser => format!("`{BOX_USER}` (system user, login shell {box_shell})"),
            Login::CurrentUser(name) => format!(
                "`{name}` (current user, login shell {box_shell}; not root, so no dedicated box account — \
                 shell start-up files may add to every ssh row)"
            ),
        }
    }
}

pub fn running_as_root() -> Result<bool> {
    Ok(capture("id", &["-u"])? == "0")
}

/// Creates the box account if missing and makes sure sshd will let it log in.
pub fn ensure_box_user() -> Result<()> {
    sshcc::throwaway_box::ensure_account(BOX_USER)
}

/// Runs `program`, failing with its stderr unless it succeeds.
fn checked_output(program: &str, args: &[&str]) -> Result<std::process::Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

/// The box account must be able to run the sshcc binary: o+x on it and o+x on every
/// directory above it.
pub fn check_world_executable(binary: &Path) -> Result<()> {
    let mode = |path: &Path| -> Result<u32> {
        Ok(fs::metadata(path)
            .with_context(|| format!("stat {}", path.display()))?
            .permissions()
            .mode())
    };
    ensure!(
        mode(binary)? & 0o001 != 0,
        "{} is not executable by others, so {BOX_USER} cannot run it",
        binary.display()
    );
    for dir in binary.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        ensure!(
            mode(dir)? & 0o001 != 0,
            "{} is not searchable by others, so {BOX_USER} cannot reach {}",
            dir.display(),
            binary.display()
        );
    }
    Ok(())
}

/// The first line of a command's stdout (or stderr, for `ssh -V`), trimmed.
pub fn capture(program: &str, args: &[&str]) -> Result<String> {
    let out = checked_output(program, args)?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// "Machine:" and a bullet list: date, nproc, cpu, kernel, the ssh, distcc and gcc
/// versions, then `extra`.
pub fn machine_facts(extra: &[(&str, String)]) -> Result<String> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let mut facts = String::from("Machine:\n\n");
    let common = [
        ("date", capture("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])?),
        ("nproc", capture("nproc", &[])?),
        ("cpu", cpu),
        ("kernel", capture("uname", &["-sr"])?),
        ("ssh -V", capture("ssh", &["-V"])?),
        ("distcc --version", capture("distcc", &["--version"])?),
        ("gcc --version", capture("gcc", &["--version"])?),
    ];
    for (name, value) in common
        .iter()
        .map(|(name, value)| (*name, value))
        .chain(extra.iter().map(|(name, value)| (*name, value)))
    {
        let _ = writeln!(facts, "- {name}: {value}");
    }
    Ok(facts)
}

/// Median, minimum and 90th percentile of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub p90: f64,
}

pub fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    assert!(n > 0, "no samples");
    // Nearest-rank percentile.
    let p90 = ms[(n * 9).div_ceil(10) - 1];
    Stats {
        median: median(ms.clone()),
        min: ms[0],
        p90,
    }
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// "median X× (min A×, max B×, N of M ≤ 1)" for per-round ratios.
pub fn ratio_summary(ratios: &[f64]) -> String {
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    let at_most_one = ratios.iter().filter(|r| **r <= 1.0).count();
    format!(
        "median {:.2}× (min {min:.2}×, max {max:.2}×; ≤ 1.00× in {at_most_one} of {} rounds)",
        median(ratios.to_vec()),
        ratios.len()
    )
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The compiler the benchmark boxes allow.
pub const BOX_COMPILER: &str = "/usr/bin/x86_64-linux-gnu-gcc";
/// Debian's distccd, the baseline server.
pub const DISTCCD: &str = "/usr/bin/distccd";

/// Starts the benchmark box with `cmdlist` as its allowlist, logging in as `login`
/// says, and proves from the box account's side that `sshcc`, distccd, the compiler
/// and the list are all reachable. Returns the box and the account's login shell.
pub fn start_box(cmdlist: &Path, login: &Login, sshcc: &Path) -> Result<(ThrowawayBox, String)> {
    start_box_with(cmdlist, login, sshcc, &[])
}

/// [`start_box`] with more environment for the box's sessions.
pub fn start_box_with(
    cmdlist: &Path,
    login: &Login,
    sshcc: &Path,
    env: &[(&str, &str)],
) -> Result<(ThrowawayBox, String)> {
    let mut builder = ThrowawayBox::builder().env(
        "DISTCC_CMDLIST",
        cmdlist.to_str().context("cmdlist path is not UTF-8")?,
    );
    for (key, value) in env {
        builder = builder.env(*key, *value);
    }
    if *login == Login::BoxUser {
        builder = builder.login_user(BOX_USER);
    }
    let build_box = builder.start().context("starting the throwaway box")?;
    let check = format!(
        "test -x {sshcc} && test -x {DISTCCD} && test -r {list} && test -x {BOX_COMPILER} && echo $SHELL",
        sshcc = sshcc.display(),
        list = cmdlist.display()
    );
    let out = build_box
        .ssh()
        .arg(&check)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running the box access check")?;
    ensure!(
        out.status.success(),
        "the box account cannot execute {} / {DISTCCD} / {BOX_COMPILER} or read {} ({}): {}",
        sshcc.display(),
        cmdlist.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let box_shell = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((build_box, box_shell))
}

/// Points this process's state, cache and config directories (and so those of every
/// client it starts: wrappers, daemons) at a fresh directory, so that a benchmark leaves
/// the user's real `~/.local/state/sshcc` (job statistics), `~/.cache/sshcc` (toolchain
/// fingerprints) and `~/.config/sshcc` alone, as the tests do. Call it first in `main`,
/// before any thread starts, and keep the directory until the end.
pub fn private_user_dirs() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sshcc-bench-home.")
        .tempdir()
        .context("creating the benchmark's private state directories")?;
    for (variable, name) in [
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_CONFIG_HOME", "config"),
    ] {
        let path = dir.path().join(name);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        // SAFETY: called at the start of `main`, before any other thread exists, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var(variable, &path) };
    }
    Ok(dir)
}

/// The directory of crate `name` at exactly `version`, fetched by `cargo fetch` (from
/// cargo's cache when it holds it) through a throwaway project at `project`: a real
/// project no one here wrote, pinned and cached, for a benchmark to build.
pub fn fetch_crate(project: &Path, name: &str, version: &str) -> Result<std::path::PathBuf> {
    fs::create_dir_all(project.join("src"))?;
    fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"sshcc-bench-fetch-{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[dependencies]\n{name} = \"={version}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(project.join("src/lib.rs"), "")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = project.join("Cargo.toml");
    let fetched = Command::new(&cargo)
        .arg("fetch")
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .context("running cargo fetch")?;
    ensure!(
        fetched.status.success(),
        "cargo fetch of {name} {version} failed: {}",
        String::from_utf8_lossy(&fetched.stderr).trim()
    );
    let metadata = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .context("running cargo metadata")?;
    ensure!(
        metadata.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&metadata.stderr).trim()
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).context("parsing cargo metadata")?;
    let packages = metadata["packages"].as_array().context("no packages")?;
    for package in packages {
        if package["name"] == name && package["version"] == version {
            let manifest = package["manifest_path"].as_str().context("no manifest")?;
            return Ok(Path::new(manifest)
                .parent()
                .context("a manifest has a directory")?
                .to_path_buf());
        }
    }
    anyhow::bail!("cargo metadata lists no {name} {version}")
}

/// user+sys CPU of this process's reaped children so far.
pub fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to writable memory of the right type.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

pub fn children_cpu_since(before: Duration) -> Duration {
    children_cpu().saturating_sub(before)
}

/// utime+stime (plus that of reaped children) of `pid`, from /proc.
pub fn process_cpu(pid: i32) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&stat)
        .map(|(_, cpu)| cpu)
        .with_context(|| format!("malformed /proc/{pid}/stat"))
}

/// The parent and the CPU time (utime+stime+cutime+cstime) in a /proc stat line.
pub fn parse_stat(stat: &str) -> Option<(i32, Duration)> {
    let (ppid, own, children) = parse_stat_parts(stat)?;
    Some((ppid, own + children))
}

/// The parent, the process's own CPU time (utime+stime) and that of its reaped
/// children (cutime+cstime) in a /proc stat line.
pub fn parse_stat_parts(stat: &str) -> Option<(i32, Duration, Duration)> {
    // Fields after the command name (which may contain ") "): state is field 3, so
    // ppid (4) is at 1, utime (14), stime (15), cutime (16) and cstime (17) at 11..=14.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let mut ticks = [0u64; 4];
    for (tick, field) in ticks.iter_mut().zip(fields.get(11..=14)?) {
        *tick = field.parse().ok()?;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let time = |t: u64| Duration::from_nanos(t * 1_000_000_000 / per_second);
    Some((ppid, time(ticks[0] + ticks[1]), time(ticks[2] + ticks[3])))
}

/// A positive count from the environment variable `name`, `default` when unset.
pub fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => {
            let n: usize = value
                .trim()
                .parse()
                .with_context(|| format!("{name}={value:?} is not a number"))?;
            ensure!(n >= 1, "{name} must be at least 1");
            Ok(n)
        }
    }
}
