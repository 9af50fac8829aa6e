//! The include search of one configuration, asked of the real compiler:
//! `<compiler> <search options> -x <lang> -E -v -M /dev/null` prints the quote chain and
//! the bracket chain exactly as it will search them (duplicates and missing directories
//! already dropped, relative entries relative to the working directory), and `-M` of an
//! empty file lists the implicit pre-includes (`/usr/include/stdc-predef.h` on glibc
//! targets). A second run without the user's include options gives the builtin system
//! directories, which the box gets as `-nostdinc -isystem …` so it uses the client's
//! system headers and not its own.
//!
//! A third run checks the translation: the user's options plus the box's replacement
//! options must give, here, the same chains and pre-includes; if not, the configuration
//! is preprocessed locally.
//!
//! Results are cached per (compiler and its stat, options, working directory, language),
//! but a chain depends on which directories exist: every directory the runs named
//! (listed, "ignoring nonexistent", "ignoring duplicate") is stat'ed again on each use,
//! and any change (a build directory created since) asks the compiler again.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use super::command::Language;
use super::file_state::FileStat;

/// Environment variables that change what the preprocessor searches or writes. A job
/// with any of them set is preprocessed locally; the probe runs without them.
pub const PREPROCESSING_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
];

/// Configurations kept before the cache starts over.
const MAX_CONFIGS: usize = 10_000;

/// How a configuration searches, as the compiler reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The `#include "…"`-only entries (`-iquote`), searched before `bracket`.
    pub quote: Vec<String>,
    /// The `#include <…>` chain.
    pub bracket: Vec<String>,
    /// The bracket chain without the user's include options: the builtin directories.
    pub builtin: Vec<String>,
    /// Implicit pre-includes, as names relative to the chain directory they are in.
    pub pre_includes: Vec<String>,
    /// Options the box's compiler gets before the user's (`-nostdinc`, `-include …`).
    pub leading_args: Vec<String>,
    /// Options the box's compiler gets after the user's (`-isystem …`).
    pub trailing_args: Vec<String>,
    /// Every directory the runs named, for the box to create and for revalidation.
    pub named_dirs: Vec<String>,
}

impl Search {
    /// The quote chain then the bracket chain, as one list (the bracket chain starts at
    /// `quote.len()`), which is how libcpp links them.
    pub fn chain(&self) -> impl Iterator<Item = &String> {
        self.quote.iter().chain(&self.bracket)
    }
}

/// What one run of the compiler printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    quote: Vec<String>,
    bracket: Vec<String>,
    named: Vec<String>,
    dependencies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    compiler: PathBuf,
    compiler_stat: (u64, u64, u64, i128, i128),
    args: Vec<String>,
    cwd: PathBuf,
    language: Language,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirState {
    Missing,
    Directory(u64, u64),
    Other,
}

fn dir_state(path: &Path) -> DirState {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => DirState::Directory(meta.dev(), meta.ino()),
        Ok(_) => DirState::Other,
        Err(_) => DirState::Missing,
    }
}

struct Probed {
    result: Result<Arc<Search>, String>,
    /// The state of every named directory when the compiler was asked.
    states: Vec<(PathBuf, DirState)>,
}

impl Probed {
    fn still_valid(&self) -> bool {
        self.states
            .iter()
            .all(|(path, state)| dir_state(path) == *state)
    }
}

type Slot = Arc<Mutex<Option<Probed>>>;

/// Probe results shared by every job of the daemon.
#[derive(Default)]
pub struct Probes {
    slots: Mutex<HashMap<Key, Slot>>,
    runs: AtomicU64,
}

/// What to probe.
pub struct Request<'a> {
    pub compiler: &'a Path,
    pub search_args: &'a [String],
    pub builtin_args: &'a [String],
    pub cwd: &'a Path,
    pub language: Language,
}

