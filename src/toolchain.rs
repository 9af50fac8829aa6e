//! Toolchain identity: what a compiler really is, so no object built by a different
//! compiler is ever linked (distcc's most common bug report, and with ccache a wrong
//! object stays cached for good).
//!
//! A [`Fingerprint`] names the real compiler (ccache wrappers such as
//! `/usr/lib/ccache/arm-none-eabi-g++` are followed to the compiler they run), its
//! target triple and version, and SHA-256 hashes of the driver and of the programs it
//! runs to compile (`cc1`, `cc1plus`, `as`). Both ends compute it the same way; hashing
//! a compiler costs tens of milliseconds, so results are cached on disk, keyed by each
//! file's path, size and modification time, and a later lookup costs a few `stat`s.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Programs a GCC driver runs to compile C and C++ to objects (`-print-prog-name`).
/// Those it cannot name as a path (clang, whose cc1 is built in) are skipped.
const COMPILE_PROGRAMS: [&str; 3] = ["cc1", "cc1plus", "as"];

/// Bumped when the fingerprint's meaning changes, so stale cache files are ignored.
const CACHE_FORMAT: u32 = 3;

/// What a compiler is, as far as the objects it makes are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The real compiler, after following symlinks and ccache wrappers.
    pub compiler: PathBuf,
    /// `-dumpmachine`, e.g. `x86_64-linux-gnu` or `arm-none-eabi`.
    pub target: String,
    /// The first line of `--version`, e.g. `gcc (Debian 12.2.0-14) 12.2.0`.
    pub version: String,
    /// SHA-256 of the driver.
    pub driver_sha256: String,
    /// Program name → SHA-256 of what the driver runs under that name.
    pub programs: BTreeMap<String, String>,
}

impl Fingerprint {
    /// Where `self` (local) and `other` (remote) differ, or `None` when they are the same
    /// toolchain. With `version_only`, only the target and the version string count (for
    /// distributions whose builds differ only in packaging).
    pub fn difference(&self, other: &Fingerprint, version_only: bool) -> Option<String> {
        if self.target != other.target {
            return Some(format!(
                "target {} here, {} there",
                self.target, other.target
            ));
        }
        if self.version != other.version {
            return Some(format!(
                "version {:?} here, {:?} there",
                self.version, other.version
            ));
        }
        if version_only {
            return None;
        }
        if self.driver_sha256 != other.driver_sha256 {
            return Some(format!(
                "same version, but the driver differs ({} here, {} there)",
                short(&self.driver_sha256),
                short(&other.driver_sha256)
            ));
        }
        let names: std::collections::BTreeSet<&String> =
            self.programs.keys().chain(other.programs.keys()).collect();
        for name in names {
            match (self.programs.get(name), other.programs.get(name)) {
                (Some(here), Some(there)) if here == there => {}
                (Some(here), Some(there)) => {
                    return Some(format!(
                        "same version, but {name} differs ({} here, {} there)",
                        short(here),
                        short(there)
                    ));
                }
                (Some(_), None) => return Some(format!("{name} is missing there")),
                (None, Some(_)) => return Some(format!("{name} is missing here")),
                (None, None) => {}
            }
        }
        None
    }

    /// A short digest of the whole fingerprint, for logs and tables.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.target.as_bytes());
        hasher.update([0]);
        hasher.update(self.version.as_bytes());
        hasher.update([0]);
        hasher.update(self.driver_sha256.as_bytes());
        for (name, hash) in &self.programs {
            hasher.update([0]);
            hasher.update(name.as_bytes());
            hasher.update(hash.as_bytes());
        }
        short(&hex(&hasher.finalize()))
    }
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// How strictly a box's compiler must match the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The same target, version and binaries (the default).
    #[default]
    Strict,
    /// The same target and version string.
    Version,
    /// No check.
    Off,
}

impl Policy {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "strict" => Some(Policy::Strict),
            "version" => Some(Policy::Version),
            "off" => Some(Policy::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Strict => "strict",
            Policy::Version => "version",
            Policy::Off => "off",
        }
    }
}

