//! What a box's owner decides about the jobs it serves: how many compile at once across
//! all sessions and users, at what priority, for how long, from how large a request, and
//! how confined.
//!
//! Every setting is an option of the serving modes (so a forced command in
//! `authorized_keys` can fix it, out of the client's reach) with an environment variable
//! behind it (so `~/.ssh/environment` can set it for an account).

use std::path::PathBuf;
use std::time::Duration;

use super::slots::Slots;

/// Whether jobs run confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Confine when the kernel supports Landlock; warn and run unconfined when not.
    #[default]
    Auto,
    /// Refuse jobs when the compiler cannot be confined.
    Required,
    /// Never confine (the argument rules still apply).
    Off,
}

/// The box owner's limits.
#[derive(Debug, Clone, clap::Args)]
pub struct BoxSettings {
    /// Compiles this box runs at once across every session of every user (default: the
    /// number of CPUs + 2, as distccd). Further jobs wait for a slot.
    #[arg(long, env = "SSHCC_JOBS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Niceness added to the compiler's (distccd's default is 5).
    #[arg(long, env = "SSHCC_NICE", value_name = "N", default_value_t = 5,
          allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: i32,
    /// Kill a compile that runs longer than this many seconds (distcc's status 118); 0
    /// means no limit.
    #[arg(
        long,
        env = "SSHCC_JOB_LIFETIME",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    pub job_lifetime: u64,
    /// Refuse requests whose source is larger than this (suffixes K, M, G).
    #[arg(long, env = "SSHCC_MAX_INPUT", value_name = "BYTES", default_value = "256M",
          value_parser = parse_positive_size)]
    pub max_input: u64,
    /// Confine each compile with Landlock: auto (when the kernel can), required (refuse
    /// jobs otherwise) or off.
    #[arg(long, env = "SSHCC_SANDBOX", value_enum, default_value_t = SandboxMode::Auto)]
    pub sandbox: SandboxMode,
    /// More directories a confined compiler may read and run from (`:`-separated in the
    /// environment), e.g. where a wrapper script's real compiler lives.
    #[arg(
        long = "sandbox-allow",
        env = "SSHCC_SANDBOX_ALLOW",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub sandbox_allow: Vec<PathBuf>,
    /// Directories a confined compiler may also write to (`:`-separated in the
    /// environment), e.g. where a box-side wrapper script keeps its log.
    #[arg(
        long = "sandbox-write",
        env = "SSHCC_SANDBOX_WRITE",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub sandbox_write: Vec<PathBuf>,
    /// Where the box-wide slot lock files live; every user of the box must use the same.
    #[arg(
        long,
        env = "SSHCC_LOCK_DIR",
        value_name = "DIR",
        default_value = "/tmp/sshcc-slots"
    )]
    pub lock_dir: PathBuf,
    /// The bound of this account's content store (`~/.cache/sshcc/store`, or under
    /// `$XDG_CACHE_HOME`), where remote-preprocessed jobs' sources and headers are kept
    /// between jobs; least recently used blobs are evicted beyond it (suffixes K, M, G).
    #[arg(long, env = "SSHCC_CACHE_SIZE", value_name = "BYTES", default_value = "10G",
          value_parser = crate::server::store::parse_size)]
    pub cache_size: u64,
}

impl BoxSettings {
    /// The box-wide compile slots.
    pub fn slots(&self) -> Slots {
        // std reads the cgroup's CPU quota from files to answer: once per process, not
        // once per job.
        static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cpus =
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let count = self.jobs.map_or(cpus + 2, |jobs| jobs as usize);
        Slots::new(self.lock_dir.clone(), count)
    }

    pub fn job_lifetime(&self) -> Option<Duration> {
        (self.job_lifetime > 0).then(|| Duration::from_secs(self.job_lifetime))
    }

    /// Bounds for decoding a request.
    pub fn request_limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_file_len: self.max_input,
            ..crate::protocol::Limits::default()
        }
    }
}

/// A positive size such as `256M` (see [`crate::server::store::parse_size`]).
fn parse_positive_size(text: &str) -> Result<u64, String> {
    match crate::server::store::parse_size(text) {
        Ok(0) => Err(format!("{text:?} is not a usable size")),
        Ok(bytes) => Ok(bytes),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_positive_size("512"), Ok(512));
        assert_eq!(parse_positive_size("64K"), Ok(64 << 10));
        assert_eq!(parse_positive_size("256m"), Ok(256 << 20));
        assert_eq!(parse_positive_size("1G"), Ok(1 << 30));
        assert!(parse_positive_size("0").is_err());
        assert!(parse_positive_size("lots").is_err());
        assert!(parse_positive_size("99999999999G").is_err());
    }

    #[test]
    fn defaults_follow_distccd() {
        #[derive(clap::Parser)]
        struct Options {
            #[command(flatten)]
            settings: BoxSettings,
        }
        let settings = <Options as clap::Parser>::parse_from(["sshcc"]).settings;
        assert_eq!(settings.nice, 5);
        assert_eq!(settings.sandbox, SandboxMode::Auto);
        assert_eq!(settings.max_input, 256 << 20);
        assert_eq!(settings.cache_size, 10 << 30);
    }
}
