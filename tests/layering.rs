//! The crate's layering, checked on its sources: every top-level module imports only
//! modules of lower tiers (the order docs/design.md describes), and no two files import
//! each other, directly or round a longer circle. Test code (`#[cfg(test)]`) may reach
//! anywhere and is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the top down. A module may use any module of a later tier,
/// none of its own tier and none above it.
const TIERS: &[&[&str]] = &[
    &["cli"],
    &["commands"],
    &["wrapper"],
    &["daemon"],
    &["dispatch"],
    &["mux"],
    &["inputs", "server", "ssh"],
    &["protocol", "reapi", "throwaway_box"],
    &["client_settings"],
    &["config", "hosts"],
    &["tree"],
    &[
        "async_runtime",
        "compiler",
        "digest",
        "exit_code",
        "status",
        "system",
        "toolchain",
    ],
];

type Module = Vec<String>;

/// Every non-test source file of the library, by module path.
fn sources() -> BTreeMap<Module, PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(&root).unwrap().with_extension("");
                let mut module: Module = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                found.insert(module, path);
            }
        }
    }
    // Files of `#[cfg(test)] mod name;` are test code.
    let test_only: Vec<Module> = found
        .iter()
        .flat_map(|(module, path)| {
            let text = std::fs::read_to_string(path).unwrap();
            let lines: Vec<String> = text.lines().map(str::trim).map(String::from).collect();
            let module = module.clone();
            lines
                .windows(2)
                .filter(|pair| pair[0] == "#[cfg(test)]")
                .filter_map(|pair| {
                    let name = pair[1].strip_prefix("mod ")?.strip_suffix(';')?;
                    let mut child = module.clone();
                    child.push(name.to_string());
                    Some(child)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // So are the files below them (a test module split into a directory).
    found.retain(|module, _| !test_only.iter().any(|test| module.starts_with(test)));
    found
}

/// The code of `text` that is not a test module or a comment.
fn production_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `code` names after `crate::` or `super::`, as written (`a::b::C`), with
/// `super` resolved against `module` (a `mod.rs` file's module is its directory, so
/// its `super` is the directory's parent).
fn named_paths(code: &str, module: &Module) -> Vec<Module> {
    let mut paths = Vec::new();
    let parent = module[..module.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let segments = path_after(rest);
            assert!(
                !segments.is_empty() || !rest.starts_with('{'),
                "{}: write one path per `use` (grouped `{prefix}{{…}}` is not checked)",
                module.join("::")
            );
            let mut path = base.clone();
            path.extend(segments);
            paths.push(path);
        }
    }
    paths
}

/// `a::b::c` at the start of `text`, as segments.
fn path_after(text: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    segments
}

/// For every module, the other modules (files) it uses.
fn file_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let files = sources();
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut used = BTreeSet::new();
        for named in named_paths(&production_code(&text), module) {
            // The longest prefix that is a file is the module it names.
            if let Some(target) = (1..=named.len())
                .rev()
                .map(|len| named[..len].to_vec())
                .find(|prefix| files.contains_key(prefix))
                && &target != module
            {
                used.insert(target);
            }
        }
        graph.insert(module.clone(), used);
    }
    graph
}

fn tier_of(top: &str) -> usize {
    TIERS
        .iter()
        .position(|tier| tier.contains(&top))
        .unwrap_or_else(|| {
            panic!("src/{top} is in no tier of tests/layering.rs (and docs/design.md): add it")
        })
}

#[test]
fn modules_import_only_lower_tiers() {
    let mut violations = Vec::new();
    for (module, used) in file_graph() {
        let Some(top) = module.first() else { continue };
        for target in used {
            let target_top = &target[0];
            if target_top != top && tier_of(target_top) <= tier_of(top) {
                violations.push(format!("{} uses {}", module.join("::"), target.join("::")));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering of docs/design.md:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn no_files_import_each_other() {
    let graph = file_graph();
    // Depth-first search for a back edge; the stack at that moment is the circle.
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|seen| seen == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.clone());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let names: Vec<String> = circle.iter().map(|module| module.join("::")).collect();
            panic!("files import each other: {}", names.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_imports() {
    // Guards the checks above against silently seeing nothing.
    let graph = file_graph();
    let cli = &graph[&vec!["cli".to_string()]];
    assert!(cli.contains(&vec!["wrapper".to_string()]), "{cli:?}");
    let server = &graph[&vec!["mux".to_string(), "server".to_string()]];
    assert!(
        server.contains(&vec![
            "protocol".to_string(),
            "mux".to_string(),
            "frame".to_string()
        ]),
        "{server:?}"
    );
}
