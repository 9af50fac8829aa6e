//! A project in a temporary directory, and a simulated box: the job's entries
//! materialised under a root directory (files copied with their mtimes, symlinks kept,
//! absolute targets and arguments prefixed with the root), and the real compiler run
//! there with the box's options. Comparing its `-E` output and its `-M` dependencies
//! (root stripped) with a local run proves the closure complete and the options right.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sshcc::inputs::{InputCache, InputEntry, JobInputs, JobSpec, Prepared};

pub struct Project {
    _dir: tempfile::TempDir,
    /// Symlink-free, so that paths compare with canonicalised ones.
    pub root: PathBuf,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        Project { _dir: dir, root }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn mkdir(&self, relative: &str) {
        std::fs::create_dir_all(self.path(relative)).unwrap();
    }

    pub fn symlink(&self, target: &str, relative: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// A job run in `cwd` (relative to the project) with `args` (split on blanks).
    pub fn job(&self, compiler: &str, cwd: &str, args: &str) -> JobSpec {
        JobSpec {
            compiler: which(compiler).expect("compiler on PATH"),
            args: args.split_whitespace().map(String::from).collect(),
            cwd: self.path(cwd),
            pwd: Some(self.path(cwd)),
            env: Vec::new(),
        }
    }
}

/// The absolute path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

pub fn remote(cache: &InputCache, job: &JobSpec) -> JobInputs {
    match cache.prepare(job) {
        Prepared::Remote(inputs) => inputs,
        Prepared::Local { why } => panic!("{:?} preprocessed locally: {why}", job.args),
    }
}

pub fn local_why(cache: &InputCache, job: &JobSpec) -> String {
    match cache.prepare(job) {
        Prepared::Remote(inputs) => panic!(
            "{:?} was not refused ({} entries)",
            job.args,
            inputs.entries.len()
        ),
        Prepared::Local { why } => why,
    }
}

/// The job's words for a preprocessing run: `-c` and `-o FILE` dropped.
fn preprocessing_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-c" => {}
            "-o" => {
                words.next();
            }
            _ => out.push(word.clone()),
        }
    }
    out
}

/// What a preprocessing run printed, and the dependencies `-M` listed.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    pub preprocessed: String,
    pub deps: Vec<String>,
}

fn run(compiler: &Path, cwd: &Path, args: &[String]) -> Run {
    let output = |extra: &[&str]| {
        let out = Command::new(compiler)
            .args(args)
            .args(extra)
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} {extra:?} in {}: {}",
            compiler.display(),
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    Run {
        preprocessed: output(&["-E"]),
        deps: make_dependencies(&output(&["-M"])),
    }
}

/// The job preprocessed here.
pub fn local_run(job: &JobSpec) -> Run {
    run(&job.compiler, &job.cwd, &preprocessing_args(&job.args))
}

/// The job preprocessed on a simulated box holding only `inputs`.
pub fn box_run(inputs: &JobInputs, job: &JobSpec) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("box");
    let under = |path: &Path| -> PathBuf {
        let mut joined = root.clone().into_os_string();
        joined.push(path.as_os_str());
        PathBuf::from(joined)
    };
    for (path, entry) in &inputs.entries {
        let at = under(path);
        match entry {
            InputEntry::Directory => std::fs::create_dir_all(&at).unwrap(),
            InputEntry::Symlink { target } => {
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                let target = if target.is_absolute() {
                    under(target)
                } else {
                    target.clone()
                };
                std::os::unix::fs::symlink(target, &at).unwrap();
            }
            InputEntry::File { mtime, .. } => {
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::copy(path, &at).unwrap();
                set_mtime(&at, mtime.seconds, mtime.nanos);
            }
        }
    }
    let prefix = root.to_str().unwrap();
    let prefixed = |word: &str| -> String {
        for option in [
            "-I",
            "-iquote",
            "-isystem",
            "-idirafter",
            "-include",
            "-imacros",
        ] {
            if let Some(value) = word.strip_prefix(option)
                && value.starts_with('/')
            {
                return format!("{option}{prefix}{value}");
            }
        }
        if word.starts_with('/') {
            format!("{prefix}{word}")
        } else {
            word.to_string()
        }
    };
    let mut args: Vec<String> = inputs.leading_args.clone();
    args.extend(preprocessing_args(&job.args).iter().map(|w| prefixed(w)));
    args.extend(inputs.extra_args.iter().map(|w| prefixed(w)));
    let result = run(&job.compiler, &under(&job.cwd), &args);
    for dep in &result.deps {
        assert!(
            !dep.starts_with('/') || dep.starts_with(prefix),
            "the box read {dep}, outside its tree"
        );
    }
    Run {
        preprocessed: result.preprocessed.replace(prefix, ""),
        deps: result
            .deps
            .iter()
            .map(|dep| dep.strip_prefix(prefix).unwrap_or(dep).to_string())
            .collect(),
    }
}

/// Asserts that the job preprocesses on the simulated box exactly as it does here, and
/// that every dependency of the local run was shipped.
pub fn assert_same_as_local(inputs: &JobInputs, job: &JobSpec) {
    let local = local_run(job);
    let shipped: Vec<&Path> = inputs.files().map(|(path, _)| path).collect();
    for dep in &local.deps {
        let real = std::fs::canonicalize(job.cwd.join(dep)).unwrap();
        assert!(
            shipped.contains(&real.as_path()),
            "{dep} ({}) is not shipped",
            real.display()
        );
    }
    let remote = box_run(inputs, job);
    assert_eq!(remote.deps, local.deps, "dependencies differ");
    let (local, remote) = (
        without_extern_c_flags(&local.preprocessed),
        without_extern_c_flags(&remote.preprocessed),
    );
    assert!(
        remote == local,
        "preprocessed output differs:\n{}",
        first_difference(&local, &remote)
    );
}

/// `text` with the line-marker flag 4 ("implicitly extern C") removed. GCC's builtin
/// C++ directories are marked C++-aware, which no option can mark a directory, so on the
/// box (`-isystem`) libstdc++'s markers gain the flag. Linux targets define
/// `NO_IMPLICIT_EXTERN_C`, so the flag changes nothing in what is compiled.
fn without_extern_c_flags(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_suffix(" 4") {
            Some(rest) if line.starts_with("# ") && rest.ends_with(" 3") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn first_difference(local: &str, remote: &str) -> String {
    for (number, (l, r)) in local.lines().zip(remote.lines()).enumerate() {
        if l != r {
            return format!("line {}:\n  here: {l}\n  box:  {r}", number + 1);
        }
    }
    format!(
        "{} lines here, {} on the box",
        local.lines().count(),
        remote.lines().count()
    )
}

/// The prerequisites of a make rule as `-M` writes it.
pub fn make_dependencies(rule: &str) -> Vec<String> {
    let joined = rule.replace("\\\n", " ");
    let Some((_, prerequisites)) = joined.split_once(": ") else {
        return Vec::new();
    };
    prerequisites.split_whitespace().map(String::from).collect()
}

pub fn set_mtime(path: &Path, seconds: i64, nanos: u32) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let time = libc::timespec {
        tv_sec: seconds,
        tv_nsec: i64::from(nanos),
    };
    let times = [time, time];
    // SAFETY: a valid C string and two timespecs.
    let status = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(status, 0, "utimensat {}", path.display());
}
