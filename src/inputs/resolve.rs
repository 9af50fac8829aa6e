//! A job's closure: every file its preprocessing may open, found exactly as GCC's libcpp
//! finds it (`search_path_head`, `find_file_in_dir`, `append_file_to_dir`):
//! - `#include "n"`: the directory of the including file as reached (the text of its
//!   path before the last `/`, not its realpath), then the quote chain (`-iquote`),
//!   then the bracket chain;
//! - `#include <n>`: the bracket chain;
//! - `#include_next`: the chain entry after the one the current file was found in; for
//!   a file found next to its includer (or by `-include` in the working directory)
//!   libcpp's ad-hoc directory is followed by the whole quote chain, so the search
//!   restarts there; in the main file or a file named by absolute path it is a plain
//!   `#include`;
//! - `-include`/`-imacros`: the working directory, then the quote chain;
//! - a candidate is `dir + "/" + n`, directories are skipped, the first file wins.
//!
//! Conditions are not evaluated, so every branch's includes count; a computed include
//! (`#include NAME`) tries every value `NAME` is given anywhere in the closure or by
//! `-D` (distcc pump's approach), until nothing new is found. `__has_include` targets
//! that exist are shipped (the box must answer the same); those written inside a macro
//! with a quoted name are looked up next to every includer, since the macro may be
//! expanded in any of them.
//!
//! Every lookup is fresh for the job: a header created since the previous job (a
//! shadowing one in an earlier `-I` directory, a generated one) is found.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use crate::digest::Digest;

use super::directives::Define;
use super::directives::Directives;
use super::directives::HeaderName;
use super::directives::MacroValue;
use super::directives::Operand;
use super::file_state::FileStat;
use super::file_state::FileStates;
use super::listing::JobListings;
use super::listing::Presence;
use super::walk::Walked;
use super::walk::Walker;
use super::walk::textual_dir;

/// Distinct files directive lists are kept for before the cache starts over.
const MAX_DIRECTIVES: usize = 200_000;

/// Predefined macros whose value is a string a computed include could use.
const STRING_BUILTINS: &[&str] = &[
    "__FILE__",
    "__BASE_FILE__",
    "__FILE_NAME__",
    "__TIMESTAMP__",
];

/// Directive lists by content, shared by every job.
#[derive(Default)]
pub struct DirectiveCache {
    scanned: Mutex<HashMap<Digest, Arc<Directives>>>,
}

impl DirectiveCache {
    fn get(&self, digest: &Digest) -> Option<Arc<Directives>> {
        self.lock().get(digest).cloned()
    }

    fn insert(&self, digest: Digest, directives: Arc<Directives>) {
        let mut scanned = self.lock();
        if scanned.len() >= MAX_DIRECTIVES {
            scanned.clear();
        }
        scanned.insert(digest, directives);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Directives>>> {
        self.scanned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A file to ship.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub stat: FileStat,
    pub digest: Digest,
    directives: Arc<Directives>,
}

impl Shipped {
    /// Whether the file names `__DATE__` or `__TIME__`.
    pub fn names_the_clock(&self) -> bool {
        self.directives.names_the_clock
    }
}

/// Where a file was found, which decides where `#include_next` goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FoundIn {
    /// Next to its includer, or in the working directory for `-include`.
    Dir,
    /// In entry `i` of the quote-then-bracket chain.
    Chain(usize),
    /// By absolute path, or the main file.
    NoSearch,
}

/// Where a lookup starts. Its directory is kept as the bytes of a path the walker built
/// (always spelled the same way), which hash far faster than a `Path`'s components.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Start {
    /// A directory, then the whole chain.
    Dir(OsString),
    Chain(usize),
}

/// A file found, and the context its own includes are resolved in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    pub real: PathBuf,
    /// The symlink-free directory its quoted includes start from.
    pub includer: PathBuf,
    pub found_in: FoundIn,
    stat: FileStat,
    stat_time_ns: i128,
}

/// A node as visited: its paths as bytes, like [`Start`]'s.
#[derive(Clone, PartialEq, Eq, Hash)]
struct NodeKey {
    real: OsString,
    includer: OsString,
    found_in: FoundIn,
}

