//! The client side of remote preprocessing (issue 13): which files a compile job's
//! preprocessor may open, so the box can run the real preprocessor on exactly those, and
//! the check afterwards that what the box used is what the client saw.
//!
//! [`InputCache::prepare`] turns a job into [`Prepared::Remote`] (the input entries with
//! digests, the options the box adds) or [`Prepared::Local`] with a reason whenever
//! anything is in doubt. It lives in the daemon, so its caches live as long as it does:
//! - `search`: the compiler's include chains and pre-includes per configuration, asked
//!   of the compiler and revalidated by stat on every use;
//! - `file_state`: stat → digest, so an unchanged header is hashed once;
//! - `directives`: what each file (by content) may include, scanned once;
//! - `listing`: each directory's entries, so a name a directory lacks costs no stat
//!   while one stat per job shows the directory unchanged;
//! - `resolve` finds the closure as libcpp would, with fresh stats per job (`walk`
//!   records the directories and symlinks the box must reproduce);
//! - `command` reads the compile command.
//!
//! Everything is blocking (stats, reads, running the compiler): async callers use
//! `spawn_blocking`. [`InputCache`] is `Send + Sync`; jobs run concurrently.

mod command;
mod directives;
mod file_state;
mod listing;
mod resolve;
mod search;
mod walk;

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

use crate::digest::Digest;
use crate::tree::Entry;
use crate::tree::InputTree;
use crate::tree::Timestamp;
use crate::tree::TreeError;

pub use file_state::FileStat;
pub use search::PREPROCESSING_ENV;

use command::RootKind;
use file_state::FileStates;
use file_state::now_ns;
use listing::DirListings;
use resolve::DirectiveCache;
use resolve::JobCaches;
use resolve::Resolver;
use search::Probes;
use search::Request;
use walk::Crossed;
use walk::Walker;

/// Files one job may ship before it is preprocessed locally instead.
pub const MAX_FILES: usize = 20_000;

/// A compile job as the wrapper ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The compiler, resolved and absolute.
    pub compiler: PathBuf,
    /// The words after the compiler.
    pub args: Vec<String>,
    /// The working directory (`getcwd`).
    pub cwd: PathBuf,
    /// `$PWD`, which GCC prefers for `DW_AT_comp_dir` when it names the same directory.
    pub pwd: Option<PathBuf>,
    /// The job's values of the variables in [`PREPROCESSING_ENV`] that are set.
    pub env: Vec<(String, String)>,
}

/// A file's modification time (REAPI's `Timestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mtime {
    pub seconds: i64,
    pub nanos: u32,
}

/// One path of the job's tree, keyed by its absolute client path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEntry {
    /// A regular file; its content is read from the client path.
    File {
        digest: Digest,
        executable: bool,
        mtime: Mtime,
    },
    /// A symlink with its target as written (relative or absolute).
    Symlink {
        target: PathBuf,
    },
    Directory,
}

/// What the box needs for a remote-preprocessed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInputs {
    /// Every file, symlink and directory, by absolute client path, sorted.
    pub entries: Vec<(PathBuf, InputEntry)>,
    /// Options for the box's compiler, before the user's: `-nostdinc`, `-nostdinc++`
    /// for C++, `-include NAME` for each implicit pre-include (GCC reads it before the
    /// user's `-include` files, so it must come before them).
    pub leading_args: Vec<String>,
    /// Options for the box's compiler, after the user's: `-isystem DIR` for each
    /// builtin system directory in order (after the user's own `-isystem`s). Client
    /// paths: the box prefixes them like every other absolute path.
    pub extra_args: Vec<String>,
    /// Every shipped file's stat at scan time, for [`InputCache::verify_after`].
    pub watched: Vec<(PathBuf, FileStat)>,
    /// Whether a shipped file names `__DATE__` or `__TIME__`: the object then depends
    /// on when it is compiled, so no cache may answer the job.
    pub reads_the_clock: bool,
    /// The job's working directory, which relative dependency paths are relative to.
    pub cwd: PathBuf,
    scanned_at_ns: i128,
}

impl JobInputs {
    /// The job's input root as a REAPI tree (`crate::tree`).
    pub fn input_tree(&self) -> Result<InputTree, TreeError> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for (path, entry) in &self.entries {
            let entry = match entry {
                InputEntry::File {
                    digest,
                    executable,
                    mtime,
                } => Entry::File {
                    digest: *digest,
                    executable: *executable,
                    mtime: Timestamp {
                        seconds: mtime.seconds,
                        nanos: mtime.nanos as i32,
                    },
                },
                InputEntry::Symlink { target } => Entry::Symlink {
                    target: target
                        .to_str()
                        .ok_or_else(|| TreeError::BadTarget(target.display().to_string()))?
                        .to_string(),
                },
                InputEntry::Directory => Entry::Directory,
            };
            entries.push((path.as_path(), entry));
        }
        InputTree::build(entries)
    }

    /// The files, with their client paths.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &Digest)> {
        self.entries.iter().filter_map(|(path, entry)| match entry {
            InputEntry::File { digest, .. } => Some((path.as_path(), digest)),
            _ => None,
        })
    }
}

