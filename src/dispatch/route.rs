//! What a wrapper asks for with each job: the hosts it may use ([`Route`]) and the
//! compiler a box must share ([`ToolchainCheck`]), with the policy for each host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::ReapiConfig;
use crate::hosts::{HostKind, HostSpec};
use crate::ssh::config::ClientOptions;
use crate::toolchain::Policy;

/// Where a wrapper may send one job.
#[derive(Debug, Clone)]
pub struct Route {
    pub hosts: Vec<HostSpec>,
    /// How to run `ssh` for SSH hosts (`SSHCC_SSH_CONFIG`, `DISTCC_SSH`'s options).
    pub ssh: ClientOptions,
    /// `DISTCC_BACKOFF_PERIOD`: how long a failed host is avoided.
    pub backoff: Duration,
    /// Host entries (by [`HostSpec::text`]) that already failed this job.
    pub excluded: Vec<String>,
    /// The compiler whose toolchain a box must share; `None` skips the check.
    pub toolchain: Option<ToolchainCheck>,
    /// config.toml's settings of REAPI endpoints, by `host:port`.
    pub reapi: BTreeMap<String, ReapiConfig>,
}

impl Route {
    /// The settings this route gives the REAPI engine of `spec` (its config.toml
    /// table, or the defaults); `None` for other hosts.
    pub(super) fn reapi_settings(&self, spec: &HostSpec) -> Option<ReapiConfig> {
        match &spec.kind {
            HostKind::Reapi { authority, .. } => {
                Some(self.reapi.get(authority).cloned().unwrap_or_default())
            }
            _ => None,
        }
    }
}

/// A job's compiler, to be matched against each box's before the box gets the job.
#[derive(Debug, Clone)]
pub struct ToolchainCheck {
    /// The compiler name the box is asked to run.
    pub compiler: String,
    /// The compiler a local compile would run (symlinks and ccache resolved).
    pub local: PathBuf,
    /// How strict to be, by host name as written in the host list (`*`: the rest).
    pub policies: Vec<(String, Policy)>,
}

impl ToolchainCheck {
    pub(super) fn policy_for(&self, spec: &HostSpec) -> Policy {
        let name = match &spec.kind {
            HostKind::Ssh { host, .. } | HostKind::Tcp { host, .. } => host.as_str(),
            HostKind::Reapi { authority, .. } => authority.as_str(),
            HostKind::Local => "localhost",
        };
        let named = |wanted: &str| {
            self.policies
                .iter()
                .find(|(host, _)| host == wanted)
                .map(|(_, policy)| *policy)
        };
        named(name).or_else(|| named("*")).unwrap_or_default()
    }
}
