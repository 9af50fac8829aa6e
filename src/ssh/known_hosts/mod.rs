//! Host-key trust decisions from OpenSSH `known_hosts` files, with OpenSSH's rules.
//!
//! russh ships a known_hosts helper, but it ignores `@revoked` (it accepts a revoked
//! key), knows no `*`/`?`/`!` patterns, splits fields on single spaces only and aborts
//! on the first unparseable line (russh research notes, gotcha 5). This module
//! re-implements the parts of OpenSSH's `hostfile.c`/`match.c` that decide whether a
//! server's host key is trusted:
//!
//! * Fields are separated by runs of spaces and tabs; blank lines and lines whose first
//!   non-blank character is `#` are skipped, and so is (with a `tracing::debug!`) any
//!   line that does not parse — one bad line never makes a whole file unusable.
//! * An optional marker: `@revoked` (this key must never be trusted for the matching
//!   hosts) or `@cert-authority` (a CA key for host certificates; it never makes a
//!   plain host key trusted).
//! * The host field is either a comma-separated pattern list (`*` and `?` wildcards,
//!   `!` negation which vetoes the whole line, `[host]:port` for non-standard ports —
//!   the brackets are matched literally, so wildcards work inside them too), matched
//!   case-insensitively, or one hashed entry `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
//! * Hosts are looked up as `name` on port 22 and as `[name]:port` otherwise, and if
//!   that finds nothing, OpenSSH (and so we) accept a key recorded for the bare `name`.
//! * Any recorded key for the host other than the presented one means "changed", even
//!   of another algorithm, exactly as OpenSSH 9.2 decides; see [`KnownHosts::verify`].
//!
//! [`learn`] appends a line for `StrictHostKeyChecking accept-new`, under an exclusive
//! `flock` so that concurrent sshcc processes cannot interleave or duplicate lines.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// What the known_hosts files say about a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A plain (non-marker) line for this host has exactly this key.
    Trusted,
    /// No key is on record for this host.
    Unknown,
    /// The host has different keys on record (of this or, like OpenSSH, of another
    /// algorithm): possible man-in-the-middle, or a reinstalled host. `path`/`line`
    /// (1-based, counting comments and blank lines) is the first such line with the
    /// same algorithm, else the first such line. (OpenSSH names the last one.)
    Changed { path: PathBuf, line: usize },
    /// The key is marked `@revoked` for this host (first such line). Wins over any
    /// line that would trust it.
    Revoked { path: PathBuf, line: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Plain,
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// `|1|salt|hmac`: the whole field, plus the decoded salt.
    Hashed { field: String, salt: Vec<u8> },
    /// A comma-separated pattern list, lowercased.
    Patterns(String),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index into [`KnownHosts::files`].
    file: usize,
    /// 1-based physical line number.
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key: PublicKey,
}

