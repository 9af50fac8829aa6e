//! Trusting a box's host key exactly as OpenSSH would: known_hosts with our own matcher
//! (strict by default; `accept-new` when the user's config says so; `no` only for hosts
//! the user also named to sshcc), host certificates against the `@cert-authority` keys
//! there, and the algorithms already known for the host negotiated first.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{self, Certificate, PublicKeyOrCertificate};

use crate::ssh::config::StrictHostKeyChecking;
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};

/// The host-key check's verdict, shared with the connecting code: why the key was
/// trusted, or why it was refused (russh itself only says "unknown key").
pub(super) type SharedVerdict = Arc<Mutex<Option<Result<String, String>>>>;

/// Puts the host-key algorithms known_hosts already has for this host first, as OpenSSH
/// does; otherwise a box offering ed25519 and ECDSA, known only by its ECDSA key, would
/// be refused as unknown.
pub(super) fn prefer_known_algorithms(
    config: &mut client::Config,
    known_hosts: &KnownHosts,
    name: &str,
    port: u16,
) {
    let known = known_hosts.known_algorithms(name, port);
    if known.is_empty() {
        return;
    }
    let mut order: Vec<keys::Algorithm> = known.clone();
    order.extend(
        config
            .preferred
            .key
            .iter()
            .filter(|alg| !known.contains(alg))
            .cloned(),
    );
    config.preferred.key = order.into();
}

pub(super) struct HostKeyCheck {
    pub(super) known_hosts: KnownHosts,
    pub(super) name: String,
    pub(super) port: u16,
    pub(super) policy: StrictHostKeyChecking,
    /// The user named this host to sshcc as one whose `StrictHostKeyChecking no` counts.
    pub(super) unchecked_allowed: bool,
    /// The host as the user wrote it, for messages.
    pub(super) alias: String,
    pub(super) learn_file: Option<PathBuf>,
    /// Whether learned keys are written hashed (`HashKnownHosts`).
    pub(super) hash: bool,
    pub(super) verdict: SharedVerdict,
}

impl HostKeyCheck {
    /// `host` or `[host]:port`, as known_hosts and OpenSSH's messages write it.
    fn shown(&self) -> String {
        if self.port == 22 {
            self.name.clone()
        } else {
            format!("[{}]:{}", self.name, self.port)
        }
    }

    /// Whether `StrictHostKeyChecking no` is in force: configured, and allowed.
    fn unchecked(&self) -> bool {
        self.policy == StrictHostKeyChecking::No && self.unchecked_allowed
    }

    /// Whether to trust `key`: `Ok` says why, `Err` why not.
    fn decide(&self, key: &keys::PublicKey) -> Result<String, String> {
        let shown = self.shown();
        let fingerprint = key.fingerprint(keys::HashAlg::Sha256);
        match self.known_hosts.verify(&self.name, self.port, key) {
            Verdict::Trusted => Ok("known_hosts".to_string()),
            Verdict::Revoked { path, line } => Err(format!(
                "host key for {shown} ({fingerprint}) is marked as revoked in {}:{line}; refusing to connect",
                path.display()
            )),
            Verdict::Changed { path, line } if self.unchecked() => {
                tracing::warn!(
                    "the host key for {shown} ({} {fingerprint}) differs from {}:{line}; connecting anyway \
                     because StrictHostKeyChecking is no and sshcc was told to allow that for {}",
                    key.algorithm(),
                    path.display(),
                    self.alias
                );
                Ok(format!(
                    "unchecked (allowed): it differs from {}:{line}",
                    path.display()
                ))
            }
            Verdict::Changed { path, line } => Err(format!(
                "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {shown}: it now offers {} key {fingerprint}, \
                 which differs from {}:{line}. Someone could be eavesdropping (man-in-the-middle), or the host key \
                 has just been changed; refusing to connect",
                key.algorithm(),
                path.display()
            )),
            Verdict::Unknown => {
                let learn = self.policy == StrictHostKeyChecking::AcceptNew || self.unchecked();
                match (&self.learn_file, learn) {
                    (Some(file), true) => {
                        let learned =
                            known_hosts::learn(file, &self.name, self.port, key, self.hash)
                                .map_err(|err| {
                                    format!("cannot record the new host key for {shown}: {err:#}")
                                });
                        let how = if self.unchecked() {
                            "unchecked (allowed)"
                        } else {
                            "learned (accept-new)"
                        };
                        match learned {
                            Ok(()) => {
                                tracing::warn!(
                                    "permanently added {shown} ({} {fingerprint}) to {}",
                                    key.algorithm(),
                                    file.display()
                                );
                                Ok(format!("{how}: new key recorded in {}", file.display()))
                            }
                            // OpenSSH connects anyway under `no`, only warning.
                            Err(err) if self.unchecked() => {
                                tracing::warn!("{err}");
                                Ok(format!("{how}: new key, not recorded"))
                            }
                            Err(err) => Err(err),
                        }
                    }
                    (None, true) if self.unchecked() => {
                        Ok("unchecked (allowed): new key, not recorded".to_string())
                    }
                    _ if self.policy == StrictHostKeyChecking::No => Err(format!(
                        "no matching host key for {shown} ({} {fingerprint}) in known_hosts; ssh_config says \
                         StrictHostKeyChecking no for {alias}, which sshcc honours only when \
                         SSHCC_ALLOW_UNCHECKED_HOST_KEYS or config.toml's allow_unchecked_host_keys names \
                         {alias}; run `ssh {alias}` once to check and record the key instead",
                        key.algorithm(),
                        alias = self.alias
                    )),
                    _ => Err(format!(
                        "no matching host key for {shown} ({} {fingerprint}) in known_hosts and strict host key \
                         checking is on; run `ssh {}` once to check and record it",
                        key.algorithm(),
                        self.alias
                    )),
                }
            }
        }
    }

