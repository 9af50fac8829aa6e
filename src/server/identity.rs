//! What a box says about its compilers: each allowlisted compiler's toolchain
//! [`Fingerprint`], computed on the box and cached there, so a client can refuse to
//! send jobs to a compiler that differs from its own before a single job runs.
//!
//! Served two ways: per compiler over the mux link (the daemon's check before its first
//! job), and as a whole report by `sshcc --box-info` (what `sshcc check` reads).

use serde::{Deserialize, Serialize};

use super::allowlist::Allowlist;
use super::settings::BoxSettings;
use crate::toolchain::{self, Fingerprint, FingerprintCache};

/// `sshcc --box-info`'s report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxInfo {
    pub sshcc_version: String,
    pub protocol: u32,
    pub hostname: String,
    /// The allowlist file, if one was found.
    pub allowlist: Option<String>,
    /// Why there is no usable allowlist (the box then runs nothing).
    pub allowlist_error: Option<String>,
    pub compilers: Vec<CompilerInfo>,
    /// The box owner's limits (absent from boxes older than them).
    #[serde(default)]
    pub limits: Option<LimitsInfo>,
    /// Jobs served by every session of every user, and compiles running now (absent
    /// from boxes older than them).
    #[serde(default)]
    pub counters: Option<super::counters::BoxCounters>,
    /// This account's content store for remote preprocessing (absent from boxes
    /// older than it).
    #[serde(default)]
    pub store: Option<StoreInfo>,
}

/// The content store as `sshcc --box-info` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Where it is; `None` with `error` when it cannot be used (the box then
    /// preprocesses nothing).
    pub root: Option<String>,
    pub error: Option<String>,
    /// Its bound and what it holds now (an estimate every process keeps up to date).
    pub max_bytes: u64,
    pub bytes: u64,
}

/// [`BoxSettings`] as a box reports them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsInfo {
    /// Compiles at once across all users.
    pub jobs: usize,
    pub nice: i32,
    /// Seconds; 0 for none.
    pub job_lifetime: u64,
    pub max_input: u64,
    /// How compiles are confined, in words.
    pub sandbox: String,
}

fn store_info(settings: &BoxSettings) -> StoreInfo {
    let opened = super::store::Store::default_root()
        .ok_or_else(|| "no home or XDG_CACHE_HOME for the content store".to_string())
        .and_then(|root| {
            super::store::Store::open(&root, settings.cache_size)
                .map_err(|err| format!("cannot open {}: {err:#}", root.display()))
        });
    match opened {
        Ok(store) => StoreInfo {
            root: Some(store.root().display().to_string()),
            error: None,
            max_bytes: store.max_bytes(),
            bytes: store.stats().estimated_bytes,
        },
        Err(error) => StoreInfo {
            root: None,
            error: Some(error),
            max_bytes: settings.cache_size,
            bytes: 0,
        },
    }
}

/// One allowlist entry and what it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompilerInfo {
    pub entry: String,
    pub fingerprint: Option<Fingerprint>,
    pub error: Option<String>,
    /// The fingerprint's digest: equal digests, identical toolchains. A REAPI worker
    /// advertises it as the `sshcc-toolchain` platform property.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The fingerprint of the compiler the allowlist maps `requested` to, as a job for it
/// would run it; an error says why there is none (not allowlisted, missing, broken).
pub fn identify(requested: &str) -> Result<Fingerprint, String> {
    let allowlist = Allowlist::from_env().map_err(|err| err.to_string())?;
    let path = allowlist
        .resolve(requested)
        .map_err(|err| err.to_string())?;
    fingerprint_of(path)
}

fn fingerprint_of(path: &str) -> Result<Fingerprint, String> {
    let search = std::env::var_os("PATH");
    let real = toolchain::real_compiler(path.as_ref(), search.as_deref())
        .map_err(|err| format!("{err:#}"))?;
    FingerprintCache::for_user()
        .fingerprint(&real)
        .map(|lookup| lookup.fingerprint)
        .map_err(|err| format!("{err:#}"))
}

/// Everything about this box's compilers and limits.
pub fn box_info(settings: &BoxSettings) -> BoxInfo {
    let (allowlist, allowlist_error, compilers) = match Allowlist::from_env() {
        Ok(list) => {
            let compilers = list
                .entries()
                .iter()
                .map(|entry| {
                    let (fingerprint, error) = match fingerprint_of(entry) {
                        Ok(fingerprint) => (Some(fingerprint), None),
                        Err(err) => (None, Some(err)),
                    };
                    CompilerInfo {
                        entry: entry.clone(),
                        digest: fingerprint.as_ref().map(Fingerprint::digest),
                        fingerprint,
                        error,
                    }
                })
                .collect();
            (Some(list.path().display().to_string()), None, compilers)
        }
        Err(err) => (None, Some(err.to_string()), Vec::new()),
    };
    let slots = settings.slots();
    BoxInfo {
        store: Some(store_info(settings)),
        counters: Some(super::counters::read(&slots)),
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::protocol::mux::PROTOCOL_VERSION,
        hostname: super::job::hostname(),
        allowlist,
        allowlist_error,
        compilers,
        limits: Some(LimitsInfo {
            jobs: slots.count(),
            nice: settings.nice,
            job_lifetime: settings.job_lifetime,
            max_input: settings.max_input,
            sandbox: super::sandbox::describe(settings.sandbox),
        }),
    }
}