/// The symlink-free path of the file `path` names and its stat now. A job's hundreds of
/// dependencies share a few dozen directories, so each directory is resolved once
/// (`real_dirs`) and each file costs one `lstat`, unless it is itself a symlink.
fn real_file(
    path: &Path,
    real_dirs: &mut foldhash::HashMap<PathBuf, PathBuf>,
) -> std::io::Result<(PathBuf, FileStat)> {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let real_dir = match real_dirs.get(dir) {
            Some(real) => real.clone(),
            None => {
                let real = std::fs::canonicalize(dir)?;
                real_dirs.insert(dir.to_path_buf(), real.clone());
                real
            }
        };
        let candidate = real_dir.join(name);
        let meta = std::fs::symlink_metadata(&candidate)?;
        if !meta.file_type().is_symlink() {
            return Ok((candidate, FileStat::of(&meta)));
        }
    }
    let real = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&real)?;
    Ok((real, FileStat::of(&meta)))
}

/// What to do with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    Remote(JobInputs),
    /// Preprocess locally, as without remote preprocessing.
    Local {
        why: String,
    },
}

/// The daemon's input discovery and its caches.
#[derive(Default)]
pub struct InputCache {
    file_states: FileStates,
    directives: DirectiveCache,
    listings: DirListings,
    probes: Probes,
}

// One cache serves every job of the daemon, from any thread.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<InputCache>();
    shared::<JobInputs>();
};

