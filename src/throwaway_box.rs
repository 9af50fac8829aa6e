//! A private, throwaway OpenSSH `sshd` on 127.0.0.1 that stands in for a
//! remote build box.
//!
//! sshcc's whole job is talking to build boxes over SSH, so tests exercise a
//! real OpenSSH server instead of a mock: host-key checking, public-key
//! authentication, `environment=` options reaching the remote process and
//! connections dying when a host dies all behave exactly as they would against
//! a real machine. The quick-start demo and the benchmarks reuse it for the
//! same reason.
//!
//! A [`ThrowawayBox`] owns a temporary directory (host key, client key,
//! `authorized_keys`, `sshd_config`, `known_hosts`, a client `ssh_config` and
//! the sshd log) and the `sshd` process serving it. It never reads or writes
//! the real `~/.ssh` of the user running the tests: clients reach the box with
//! `ssh -F <ssh_config> box`, which ignores every other client configuration.
//! Its sessions get their own slot, temporary, cache, state and config
//! directories inside the box's directory, so that what runs on the box (which
//! logs in as the same user) leaves the real home alone too.
//! Dropping the box kills sshd together with every session it spawned and
//! deletes the directory.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

mod account;
pub use account::ensure_account;

/// sshd refuses to start from a relative path (it re-executes itself).
const SSHD: &str = "/usr/sbin/sshd";
/// The `Host` alias the generated client `ssh_config` defines.
const HOST_ALIAS: &str = "box";
/// How long one sshd gets to accept a real login before we give up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Picking a free port and letting sshd bind it later is racy; a lost race
/// just costs a retry on a fresh port.
const MAX_ATTEMPTS: usize = 5;
/// The variables a box gives its sessions, unless the caller sets them, and the
/// directory inside the box's own that each names (see `BoxBuilder::with_own_dirs`).
const SESSION_DIRS: [(&str, &str); 7] = [
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

/// Configures a [`ThrowawayBox`]; obtained from [`ThrowawayBox::builder`].
#[derive(Debug, Clone, Default)]
pub struct BoxBuilder {
    env: Vec<(String, String)>,
    max_sessions: Option<u32>,
    login_user: Option<String>,
    /// A network namespace to run sshd in, and its address there.
    netns: Option<(String, Ipv4Addr)>,
    host_certificate: Option<CertificateRequest>,
    trusted_user_ca_keys: Option<PathBuf>,
    forced_command: Option<String>,
}

/// What a certificate made by [`certify`] says.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// The CA's private key.
    pub ca_key: PathBuf,
    /// `None`: no principals (OpenSSH then accepts the certificate for any name).
    pub principals: Option<String>,
    /// `ssh-keygen -V`, e.g. `always:forever` or `-2d:-1d`.
    pub validity: String,
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

    /// Starts sshd and returns once a real `ssh` login to it has succeeded.
    pub fn start(&self) -> Result<ThrowawayBox> {
        let started = Instant::now();
        ensure!(
            Path::new(SSHD).exists(),
            "{SSHD} not found; install openssh-server (scripts/install-deps.sh)"
        );
        let user = match &self.login_user {
            Some(user) => user.clone(),
            None => current_user_name()?,
        };
        ensure_privsep_dir()?;

        let dir = tempfile::Builder::new()
            .prefix("sshcc-box-")
            .tempdir_in(temp_base())
            .context("creating the box's temporary directory")?;
        let paths = BoxPaths::new(dir.path());
        ensure!(
            !paths.dir.to_string_lossy().contains(char::is_whitespace),
            "temporary directory {} contains whitespace, which distcc's DISTCC_SSH splitting cannot handle",
            paths.dir.display()
        );
        let this = self.with_own_dirs(&paths.dir)?;
        let authorized_key_options = this.authorized_key_options()?;

        keygen(&paths.host_key, "sshcc-throwaway-host")?;
        keygen(&paths.client_key, "sshcc-throwaway-client")?;
        let client_pub = read_public_key(&paths.client_key)?;
        fs::write(
            &paths.authorized_keys,
            format!("{authorized_key_options}{client_pub} sshcc-throwaway-client\n"),
        )
        .context("writing authorized_keys")?;
        if self.login_user.is_some() {
            // sshd reads authorized_keys with the login user's rights.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o711))
                .context("opening the box directory to the login user")?;
            fs::set_permissions(&paths.authorized_keys, fs::Permissions::from_mode(0o644))
                .context("opening authorized_keys to the login user")?;
        }
        let host_pub = read_public_key(&paths.host_key)?;

        let mut lost_races = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            // A fresh namespace has every port free, and ours cannot be probed there.
            let port = match &self.netns {
                Some(_) => 20_000 + (std::process::id() % 20_000) as u16 + attempt as u16,
                None => pick_port()?,
            };
            this.write_configs(&paths, &user, &host_pub, port)?;
            let log = File::create(&paths.log).context("creating the sshd log")?;
            let mut sshd = match &self.netns {
                Some((netns, _)) => {
                    let mut command = Command::new("ip");
                    command.args(["netns", "exec", netns, SSHD]);
                    command
                }
                None => Command::new(SSHD),
            };
            let mut child = sshd
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&paths.sshd_config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("duplicating the sshd log handle")?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {SSHD}"))?;

            match wait_until_ready(&mut child, &paths, self.netns.as_ref(), port) {
                Ok(()) => {
                    if let Some(command) = &self.forced_command
                        && let Err(err) = restrict_client_key(&paths, command)
                    {
                        kill_tree(&mut child);
                        return Err(err);
                    }
                    tracing::debug!(
                        port,
                        attempt,
                        elapsed = ?started.elapsed(),
                        dir = %paths.dir.display(),
                        "throwaway sshd ready"
                    );
                    return Ok(ThrowawayBox {
                        child: Some(child),
                        port,
                        paths,
                        _dir: dir,
                    });
                }
                Err(NotReady::Exited(status)) if lost_port_race(&paths.log) => {
                    let _ = writeln!(
                        lost_races,
                        "--- attempt {attempt}: sshd on port {port} exited ({status}); log:\n{}",
                        read_log(&paths.log)
                    );
                }
                Err(NotReady::Exited(status)) => {
                    bail!(
                        "throwaway sshd exited ({status}) during startup; sshd log:\n{}",
                        read_log(&paths.log)
                    );
                }
                Err(NotReady::Failed(err)) => {
                    kill_tree(&mut child);
                    return Err(err.context(format!(
                        "throwaway sshd on port {port} did not become usable; sshd log:\n{}{}",
                        read_log(&paths.log),
                        if lost_races.is_empty() {
                            String::new()
                        } else {
                            format!("\nearlier attempts:\n{lost_races}")
                        }
                    )));
                }
            }
        }
        bail!("throwaway sshd exited on each of {MAX_ATTEMPTS} ports:\n{lost_races}")
    }

    /// Gives the box's sessions directories of their own inside the box's directory,
    /// each unless the caller chose it: compile slots (`SSHCC_LOCK_DIR`), so that the
    /// boxes of concurrent tests never wait for each other's slots, nor for a frozen
    /// box's; and a private `TMPDIR` (job directories), cache, state and config
    /// (`XDG_*_HOME`, so `sshcc --mux`'s toolchain fingerprints), `DISTCC_DIR` and
    /// `CCACHE_DIR`, so that the box's programs never write into the real home of the
    /// account it logs in as. Each box stands for a machine of its own.
    ///
    /// A test run's marker `SSHCC_TEST_RUN_ID` (see `scripts/no-trace.sh`), which sshd
    /// would not pass on, reaches every session too, so that a process the box leaves
    /// behind can be told apart.
    fn with_own_dirs(&self, dir: &Path) -> Result<BoxBuilder> {
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

    /// Renders the `environment="K=V",` prefix of the authorized_keys line.
    fn authorized_key_options(&self) -> Result<String> {
        let mut options = String::new();
        for (key, value) in &self.env {
            // sshd silently drops names it considers invalid; fail loudly instead.
            ensure!(
                key.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "invalid environment variable name {key:?}"
            );
            ensure!(
                !value.contains(['\n', '\r', '\0']),
                "environment value for {key} contains a line break or NUL, which authorized_keys cannot carry"
            );
            // sshd's option parser knows one escape, \" for a quote, and takes
            // every other backslash literally, so a trailing backslash would
            // swallow the closing quote.
            ensure!(
                !value.ends_with('\\'),
                "environment value for {key} ends with a backslash, which authorized_keys cannot carry"
            );
            let _ = write!(
                options,
                "environment=\"{key}={}\",",
                value.replace('"', "\\\"")
            );
        }
        if options.is_empty() {
            return Ok(options);
        }
        options.pop();
        options.push(' ');
        Ok(options)
    }

    fn write_configs(&self, paths: &BoxPaths, user: &str, host_pub: &str, port: u16) -> Result<()> {
        let address = self.address();
        let mut sshd_config = format!(
            "ListenAddress {address}\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             UsePAM no\n\
             # The box lives under /tmp, whose permissions StrictModes rejects.\n\
             StrictModes no\n\
             PermitUserEnvironment yes\n\
             # ~/.ssh/rc belongs to the real user, not to the box.\n\
             PermitUserRC no\n\
             PidFile none\n\
             PermitRootLogin prohibit-password\n\
             # MaxSessions and MaxStartups keep sshd's defaults: sshcc must work\n\
             # against a box nobody has tuned.\n\
             LogLevel VERBOSE\n",
            host_key = paths.host_key.display(),
            authorized_keys = paths.authorized_keys.display(),
        );
        if let Some(n) = self.max_sessions {
            let _ = writeln!(sshd_config, "MaxSessions {n}");
        }
        if let Some(request) = &self.host_certificate {
            let mut public = paths.host_key.clone().into_os_string();
            public.push(".pub");
            let certificate = certify(Path::new(&public), "sshcc-throwaway-host", true, request)?;
            let _ = writeln!(sshd_config, "HostCertificate {}", certificate.display());
        }
        if let Some(ca) = &self.trusted_user_ca_keys {
            let _ = writeln!(sshd_config, "TrustedUserCAKeys {}", ca.display());
            // A certificate login never reads authorized_keys and its environment=
            // options, so the box's environment comes from sshd itself: all on one
            // line, because sshd uses only its first SetEnv line.
            if !self.env.is_empty() {
                sshd_config.push_str("SetEnv");
                for (key, value) in &self.env {
                    // Quoted, with sshd's escapes for a quote and a backslash.
                    let word = format!("{key}={value}")
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"");
                    let _ = write!(sshd_config, " \"{word}\"");
                }
                sshd_config.push('\n');
            }
        }
        fs::write(&paths.sshd_config, sshd_config).context("writing sshd_config")?;

        fs::write(
            &paths.known_hosts,
            format!("[{address}]:{port} {host_pub}\n"),
        )
        .context("writing known_hosts")?;

        let ssh_config = format!(
            "Host {HOST_ALIAS}\n  \
               HostName {address}\n  \
               Port {port}\n  \
               User {user}\n  \
               IdentityFile {client_key}\n  \
               IdentitiesOnly yes\n  \
               UserKnownHostsFile {known_hosts}\n  \
               StrictHostKeyChecking yes\n  \
               BatchMode yes\n  \
               LogLevel ERROR\n",
            client_key = paths.client_key.display(),
            known_hosts = paths.known_hosts.display(),
        );
        fs::write(&paths.ssh_config, ssh_config).context("writing ssh_config")?;
        Ok(())
    }
}