/// The compiler `path` really runs: symlinks resolved, and a ccache wrapper (a link to
/// `ccache` named after a compiler) replaced by the next compiler of that name on
/// `search_path` that is not ccache, as ccache itself finds it.
pub fn real_compiler(path: &Path, search_path: Option<&OsStr>) -> Result<PathBuf> {
    let resolved = std::fs::canonicalize(path)
        .with_context(|| format!("compiler {} not found", path.display()))?;
    if resolved.file_name() != Some(OsStr::new("ccache")) {
        return Ok(resolved);
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let search_path = search_path.context("no PATH to find the compiler behind ccache")?;
    for dir in std::env::split_paths(search_path) {
        let candidate = dir.join(name);
        if let Ok(real) = std::fs::canonicalize(&candidate)
            && real.file_name() != Some(OsStr::new("ccache"))
            && real.is_file()
        {
            return Ok(real);
        }
    }
    bail!(
        "{} is a ccache wrapper, and no {} behind it is on PATH",
        path.display(),
        name.to_string_lossy()
    )
}

/// A file's identity for the cache: size and modification time (nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            path: path.to_path_buf(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }

    fn still_valid(&self) -> bool {
        Stamp::of(&self.path).as_ref() == Some(self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    /// The driver and every hashed program, as they were when hashed.
    stamps: Vec<Stamp>,
    fingerprint: Fingerprint,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    /// Keyed by the real compiler's path.
    entries: BTreeMap<String, CacheEntry>,
}

/// Fingerprints cached in a file (`~/.cache/sshcc/toolchains.json` by default), and
/// in memory for a long-lived process such as the daemon, which then re-reads the file
/// only when a compiler changed or is new to it.
#[derive(Debug)]
pub struct FingerprintCache {
    file: PathBuf,
    /// Entries this process has seen; the lock also makes concurrent lookups of a
    /// compiler nobody has hashed yet hash it once.
    memory: std::sync::Mutex<BTreeMap<String, CacheEntry>>,
}

impl Default for FingerprintCache {
    fn default() -> Self {
        Self::for_user()
    }
}

/// A fingerprint, and whether it had to be computed (`false`: from the cache).
#[derive(Debug, Clone)]
pub struct Lookup {
    pub fingerprint: Fingerprint,
    pub hashed: bool,
}

impl FingerprintCache {
    /// The per-user cache: `$XDG_CACHE_HOME/sshcc`, else `~/.cache/sshcc`.
    pub fn for_user() -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Self::at(base.join("sshcc").join("toolchains.json"))
    }

    pub fn at(file: PathBuf) -> Self {
        FingerprintCache {
            file,
            memory: Default::default(),
        }
    }

    /// The fingerprint of `compiler` (already resolved by [`real_compiler`]), from the
    /// cache when none of its files changed since they were hashed.
    pub fn fingerprint(&self, compiler: &Path) -> Result<Lookup> {
        let key = compiler.to_string_lossy().into_owned();
        let mut memory = self.memory.lock().expect("fingerprint cache lock");
        let valid = |entry: &CacheEntry| entry.stamps.iter().all(Stamp::still_valid);
        if let Some(entry) = memory.get(&key).filter(|entry| valid(entry)) {
            return Ok(Lookup {
                fingerprint: entry.fingerprint.clone(),
                hashed: false,
            });
        }
        let mut cache = self.load();
        if let Some(entry) = cache.entries.get(&key).filter(|entry| valid(entry)) {
            tracing::debug!("toolchain {key}: fingerprint from the cache");
            memory.insert(key, entry.clone());
            return Ok(Lookup {
                fingerprint: entry.fingerprint.clone(),
                hashed: false,
            });
        }
        let (fingerprint, stamps) = compute(compiler)?;
        tracing::info!(
            "toolchain {key}: hashed ({}, {}, {})",
            fingerprint.target,
            fingerprint.version,
            fingerprint.digest()
        );
        let entry = CacheEntry {
            stamps,
            fingerprint: fingerprint.clone(),
        };
        memory.insert(key.clone(), entry.clone());
        cache.entries.insert(key, entry);
        if let Err(err) = self.store(&cache) {
            tracing::debug!("cannot write {}: {err:#}", self.file.display());
        }
        Ok(Lookup {
            fingerprint,
            hashed: true,
        })
    }

    fn load(&self) -> CacheFile {
        std::fs::read(&self.file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|cache| cache.format == CACHE_FORMAT)
            .unwrap_or(CacheFile {
                format: CACHE_FORMAT,
                entries: BTreeMap::new(),
            })
    }

    /// Written to a temporary file and renamed, so concurrent writers never leave a
    /// torn file (the last one wins; both wrote correct data).
    fn store(&self, cache: &CacheFile) -> Result<()> {
        let dir = self.file.parent().context("cache file has no directory")?;
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut temp, cache)?;
        temp.persist(&self.file)?;
        Ok(())
    }
}