    /// A host certificate, like OpenSSH's `check_host_key`: a CA that a
    /// `@cert-authority` line trusts for this host must have signed it, and
    /// [`certificate_problem`] must find nothing wrong with it. A revoked CA or key
    /// is refused; any other shortfall (no trusted CA, expired, another host's
    /// certificate) makes OpenSSH judge the plain key inside instead, and so do we.
    fn decide_certificate(&self, certificate: &Certificate) -> Result<String, String> {
        let shown = self.shown();
        let ca = keys::PublicKey::from(certificate.signature_key().clone());
        let key = keys::PublicKey::from(certificate.public_key().clone());
        match self
            .known_hosts
            .verify_certificate_authority(&self.name, self.port, &ca)
        {
            Verdict::Revoked { path, line } => Err(format!(
                "the CA key ({}) that signed the host certificate of {shown} is marked as revoked in {}:{line}; \
                 refusing to connect",
                ca.fingerprint(keys::HashAlg::Sha256),
                path.display()
            )),
            Verdict::Trusted => match certificate_problem(certificate, &self.name) {
                None => match self.known_hosts.verify(&self.name, self.port, &key) {
                    Verdict::Revoked { path, line } => Err(format!(
                        "host key for {shown} is marked as revoked in {}:{line}; refusing to connect",
                        path.display()
                    )),
                    _ => Ok(format!(
                        "host certificate (CA {})",
                        ca.fingerprint(keys::HashAlg::Sha256)
                    )),
                },
                Some(problem) => {
                    tracing::warn!(
                        "the host certificate of {shown} (id {:?}) is not valid: {problem}; judging its plain key",
                        certificate.key_id()
                    );
                    self.decide(&key)
                }
            },
            Verdict::Unknown | Verdict::Changed { .. } => {
                tracing::debug!(
                    "no @cert-authority for {shown} signed its certificate; judging its plain key"
                );
                self.decide(&key)
            }
        }
    }
}

/// What is wrong with a host certificate from a trusted CA, checked as OpenSSH's
/// `check_host_cert` does: a host (not user) certificate, a CA signature that
/// verifies, valid now, `name` among its principals (an empty list means any host),
/// no critical options.
fn certificate_problem(certificate: &Certificate, name: &str) -> Option<String> {
    if certificate.cert_type() != CertType::Host {
        return Some("it is a user certificate".into());
    }
    if certificate.verify_signature().is_err() {
        return Some("its CA signature does not verify".into());
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if now < certificate.valid_after() {
        return Some("it is not valid yet".into());
    }
    if now >= certificate.valid_before() {
        return Some("it has expired".into());
    }
    let principals = certificate.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == name) {
        return Some(format!(
            "{name} is not among its principals ({})",
            principals.join(", ")
        ));
    }
    if !certificate.critical_options().is_empty() {
        return Some("it has critical options".into());
    }
    None
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = match server_key {
            PublicKeyOrCertificate::Certificate(certificate) => {
                self.decide_certificate(certificate)
            }
            PublicKeyOrCertificate::PublicKey { .. } => self.decide(&server_key.public_key()),
        };
        let trusted = decision.is_ok();
        *self.verdict.lock().expect("verdict lock") = Some(decision);
        Ok(trusted)
    }
}
