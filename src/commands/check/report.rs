//! `sshcc check`'s findings as data: the document `--json` prints (its fields are only
//! ever added) and the text output is rendered from.

use std::path::PathBuf;

use serde::Serialize;

use crate::toolchain::{Fingerprint, Policy};

/// `sshcc check --json`'s document. Later versions may add fields but do not rename
/// or remove any; a field that does not apply to a host is `null` (lists are empty).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The version of the sshcc that ran the check.
    pub sshcc_version: String,
    /// Whether every host passed; the exit status is 0 exactly when this is true.
    pub ok: bool,
    /// One per host list entry, in list order.
    pub hosts: Vec<HostReport>,
}

/// One host list entry.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// The entry as written in the host list, e.g. `@box/8` or `buildbox:3632`.
    pub entry: String,
    /// `ssh`, `tcp` or `local`.
    pub kind: &'static str,
    /// Job slots (`/N`).
    pub slots: u32,
    /// Whether this host passed: usable, and every compiler that exists locally
    /// matches.
    pub ok: bool,
    /// Why builds cannot use the host: unreachable, authentication refused, remote
    /// command missing, no allowlist.
    pub error: Option<String>,
    /// What else to know, e.g. that the toolchain of a stock distccd cannot be
    /// verified, or that the entry runs jobs locally.
    pub note: Option<String>,
    /// Where the connection went: `user@host:port` (SSH) or `host:port` (TCP).
    pub address: Option<String>,
    /// Milliseconds to connect (SSH: including key exchange and authentication).
    pub connect_ms: Option<u64>,
    /// How the SSH connection authenticated, e.g. `key /home/me/.ssh/id_ed25519`,
    /// `agent key me@laptop`, `certificate /home/me/.ssh/id_ed25519-cert.pub`.
    pub auth_method: Option<String>,
    /// Why the box's host key was trusted, e.g. `known_hosts`,
    /// `host certificate (CA SHA256:…)`, `learned (accept-new): …`.
    pub host_key: Option<String>,
    /// The remote command (the entry's `:command`, config.toml's, or `sshcc`).
    pub command: Option<String>,
    /// Milliseconds for `command --box-info` to answer.
    pub box_info_ms: Option<u64>,
    /// What an sshcc box says about itself.
    pub remote: Option<RemoteSshcc>,
    /// The `toolchain_check` policy for this host: `strict`, `version` or `off`.
    pub toolchain_check: Option<Policy>,
    /// The box's allowlisted compilers, in allowlist order.
    pub compilers: Vec<CompilerReport>,
}

/// An sshcc box's own report, without its compilers.
#[derive(Debug, Serialize)]
pub struct RemoteSshcc {
    pub sshcc_version: String,
    /// The mux protocol version it speaks.
    pub protocol: u32,
    pub hostname: String,
    /// The allowlist file, if it has one.
    pub allowlist: Option<String>,
    /// Why it has no usable allowlist (it then runs nothing).
    pub allowlist_error: Option<String>,
    /// The box owner's limits and sandbox (absent from older boxes).
    pub limits: Option<crate::server::identity::LimitsInfo>,
    /// Jobs the box served for everyone, and compiles running now (absent from older
    /// boxes).
    pub counters: Option<crate::server::counters::BoxCounters>,
    /// Where this box's jobs are preprocessed: `remote` (from its content store) or
    /// `local`, and the store (absent from boxes older than remote preprocessing).
    pub preprocessing: &'static str,
    pub store: Option<crate::server::identity::StoreInfo>,
}

/// One allowlisted compiler, compared with its local counterpart: the compiler of the
/// same name on the local PATH (sshcc's own masquerade links skipped, ccache wrappers
/// followed).
#[derive(Debug, Serialize)]
pub struct CompilerReport {
    /// The allowlist entry, as the box's file has it.
    pub entry: String,
    pub status: CompilerStatus,
    /// The difference (`mismatch`) or the error (`box-error`, `local-error`).
    pub detail: Option<String>,
    /// The box's compiler.
    pub remote: Option<Toolchain>,
    /// The local compiler.
    pub local: Option<Toolchain>,
}

/// How an allowlisted compiler compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompilerStatus {
    /// The same toolchain (as far as the host's `toolchain_check` looks).
    Match,
    /// Another toolchain: the dispatcher sends this compiler's jobs elsewhere.
    Mismatch,
    /// `toolchain_check` is `off` for this host.
    NotChecked,
    /// No compiler of that name here, so no local job can go there.
    MissingLocally,
    /// The box cannot run or fingerprint its compiler.
    BoxError,
    /// The local compiler exists but cannot be fingerprinted.
    LocalError,
}

impl CompilerStatus {
    /// Whether this makes the check fail: a compiler that exists here would not be
    /// (or should not be) used on the box.
    pub fn fails(self) -> bool {
        matches!(
            self,
            CompilerStatus::Mismatch | CompilerStatus::BoxError | CompilerStatus::LocalError
        )
    }

    /// How the text output names it.
    pub fn text(self) -> &'static str {
        match self {
            CompilerStatus::Match => "match",
            CompilerStatus::Mismatch => "mismatch",
            CompilerStatus::NotChecked => "not checked",
            CompilerStatus::MissingLocally => "missing locally",
            CompilerStatus::BoxError => "box error",
            CompilerStatus::LocalError => "local error",
        }
    }
}

/// One side's compiler, from its fingerprint.
#[derive(Debug, Serialize)]
pub struct Toolchain {
    /// The real compiler (symlinks and ccache followed).
    pub compiler: PathBuf,
    /// `-dumpmachine`.
    pub target: String,
    /// The first line of `--version`.
    pub version: String,
    /// A short digest of the whole fingerprint: equal digests, identical toolchains.
    pub digest: String,
}

impl From<&Fingerprint> for Toolchain {
    fn from(fingerprint: &Fingerprint) -> Self {
        Toolchain {
            compiler: fingerprint.compiler.clone(),
            target: fingerprint.target.clone(),
            version: fingerprint.version.clone(),
            digest: fingerprint.digest(),
        }
    }
}
