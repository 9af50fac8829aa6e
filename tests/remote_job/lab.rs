//! What the remote-job tests share: a box (a store, settings and an allowlist in a
//! private temporary directory), fixture projects at absolute paths, and the client's
//! part done by hand: the job's inputs found with the local compiler's own `-M`, the
//! builtin include chain probed with `-v`, the tree built and its blobs stored.

#![allow(dead_code)] // each test crate uses a different subset

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sshcc::digest::Digest;
use sshcc::server::allowlist::Allowlist;
use sshcc::server::remote_job::{self, RemoteCompile, RemoteJob, RemoteJobError};
use sshcc::server::settings::BoxSettings;
use sshcc::server::store::Store;
use sshcc::tree::{Entry, InputTree, Timestamp};

const ALLOWLIST: &str = "/usr/bin/gcc\n/usr/bin/g++\n/usr/bin/arm-none-eabi-gcc\n\
                         /usr/bin/arm-none-eabi-g++\n";

/// The locale both sides compile in, so that diagnostics compare.
pub const LOCALE: [(&str, &str); 2] = [("LANG", "C"), ("LC_ALL", "C")];

/// A box: its store and settings, in a temporary directory that also holds the
/// projects.
pub struct Lab {
    dir: tempfile::TempDir,
    pub store: Arc<Store>,
    /// Shared by the lab's jobs as by one box process's: a job may take over the tree
    /// of the one before.
    trees: remote_job::WarmTrees,
    settings: BoxSettings,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path().join("store"), 1 << 30).expect("store"));
        #[derive(clap::Parser)]
        struct Options {
            #[command(flatten)]
            settings: BoxSettings,
        }
        let locks = dir.path().join("locks");
        let settings = <Options as clap::Parser>::parse_from([
            "sshcc".as_ref(),
            "--lock-dir".as_ref(),
            locks.as_os_str(),
        ])
        .settings;
        Lab {
            dir,
            store,
            trees: remote_job::WarmTrees::new(2),
            settings,
        }
    }

    /// A fresh directory at an absolute path, for one project.
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("project dir");
        path
    }

    /// Runs `job` as the box would, never cancelled.
    pub fn run(&self, job: &RemoteJob) -> Result<RemoteCompile, RemoteJobError> {
        let allowlist = Allowlist::parse("/lab/DISTCC_CMDLIST".into(), ALLOWLIST, 1);
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(remote_job::run(
                job,
                self.store.clone(),
                &self.trees,
                Ok(allowlist),
                &self.settings,
                std::future::pending(),
            ))
    }

    /// Stores the tree of `entries` and every file blob in it; returns the root.
    pub fn store_tree(&self, entries: &[(PathBuf, Entry)]) -> Digest {
        let tree = self.build_tree(entries);
        for (digest, blob) in tree.directories() {
            self.store.insert(digest, blob).expect("store directory");
        }
        tree.root()
    }

    /// The tree of `entries`, with only its file blobs stored.
    pub fn build_tree(&self, entries: &[(PathBuf, Entry)]) -> InputTree {
        for (path, entry) in entries {
            if let Entry::File { digest, .. } = entry {
                let content = std::fs::read(path).expect("input file");
                self.store.insert(digest, &content).expect("store file");
            }
        }
        InputTree::build(entries.iter().cloned()).expect("tree")
    }
}

/// Writes `files` (path relative to `dir`, content) and gives every one the same old
/// mtime with nanoseconds, so that a box file made without it could not pass.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::new(1_234_567_890, 123_456_789);
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(time))
            .unwrap();
    }
}

/// `path` with `.` and `..` taken out lexically.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Adds what the client would ship for the absolute `path`: each symlink on the way as
/// a symlink (followed to its target, which is added too), the file itself, or the
/// directory.
pub fn add_path(entries: &mut Vec<(PathBuf, Entry)>, path: &Path) {
    let path = normalise(path);
    let mut at = PathBuf::from("/");
    let components: Vec<Component> = path.components().skip(1).collect();
    for (index, component) in components.iter().enumerate() {
        at.push(component);
        let meta = std::fs::symlink_metadata(&at)
            .unwrap_or_else(|err| panic!("input {}: {err}", at.display()));
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&at).unwrap();
            entries.push((
                at.clone(),
                Entry::Symlink {
                    target: target.to_str().unwrap().to_string(),
                },
            ));
            let mut resolved = at.parent().unwrap().join(target);
            for rest in &components[index + 1..] {
                resolved.push(rest);
            }
            return add_path(entries, &resolved);
        }
        if meta.is_file() {
            entries.push((
                at.clone(),
                Entry::File {
                    digest: Digest::of_file(&at).unwrap(),
                    executable: meta.permissions().mode() & 0o111 != 0,
                    mtime: Timestamp::mtime_of(&meta),
                },
            ));
            return;
        }
    }
    entries.push((at, Entry::Directory));
}

