//! Settling each host's verdict: every compiler a box's allowlist names compared,
//! under the host's toolchain policy, with the compiler a local compile would run
//! (found and fingerprinted once per name).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::server::identity::CompilerInfo;
use crate::toolchain::{self, Fingerprint, FingerprintCache, Policy};
use crate::wrapper::invocation::find_on_path;

use super::Probe;
use super::report::{CompilerReport, CompilerStatus, HostReport, Report, Toolchain};

/// Compares every box's compilers with the local ones and settles each host's verdict.
pub(super) fn judge(probes: Vec<Probe>, locals: &mut LocalToolchains) -> Report {
    let hosts: Vec<HostReport> = probes
        .into_iter()
        .map(
            |Probe {
                 mut report,
                 box_info,
             }| {
                if let Some(info) = box_info {
                    let policy = report.toolchain_check.unwrap_or_default();
                    report.compilers = info
                        .compilers
                        .iter()
                        .map(|remote| compare(remote, policy, |name| locals.lookup(name)))
                        .collect();
                }
                report.ok = report.error.is_none()
                    && report
                        .compilers
                        .iter()
                        .all(|compiler| !compiler.status.fails());
                report
            },
        )
        .collect();
    Report {
        sshcc_version: env!("CARGO_PKG_VERSION").to_string(),
        ok: hosts.iter().all(|host| host.ok),
        hosts,
    }
}

/// Compares one allowlisted compiler with the local compiler of the same name, which
/// `local` finds and fingerprints (`None`: there is none).
fn compare(
    remote: &CompilerInfo,
    policy: Policy,
    local: impl FnOnce(&str) -> Result<Option<Fingerprint>, String>,
) -> CompilerReport {
    let mut report = CompilerReport {
        entry: remote.entry.clone(),
        status: CompilerStatus::Match,
        detail: None,
        remote: remote.fingerprint.as_ref().map(Toolchain::from),
        local: None,
    };
    if policy == Policy::Off {
        report.status = CompilerStatus::NotChecked;
        return report;
    }
    let name = Path::new(&remote.entry)
        .file_name()
        .map_or(remote.entry.clone(), |name| {
            name.to_string_lossy().into_owned()
        });
    let here = match local(&name) {
        Ok(Some(fingerprint)) => fingerprint,
        Ok(None) => {
            report.status = CompilerStatus::MissingLocally;
            report.detail = remote.error.clone();
            return report;
        }
        Err(err) => {
            report.status = CompilerStatus::LocalError;
            report.detail = Some(err);
            return report;
        }
    };
    report.local = Some(Toolchain::from(&here));
    match &remote.fingerprint {
        Some(there) => {
            if let Some(difference) = here.difference(there, policy == Policy::Version) {
                report.status = CompilerStatus::Mismatch;
                report.detail = Some(difference);
            }
        }
        None => {
            report.status = CompilerStatus::BoxError;
            report.detail = Some(
                remote
                    .error
                    .clone()
                    .unwrap_or_else(|| "the box sent no fingerprint".to_string()),
            );
        }
    }
    report
}

/// The local compilers, found and fingerprinted once per name.
pub(super) struct LocalToolchains {
    path: Option<OsString>,
    /// This sshcc binary, whose masquerade links are not compilers.
    ours: Option<PathBuf>,
    cache: FingerprintCache,
    known: HashMap<String, Result<Option<Fingerprint>, String>>,
}

impl LocalToolchains {
    pub(super) fn for_user() -> Self {
        LocalToolchains {
            path: std::env::var_os("PATH"),
            ours: std::env::current_exe().and_then(std::fs::canonicalize).ok(),
            cache: FingerprintCache::for_user(),
            known: HashMap::new(),
        }
    }

    fn lookup(&mut self, name: &str) -> Result<Option<Fingerprint>, String> {
        if let Some(known) = self.known.get(name) {
            return known.clone();
        }
        let found = self
            .find(name)
            .map(|compiler| {
                toolchain::real_compiler(&compiler, self.path.as_deref())
                    .and_then(|real| self.cache.fingerprint(&real))
                    .map(|lookup| lookup.fingerprint)
                    .map_err(|err| format!("{err:#}"))
            })
            .transpose();
        self.known.insert(name.to_string(), found.clone());
        found
    }

