//! Keys and certificates, made with `ssh-keygen`: the box's host and client keys, and
//! host or user certificates signed by a test CA ([`certify`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

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

pub(super) fn keygen(path: &Path, comment: &str) -> Result<()> {
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
pub(super) fn read_public_key(private_key: &Path) -> Result<String> {
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