/// Runs the driver to learn its target, version and programs, and hashes them.
fn compute(compiler: &Path) -> Result<(Fingerprint, Vec<Stamp>)> {
    let ask = |args: &[&str]| -> Result<String> {
        let output = Command::new(compiler)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", compiler.display()))?;
        if !output.status.success() {
            bail!(
                "{} {} failed: {}",
                compiler.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let target = ask(&["-dumpmachine"])?;
    // GCC's line is `NAME (PKGVERSION) VERSION`, NAME being whatever it was run as;
    // the same compiler run under another name is still the same compiler.
    let version_line = ask(&["--version"])?;
    let version_line = version_line.lines().next().unwrap_or_default();
    let version = match version_line.split_once(' ') {
        Some((_, rest)) if rest.starts_with('(') => rest,
        _ => version_line,
    }
    .to_string();
    let mut stamps = vec![Stamp::of(compiler).context("the compiler vanished")?];
    let driver_sha256 = hash_file(compiler)?;
    let mut programs = BTreeMap::new();
    for name in COMPILE_PROGRAMS {
        let printed = ask(&[&format!("-print-prog-name={name}")])?;
        let Some(program) = locate_program(&printed) else {
            continue;
        };
        if let Some(stamp) = Stamp::of(&program) {
            stamps.push(stamp);
            programs.insert(name.to_string(), hash_file(&program)?);
        }
    }
    Ok((
        Fingerprint {
            compiler: compiler.to_path_buf(),
            target,
            version,
            driver_sha256,
            programs,
        },
        stamps,
    ))
}

/// What `-print-prog-name` printed, as a file: a path as it is, a bare name (the driver
/// found none of its own and will search PATH, as for `as`) looked up on PATH.
fn locate_program(printed: &str) -> Option<PathBuf> {
    if printed.contains('/') {
        let path = std::fs::canonicalize(printed).ok()?;
        return path.is_file().then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(printed))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fingerprint {
        Fingerprint {
            compiler: "/usr/bin/x86_64-linux-gnu-gcc-12".into(),
            target: "x86_64-linux-gnu".into(),
            version: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            driver_sha256: "aa".repeat(32),
            programs: [("cc1".to_string(), "bb".repeat(32))].into(),
        }
    }

    #[test]
    fn differences_name_what_differs() {
        let here = sample();
        assert_eq!(here.difference(&here.clone(), false), None);
        let mut there = sample();
        there.programs.insert("cc1".into(), "cc".repeat(32));
        assert!(
            here.difference(&there, false)
                .unwrap()
                .contains("cc1 differs")
        );
        assert_eq!(here.difference(&there, true), None);
        there.version = "gcc (GCC) 13.1.0".into();
        let why = here.difference(&there, true).unwrap();
        assert!(why.contains("12.2.0") && why.contains("13.1.0"), "{why}");
        there.target = "arm-none-eabi".into();
        assert!(
            here.difference(&there, true)
                .unwrap()
                .contains("arm-none-eabi")
        );
    }

    #[test]
    fn the_local_gcc_is_fingerprinted_once_then_cached() {
        let Ok(gcc) = real_compiler(Path::new("/usr/bin/gcc"), None) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = FingerprintCache::at(dir.path().join("toolchains.json"));
        let first = cache.fingerprint(&gcc).unwrap();
        assert!(first.hashed);
        assert!(first.fingerprint.programs.contains_key("cc1"));
        let second = cache.fingerprint(&gcc).unwrap();
        assert!(!second.hashed);
        assert_eq!(first.fingerprint, second.fingerprint);
    }

    #[test]
    fn ccache_wrappers_lead_to_the_real_compiler() {
        let dir = tempfile::tempdir().unwrap();
        let (wrappers, real) = (dir.path().join("ccache"), dir.path().join("bin"));
        std::fs::create_dir_all(&wrappers).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        let ccache = dir.path().join("ccache-binary/ccache");
        std::fs::create_dir_all(ccache.parent().unwrap()).unwrap();
        std::fs::write(&ccache, "").unwrap();
        std::fs::write(real.join("cc-x"), "").unwrap();
        std::os::unix::fs::symlink(&ccache, wrappers.join("cc-x")).unwrap();
        let path = std::env::join_paths([&wrappers, &real]).unwrap();
        assert_eq!(
            real_compiler(&wrappers.join("cc-x"), Some(&path)).unwrap(),
            std::fs::canonicalize(real.join("cc-x")).unwrap()
        );
        let only_wrappers = std::env::join_paths([&wrappers]).unwrap();
        assert!(real_compiler(&wrappers.join("cc-x"), Some(&only_wrappers)).is_err());
    }
}