impl BoxBuilder {
    fn address(&self) -> Ipv4Addr {
        self.netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, address)| *address)
    }
}

/// A running throwaway sshd; see the [module docs](self).
#[derive(Debug)]
pub struct ThrowawayBox {
    child: Option<Child>,
    port: u16,
    paths: BoxPaths,
    // Declared last so the directory outlives the Drop impl's kill of sshd.
    _dir: tempfile::TempDir,
}

impl ThrowawayBox {
    pub fn builder() -> BoxBuilder {
        BoxBuilder::default()
    }

    /// The TCP port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` name to use together with [`ssh_config`](Self::ssh_config).
    pub fn host_alias(&self) -> &str {
        HOST_ALIAS
    }

    /// Client configuration defining [`host_alias`](Self::host_alias); pass
    /// it as `ssh -F <path>`.
    pub fn ssh_config(&self) -> &Path {
        &self.paths.ssh_config
    }

    pub fn known_hosts(&self) -> &Path {
        &self.paths.known_hosts
    }

    /// The private key the box accepts.
    pub fn client_key(&self) -> &Path {
        &self.paths.client_key
    }

    /// The box's temporary directory, deleted when the box is dropped.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// `ssh -F <ssh_config>`, suitable for distcc's `DISTCC_SSH`. distcc
    /// splits that variable at spaces, which is why the box's paths never
    /// contain any.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.paths.ssh_config.display())
    }

    /// `ssh -F <ssh_config> box`, ready for the remote command's arguments.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.paths.ssh_config).arg(HOST_ALIAS);
        cmd
    }

    /// Everything sshd has logged so far (LogLevel VERBOSE).
    pub fn log(&self) -> String {
        read_log(&self.paths.log)
    }

    /// Kills sshd and every session it spawned, as if the host had died, and
    /// waits for sshd to exit. Calling it again does nothing.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child);
        }
    }

    /// The box reboots: sshd and every session die as in [`stop`](Self::stop), nothing
    /// listens for `downtime`, then sshd starts again on the same port with the same
    /// keys and configuration. Returns once `ssh box true` succeeds again, so not for
    /// boxes in a network namespace or with a [forced
    /// command](BoxBuilder::forced_command).
    pub fn restart(&mut self, downtime: Duration) -> Result<()> {
        self.stop();
        thread::sleep(downtime);
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.paths.log)
            .context("opening the sshd log")?;
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.paths.sshd_config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the sshd log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {SSHD}"))?;
        match wait_until_ready(&mut child, &self.paths, None, self.port) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(NotReady::Exited(status)) => bail!(
                "restarted sshd exited ({status}); sshd log:\n{}",
                self.log()
            ),
            Err(NotReady::Failed(err)) => {
                kill_tree(&mut child);
                Err(err.context(format!(
                    "restarted sshd on port {} did not become usable; sshd log:\n{}",
                    self.port,
                    self.log()
                )))
            }
        }
    }

    /// The box hangs: sshd and every session are stopped (SIGSTOP). The kernel still
    /// accepts TCP connections and acknowledges data, but nothing answers.
    pub fn freeze(&self) {
        self.signal_tree(libc::SIGSTOP);
    }

    /// Undoes [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal_tree(libc::SIGCONT);
    }

    fn signal_tree(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let root = child.id() as libc::pid_t;
            for pid in std::iter::once(root).chain(descendants(root)) {
                // SAFETY: kill has no memory-safety preconditions; `pid` is sshd or
                // one of its descendants.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }
}

impl Drop for ThrowawayBox {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct BoxPaths {
    dir: PathBuf,
    host_key: PathBuf,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    sshd_config: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    log: PathBuf,
}

impl BoxPaths {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            host_key: dir.join("host_ed25519_key"),
            client_key: dir.join("client_ed25519_key"),
            authorized_keys: dir.join("authorized_keys"),
            sshd_config: dir.join("sshd_config"),
            known_hosts: dir.join("known_hosts"),
            ssh_config: dir.join("ssh_config"),
            log: dir.join("sshd.log"),
        }
    }
}