impl Probes {
    /// The search of `request`'s configuration, or why it must be preprocessed locally.
    pub fn search(&self, request: &Request) -> Result<Arc<Search>, String> {
        let meta = std::fs::metadata(request.compiler)
            .map_err(|err| format!("compiler {}: {err}", request.compiler.display()))?;
        let stat = FileStat::of(&meta);
        let key = Key {
            compiler: request.compiler.to_path_buf(),
            compiler_stat: (stat.dev, stat.ino, stat.size, stat.mtime_ns, stat.ctime_ns),
            args: request.search_args.to_vec(),
            cwd: request.cwd.to_path_buf(),
            language: request.language,
        };
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.len() >= MAX_CONFIGS && !slots.contains_key(&key) {
                slots.clear();
            }
            slots.entry(key).or_default().clone()
        };
        // One probe per configuration at a time: jobs of a cold build arrive together.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(probed) = slot.as_ref()
            && probed.still_valid()
        {
            return probed.result.clone();
        }
        let probed = self.probe(request);
        let result = probed.result.clone();
        *slot = Some(probed);
        result
    }

    /// How many times the compiler was run (for tests and statistics).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn probe(&self, request: &Request) -> Probed {
        let mut states = Vec::new();
        // A directory created between the compiler's look and ours shows as a
        // disagreement; asking again settles it.
        for _ in 0..3 {
            match self.probe_once(request, &mut states) {
                Ok(Some(search)) => {
                    tracing::debug!(compiler = %request.compiler.display(), ?search, "include search probed");
                    return Probed {
                        result: Ok(Arc::new(search)),
                        states,
                    };
                }
                Ok(None) => continue,
                Err(why) => {
                    return Probed {
                        result: Err(why),
                        states,
                    };
                }
            }
        }
        Probed {
            result: Err("include directories keep changing".into()),
            states,
        }
    }

    /// `Ok(None)`: the directories changed while asking.
    fn probe_once(
        &self,
        request: &Request,
        states: &mut Vec<(PathBuf, DirState)>,
    ) -> Result<Option<Search>, String> {
        let full = self.run(request, request.search_args, &[])?;
        let builtin = self.run(request, request.builtin_args, &[])?;
        states.clear();
        let absolute = |dir: &str| request.cwd.join(dir);
        for report in [&full, &builtin] {
            for dir in report.quote.iter().chain(&report.bracket) {
                let state = dir_state(&absolute(dir));
                if !matches!(state, DirState::Directory(..)) {
                    return Ok(None);
                }
                states.push((absolute(dir), state));
            }
            for dir in &report.named {
                states.push((absolute(dir), dir_state(&absolute(dir))));
            }
        }
        let pre_includes = full
            .dependencies
            .iter()
            .map(|path| pre_include_name(path, &full.bracket))
            .collect::<Result<Vec<_>, _>>()?;
        let mut leading_args = vec!["-nostdinc".to_string()];
        if request.language.is_cxx() {
            leading_args.push("-nostdinc++".into());
        }
        for name in &pre_includes {
            leading_args.extend(["-include".to_string(), name.clone()]);
        }
        let trailing_args: Vec<String> = builtin
            .bracket
            .iter()
            .flat_map(|dir| ["-isystem".to_string(), dir.clone()])
            .collect();
        // The box's options must reproduce the search here, or nothing is proven.
        let mut translated = leading_args.clone();
        translated.extend_from_slice(request.search_args);
        translated.extend_from_slice(&trailing_args);
        let check = self.run(request, &translated, &[])?;
        if (&check.quote, &check.bracket, &check.dependencies)
            != (&full.quote, &full.bracket, &full.dependencies)
        {
            return Err(format!(
                "the box's include options would change the search ({:?} instead of {:?})",
                check.bracket, full.bracket
            ));
        }
        let mut named_dirs: Vec<String> = Vec::new();
        for dir in full
            .quote
            .iter()
            .chain(&full.bracket)
            .chain(&full.named)
            .chain(&builtin.bracket)
            .chain(&builtin.named)
        {
            if !named_dirs.contains(dir) {
                named_dirs.push(dir.clone());
            }
        }
        Ok(Some(Search {
            quote: full.quote,
            bracket: full.bracket,
            builtin: builtin.bracket,
            pre_includes,
            leading_args,
            trailing_args,
            named_dirs,
        }))
    }

    fn run(&self, request: &Request, args: &[String], extra: &[String]) -> Result<Report, String> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new(request.compiler);
        command
            .args(args)
            .args(extra)
            .args([
                "-x",
                request.language.gcc_name(),
                "-E",
                "-v",
                "-M",
                "/dev/null",
            ])
            .current_dir(request.cwd)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        for name in PREPROCESSING_ENV {
            command.env_remove(name);
        }
        let output = command
            .output()
            .map_err(|err| format!("running {}: {err}", request.compiler.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
            return Err(format!(
                "probing the include search failed: {}",
                last.unwrap_or("no message")
            ));
        }
        if !stderr.lines().any(|line| line.starts_with("gcc version ")) {
            return Err("not GCC: only GCC's include search is modelled".into());
        }
        parse(&stderr, &String::from_utf8_lossy(&output.stdout))
    }
}

