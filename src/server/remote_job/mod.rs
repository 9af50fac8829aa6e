//! The box side of one remote-preprocessed job (issue 13): the user's own compile
//! command, run on the client's files laid out at their client paths under
//! `<jobdir>/root`, so that the object and the dependency file come back byte-identical
//! to a local compile's.
//!
//! The job's input is a tree of blobs in the box's [`Store`]. The command is checked and
//! moved into the tree (`policy`), the tree laid out from the store without ever writing
//! or reading through the client's symlinks (`materialise`), the compiler run as every
//! box job runs ([`super::job`]: allowlist, slot, niceness, lifetime, process group,
//! scrubbed environment, Landlock confined to the job directory, which holds the tree),
//! and what it wrote taken back to client paths: `<root>` out of the dependency file,
//! re-wrapped as gcc wraps it (`depfile`), and out of the diagnostics. [`run`] is the
//! whole job; [`RemoteJobError::into_answer`] is what the client is told otherwise.
//!
//! # Not byte-identical (gcc 12)
//! When gcc leaves the line table to the assembler (`.file`/`.loc`: always on
//! arm-none-eabi, on x86-64 with `-gdwarf-4` or older) and the source is named by an
//! absolute path, the prefix map that takes `<root>` out renames the source, and gcc then
//! lists it twice in `.debug_line` (once by its remapped `DW_AT_name`, once by the name
//! it was given), shifting the `DW_AT_decl_file` numbers after it. Relative sources and
//! absolute headers are unaffected; `tests/remote_job.rs` keeps the case (ignored).
//!
//! # Confinement
//! The box's own I/O never follows the tree's symlinks. The compiler does (it must, as
//! locally), so a source climbing past the root (`#include "../../../../x"`, or symlinks
//! that only climb out together) reaches the box's files unless Landlock confines it,
//! as with `.incbin` for every job.

pub mod depfile;
mod materialise;
pub mod policy;
mod warm;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::allowlist::{Allowlist, AllowlistError};
use super::counters::{self, Ended};
use super::job::{self, Compile, NotRun};
use super::settings::BoxSettings;
use super::store::Store;
use crate::digest::Digest;
use crate::exit_code::ExitCode;
use crate::protocol::job::PASSED_ENVIRONMENT;
use crate::protocol::mux::remote::RemoteAnswer;
pub use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::tree::{self, WalkEntry, WalkError};
use materialise::{LayoutError, SharedFiles, Tree};
use warm::WarmTree;
pub use warm::WarmTrees;

/// Environment the client may set besides its locale ([`PASSED_ENVIRONMENT`]): both
/// change what a compile writes exactly as they would locally (`__TIMESTAMP__` is the
/// source's mtime in local time; `SOURCE_DATE_EPOCH` fixes `__DATE__` and `__TIME__`).
const PASSED_FOR_OUTPUT: &[&str] = &["TZ", "SOURCE_DATE_EPOCH"];

/// Name of the dependency file the box asks for when the user asked for none, in the
/// job directory (outside the tree, so no client path can name it).
const OWN_DEP_FILE: &str = "sshcc-deps.d";

/// The tree's directory in the job directory.
const TREE_DIR: &str = "root";

/// Why a remote job produced no [`RemoteCompile`].
#[derive(Debug, thiserror::Error)]
pub enum RemoteJobError {
    /// These blobs of the tree are not in the store (never sent, evicted, or found
    /// corrupt): the client uploads them and sends the job again.
    #[error("the store lacks {} blob(s) of the job's tree", .0.len())]
    Missing(Vec<Digest>),
    /// The job asks for what the box does for nobody: a forbidden option, a path
    /// outside the tree, a tree that would write or read through its own symlinks.
    #[error("{0}")]
    Refused(String),
    /// The compiler did not run or did not finish (not allowlisted, no sandbox where one
    /// is required, the job lifetime): distcc's code says which.
    #[error("{message}")]
    NotRun { code: ExitCode, message: String },
    /// The box itself failed (its disk, its job directory).
    #[error("{0}")]
    Internal(String),
    /// The client went away or the box was told to stop: nobody to answer.
    #[error("the job was cancelled")]
    Cancelled,
}