impl InputCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache that trusts a stat once its file is `window` old (2 s by default). Tests
    /// use zero so that files they just wrote are cached like settled ones.
    pub fn with_racy_window(window: std::time::Duration) -> Self {
        let window_ns = window.as_nanos() as i128;
        let mut cache = Self::default();
        cache.file_states.racy_window_ns = window_ns;
        cache.listings = DirListings::new(window_ns);
        cache
    }

    /// Finds `job`'s inputs, or why it should be preprocessed locally.
    pub fn prepare(&self, job: &JobSpec) -> Prepared {
        let started = Instant::now();
        match self.try_prepare(job) {
            Ok(inputs) => {
                tracing::debug!(
                    entries = inputs.entries.len(),
                    files = inputs.watched.len(),
                    elapsed = ?started.elapsed(),
                    "inputs prepared"
                );
                Prepared::Remote(inputs)
            }
            Err(why) => {
                tracing::debug!(%why, elapsed = ?started.elapsed(), "preprocessing locally");
                Prepared::Local { why }
            }
        }
    }

    /// Checks the dependencies the box's compile reported (`.d` paths, made relative to
    /// the client again, relative ones to the working directory): each must be a file
    /// that was shipped and still be as it was when the job was scanned. An `Err` says
    /// why the object cannot be trusted (compile locally instead).
    pub fn verify_after(&self, inputs: &JobInputs, deps: &[PathBuf]) -> Result<(), String> {
        // By the paths' bytes: the real paths here and there are built the same way.
        let watched: foldhash::HashMap<&std::ffi::OsStr, &FileStat> = inputs
            .watched
            .iter()
            .map(|(path, stat)| (path.as_os_str(), stat))
            .collect();
        let mut real_dirs = foldhash::HashMap::default();
        for dep in deps {
            let (real, now) = real_file(&inputs.cwd.join(dep), &mut real_dirs)
                .map_err(|err| format!("{}: {err}", dep.display()))?;
            let Some(before) = watched.get(real.as_os_str()) else {
                return Err(format!("{} was used but not shipped", dep.display()));
            };
            if !now.same_version(before) {
                return Err(format!("{} changed during the job", dep.display()));
            }
            if before.is_racy(inputs.scanned_at_ns, self.file_states.racy_window_ns) {
                // Its stat cannot prove it unchanged: compare contents.
                let shipped = inputs
                    .entries
                    .binary_search_by(|(entry, _)| entry.as_path().cmp(&real))
                    .ok()
                    .and_then(|at| match &inputs.entries[at].1 {
                        InputEntry::File { digest, .. } => Some(*digest),
                        _ => None,
                    });
                let current = Digest::of_file(&real).ok();
                if shipped.is_none() || current != shipped {
                    return Err(format!("{} changed during the job", dep.display()));
                }
            }
        }
        Ok(())
    }

    /// Files read and hashed so far (each unchanged file once per daemon life).
    pub fn files_hashed(&self) -> u64 {
        self.file_states.hashed()
    }

    /// Times the compiler was run to probe its include search.
    pub fn probes_run(&self) -> u64 {
        self.probes.runs()
    }

    fn try_prepare(&self, job: &JobSpec) -> Result<JobInputs, String> {
        if let Some((name, _)) = job
            .env
            .iter()
            .find(|(name, _)| PREPROCESSING_ENV.contains(&name.as_str()))
        {
            return Err(format!("{name} is set"));
        }
        let compiler = job
            .compiler
            .to_str()
            .filter(|_| job.compiler.is_absolute())
            .ok_or_else(|| {
                format!(
                    "compiler {} is not an absolute path",
                    job.compiler.display()
                )
            })?;
        let compiler_name = compiler.rsplit('/').next().unwrap_or(compiler);
        if compiler_name.contains("clang") {
            return Err("clang's include search is not modelled".into());
        }
        let command = command::read(compiler, &job.args)?;
        let search = self.probes.search(&Request {
            compiler: &job.compiler,
            search_args: &command.search_args,
            builtin_args: &command.builtin_args,
            cwd: &job.cwd,
            language: command.language,
        })?;

        let scanned_at_ns = now_ns();
        let mut walker = Walker::default();
        let root = Path::new("/");
        let walk_error = |err: walk::WalkError| err.to_string();
        let cwd = walker
            .walk_dir(root, &job.cwd)
            .map_err(walk_error)?
            .ok_or_else(|| format!("working directory {} not found", job.cwd.display()))?;
        if let Some(pwd) = job.pwd.as_ref().filter(|pwd| pwd.is_absolute()) {
            // Only its symlinks matter (GCC compares it with "."); a strange one is
            // simply not reproduced, and GCC then ignores it on the box too.
            let _ = walker.walk(root, pwd);
        }
        let mut chain = Vec::new();
        for dir in search.chain() {
            chain.push(walker.walk_dir(&cwd, Path::new(dir)).map_err(walk_error)?);
        }
        for dir in search.named_dirs.iter().chain(&command.output_dirs) {
            walker.walk(&cwd, Path::new(dir)).map_err(walk_error)?;
        }

        let mut resolver = Resolver::new(
            walker,
            JobCaches {
                file_states: &self.file_states,
                directives: &self.directives,
                listings: self.listings.for_job(),
            },
            chain,
            search.quote.len(),
            command.defines.clone(),
            MAX_FILES,
        );
        let command_line_file = |resolver: &mut Resolver, name: &str| {
            resolver
                .command_line_file(&cwd, name)?
                .ok_or_else(|| format!("{name} (-include or -imacros) not found"))
        };
        for root in command.roots.iter().filter(|r| r.kind == RootKind::Imacros) {
            let node = command_line_file(&mut resolver, &root.name)?;
            resolver.push(node);
        }
        for name in &search.pre_includes {
            // GCC finds it through the bracket chain; the box, told `-include NAME`,
            // through the working directory and the quote chain. Both must agree.
            let here = resolver.bracket_file(name)?;
            let there = resolver.command_line_file(&cwd, name)?;
            match (here, there) {
                (Some(here), Some(there)) if here == there => resolver.push(here),
                (None, None) => {}
                _ => return Err(format!("the pre-include {name} would be found elsewhere")),
            }
        }
        for root in command.roots.iter().filter(|r| r.kind == RootKind::Include) {
            let node = command_line_file(&mut resolver, &root.name)?;
            resolver.push(node);
        }
        let main = resolver.main_file(&cwd, &command.source)?;
        resolver.push(main);
        resolver.run()?;

        let mut entries: BTreeMap<PathBuf, InputEntry> = BTreeMap::new();
        for (path, crossed) in std::mem::take(&mut resolver.walker.crossed) {
            let entry = match crossed {
                Crossed::Directory => InputEntry::Directory,
                Crossed::Symlink(target) => InputEntry::Symlink { target },
            };
            entries.insert(path, entry);
        }
        let mut watched = Vec::with_capacity(resolver.files.len());
        let mut reads_the_clock = false;
        for (path, shipped) in std::mem::take(&mut resolver.files) {
            reads_the_clock |= shipped.names_the_clock();
            let path = PathBuf::from(path);
            let (seconds, nanos) = shipped.stat.mtime();
            let file = InputEntry::File {
                digest: shipped.digest,
                executable: shipped.stat.executable(),
                mtime: Mtime { seconds, nanos },
            };
            if entries.insert(path.clone(), file).is_some() {
                return Err(format!("{} changed while scanning", path.display()));
            }
            watched.push((path, shipped.stat));
        }
        let mut leading_args = search.leading_args.clone();
        if !command.language.is_cxx() {
            leading_args.retain(|arg| arg != "-nostdinc++");
        }
        Ok(JobInputs {
            entries: entries.into_iter().collect(),
            leading_args,
            extra_args: search.trailing_args.clone(),
            watched,
            reads_the_clock,
            cwd: job.cwd.clone(),
            scanned_at_ns,
        })
    }
}