/// The parsed contents of one or more known_hosts files.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads `files` in order (typically the user files, then the global ones).
    /// Missing or unreadable files and unparseable lines are skipped with a
    /// `tracing::debug!`, never an error: OpenSSH behaves the same way.
    pub fn load(files: &[PathBuf]) -> KnownHosts {
        let mut known = KnownHosts::default();
        for path in files {
            match fs::read(path) {
                Ok(bytes) => known.add_text(path, &String::from_utf8_lossy(&bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(path = %path.display(), "known_hosts file does not exist");
                }
                Err(err) => {
                    tracing::debug!(path = %path.display(), %err, "cannot read known_hosts file; skipping it");
                }
            }
        }
        known
    }

    fn add_text(&mut self, path: &Path, text: &str) {
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        for (index, line) in text.split('\n').enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((marker, hosts, key))) => self.entries.push(Entry {
                    file,
                    line: index + 1,
                    marker,
                    hosts,
                    key,
                }),
                Err(reason) => tracing::debug!(
                    path = %path.display(),
                    line = index + 1,
                    reason,
                    "skipping unparseable known_hosts line"
                ),
            }
        }
    }

    /// Decides whether `key`, presented by the server, is trusted for `name` (the
    /// `HostKeyAlias` or hostname) on `port`, like OpenSSH 9.2's `check_host_key`:
    ///
    /// 1. Look the host up as `name` for port 22 and `[name]:port` otherwise. A matching
    ///    `@revoked` line with this key → [`Revoked`](Verdict::Revoked); else a
    ///    matching plain line with this key → [`Trusted`](Verdict::Trusted); else any
    ///    matching plain line with another key → [`Changed`](Verdict::Changed) — *also
    ///    when that key is of another algorithm*: OpenSSH then reports "REMOTE HOST
    ///    IDENTIFICATION HAS CHANGED" too (and refuses even with accept-new), which stops
    ///    a man in the middle from downgrading to an algorithm we have no key for.
    ///    The line named is the first one with the same algorithm, else the first one.
    /// 2. Only if that found nothing and `port` is not 22: look the host up again under
    ///    the bare `name`, like OpenSSH does ("found matching key w/out port"), where
    ///    only a trusting (or revoking) line counts; a different key there is ignored.
    ///
    /// OpenSSH uses a `HostKeyAlias` without port and without the second step; pass
    /// [`SshTarget::host_key_port`](super::config::SshTarget::host_key_port), which is
    /// 22 when an alias is set.
    pub fn verify(&self, name: &str, port: u16, key: &PublicKey) -> Verdict {
        let verdict = self.verify_as(&lookup_name(name, port), key);
        if verdict != Verdict::Unknown || port == 22 || port == 0 {
            return verdict;
        }
        match self.verify_as(&lookup_name(name, 22), key) {
            // OpenSSH prints its revocation warning here but then carries on as if the
            // key were unknown (and would learn it with accept-new); we refuse it.
            v @ (Verdict::Trusted | Verdict::Revoked { .. }) => v,
            Verdict::Changed { .. } | Verdict::Unknown => Verdict::Unknown,
        }
    }

    fn verify_as(&self, lookup: &str, key: &PublicKey) -> Verdict {
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.hosts.matches(lookup))
            .collect();
        let location = |e: &Entry| (self.files[e.file].clone(), e.line);

        if let Some(e) = matching
            .iter()
            .find(|e| e.marker == Marker::Revoked && same_key(&e.key, key))
        {
            let (path, line) = location(e);
            return Verdict::Revoked { path, line };
        }
        let plain = || matching.iter().filter(|e| e.marker == Marker::Plain);
        if plain().any(|e| same_key(&e.key, key)) {
            return Verdict::Trusted;
        }
        let offending = plain()
            .find(|e| e.key.algorithm() == key.algorithm())
            .or_else(|| plain().next());
        if let Some(e) = offending {
            let (path, line) = location(e);
            return Verdict::Changed { path, line };
        }
        Verdict::Unknown
    }

    /// Decides whether `ca`, the key that signed the host certificate the server
    /// presented, is trusted for `name`/`port`: a matching `@cert-authority` line with
    /// this key → [`Trusted`](Verdict::Trusted); a matching `@revoked` line with it →
    /// [`Revoked`](Verdict::Revoked); otherwise [`Unknown`](Verdict::Unknown), on which
    /// OpenSSH (and so the caller) judges the certificate's plain key instead ("No
    /// matching CA found. Retry with plain key"). Lookups fall back to the bare `name`
    /// for other ports, as [`verify`](Self::verify) does.
    pub fn verify_certificate_authority(&self, name: &str, port: u16, ca: &PublicKey) -> Verdict {
        for lookup in lookup_names(name, port) {
            let matching = || self.entries.iter().filter(|e| e.hosts.matches(&lookup));
            if let Some(e) =
                matching().find(|e| e.marker == Marker::Revoked && same_key(&e.key, ca))
            {
                return Verdict::Revoked {
                    path: self.files[e.file].clone(),
                    line: e.line,
                };
            }
            if matching().any(|e| e.marker == Marker::CertAuthority && same_key(&e.key, ca)) {
                return Verdict::Trusted;
            }
        }
        Verdict::Unknown
    }

    /// Whether any `@cert-authority` line applies to `name`/`port`: then, as OpenSSH
    /// does, certificate host-key algorithms are offered first.
    pub fn has_certificate_authority(&self, name: &str, port: u16) -> bool {
        lookup_names(name, port).iter().any(|lookup| {
            self.entries
                .iter()
                .any(|e| e.marker == Marker::CertAuthority && e.hosts.matches(lookup))
        })
    }

    /// Host-key algorithms already on record (plain lines) for `name`/`port`, in file
    /// order without duplicates, to put first in the key-exchange preferences so the
    /// server presents a key we can check (OpenSSH does the same). For a port other
    /// than 22 the algorithms recorded under the bare `name` follow (the fallback of
    /// [`verify`](Self::verify)). An RSA key yields `rsa-sha2-512` and `rsa-sha2-256`
    /// (not SHA-1 `ssh-rsa`, which OpenSSH ≥ 8.8 servers refuse).
    pub fn known_algorithms(&self, name: &str, port: u16) -> Vec<Algorithm> {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for lookup in &lookup_names(name, port) {
            for e in &self.entries {
                if e.marker != Marker::Plain || !e.hosts.matches(lookup) {
                    continue;
                }
                let found = match e.key.algorithm() {
                    Algorithm::Rsa { .. } => vec![
                        Algorithm::Rsa {
                            hash: Some(HashAlg::Sha512),
                        },
                        Algorithm::Rsa {
                            hash: Some(HashAlg::Sha256),
                        },
                    ],
                    other => vec![other],
                };
                for algorithm in found {
                    if !algorithms.contains(&algorithm) {
                        algorithms.push(algorithm);
                    }
                }
            }
        }
        algorithms
    }
}