impl RemoteJobError {
    /// The distcc exit code a client reports for it.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RemoteJobError::Missing(_) => ExitCode::NoSuchFile,
            RemoteJobError::Refused(_) => ExitCode::BadArguments,
            RemoteJobError::NotRun { code, .. } => *code,
            RemoteJobError::Internal(_) => ExitCode::IoError,
            RemoteJobError::Cancelled => ExitCode::Gone,
        }
    }

    /// The answer for the client (`None` when there is nobody to answer).
    pub fn into_answer(self) -> Option<RemoteAnswer> {
        match self {
            RemoteJobError::Missing(digests) => Some(RemoteAnswer::Missing(digests)),
            RemoteJobError::Cancelled => None,
            other => Some(RemoteAnswer::Refused {
                code: other.exit_code() as u8,
                reason: format!("sshcc on {}: {other}", job::hostname()),
            }),
        }
    }
}

/// Runs `job` on its tree from `store` (in a tree an earlier job left in `trees`, when
/// one is idle) unless `cancelled` resolves first, and counts it in the box's counters
/// (a job sent back for missing blobs is not counted: its retry is).
pub async fn run(
    job: &RemoteJob,
    store: Arc<Store>,
    trees: &WarmTrees,
    allowlist: Result<Allowlist, AllowlistError>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
) -> Result<RemoteCompile, RemoteJobError> {
    let mut started = None;
    let result = run_uncounted(
        job,
        store,
        trees,
        allowlist,
        settings,
        cancelled,
        &mut started,
    )
    .await;
    let compile_time = started.map(|started: Instant| started.elapsed());
    let ended = match (&result, compile_time) {
        (Err(missing @ RemoteJobError::Missing(_)), _) => {
            tracing::debug!("remote job: {missing}");
            return result;
        }
        (Err(RemoteJobError::Cancelled), _) => Ended::Cancelled,
        (Ok(compile), _) if compile.status == 0 => Ended::Succeeded,
        (Ok(_), _) | (Err(_), Some(_)) => Ended::Failed,
        (Err(_), None) => Ended::Refused,
    };
    counters::record(&settings.lock_dir, ended, compile_time);
    if let Err(err) = &result {
        tracing::warn!("remote job: {err}");
    }
    result
}

/// What the compile needs from the blocking preparation.
struct Prepared {
    tree: Tree,
    /// Each requested output: the client path as asked and where it is in the tree.
    outputs: Vec<(String, PathBuf)>,
    /// The user's dependency file in the tree, when they asked for one.
    user_dep_file: Option<PathBuf>,
}

async fn run_uncounted(
    job: &RemoteJob,
    store: Arc<Store>,
    trees: &WarmTrees,
    allowlist: Result<Allowlist, AllowlistError>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
    compiler_started: &mut Option<Instant>,
) -> Result<RemoteCompile, RemoteJobError> {
    let compiler = allowlist
        .and_then(|list| list.resolve(&job.compiler).map(String::from))
        .map(job::behind_ccache)
        .map_err(|err| RemoteJobError::NotRun {
            code: ExitCode::CompilerMissing,
            message: err.to_string(),
        })?;
    check_strings(job)?;
    let (job_dir, mut tree) = match trees.take() {
        Some(warm) => (warm.job_dir, Some(warm.tree)),
        None => {
            let job_dir = tempfile::Builder::new()
                .prefix("sshcc-job-")
                .tempdir()
                .map_err(|err| {
                    RemoteJobError::Internal(format!(
                        "cannot create a job directory in {}: {err}",
                        std::env::temp_dir().display()
                    ))
                })?;
            (job_dir, None)
        }
    };
    let result = run_in(
        job,
        &compiler,
        (job_dir.path(), &mut tree, trees.shared()),
        store,
        settings,
        cancelled,
        compiler_started,
    )
    .await;
    // What `run_in` handed back is fit for the next job; anything else is removed,
    // which for a tree of thousands of files is blocking I/O too.
    let unkept = match tree {
        Some(tree) => trees
            .keep(WarmTree { job_dir, tree })
            .map(|warm| warm.job_dir),
        None => Some(job_dir),
    };
    if let Some(job_dir) = unkept {
        let _ = tokio::task::spawn_blocking(move || drop(job_dir)).await;
    }
    result
}

