//! Starting a box ([`BoxBuilder::start`]): a fresh directory with new keys, the files
//! written for a port, sshd spawned and proved usable, and a fresh port whenever another
//! process took the chosen one meanwhile.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::builder::BoxBuilder;
use super::configs::restrict_client_key;
use super::keys::{keygen, read_public_key};
use super::layout::{BoxPaths, read_log, temp_base};
use super::process::{SSHD, kill_tree, spawn_sshd};
use super::readiness::{NotReady, lost_port_race, wait_until_ready};
use super::running::ThrowawayBox;

/// Picking a free port and letting sshd bind it later is racy; a lost race
/// just costs a retry on a fresh port.
const MAX_ATTEMPTS: usize = 5;

impl BoxBuilder {
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
            let netns = self.netns.as_ref().map(|(netns, _)| netns.as_str());
            let mut child = spawn_sshd(&paths.sshd_config, netns, log)?;

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
}

/// Lets the kernel choose a free port. It is released again before sshd binds
/// it, so another process can grab it in between; the caller retries then.
fn pick_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
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
pub(super) fn current_user_name() -> Result<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    crate::system::passwd_entry(uid)
        .map(|(name, _home)| name)
        .ok_or_else(|| anyhow!("uid {uid} has no passwd entry, so sshd cannot log it in"))
}