enum NotReady {
    /// sshd died on its own, most likely because the port was taken meanwhile.
    Exited(ExitStatus),
    Failed(anyhow::Error),
}

/// Waits for sshd's banner, then proves the whole setup (host key, client
/// key, user) with a real login so that a broken box fails here rather than
/// somewhere inside the test that uses it.
fn wait_until_ready(
    child: &mut Child,
    paths: &BoxPaths,
    netns: Option<&(String, Ipv4Addr)>,
    port: u16,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let exited = |child: &mut Child| match child.try_wait() {
        Ok(status) => Ok(status),
        Err(err) => Err(NotReady::Failed(anyhow!(err).context("polling sshd"))),
    };
    if let Some((netns, _)) = netns {
        // The box may be unreachable from here by design: log in from inside its
        // namespace, retrying until sshd listens.
        loop {
            if let Some(status) = exited(child)? {
                return Err(NotReady::Exited(status));
            }
            let login = run_with_deadline(
                Command::new("ip")
                    .args(["netns", "exec", netns, "ssh", "-F"])
                    .arg(&paths.ssh_config)
                    .args([HOST_ALIAS, "true"]),
                Instant::now() + Duration::from_secs(5),
            );
            match login {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(err) => {
                    return Err(NotReady::Failed(
                        err.context("test login inside the namespace failed"),
                    ));
                }
            }
        }
    }
    loop {
        if let Some(status) = exited(child)? {
            return Err(NotReady::Exited(status));
        }
        if banner_seen(port) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(anyhow!(
                "no SSH banner on port {port} within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }

    let login = run_with_deadline(
        Command::new("ssh")
            .arg("-F")
            .arg(&paths.ssh_config)
            .arg(HOST_ALIAS)
            .arg("true"),
        deadline,
    );
    match login {
        Ok(()) => Ok(()),
        Err(err) => {
            // The banner may have come from whoever stole the port (the host
            // key check then fails); give our sshd a moment to die of it.
            thread::sleep(Duration::from_millis(100));
            match exited(child)? {
                Some(status) => Err(NotReady::Exited(status)),
                None => Err(NotReady::Failed(
                    err.context("test login `ssh box true` failed"),
                )),
            }
        }
    }
}

/// Prefixes the client key's authorized_keys line with `command="…",restrict`; sshd
/// reads the file afresh for every login.
fn restrict_client_key(paths: &BoxPaths, command: &str) -> Result<()> {
    ensure!(
        !command.contains(['"', '\\', '\n']),
        "forced command {command:?} needs quoting authorized_keys cannot express"
    );
    let line = fs::read_to_string(&paths.authorized_keys).context("reading authorized_keys")?;
    let restricted = match line.strip_prefix("environment=") {
        Some(_) => format!("command=\"{command}\",restrict,{line}"),
        None => format!("command=\"{command}\",restrict {line}"),
    };
    fs::write(&paths.authorized_keys, restricted).context("restricting authorized_keys")
}

fn banner_seen(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    // Reading the whole line lets us close cleanly; leaving part of it unread
    // would reset the connection and put a scary line into sshd's log.
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    while banner.len() < 255 && !banner.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => banner.push(byte[0]),
            _ => return false,
        }
    }
    banner.starts_with(b"SSH-2.0-")
}

/// Whether sshd died because its port was taken, the one failure a fresh port
/// can fix.
fn lost_port_race(log: &Path) -> bool {
    read_log(log).contains("Address already in use")
}

/// Runs `cmd` to completion, killing it at `deadline` so that a wedged sshd
/// cannot hang the test suite.
fn run_with_deadline(cmd: &mut Command, deadline: Instant) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ssh")?;
    let status = loop {
        if let Some(status) = child.try_wait().context("polling ssh")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("ssh did not finish within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    bail!("ssh exited with {status}: {}", stderr.trim())
}

/// Lets the kernel choose a free port. It is released again before sshd binds
/// it, so another process can grab it in between; the caller retries then.
fn pick_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    ssh_keygen(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        path,
    )
}

/// Signs `public_key` (a `.pub` file) with `ssh-keygen -s` as `request` says, as a
/// host certificate if `host`, else a user certificate; returns the certificate's
/// path (`<key>-cert.pub`, where OpenSSH looks for it).
pub fn certify(
    public_key: &Path,
    identity: &str,
    host: bool,
    request: &CertificateRequest,
) -> Result<PathBuf> {
    let mut command = Command::new("ssh-keygen");
    command.arg("-q").arg("-s").arg(&request.ca_key).args([
        "-I",
        identity,
        "-V",
        &request.validity,
    ]);
    if host {
        command.arg("-h");
    }
    if let Some(principals) = &request.principals {
        command.args(["-n", principals]);
    }
    ssh_keygen(command.arg(public_key), public_key)?;
    let stem = public_key.to_string_lossy();
    Ok(PathBuf::from(format!(
        "{}-cert.pub",
        stem.strip_suffix(".pub").unwrap_or(&stem)
    )))
}

fn ssh_keygen(command: &mut Command, path: &Path) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen (install openssh-client)")?;
    ensure!(
        out.status.success(),
        "ssh-keygen for {} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The `type base64` part of `<key>.pub`, without ssh-keygen's comment.
fn read_public_key(private_key: &Path) -> Result<String> {
    let mut pub_path = private_key.as_os_str().to_owned();
    pub_path.push(".pub");
    let text = fs::read_to_string(&pub_path)
        .with_context(|| format!("reading {}", Path::new(&pub_path).display()))?;
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => Ok(format!("{kind} {blob}")),
        _ => bail!("malformed public key in {}", Path::new(&pub_path).display()),
    }
}

fn read_log(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// `$TMPDIR` unless it contains whitespace: every path of the box ends up in
/// `DISTCC_SSH`, which distcc splits at spaces.
fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    if base.to_string_lossy().contains(char::is_whitespace) {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// sshd insists on its privilege-separation directory, which Debian only
/// creates when the system ssh service starts (never, in a container).
fn ensure_privsep_dir() -> Result<()> {
    let dir = Path::new("/run/sshd");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if dir.exists() || unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => Ok(()),
        // Another box in a parallel test won the race.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(anyhow!(err).context("creating /run/sshd")),
    }
}

/// The login name sshd will authenticate: the effective user, looked up in
/// the passwd database because `$USER` is often unset (containers, CI).
fn current_user_name() -> Result<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    crate::system::passwd_entry(uid)
        .map(|(name, _home)| name)
        .ok_or_else(|| anyhow!("uid {uid} has no passwd entry, so sshd cannot log it in"))
}

/// Kills sshd and all its descendants, then reaps sshd.
///
/// Killing only the listener would leave running sessions alone: sshd puts
/// each connection in its own session (setsid), so they escape a process-group
/// kill too. Tests that "kill a host mid-build" need those connections to
/// drop, so the tree is found through /proc. Everything is stopped first so
/// that nothing can fork a new process while the tree is being collected.
fn kill_tree(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let root = child.id() as libc::pid_t;
    let signal = |pid: libc::pid_t, sig: libc::c_int| {
        // SAFETY: kill has no memory-safety preconditions; `pid` is sshd or
        // one of its descendants.
        unsafe { libc::kill(pid, sig) };
    };
    signal(root, libc::SIGSTOP);
    let mut frozen: HashSet<libc::pid_t> = HashSet::from([root]);
    loop {
        let fresh: Vec<_> = descendants(root)
            .into_iter()
            .filter(|pid| !frozen.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &pid in &fresh {
            signal(pid, libc::SIGSTOP);
        }
        frozen.extend(fresh);
    }
    for &pid in &frozen {
        signal(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // The command name may itself contain ") ", so parse after the last one.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &kid in children.get(&pid).into_iter().flatten() {
            found.push(kid);
            queue.push(kid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_stdout(b: &ThrowawayBox, command: &str) -> String {
        let out = b.ssh().arg(command).output().expect("running ssh");
        assert!(
            out.status.success(),
            "ssh {command:?} failed: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            b.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    #[test]
    fn env_reaches_the_session() {
        let started = Instant::now();
        let b = ThrowawayBox::builder()
            .env("SSHCC_TEST_VAR", "hello world")
            .env("SSHCC_TRICKY", r#"say "hi" \ C:\dir\"x"#)
            .start()
            .expect("starting box");
        eprintln!("box started in {:?}", started.elapsed());
        assert_eq!(remote_stdout(&b, "echo $SSHCC_TEST_VAR"), "hello world\n");
        assert_eq!(
            remote_stdout(&b, r#"printf '%s\n' "$SSHCC_TRICKY""#),
            "say \"hi\" \\ C:\\dir\\\"x\n"
        );

        // Exactly what distcc will run with DISTCC_SSH.
        let mut words = b.ssh_command();
        words.push_str(" box echo ok");
        let mut words = words.split(' ');
        let out = Command::new(words.next().unwrap())
            .args(words)
            .output()
            .expect("running ssh_command");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }

    #[test]
    fn two_boxes_run_at_once() {
        let a = ThrowawayBox::builder().env("WHICH", "a").start().unwrap();
        let b = ThrowawayBox::builder()
            .env("WHICH", "b")
            .max_sessions(3)
            .start()
            .unwrap();
        assert_ne!(a.port(), b.port());
        assert_ne!(a.dir(), b.dir());
        assert_eq!(remote_stdout(&a, "echo $WHICH"), "a\n");
        assert_eq!(remote_stdout(&b, "echo $WHICH"), "b\n");
        assert!(
            fs::read_to_string(b.dir().join("sshd_config"))
                .unwrap()
                .contains("MaxSessions 3\n")
        );
    }

    #[test]
    fn stop_drops_running_sessions() {
        let mut b = ThrowawayBox::builder().start().unwrap();
        let mut session = b
            .ssh()
            .arg("echo started; sleep 30")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Pull the plug only once the remote command is really running.
        let mut started = [0u8; 8];
        session
            .stdout
            .take()
            .unwrap()
            .read_exact(&mut started)
            .unwrap();
        assert_eq!(&started, b"started\n");
        let stopped_at = Instant::now();
        b.stop();
        b.stop();
        let status = session.wait().unwrap();
        assert!(!status.success());
        assert!(stopped_at.elapsed() < Duration::from_secs(10));
        assert!(
            b.ssh()
                .arg("true")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| !s.success())
        );
    }

    #[test]
    fn drop_removes_the_directory() {
        let b = ThrowawayBox::builder().start().unwrap();
        let dir = b.dir().to_path_buf();
        assert!(dir.join("sshd_config").exists());
        drop(b);
        assert!(!dir.exists());
    }

    #[test]
    fn env_and_private_dirs_reach_certificate_logins() {
        // A key the box's authorized_keys does not list, certified by a CA it trusts:
        // only sshd_config's SetEnv can give such a session its environment.
        let keys = tempfile::tempdir().unwrap();
        let (ca, key) = (keys.path().join("ca"), keys.path().join("user"));
        keygen(&ca, "ca").unwrap();
        keygen(&key, "user").unwrap();
        let b = ThrowawayBox::builder()
            .trusted_user_ca_keys(keys.path().join("ca.pub"))
            .env("SSHCC_FIRST", "1")
            .env("SSHCC_TRICKY", r#"say "hi" \ C:\dir\"x"#)
            .start()
            .unwrap();
        let request = CertificateRequest {
            ca_key: ca,
            principals: Some(current_user_name().unwrap()),
            validity: "always:forever".into(),
        };
        certify(&keys.path().join("user.pub"), "user", false, &request).unwrap();
        let config = keys.path().join("ssh_config");
        let text = fs::read_to_string(b.ssh_config()).unwrap().replace(
            &b.client_key().display().to_string(),
            &key.display().to_string(),
        );
        fs::write(&config, text).unwrap();
        let out = Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .args([
                "box",
                r#"printf '%s|%s|%s\n' "$SSHCC_FIRST" "$SSHCC_TRICKY" "$XDG_CACHE_HOME""#,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            b.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "1|say \"hi\" \\ C:\\dir\\\"x|{}\n",
                b.dir().join("cache").display()
            )
        );
    }

    #[test]
    fn rejects_unrepresentable_env() {
        assert!(ThrowawayBox::builder().env("A B", "x").start().is_err());
        assert!(ThrowawayBox::builder().env("A", "x\ny").start().is_err());
        assert!(ThrowawayBox::builder().env("A", "x\\").start().is_err());
    }
}
