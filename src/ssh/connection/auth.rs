//! Logging in as OpenSSH would, never prompting (a build cannot answer): the
//! configured identity files, each with its certificates first, then the agent
//! (restricted to the configured keys under `IdentitiesOnly`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use russh::client;
use russh::keys::{self, Certificate, PrivateKeyWithHashAlg};

use super::host_key::HostKeyCheck;
use crate::ssh::config::SshTarget;

/// Tries the identity files, then the agent, like OpenSSH; each key's certificates
/// (`CertificateFile`s and `<identity file>-cert.pub` that certify it) go before the
/// key itself. Returns what authenticated (see [`SshConnection::auth_method`]); the
/// error lists what was tried so the user can tell a missing key from a refused one.
pub(super) async fn authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
) -> anyhow::Result<String> {
    let mut tried = Vec::new();
    let certificates = certificates_for(target);
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(key) => Arc::new(key),
            Err(keys::Error::KeyIsEncrypted) => {
                tried.push(format!(
                    "{} (encrypted: load it into ssh-agent)",
                    path.display()
                ));
                continue;
            }
            Err(err) => {
                tried.push(format!("{} (unreadable: {err})", path.display()));
                continue;
            }
        };
        for (cert_path, certificate) in certifying(&certificates, key.public_key()) {
            let result = handle
                .authenticate_openssh_cert(&target.user, key.clone(), certificate.clone())
                .await
                .with_context(|| format!("authenticating with {}", cert_path.display()))?;
            if result.success() {
                return Ok(format!("certificate {}", cert_path.display()));
            }
            tried.push(format!("{} (refused)", cert_path.display()));
        }
        let hash = rsa_hash(handle, key.algorithm()).await?;
        let result = handle
            .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .with_context(|| format!("authenticating with {}", path.display()))?;
        if result.success() {
            return Ok(format!("key {}", path.display()));
        }
        tried.push(format!("{} (refused)", path.display()));
    }
    if target.identity_agent.as_deref() != Some("none") {
        match agent_authenticate(handle, target, &certificates, &mut tried).await {
            Ok(Some(method)) => return Ok(method),
            Ok(None) => {}
            Err(err) => tried.push(format!("ssh-agent ({err:#})")),
        }
    }
    if tried.is_empty() {
        tried.push("no identity file exists and no agent is available".to_string());
    }
    bail!(
        "authentication to {}@{}:{} failed; tried: {}",
        target.user,
        target.hostname,
        target.port,
        tried.join(", ")
    )
}

/// Whether an agent identity is one of the configured ones: the public half of an
/// `IdentityFile` (`<file>.pub`, or the file itself when it is a public key) or a
/// configured certificate.
fn configured(
    target: &SshTarget,
    certificates: &[(PathBuf, Certificate)],
    identity: &keys::agent::AgentIdentity,
) -> bool {
    let key_data = match identity {
        keys::agent::AgentIdentity::PublicKey { key, .. } => key.key_data(),
        keys::agent::AgentIdentity::Certificate { certificate, .. } => certificate.public_key(),
    };
    let public_halves = target.identity_files.iter().flat_map(|path| {
        let mut beside = path.clone().into_os_string();
        beside.push(".pub");
        [PathBuf::from(beside), path.clone()]
    });
    certificates
        .iter()
        .any(|(_, certificate)| certificate.public_key() == key_data)
        || public_halves
            .filter_map(|path| keys::PublicKey::read_openssh_file(&path).ok())
            .any(|public| public.key_data() == key_data)
}

/// Those of `certificates` that certify `key`.
fn certifying<'a>(
    certificates: &'a [(PathBuf, Certificate)],
    key: &keys::PublicKey,
) -> impl Iterator<Item = &'a (PathBuf, Certificate)> {
    certificates
        .iter()
        .filter(move |(_, certificate)| certificate.public_key() == key.key_data())
}

/// The certificates OpenSSH would offer: `CertificateFile`s, then `-cert.pub` beside
/// each identity file. Unreadable ones are skipped with a note, as OpenSSH does.
fn certificates_for(target: &SshTarget) -> Vec<(PathBuf, Certificate)> {
    let beside_identities = target.identity_files.iter().map(|path| {
        let mut name = path.clone().into_os_string();
        name.push("-cert.pub");
        PathBuf::from(name)
    });
    target
        .certificate_files
        .iter()
        .cloned()
        .chain(beside_identities)
        .filter(|path| path.exists())
        .filter_map(|path| match Certificate::read_file(&path) {
            Ok(certificate) => Some((path, certificate)),
            Err(err) => {
                tracing::warn!("skipping certificate {}: {err}", path.display());
                None
            }
        })
        .collect()
}

/// The signature hash for an RSA key: OpenSSH ≥ 8.8 refuses SHA-1 (`ssh-rsa`), and
/// asking the server costs up to a second, so only RSA keys ask.
async fn rsa_hash(
    handle: &client::Handle<HostKeyCheck>,
    algorithm: keys::Algorithm,
) -> Result<Option<keys::HashAlg>, russh::Error> {
    if algorithm.is_rsa() {
        Ok(handle.best_supported_rsa_hash().await?.flatten())
    } else {
        Ok(None)
    }
}

/// Authenticates with the agent's keys; `Some` names the one that worked.
async fn agent_authenticate(
    handle: &mut client::Handle<HostKeyCheck>,
    target: &SshTarget,
    certificates: &[(PathBuf, Certificate)],
    tried: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    let socket = match target.identity_agent.as_deref() {
        Some("SSH_AUTH_SOCK") | None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(socket) => PathBuf::from(socket),
            None => return Ok(None),
        },
        Some(path) => PathBuf::from(shellexpand::tilde(path).into_owned()),
    };
    let mut agent = keys::agent::client::AgentClient::connect_uds(&socket)
        .await
        .with_context(|| format!("cannot reach the agent at {}", socket.display()))?;
    for identity in agent.request_identities().await? {
        // A key's certificates on disk go first, then the key; certificates the agent
        // holds are offered as they come.
        let (key, offers) = match identity {
            // As in OpenSSH: with IdentitiesOnly the agent may still sign, but only
            // for the configured keys (say, an encrypted key file the agent holds).
            identity if target.identities_only && !configured(target, certificates, &identity) => {
                continue;
            }
            keys::agent::AgentIdentity::PublicKey { key, comment } => {
                let mut offers: Vec<(Option<Certificate>, String)> = certifying(certificates, &key)
                    .map(|(path, certificate)| {
                        (
                            Some(certificate.clone()),
                            format!("certificate {} (key in the agent)", path.display()),
                        )
                    })
                    .collect();
                offers.push((None, format!("agent key {comment}")));
                (key, offers)
            }
            keys::agent::AgentIdentity::Certificate {
                certificate,
                comment,
            } => {
                let key = keys::PublicKey::from(certificate.public_key().clone());
                (
                    key,
                    vec![(Some(certificate), format!("agent certificate {comment}"))],
                )
            }
        };
        let hash = rsa_hash(handle, key.algorithm()).await?;
        for (certificate, what) in offers {
            let result = match certificate {
                Some(certificate) => {
                    handle
                        .authenticate_certificate_with(&target.user, certificate, hash, &mut agent)
                        .await?
                }
                None => {
                    handle
                        .authenticate_publickey_with(&target.user, key.clone(), hash, &mut agent)
                        .await?
                }
            };
            if result.success() {
                return Ok(Some(what));
            }
            tried.push(format!("{what} (refused)"));
        }
    }
    Ok(None)
}
