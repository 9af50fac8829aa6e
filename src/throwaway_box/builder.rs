//! [`BoxBuilder`]: what a box is to be (its sessions' environment, sshd's options, the
//! login user, certificates, a network namespace), and the private directories every
//! box gives its sessions. Starting one is in `start`, the files it writes in `configs`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::keys::CertificateRequest;

/// The variables a box gives its sessions, unless the caller sets them, and the
/// directory inside the box's own that each names (see `BoxBuilder::with_own_dirs`).
///
/// `HOME` too: sshd gives a session the account's real home, where bash (built by
/// Debian to read `~/.bashrc` under sshd even when not interactive) would run the
/// real user's start-up files, e.g. `pyenv init`, which rewrites `~/.pyenv/shims`.
const SESSION_DIRS: [(&str, &str); 8] = [
    ("HOME", "home"),
    ("SSHCC_LOCK_DIR", "slots"),
    ("TMPDIR", "tmp"),
    ("XDG_CACHE_HOME", "cache"),
    ("XDG_STATE_HOME", "state"),
    ("XDG_CONFIG_HOME", "config"),
    ("DISTCC_DIR", "distcc"),
    ("CCACHE_DIR", "ccache"),
];
/// Marks every process of one test run (set by `scripts/no-trace.sh`).
const RUN_MARKER: &str = "SSHCC_TEST_RUN_ID";

/// Configures a [`ThrowawayBox`](super::ThrowawayBox); obtained from
/// [`ThrowawayBox::builder`](super::ThrowawayBox::builder).
#[derive(Debug, Clone, Default)]
pub struct BoxBuilder {
    pub(super) env: Vec<(String, String)>,
    pub(super) max_sessions: Option<u32>,
    pub(super) login_user: Option<String>,
    /// A network namespace to run sshd in, and its address there.
    pub(super) netns: Option<(String, Ipv4Addr)>,
    pub(super) host_certificate: Option<CertificateRequest>,
    pub(super) trusted_user_ca_keys: Option<PathBuf>,
    pub(super) forced_command: Option<String>,
}

impl BoxBuilder {
    /// Sets an environment variable for every session on the box.
    ///
    /// It is delivered the way a user's `~/.ssh/environment` reaches distccd
    /// on a real box: through sshd's `PermitUserEnvironment`, here as an
    /// `environment="K=V"` option on the client key's `authorized_keys` line.
    /// Setting the same key twice keeps the last value.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value));
        self
    }

    /// Sets sshd's `MaxSessions` (sessions multiplexed over one connection).
    /// Without it sshd's own default applies.
    pub fn max_sessions(mut self, n: u32) -> Self {
        self.max_sessions = Some(n);
        self
    }

    /// Logs in as `user` instead of the current user, e.g. a build account with a
    /// plain `/bin/sh` so that shell start-up files do not blur measurements. Only
    /// root can serve another account.
    pub fn login_user(mut self, user: impl Into<String>) -> Self {
        self.login_user = Some(user.into());
        self
    }

    /// Runs sshd inside the network namespace `netns` (which the caller set up, e.g.
    /// with `ip netns add` and veth pairs), listening on `address` there. Tests use
    /// this to put a box where only a bastion can reach it. Needs root.
    pub fn in_netns(mut self, netns: impl Into<String>, address: Ipv4Addr) -> Self {
        self.netns = Some((netns.into(), address));
        self
    }

    /// Presents a host certificate (the box's host key signed as `request` says)
    /// besides the plain host key.
    pub fn host_certificate(mut self, request: CertificateRequest) -> Self {
        self.host_certificate = Some(request);
        self
    }

    /// Accepts user certificates signed by the CA whose public key is in `ca_pub`
    /// (sshd's `TrustedUserCAKeys`).
    pub fn trusted_user_ca_keys(mut self, ca_pub: impl Into<PathBuf>) -> Self {
        self.trusted_user_ca_keys = Some(ca_pub.into());
        self
    }

    /// Restricts the client key as a shared build account would: `command="…",restrict`
    /// in authorized_keys, so every login runs `command` (with the client's request in
    /// `SSH_ORIGINAL_COMMAND`) and nothing else. It takes effect once the box has proved
    /// a plain login works.
    pub fn forced_command(mut self, command: impl Into<String>) -> Self {
        self.forced_command = Some(command.into());
        self
    }
    /// Gives the box's sessions directories of their own inside the box's directory,
    /// each unless the caller chose it: compile slots (`SSHCC_LOCK_DIR`), so that the
    /// boxes of concurrent tests never wait for each other's slots, nor for a frozen
    /// box's; and a private `HOME`, `TMPDIR` (job directories), cache, state and config
    /// (`XDG_*_HOME`, so `sshcc --mux`'s toolchain fingerprints), `DISTCC_DIR` and
    /// `CCACHE_DIR`, so that the box's programs never write into the real home of the
    /// account it logs in as. Each box stands for a machine of its own.
    ///
    /// A test run's marker `SSHCC_TEST_RUN_ID` (see `scripts/no-trace.sh`), which sshd
    /// would not pass on, reaches every session too, so that a process the box leaves
    /// behind can be told apart.
    pub(super) fn with_own_dirs(&self, dir: &Path) -> Result<BoxBuilder> {
        use std::os::unix::fs::PermissionsExt;
        let mut this = self.clone();
        for (key, name) in SESSION_DIRS {
            if this.env.iter().any(|(set, _)| set == key) {
                continue;
            }
            let path = dir.join(name);
            fs::create_dir(&path)
                .with_context(|| format!("creating the box's {name} directory"))?;
            // Shared by every account the box serves, as /tmp/sshcc-slots or /tmp would be.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o1777))
                .with_context(|| format!("opening the box's {name} directory to every account"))?;
            this = this.env(key, path.display().to_string());
        }
        if let Ok(run) = std::env::var(RUN_MARKER)
            && !this.env.iter().any(|(key, _)| key == RUN_MARKER)
        {
            this = this.env(RUN_MARKER, run);
        }
        Ok(this)
    }

    pub(super) fn address(&self) -> Ipv4Addr {
        self.netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, address)| *address)
    }
}