    /// `name` on PATH as a local compile finds it, past directories where `name` is a
    /// link to sshcc itself (masquerade directories).
    fn find(&self, name: &str) -> Option<PathBuf> {
        let is_ours = |candidate: PathBuf| {
            self.ours.is_some() && std::fs::canonicalize(candidate).ok() == self.ours
        };
        let dirs =
            std::env::split_paths(self.path.as_ref()?).filter(|dir| !is_ours(dir.join(name)));
        let search = std::env::join_paths(dirs).ok()?;
        find_on_path(name, Some(&search))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::render::describe;

    fn gcc(version: &str, cc1: &str) -> Fingerprint {
        Fingerprint {
            compiler: "/usr/bin/x86_64-linux-gnu-gcc-12".into(),
            target: "x86_64-linux-gnu".into(),
            version: version.into(),
            driver_sha256: "aa".repeat(32),
            programs: [("cc1".to_string(), cc1.repeat(32))].into(),
        }
    }

    fn entry(fingerprint: Option<Fingerprint>, error: Option<&str>) -> CompilerInfo {
        CompilerInfo {
            entry: "/usr/bin/gcc".into(),
            digest: None,
            fingerprint,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn compilers_are_judged_by_the_hosts_policy() {
        let here = gcc("gcc 12.2.0", "bb");
        let local = |_: &str| Ok(Some(here.clone()));
        let same = entry(Some(here.clone()), None);
        assert_eq!(
            compare(&same, Policy::Strict, local).status,
            CompilerStatus::Match
        );
        let rebuilt = entry(Some(gcc("gcc 12.2.0", "cc")), None);
        let strict = compare(&rebuilt, Policy::Strict, local);
        assert_eq!(strict.status, CompilerStatus::Mismatch);
        assert!(strict.detail.unwrap().contains("cc1 differs"));
        assert_eq!(
            compare(&rebuilt, Policy::Version, local).status,
            CompilerStatus::Match
        );
        let other = entry(Some(gcc("gcc 13.1.0", "bb")), None);
        let report = compare(&other, Policy::Version, local);
        assert_eq!(report.status, CompilerStatus::Mismatch);
        assert!(
            describe(&report).contains("13.1.0"),
            "{}",
            describe(&report)
        );
        let never = |_: &str| -> Result<Option<Fingerprint>, String> {
            panic!("nothing is looked up when the check is off")
        };
        assert_eq!(
            compare(&other, Policy::Off, never).status,
            CompilerStatus::NotChecked
        );
    }

    #[test]
    fn errors_fail_only_for_compilers_that_exist_here() {
        let broken = entry(None, Some("compiler /usr/bin/gcc not found"));
        let missing = compare(&broken, Policy::Strict, |_| Ok(None));
        assert_eq!(missing.status, CompilerStatus::MissingLocally);
        assert!(!missing.status.fails());
        let here = gcc("gcc 12.2.0", "bb");
        let box_error = compare(&broken, Policy::Strict, |_| Ok(Some(here)));
        assert_eq!(box_error.status, CompilerStatus::BoxError);
        assert!(box_error.status.fails());
        let local_error = compare(&broken, Policy::Strict, |_| Err("cannot run gcc".into()));
        assert_eq!(local_error.status, CompilerStatus::LocalError);
        assert!(local_error.status.fails());
    }

    #[test]
    fn masquerade_links_to_sshcc_are_not_the_local_compiler() {
        let dir = tempfile::tempdir().unwrap();
        let (masquerade, real) = (dir.path().join("masquerade"), dir.path().join("bin"));
        std::fs::create_dir_all(&masquerade).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        let ours = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        std::os::unix::fs::symlink(&ours, masquerade.join("cc-x")).unwrap();
        std::fs::write(real.join("cc-x"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            real.join("cc-x"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let locals = LocalToolchains {
            path: Some(std::env::join_paths([&masquerade, &real]).unwrap()),
            ours: Some(ours),
            cache: FingerprintCache::at(dir.path().join("cache.json")),
            known: HashMap::new(),
        };
        assert_eq!(locals.find("cc-x"), Some(real.join("cc-x")));
        assert_eq!(locals.find("cc-y"), None);
    }
}