/// For `StrictHostKeyChecking accept-new`: records `key` for `name`/`port` at the end of
/// `file` (creating the parent directory with mode 0700 and the file with 0600 if
/// needed), hashed (`|1|salt|hmac`) when `hash` is true, like OpenSSH's
/// `HashKnownHosts`.
///
/// The whole read-check-append runs under an exclusive `flock` on the file, so
/// concurrent sshcc processes neither interleave lines nor add the same key twice: if
/// the file already trusts `key` for this host by then, nothing is written. If it
/// meanwhile holds a *different* key of the same algorithm for the host, or the key is
/// revoked there, this fails instead of adding a conflicting line.
pub fn learn(file: &Path, name: &str, port: u16, key: &PublicKey, hash: bool) -> Result<()> {
    if let Some(parent) = file.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    f.lock()
        .with_context(|| format!("locking {}", file.display()))?;
    // The lock is released when `f` is closed.
    learn_locked(&mut f, file, name, port, key, hash)
}

fn learn_locked(
    f: &mut File,
    file: &Path,
    name: &str,
    port: u16,
    key: &PublicKey,
    hash: bool,
) -> Result<()> {
    let mut existing = Vec::new();
    f.read_to_end(&mut existing)
        .with_context(|| format!("reading {}", file.display()))?;
    let mut current = KnownHosts::default();
    current.add_text(file, &String::from_utf8_lossy(&existing));
    let lookup = lookup_name(name, port);
    match current.verify(name, port, key) {
        Verdict::Trusted => return Ok(()),
        Verdict::Unknown => {}
        Verdict::Changed { line, .. } => bail!(
            "not adding a host key for {lookup} to {}: line {line} there already holds a different {} key for it",
            file.display(),
            key.algorithm().as_str()
        ),
        Verdict::Revoked { line, .. } => bail!(
            "not adding a host key for {lookup} to {}: line {line} there marks it @revoked",
            file.display()
        ),
    }

    let host_field = if hash {
        hash_host(&lookup, &random_salt()?)
    } else {
        lookup.clone()
    };
    let plain_key = PublicKey::new(key.key_data().clone(), "");
    let key_text = plain_key
        .to_openssh()
        .context("encoding the host key in OpenSSH format")?;
    let mut line = String::new();
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        line.push('\n');
    }
    line.push_str(&host_field);
    line.push(' ');
    line.push_str(key_text.trim_end());
    line.push('\n');
    // One write on an O_APPEND descriptor: even a writer that ignores the lock (ssh
    // itself) cannot split the line.
    f.write_all(line.as_bytes())
        .with_context(|| format!("appending to {}", file.display()))?;
    f.flush()?;
    tracing::debug!(path = %file.display(), host = %lookup, hashed = hash, "learned host key");
    Ok(())
}