/// A computed include or probe waiting for its macro's values.
#[derive(Clone)]
struct Pending {
    node: Node,
    next: bool,
    include: bool,
    name: String,
}

/// The daemon's caches as one job uses them.
pub struct JobCaches<'a> {
    pub file_states: &'a FileStates,
    pub directives: &'a DirectiveCache,
    pub listings: JobListings<'a>,
}

/// One job's resolution.
pub struct Resolver<'a> {
    pub walker: Walker,
    caches: JobCaches<'a>,
    /// The real directories of the quote-then-bracket chain (`None`: missing now).
    chain: Vec<Option<PathBuf>>,
    angle_start: usize,
    max_files: usize,
    /// By real path.
    pub files: foldhash::HashMap<OsString, Shipped>,
    visited: foldhash::HashSet<NodeKey>,
    queue: Vec<Node>,
    finds: foldhash::HashMap<(Start, String), Option<Node>>,
    pending: Vec<Pending>,
    pending_done: foldhash::HashSet<(usize, HeaderName)>,
    command_defines: Vec<Define>,
    global_probes: BTreeSet<String>,
    global_done: foldhash::HashSet<(OsString, String)>,
    includers: BTreeSet<OsString>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        walker: Walker,
        caches: JobCaches<'a>,
        chain: Vec<Option<PathBuf>>,
        angle_start: usize,
        command_defines: Vec<Define>,
        max_files: usize,
    ) -> Self {
        Resolver {
            walker,
            caches,
            chain,
            angle_start,
            max_files,
            files: Default::default(),
            visited: Default::default(),
            queue: Vec::new(),
            finds: Default::default(),
            pending: Vec::new(),
            pending_done: Default::default(),
            command_defines,
            global_probes: BTreeSet::new(),
            global_done: Default::default(),
            includers: BTreeSet::new(),
        }
    }

    /// The main source, reached as `path` from the working directory `cwd`.
    pub fn main_file(&mut self, cwd: &Path, path: &str) -> Result<Node, String> {
        match self.walk_file(cwd, path, FoundIn::NoSearch)? {
            Some(node) => Ok(node),
            None => Err(format!("{path} not found")),
        }
    }

    /// A `-include`/`-imacros` file, as GCC looks for it: by absolute path, or in the
    /// working directory then the quote chain.
    pub fn command_line_file(&mut self, cwd: &Path, name: &str) -> Result<Option<Node>, String> {
        if name.starts_with('/') {
            return self.walk_file(Path::new("/"), name, FoundIn::NoSearch);
        }
        self.find(Start::Dir(cwd.as_os_str().to_os_string()), name, true)
    }

    /// An implicit pre-include, which GCC finds through the bracket chain.
    pub fn bracket_file(&mut self, name: &str) -> Result<Option<Node>, String> {
        self.find(Start::Chain(self.angle_start), name, true)
    }

    /// Adds a root and everything it may include.
    pub fn push(&mut self, node: Node) {
        self.queue.push(node);
    }

    /// Follows every include until nothing new is found.
    pub fn run(&mut self) -> Result<(), String> {
        loop {
            while let Some(node) = self.queue.pop() {
                self.visit(node)?;
            }
            let found_more = self.resolve_pending()?;
            self.resolve_global_probes()?;
            if !found_more && self.queue.is_empty() {
                return Ok(());
            }
        }
    }

    fn visit(&mut self, node: Node) -> Result<(), String> {
        let key = NodeKey {
            real: node.real.as_os_str().to_os_string(),
            includer: node.includer.as_os_str().to_os_string(),
            found_in: node.found_in,
        };
        if !self.visited.insert(key) {
            return Ok(());
        }
        self.includers
            .insert(node.includer.as_os_str().to_os_string());
        let directives = self.ship(&node)?;
        if let Some(doubt) = directives.doubts.first() {
            return Err(format!("{}: {doubt}", node.real.display()));
        }
        for include in &directives.includes {
            match &include.operand {
                Operand::Name(name) => {
                    if let Some(found) = self.find_from(&node, include.next, name, true)? {
                        self.queue.push(found);
                    }
                }
                Operand::Macro(name) => self.pending.push(Pending {
                    node: node.clone(),
                    next: include.next,
                    include: true,
                    name: name.clone(),
                }),
            }
        }
        for probe in &directives.has_includes {
            match &probe.operand {
                Operand::Name(name) => {
                    if probe.in_define {
                        match (probe.next, name) {
                            (false, HeaderName::Quote(text)) => {
                                self.global_probes.insert(text.clone());
                            }
                            (true, _) => {
                                return Err(format!(
                                    "{}: __has_include_next in a macro",
                                    node.real.display()
                                ));
                            }
                            _ => {}
                        }
                    }
                    if let Some(found) = self.find_from(&node, probe.next, name, false)? {
                        self.ship(&found)?;
                    }
                }
                Operand::Macro(name) => self.pending.push(Pending {
                    node: node.clone(),
                    next: probe.next,
                    include: false,
                    name: name.clone(),
                }),
            }
        }
        Ok(())
    }

    /// Records `node`'s file for shipping; its directives.
    fn ship(&mut self, node: &Node) -> Result<Arc<Directives>, String> {
        if let Some(shipped) = self.files.get(node.real.as_os_str()) {
            return Ok(shipped.directives.clone());
        }
        let failed = |err: io::Error| format!("{}: {err}", node.real.display());
        let hashed = self
            .caches
            .file_states
            .digest(&node.real, &node.stat, node.stat_time_ns)
            .map_err(failed)?;
        let directives = match self.caches.directives.get(&hashed.digest) {
            Some(known) => known,
            None => {
                let content = match hashed.content {
                    Some(content) => content,
                    None => std::fs::read(&node.real).map_err(failed)?,
                };
                let scanned = Arc::new(Directives::scan(&content));
                self.caches
                    .directives
                    .insert(hashed.digest, scanned.clone());
                scanned
            }
        };
        self.files.insert(
            node.real.as_os_str().to_os_string(),
            Shipped {
                stat: hashed.stat,
                digest: hashed.digest,
                directives: directives.clone(),
            },
        );
        if self.files.len() > self.max_files {
            return Err(format!("more than {} input files", self.max_files));
        }
        Ok(directives)
    }

    /// Looks `name` up from an include in `node`, as libcpp's `search_path_head` picks
    /// the start.
    fn find_from(
        &mut self,
        node: &Node,
        next: bool,
        name: &HeaderName,
        is_include: bool,
    ) -> Result<Option<Node>, String> {
        let start = match (next, node.found_in) {
            (true, FoundIn::Chain(at)) => Start::Chain(at + 1),
            (true, FoundIn::Dir) => Start::Chain(0),
            _ => match name {
                HeaderName::Quote(_) => Start::Dir(node.includer.as_os_str().to_os_string()),
                HeaderName::Angle(_) => Start::Chain(self.angle_start),
            },
        };
        let (HeaderName::Quote(text) | HeaderName::Angle(text)) = name;
        if text.starts_with('/') {
            return Err(format!(
                "{} includes the absolute path {text}",
                node.real.display()
            ));
        }
        self.find(start, text, is_include)
    }

    fn find(&mut self, start: Start, name: &str, is_include: bool) -> Result<Option<Node>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        let key = (start, name.to_string());
        if let Some(known) = self.finds.get(&key) {
            return Ok(known.clone());
        }
        let (mut next_dir, from) = match &key.0 {
            Start::Dir(dir) => (Some((FoundIn::Dir, PathBuf::from(dir))), 0),
            Start::Chain(at) => (None, *at),
        };
        let mut chain_at = from;
        let mut found = None;
        loop {
            let (found_in, dir) = match next_dir.take() {
                Some(first) => first,
                None => {
                    let Some(entry) = self.chain.get(chain_at) else {
                        break;
                    };
                    chain_at += 1;
                    match entry {
                        Some(dir) => (FoundIn::Chain(chain_at - 1), dir.clone()),
                        None => continue,
                    }
                }
            };
            // The directory listings reject most candidates; otherwise one stat does,
            // and only a hit is walked component by component.
            match self.caches.listings.presence(&dir, name) {
                Presence::Absent => continue,
                Presence::File => {}
                Presence::Unknown => match std::fs::metadata(dir.join(name)) {
                    Ok(meta) if meta.is_dir() => continue,
                    Ok(_) => {}
                    Err(err)
                        if err.kind() == io::ErrorKind::NotFound
                            || err.raw_os_error() == Some(libc::ENOTDIR) =>
                    {
                        continue;
                    }
                    Err(err) => return Err(format!("{}: {err}", dir.join(name).display())),
                },
            }
            if let Some(node) = self.walk_file(&dir, name, found_in)? {
                let gch = format!("{name}.gch");
                if is_include
                    && self.caches.listings.presence(&dir, &gch) != Presence::Absent
                    && std::fs::symlink_metadata(dir.join(&gch)).is_ok()
                {
                    return Err(format!(
                        "{}.gch: precompiled headers are not shipped",
                        dir.join(name).display()
                    ));
                }
                found = Some(node);
                break;
            }
        }
        self.finds.insert(key, found.clone());
        Ok(found)
    }

    /// `path` from `base` if it is a file, with the directory its includes start from.
    fn walk_file(
        &mut self,
        base: &Path,
        path: &str,
        found_in: FoundIn,
    ) -> Result<Option<Node>, String> {
        let walked = self
            .walker
            .walk(base, Path::new(path))
            .map_err(|err| err.to_string())?;
        let Walked::File {
            real,
            stat,
            stat_time_ns,
        } = walked
        else {
            return Ok(None);
        };
        let includer = self
            .walker
            .walk_dir(base, Path::new(textual_dir(path)))
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("{path}: its directory changed while scanning"))?;
        Ok(Some(Node {
            real,
            includer,
            found_in,
            stat,
            stat_time_ns,
        }))
    }

    /// Tries the values of every computed include's macro; whether anything new was
    /// queued.
    fn resolve_pending(&mut self) -> Result<bool, String> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let mut values: HashMap<&str, Vec<&MacroValue>> = HashMap::new();
        for define in self.command_defines.iter().chain(
            self.files
                .values()
                .flat_map(|file| &file.directives.defines),
        ) {
            values
                .entry(define.name.as_str())
                .or_default()
                .push(&define.value);
        }
        let mut work = Vec::new();
        for (index, pending) in self.pending.iter().enumerate() {
            for name in header_names(&values, &pending.name, &mut Vec::new())? {
                if !self.pending_done.contains(&(index, name.clone())) {
                    work.push((index, name));
                }
            }
        }
        let mut queued = false;
        for (index, name) in work {
            self.pending_done.insert((index, name.clone()));
            let pending = self.pending[index].clone();
            if let Some(found) =
                self.find_from(&pending.node, pending.next, &name, pending.include)?
            {
                if pending.include {
                    self.queue.push(found);
                    queued = true;
                } else {
                    self.ship(&found)?;
                }
            }
        }
        Ok(queued)
    }

    /// Quoted `__has_include`s inside macros, next to every includer.
    fn resolve_global_probes(&mut self) -> Result<(), String> {
        let probes: Vec<String> = self.global_probes.iter().cloned().collect();
        let includers: Vec<OsString> = self.includers.iter().cloned().collect();
        for name in &probes {
            for dir in &includers {
                if self.global_done.insert((dir.clone(), name.clone()))
                    && let Some(found) = self.find(Start::Dir(dir.clone()), name, false)?
                {
                    self.ship(&found)?;
                }
            }
        }
        Ok(())
    }
}

/// Every header name `name` may expand to; a definition that is neither a header name
/// nor another macro's name is a doubt.
fn header_names(
    values: &HashMap<&str, Vec<&MacroValue>>,
    name: &str,
    seen: &mut Vec<String>,
) -> Result<Vec<HeaderName>, String> {
    if seen.iter().any(|s| s == name) || seen.len() > 32 {
        return Ok(Vec::new());
    }
    seen.push(name.to_string());
    let Some(definitions) = values.get(name) else {
        if STRING_BUILTINS.contains(&name) {
            return Err(format!("#include {name} is not modelled"));
        }
        // Defined nowhere the preprocessor will look: it fails the same way here.
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for value in definitions {
        match value {
            MacroValue::Header(header) => names.push(header.clone()),
            MacroValue::Alias(other) => names.extend(header_names(values, other, seen)?),
            MacroValue::Other => {
                return Err(format!(
                    "#include {}: a definition of {name} is not a plain header name",
                    seen[0]
                ));
            }
        }
    }
    Ok(names)
}
