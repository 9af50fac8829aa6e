//! Remote jobs that are incomplete or hostile (`server::remote_job`): blobs the store
//! lacks are reported all at once, and a tree or command line made to reach the box's
//! own files (a symlink escaping the tree, an output through a symlink, a forbidden
//! option, a specs file in the tree) is refused or harmless.

#[path = "remote_job/lab.rs"]
mod lab;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lab::{LOCALE, Lab, add_tree, write_files};
use sshcc::digest::Digest;
use sshcc::exit_code::ExitCode;
use sshcc::server::remote_job::{RemoteJob, RemoteJobError};
use sshcc::tree::Entry;

const SECRET: &str = "SECRET-KEY-4f1c9a";

fn job(cwd: &Path, compiler: &str, args: &str, root: Digest, outputs: &[&str]) -> RemoteJob {
    RemoteJob {
        compiler: compiler.to_string(),
        args: args.split_whitespace().map(String::from).collect(),
        cwd: cwd.to_str().unwrap().to_string(),
        pwd: None,
        locale: LOCALE.map(|(n, v)| (n.to_string(), v.to_string())).to_vec(),
        root,
        outputs: outputs.iter().map(|o| o.to_string()).collect(),
    }
}

fn symlink(entries: &mut Vec<(PathBuf, Entry)>, at: PathBuf, target: &str) {
    entries.push((
        at,
        Entry::Symlink {
            target: target.to_string(),
        },
    ));
}