/// `name` on port 22 (and 0, "unspecified"), `[name]:port` otherwise; lowercased, as
/// OpenSSH lowercases host names and aliases before looking them up.
fn lookup_name(name: &str, port: u16) -> String {
    let name = name.to_ascii_lowercase();
    if port == 22 || port == 0 {
        name
    } else {
        format!("[{name}]:{port}")
    }
}

/// The names a host is looked up under: `[name]:port`, then the bare name, which
/// OpenSSH also accepts for a non-standard port.
fn lookup_names(name: &str, port: u16) -> Vec<String> {
    let mut lookups = vec![lookup_name(name, port)];
    if port != 22 && port != 0 {
        lookups.push(lookup_name(name, 22));
    }
    lookups
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    // Not `a == b`: that would compare the comments too.
    a.key_data() == b.key_data()
}

const SALT_LEN: usize = 20;

/// OpenSSH's `host_hash`: `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hash_host(name: &str, salt: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!(
        "|1|{}|{}",
        Base64::encode_string(salt),
        Base64::encode_string(&digest)
    )
}

fn random_salt() -> Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .context("reading /dev/urandom for a known_hosts salt")?;
    Ok(salt)
}

impl Hosts {
    /// Whether the lowercased lookup name matches.
    fn matches(&self, lookup: &str) -> bool {
        match self {
            // OpenSSH recomputes the hash with the stored salt and compares the whole
            // field, so a hashed field can hold exactly one name.
            Hosts::Hashed { field, salt } => hash_host(lookup, salt) == *field,
            Hosts::Patterns(patterns) => match_pattern_list(lookup, patterns),
        }
    }
}

/// OpenSSH's `match_hostname`/`match_pattern_list`: a positive match of any pattern,
/// and no match of any `!`-negated one.
fn match_pattern_list(name: &str, patterns: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if glob(name.as_bytes(), pattern.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of bytes (also empty), `?` exactly one; everything else,
/// including `[` and `]`, literally.
fn glob(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was and which text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            // Let the last `*` swallow one more byte and retry.
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

type Parsed = Option<(Marker, Hosts, PublicKey)>;

/// One known_hosts line: `Ok(None)` for blank and comment lines, `Err(reason)` for lines
/// OpenSSH would skip as invalid.
fn parse_line(line: &str) -> std::result::Result<Parsed, &'static str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
    let Some(mut first) = fields.next() else {
        return Ok(None);
    };
    if first.starts_with('#') {
        return Ok(None);
    }
    let marker = if first.starts_with('@') {
        let marker = match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            _ => return Err("unknown marker"),
        };
        first = fields.next().ok_or("marker without host")?;
        if first.starts_with('@') {
            return Err("more than one marker");
        }
        marker
    } else {
        Marker::Plain
    };

    let hosts = if first.starts_with('|') {
        Hosts::Hashed {
            salt: hashed_salt(first).ok_or("bad hashed host name")?,
            field: first.to_owned(),
        }
    } else {
        Hosts::Patterns(first.to_ascii_lowercase())
    };

    let key_type = fields.next().ok_or("no key type")?;
    if key_type.starts_with('#') {
        return Err("no key type");
    }
    let blob = fields.next().ok_or("no key")?;
    let key = russh::keys::parse_public_key_base64(blob).map_err(|_| "bad key")?;
    let algorithm = key.algorithm();
    let type_matches = key_type == algorithm.as_str()
        || (algorithm.is_rsa() && matches!(key_type, "rsa-sha2-256" | "rsa-sha2-512"));
    if !type_matches {
        return Err("key type does not match the key");
    }
    Ok(Some((marker, hosts, key)))
}

/// The salt of a `|1|salt|hmac` field; OpenSSH insists on 20 bytes.
fn hashed_salt(field: &str) -> Option<Vec<u8>> {
    let rest = field.strip_prefix("|1|")?;
    let (salt, _hmac) = rest.split_once('|')?;
    let salt = Base64::decode_vec(salt).ok()?;
    (salt.len() == SALT_LEN).then_some(salt)
}

#[cfg(test)]
mod tests;