/// [`run_uncounted`] in the job directory `job_dir`, on the tree an earlier job left in
/// it (`tree`, or a new one when `None`) linking the process's `shared` files; `tree`
/// holds the tree afterwards when a later job may take it over.
async fn run_in(
    job: &RemoteJob,
    compiler: &str,
    (job_dir, tree, shared): (&Path, &mut Option<Tree>, Arc<SharedFiles>),
    store: Arc<Store>,
    settings: &BoxSettings,
    cancelled: impl Future<Output = ()>,
    compiler_started: &mut Option<Instant>,
) -> Result<RemoteCompile, RemoteJobError> {
    tokio::pin!(cancelled);
    let cwd = client_dir(&job.cwd, "working directory")?;
    if let Some(pwd) = &job.pwd {
        client_dir(pwd, "$PWD")?;
    }
    let root_dir = job_dir.join(TREE_DIR);
    let root = usable_root(&root_dir)?;
    let own_dep_file = job_dir.join(OWN_DEP_FILE);
    let argv: Vec<String> = std::iter::once(job.compiler.clone())
        .chain(job.args.iter().cloned())
        .collect();
    let command = policy::rewrite(
        &argv,
        &policy::Layout {
            root: &root,
            cwd: &job.cwd,
            own_dep_file: &own_dep_file.display().to_string(),
        },
    )
    .map_err(|refusal| RemoteJobError::Refused(refusal.to_string()))?;
    let env = environment(job, &root)?;

    let preparing = {
        let (job_dir, cwd, outputs) = (job_dir.to_path_buf(), cwd.clone(), job.outputs.clone());
        let (specs, user_dep_file) = (command.specs.clone(), command.user_dep_file.clone());
        let tree_root = job.root;
        let max_input = settings.max_input;
        let earlier = tree.take();
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || {
            let entries = walk_tree(&tree_root, max_input, &store)?;
            let tree = match earlier {
                Some(tree) => take_over(tree, &job_dir, &entries, &cwd)?,
                None => Tree::create(job_dir.join(TREE_DIR)).map_err(layout_error)?,
            };
            prepare(
                tree,
                &entries,
                (&store, &shared),
                &cwd,
                &outputs,
                user_dep_file.as_deref(),
                &specs,
            )
        })
    };
    let mut preparing = preparing;
    let prepared = tokio::select! {
        prepared = &mut preparing => prepared.map_err(|err| RemoteJobError::Internal(err.to_string()))??,
        () = &mut cancelled => {
            // The layout goes on in its thread; it must be done before the job
            // directory is removed, or what it still writes would outlive the job.
            let _ = preparing.await;
            return Err(RemoteJobError::Cancelled);
        }
    };

    let work_dir = root_dir.join(&cwd);
    let compile = Compile {
        compiler,
        args: &command.args,
        work_dir: &work_dir,
        job_dir,
        env: &env,
    };
    let ran = match job::run_compiler(compile, settings, cancelled, compiler_started).await {
        Ok(ran) => ran,
        Err(NotRun::Refused(code, message)) => {
            return Err(RemoteJobError::NotRun { code, message });
        }
        Err(NotRun::Abandoned) => return Err(RemoteJobError::Cancelled),
    };
    let mut compile = RemoteCompile {
        status: ran.status,
        stdout: without(&ran.stdout, root.as_bytes()),
        stderr: without(&ran.stderr, root.as_bytes()),
        outputs: Vec::new(),
        deps: Vec::new(),
    };
    let prepared = if ran.status == 0 {
        let root = root.clone();
        let (prepared, collected) = tokio::task::spawn_blocking(move || {
            let collected = prepared
                .tree
                .check_shared(&shared)
                .map_err(RemoteJobError::Internal)
                .and_then(|()| collect(&prepared, &root, &own_dep_file));
            (prepared, collected)
        })
        .await
        .map_err(|err| RemoteJobError::Internal(err.to_string()))?;
        (compile.outputs, compile.deps) = collected?;
        prepared
    } else {
        prepared
    };
    *tree = Some(prepared.tree);
    Ok(compile)
}

/// The tree an earlier job left in `job_dir`, pruned to what `entries` and the working
/// directory `cwd` ask for, with nothing beside it (blocking I/O).
fn take_over(
    mut tree: Tree,
    job_dir: &Path,
    entries: &[(PathBuf, WalkEntry)],
    cwd: &Path,
) -> Result<Tree, RemoteJobError> {
    let failed = |err: std::io::Error| {
        RemoteJobError::Internal(format!(
            "cannot reuse the job directory {}: {err}",
            job_dir.display()
        ))
    };
    warm::clear_beside(job_dir, TREE_DIR.as_ref()).map_err(failed)?;
    tree.prune(entries, cwd).map_err(failed)?;
    Ok(tree)
}