fn refusal(result: Result<sshcc::server::remote_job::RemoteCompile, RemoteJobError>) -> String {
    match result {
        Err(err @ RemoteJobError::Refused(_)) => {
            assert_eq!(err.exit_code(), ExitCode::BadArguments);
            err.to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Every file under `dir` with its content: what must not change.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn missing_blobs_are_reported_all_at_once_and_a_retry_succeeds() {
    let lab = Lab::new();
    let proj = lab.dir("missing").join("proj");
    write_files(
        &proj,
        &[
            (
                "x.c",
                "#include \"a/1.h\"\n#include \"b/2.h\"\nint x = ONE + TWO;\n",
            ),
            ("a/1.h", "#define ONE 1\n"),
            ("b/2.h", "#define TWO 2\n"),
        ],
    );
    let mut entries = Vec::new();
    add_tree(&mut entries, &proj);
    let tree = lab.build_tree(&entries);
    let all_files: HashSet<Digest> = tree.files().copied().collect();
    // The store has the directories and no file: all three are asked for at once.
    let fresh = Lab::new();
    for (digest, blob) in tree.directories() {
        fresh.store.insert(digest, blob).unwrap();
    }
    let job = job(&proj, "gcc", "-c x.c -o x.o", tree.root(), &["x.o"]);
    match fresh.run(&job) {
        Err(RemoteJobError::Missing(digests)) => {
            assert_eq!(digests.iter().copied().collect::<HashSet<_>>(), all_files);
        }
        other => panic!("expected missing blobs, got {other:?}"),
    }
    // Only the root directory: every directory it lists is asked for.
    let bare = Lab::new();
    let root_blob = tree.directory(&tree.root()).unwrap();
    bare.store.insert(&tree.root(), root_blob).unwrap();
    match bare.run(&job) {
        Err(RemoteJobError::Missing(digests)) => {
            assert!(!digests.is_empty());
            assert!(
                digests.iter().all(|d| tree.directory(d).is_some()),
                "{digests:?}"
            );
        }
        other => panic!("expected missing directories, got {other:?}"),
    }
    // Once everything is there, the same job compiles.
    for (digest, blob) in tree.directories() {
        bare.store.insert(digest, blob).unwrap();
    }
    for (path, entry) in &entries {
        if let Entry::File { digest, .. } = entry {
            bare.store
                .insert(digest, &std::fs::read(path).unwrap())
                .unwrap();
        }
    }
    let compiled = bare.run(&job).expect("the retry");
    assert_eq!(
        compiled.status,
        0,
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    // Nothing hermetic asked for: the box's own pre-include.
    assert_eq!(
        compiled.deps,
        ["x.c", "/usr/include/stdc-predef.h", "a/1.h", "b/2.h"]
    );
}

#[test]
fn a_hostile_tree_cannot_make_the_box_read_or_write_outside() {
    let lab = Lab::new();
    let base = lab.dir("hostile");
    let outside = base.join("outside");
    write_files(&outside, &[("key", SECRET)]);
    let before = snapshot(&outside);
    let proj = base.join("proj");
    write_files(&proj, &[("x.c", "#include \"leak.h\"\nint x;\n")]);
    let secret = outside.join("key");
    let mut entries = Vec::new();
    add_tree(&mut entries, &proj);

    // The object, or its directory, is a symlink to the box's files.
    let mut at_object = entries.clone();
    symlink(&mut at_object, proj.join("x.o"), secret.to_str().unwrap());
    let root = lab.store_tree(&at_object);
    let result = lab.run(&job(&proj, "gcc", "-c x.c -o x.o", root, &["x.o"]));
    assert!(refusal(result).contains("x.o"));
    let mut at_dir = entries.clone();
    symlink(&mut at_dir, proj.join("out"), outside.to_str().unwrap());
    let root = lab.store_tree(&at_dir);
    let result = lab.run(&job(&proj, "gcc", "-c x.c -o out/key", root, &["out/key"]));
    assert!(refusal(result).contains("symlink"));

    // A symlink whose target climbs out of the tree by itself is refused.
    let mut climbing = entries.clone();
    let up = "../".repeat(proj.components().count() + 3);
    let target = format!("{up}{}", secret.to_str().unwrap().trim_start_matches('/'));
    symlink(&mut climbing, proj.join("leak.h"), &target);
    let root = lab.store_tree(&climbing);
    let result = lab.run(&job(&proj, "gcc", "-c x.c -o x.o", root, &["x.o"]));
    assert!(refusal(result).contains("climbs above the root"));

    // Two symlinks that climb out only together pass the check, but only the confined
    // compiler follows them, and the sandbox keeps it from the file.
    let mut composed = entries.clone();
    let depth = proj.components().count() - 1;
    symlink(&mut composed, proj.join("l1"), &"../".repeat(depth - 1));
    // From the tree's first level: up to the root, the job directory, its parents.
    let job_dir_depth = std::env::temp_dir().components().count() + 1;
    let up = "../".repeat(1 + job_dir_depth);
    let target = format!(
        "l1/{up}{}",
        secret.to_str().unwrap().trim_start_matches('/')
    );
    symlink(&mut composed, proj.join("leak.h"), &target);
    let root = lab.store_tree(&composed);
    let job = job(&proj, "gcc", "-c x.c -o x.o", root, &["x.o"]);
    match sshcc::server::sandbox::kernel_abi() {
        Ok(_) => {
            let compiled = lab.run(&job).expect("a compile that fails");
            let stderr = String::from_utf8_lossy(&compiled.stderr).into_owned();
            assert_ne!(compiled.status, 0, "{stderr}");
            assert!(!stderr.contains(SECRET), "{stderr}");
            assert!(compiled.outputs.is_empty());
            assert!(stderr.contains("leak.h"), "{stderr}");
        }
        Err(why) => println!("composed symlinks not run: {why} (without Landlock they leak)"),
    }
    assert_eq!(snapshot(&outside), before, "nothing outside changed");
}

#[test]
fn outputs_and_options_reaching_outside_are_refused() {
    let lab = Lab::new();
    let proj = lab.dir("options").join("proj");
    write_files(&proj, &[("x.c", "int x;\n"), ("nano.specs", "*cc1:\n")]);
    let mut entries = Vec::new();
    add_tree(&mut entries, &proj);
    let root = lab.store_tree(&entries);
    let run = |args: &str, outputs: &[&str]| lab.run(&job(&proj, "gcc", args, root, outputs));
    assert!(refusal(run("-c x.c -o x.o -fplugin=/tmp/evil.so", &["x.o"])).contains("-fplugin"));
    assert!(refusal(run("-c x.c -o x.o -B /tmp/evil", &["x.o"])).contains("-B /tmp/evil"));
    assert!(refusal(run("-c x.c -o x.o -Wl,-T,/etc/x", &["x.o"])).contains("linker"));
    // A specs file sent in the tree could run any program.
    assert!(refusal(run("-c x.c -o x.o --specs=nano.specs", &["x.o"])).contains("specs"));
    let climbing = "../".repeat(proj.components().count() + 1);
    let far = format!("{climbing}x.o");
    assert!(refusal(run(&format!("-c x.c -o {far}"), &["x.o"])).contains("root"));
    assert!(refusal(run("-c x.c -o x.o", &[&far])).contains("climbs"));
    // Not an allowlisted compiler.
    let result = lab.run(&job(&proj, "bash", "-c x.c", root, &["x.o"]));
    match result {
        Err(err @ RemoteJobError::NotRun { .. }) => {
            assert_eq!(err.exit_code(), ExitCode::CompilerMissing);
        }
        other => panic!("expected the allowlist to refuse, got {other:?}"),
    }
}

#[test]
fn a_failed_compile_answers_with_client_paths_and_no_outputs() {
    let lab = Lab::new();
    let proj = lab.dir("failed").join("proj");
    write_files(&proj, &[("src/bad.c", "int f(void) { return missing; }\n")]);
    let mut entries = Vec::new();
    add_tree(&mut entries, &proj);
    let root = lab.store_tree(&entries);
    let source = proj.join("src/bad.c");
    let args = format!("-c {} -o out/bad.o", source.display());
    let compiled = lab
        .run(&job(&proj, "gcc", &args, root, &["out/bad.o"]))
        .expect("the compile ran");
    let stderr = String::from_utf8_lossy(&compiled.stderr).into_owned();
    assert_eq!(compiled.status >> 8, 1, "{stderr}");
    assert!(compiled.outputs.is_empty());
    assert!(
        stderr.starts_with(&format!("{}: In function", source.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("sshcc-job-"), "{stderr}");
}