/// Everything under `dir` (files, symlinks as symlinks, directories).
pub fn add_tree(entries: &mut Vec<(PathBuf, Entry)>, dir: &Path) {
    entries.push((dir.to_path_buf(), Entry::Directory));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            add_tree(entries, &path);
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            entries.push((
                path,
                Entry::Symlink {
                    target: target.to_str().unwrap().to_string(),
                },
            ));
        } else {
            add_path(entries, &path);
        }
    }
}

/// The compiler's builtin include chain for these flags, as `-v` prints it, and
/// whether it pre-includes `stdc-predef.h`.
pub struct Chain {
    pub dirs: Vec<String>,
    pub predef: bool,
}

impl Chain {
    pub fn probe(compiler: &str, language: &str, flags: &[&str]) -> Chain {
        let verbose = Command::new(compiler)
            .args(flags)
            .args(["-x", language, "-E", "-v", "/dev/null", "-o", "/dev/null"])
            .output()
            .expect("probe the include chain");
        let text = String::from_utf8_lossy(&verbose.stderr).into_owned();
        let dirs = text
            .lines()
            .skip_while(|line| !line.starts_with("#include <...> search starts here:"))
            .skip(1)
            .take_while(|line| !line.starts_with("End of search list."))
            .map(|line| line.trim().to_string())
            .collect();
        let deps = Command::new(compiler)
            .args(flags)
            .args(["-x", language, "-M", "/dev/null"])
            .output()
            .expect("probe the pre-includes");
        let predef = String::from_utf8_lossy(&deps.stdout).contains("stdc-predef.h");
        Chain { dirs, predef }
    }

    /// The arguments that make the box use the shipped chain, not its own: the
    /// pre-include first (gcc reads it before any `-include`), the builtin directories
    /// after the user's own options.
    pub fn wrap(&self, language: &str, args: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.predef {
            out.extend(["-include".to_string(), "stdc-predef.h".to_string()]);
        }
        out.extend(args.iter().cloned());
        out.push("-nostdinc".to_string());
        // C gets a warning for -nostdinc++, which the local compile would not print.
        if language == "c++" {
            out.push("-nostdinc++".to_string());
        }
        for dir in &self.dirs {
            out.extend(["-isystem".to_string(), dir.clone()]);
        }
        out
    }

    /// Every directory of the chain that exists, so the box has it too.
    pub fn add_dirs(&self, entries: &mut Vec<(PathBuf, Entry)>) {
        for dir in &self.dirs {
            if Path::new(dir).is_dir() {
                add_path(entries, Path::new(dir));
            }
        }
    }
}

/// The prerequisites gcc finds for `args` (a compile command run in `cwd`), from its own
/// `-M`: every file the compile reads.
pub fn local_inputs(cwd: &Path, compiler: &str, args: &[String]) -> Vec<PathBuf> {
    let deps = cwd.join("lab-inputs.d");
    let mut probe = Vec::new();
    let mut skip = false;
    for arg in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        match arg.as_str() {
            "-o" | "-MF" | "-MT" | "-MQ" => skip = true,
            "-c" | "-MD" | "-MMD" | "-MP" => {}
            _ if arg.starts_with("-o") => {}
            _ => probe.push(arg.clone()),
        }
    }
    let output = Command::new(compiler)
        .current_dir(cwd)
        .args(&probe)
        .args(["-M", "-MF"])
        .arg(&deps)
        .output()
        .expect("probe the inputs");
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&deps).unwrap();
    std::fs::remove_file(&deps).unwrap();
    let text = text.replace("\\\n", " ");
    let (_, prerequisites) = text.split_once(": ").expect("a rule");
    prerequisites
        .split_whitespace()
        .map(|name| normalise(&cwd.join(name)))
        .collect()
}

/// The prerequisites of a dependency file's first rule, unquoted as far as the
/// fixtures need (no blanks or `$` in their names).
pub fn deps_of(text: &str) -> Vec<String> {
    let text = text.replace("\\\n", " ");
    let rule = text.lines().next().unwrap_or_default();
    let (_, prerequisites) = rule.split_once(": ").expect("a rule");
    prerequisites.split_whitespace().map(String::from).collect()
}

/// Lines of `readelf --debug-dump=info` and the `.comment` section that differ between
/// two objects: what leaks when they are not identical.
pub fn object_differences(local: &[u8], remote: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dump = |bytes: &[u8], name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut text = String::new();
        for args in [
            &["readelf", "--debug-dump=info,line"][..],
            &["objdump", "-s", "-j", ".comment"],
        ] {
            let output = Command::new(args[0]).args(&args[1..]).arg(&path).output();
            if let Ok(output) = output {
                text.push_str(&String::from_utf8_lossy(&output.stdout));
            }
        }
        text.replace(path.to_str().unwrap(), "OBJECT")
    };
    let (local, remote) = (dump(local, "local.o"), dump(remote, "remote.o"));
    let local_lines: Vec<&str> = local.lines().collect();
    remote
        .lines()
        .filter(|line| !local_lines.contains(line))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `program` is installed.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}