/// The entries of the tree `tree_root`, at most `max_input` bytes of files in all
/// (`--max-input` bounds what one job may make the box lay out, as it bounds a
/// preprocessed source; blocking I/O).
fn walk_tree(
    tree_root: &Digest,
    max_input: u64,
    store: &Store,
) -> Result<Vec<(PathBuf, WalkEntry)>, RemoteJobError> {
    // The store verifies what it hands out; a blob it lacks (or found corrupt) is one
    // the client sends again.
    let entries =
        tree::walk(tree_root, |digest| store.get(digest).ok()).map_err(|err| match err {
            WalkError::Missing(digests) => RemoteJobError::Missing(digests),
            other => RemoteJobError::Refused(format!("the job's tree is unusable: {other}")),
        })?;
    let input_bytes: u64 = entries
        .iter()
        .map(|(_, entry)| match entry {
            WalkEntry::File { digest, .. } => digest.size_bytes,
            _ => 0,
        })
        .sum();
    if input_bytes > max_input {
        return Err(RemoteJobError::Refused(format!(
            "the job's sources and headers, {input_bytes} bytes, exceed the limit of {max_input} (--max-input)"
        )));
    }
    Ok(entries)
}

/// Lays the tree's `entries` out under `root` with the directories the compile needs
/// (blocking I/O).
fn prepare(
    mut tree: Tree,
    entries: &[(PathBuf, WalkEntry)],
    (store, shared): (&Store, &SharedFiles),
    cwd: &Path,
    outputs: &[String],
    user_dep_file: Option<&str>,
    specs: &[String],
) -> Result<Prepared, RemoteJobError> {
    // gcc looks a bare specs name up in its own directories, then under the sysroot,
    // then in the working directory: one the client sent could make it run anything.
    if let Some(name) = specs.iter().find(|name| {
        entries
            .iter()
            .any(|(path, _)| path.file_name().is_some_and(|file| file == name.as_str()))
    }) {
        return Err(RemoteJobError::Refused(format!(
            "refused argument \"-specs={name}\": a specs file sent with the job can run any program"
        )));
    }
    tree.fill(entries, store, shared).map_err(layout_error)?;
    tree.directory(cwd).map_err(layout_error)?;
    let outputs = outputs
        .iter()
        .map(|output| Ok((output.clone(), tree.output(cwd, output)?)))
        .collect::<Result<Vec<_>, LayoutError>>()
        .map_err(layout_error)?;
    let user_dep_file = user_dep_file
        .map(|path| tree.output(cwd, path))
        .transpose()
        .map_err(layout_error)?;
    tree.seal().map_err(layout_error)?;
    Ok(Prepared {
        tree,
        outputs,
        user_dep_file,
    })
}

/// Client path and content of each output, as [`RemoteCompile::outputs`].
type Outputs = Vec<(String, Vec<u8>)>;

/// Reads back what a successful compile wrote: each output, the dependency file in
/// client paths, and the prerequisites it lists (blocking I/O).
fn collect(
    prepared: &Prepared,
    root: &str,
    own_dep_file: &Path,
) -> Result<(Outputs, Vec<String>), RemoteJobError> {
    let missing = |what: &str, err: std::io::Error| RemoteJobError::NotRun {
        code: ExitCode::Failure,
        message: format!("the compiler succeeded but its output {what} is unreadable: {err}"),
    };
    let dep_text = match &prepared.user_dep_file {
        Some(path) => prepared.tree.read(path),
        // The job directory holds only what we and the compile made.
        None => std::fs::read(own_dep_file),
    }
    .map_err(|err| missing("dependency file", err))?;
    let dep_text = String::from_utf8(dep_text)
        .map_err(|_| RemoteJobError::Internal("the dependency file is not UTF-8".to_string()))?;
    let deps = depfile::to_client(&dep_text, root);
    let mut outputs = Vec::with_capacity(prepared.outputs.len());
    for (client, path) in &prepared.outputs {
        let content = match &prepared.user_dep_file {
            Some(dep_file) if dep_file == path => deps.text.clone().into_bytes(),
            _ => prepared
                .tree
                .read(path)
                .map_err(|err| missing(&format!("{client:?}"), err))?,
        };
        outputs.push((client.clone(), content));
    }
    Ok((outputs, deps.deps))
}