/// The chains and named directories of `-v`'s report, and `-M`'s dependencies.
fn parse(stderr: &str, stdout: &str) -> Result<Report, String> {
    #[derive(PartialEq)]
    enum In {
        Before,
        Quote,
        Bracket,
        After,
    }
    let mut report = Report::default();
    let mut state = In::Before;
    for line in stderr.lines() {
        match line {
            "#include \"...\" search starts here:" => state = In::Quote,
            "#include <...> search starts here:" => state = In::Bracket,
            "End of search list." => state = In::After,
            _ if line.starts_with(' ') && matches!(state, In::Quote | In::Bracket) => {
                let dir = &line[1..];
                if dir.ends_with(" (framework directory)") {
                    return Err("framework directories are not modelled".into());
                }
                let dir = dir.to_string();
                if state == In::Quote {
                    report.quote.push(dir);
                } else {
                    report.bracket.push(dir);
                }
            }
            _ => {
                for prefix in [
                    "ignoring nonexistent directory \"",
                    "ignoring duplicate directory \"",
                ] {
                    if let Some(dir) = line.strip_prefix(prefix).and_then(|r| r.strip_suffix('"')) {
                        report.named.push(dir.to_string());
                    }
                }
                if let Some(at) = line.find(": not a directory") {
                    let before = &line[..at];
                    let dir = before.rsplit(": ").next().unwrap_or(before);
                    report.named.push(dir.to_string());
                }
            }
        }
    }
    if state != In::After {
        return Err("the compiler did not report its include search".into());
    }
    report.dependencies = make_dependencies(stdout)
        .into_iter()
        .filter(|path| path != "/dev/null")
        .collect();
    Ok(report)
}

/// The prerequisites of a make rule as `-M` writes it (`\ ` escapes a space).
pub fn make_dependencies(rule: &str) -> Vec<String> {
    let joined = rule.replace("\\\n", " ");
    let Some(colon) = joined.find(": ").or_else(|| joined.find(":\n")) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = joined[colon + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ' | '#')) => current.push(chars.next().unwrap()),
            '$' if chars.peek() == Some(&'$') => current.push(chars.next().unwrap()),
            ' ' | '\t' | '\n' => {
                if !current.is_empty() {
                    paths.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(current);
    }
    paths
}

/// The name a pre-include is found by: its path after the longest bracket-chain
/// directory it is in (`/usr/include/stdc-predef.h` → `stdc-predef.h`).
fn pre_include_name(path: &str, bracket: &[String]) -> Result<String, String> {
    bracket
        .iter()
        .filter_map(|dir| path.strip_prefix(dir.as_str())?.strip_prefix('/'))
        .min_by_key(|name| name.len())
        .map(str::to_string)
        .ok_or_else(|| format!("pre-include {path} is outside the include search"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verbose_report_gives_both_chains_and_the_named_directories() {
        let stderr = "gcc version 12.2.0 (Debian 12.2.0-14)\nignoring nonexistent directory \"nonex\"\nignoring duplicate directory \"b\"\n  as it is a non-system directory that duplicates a system directory\ncc1: warning: f.h: not a directory\n#include \"...\" search starts here:\n q\n#include <...> search starts here:\n a\n /usr/include\nEnd of search list.\n";
        let report = parse(
            stderr,
            "null.o: /dev/null /usr/include/stdc-predef.h \\\n /x\\ y.h\n",
        )
        .unwrap();
        assert_eq!(
            report,
            Report {
                quote: vec!["q".into()],
                bracket: vec!["a".into(), "/usr/include".into()],
                named: vec!["nonex".into(), "b".into(), "f.h".into()],
                dependencies: vec!["/usr/include/stdc-predef.h".into(), "/x y.h".into()],
            }
        );
        assert_eq!(
            pre_include_name(
                "/usr/include/stdc-predef.h",
                &["/usr".into(), "/usr/include".into()]
            ),
            Ok("stdc-predef.h".into())
        );
    }
}