/// The compiler's added environment: the client's locale and output-affecting
/// variables, and `$PWD` in the tree (gcc records `$PWD` as the compilation directory
/// when it names the working directory).
fn environment(job: &RemoteJob, root: &str) -> Result<Vec<(String, String)>, RemoteJobError> {
    let mut env = Vec::new();
    for (name, value) in &job.locale {
        if name == "TZ" && (value.contains("..") || value.trim_start_matches(':').starts_with('/'))
        {
            // A zone file path would make the compiler open a file the client chose.
            return Err(RemoteJobError::Refused(format!(
                "TZ={value:?} names a file; use a zone name"
            )));
        }
        if PASSED_ENVIRONMENT.contains(&name.as_str()) || PASSED_FOR_OUTPUT.contains(&name.as_str())
        {
            env.push((name.clone(), value.clone()));
        } else {
            tracing::debug!("dropped {name} from a remote job's environment");
        }
    }
    let pwd = job.pwd.as_deref().unwrap_or(&job.cwd);
    env.push(("PWD".to_string(), format!("{root}{pwd}")));
    Ok(env)
}

/// A client directory as a path relative to the root: absolute, without `.` or `..`.
fn client_dir(path: &str, what: &str) -> Result<PathBuf, RemoteJobError> {
    let bad = || {
        RemoteJobError::Refused(format!(
            "the {what} {path:?} is not an absolute, normalised path"
        ))
    };
    if !path.starts_with('/') || path.split('/').any(|part| part == "." || part == "..") {
        return Err(bad());
    }
    Ok(materialise::relative(Path::new(path.trim_start_matches('/'))).unwrap_or_default())
}

/// Every string of the job goes into a path, an argument or the environment, none of
/// which can hold a NUL.
fn check_strings(job: &RemoteJob) -> Result<(), RemoteJobError> {
    let strings = std::iter::once(&job.cwd)
        .chain(&job.args)
        .chain(&job.pwd)
        .chain(&job.outputs)
        .chain(job.locale.iter().flat_map(|(name, value)| [name, value]));
    for string in strings {
        if string.contains('\0') {
            return Err(RemoteJobError::Refused(format!(
                "{string:?} contains a NUL"
            )));
        }
    }
    if job
        .locale
        .iter()
        .any(|(name, _)| name.is_empty() || name.contains('='))
    {
        return Err(RemoteJobError::Refused(
            "a malformed environment variable".to_string(),
        ));
    }
    Ok(())
}

/// The root as the text put in front of client paths. It must need no quoting in a
/// dependency file and match nothing but itself in diagnostics, so that taking it out
/// again is exact: the job directory's name is ours, but `$TMPDIR` is not.
fn usable_root(root: &Path) -> Result<String, RemoteJobError> {
    let text = root.to_str().unwrap_or_default();
    if !is_plain_root(text) {
        return Err(RemoteJobError::Internal(format!(
            "the job directory {} needs a temporary directory whose path has only \
             letters, digits and /._-+ (set TMPDIR)",
            root.display()
        )));
    }
    Ok(text.to_string())
}

/// Whether `root` is absolute and has only letters, digits and `/._-+`: it then needs
/// no quoting in a dependency file and matches nothing but itself in diagnostics.
pub fn is_plain_root(root: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
    root.starts_with('/') && root.chars().all(plain)
}

/// `bytes` without any occurrence of `root`.
pub fn without(bytes: &[u8], root: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(root.len()).position(|window| window == root) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + root.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn layout_error(err: LayoutError) -> RemoteJobError {
    match err {
        LayoutError::Missing(digests) => RemoteJobError::Missing(digests),
        LayoutError::Refused(message) => RemoteJobError::Refused(message),
        LayoutError::Io(message) => {
            RemoteJobError::Internal(format!("cannot lay out the job's tree: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_taken_out_of_diagnostics() {
        assert_eq!(
            without(b"/J/root/a.c:1: in /J/root/b.h /J/rootx", b"/J/root"),
            b"/a.c:1: in /b.h x"
        );
        assert_eq!(without(b"", b"/J/root"), b"");
    }

    #[test]
    fn client_directories_must_be_absolute_and_normal() {
        assert_eq!(
            client_dir("/home/a", "cwd").unwrap(),
            PathBuf::from("home/a")
        );
        assert_eq!(client_dir("/", "cwd").unwrap(), PathBuf::new());
        assert!(client_dir("home/a", "cwd").is_err());
        assert!(client_dir("/home/../etc", "cwd").is_err());
        assert!(usable_root(Path::new("/tmp/sshcc-job-Ab1/root")).is_ok());
        assert!(usable_root(Path::new("/tmp/my dir/root")).is_err());
    }
}
