//! `sshcc::inputs` against the real GCC: for each fixture, the job is prepared, its
//! entries are materialised as a box would (and nothing else: `-nostdinc` plus the
//! shipped system headers), and preprocessing there must give the same text and the
//! same dependencies as here. Fixtures are built in temporary directories.

#[path = "inputs/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sshcc::inputs::{InputCache, InputEntry, JobSpec};
use support::{Project, assert_same_as_local, local_why, remote, which};

fn shipped(inputs: &sshcc::inputs::JobInputs, path: &Path) -> bool {
    inputs.files().any(|(file, _)| file == path)
}

/// A cache that trusts the stats of files just written (the fixtures are all new).
fn cache() -> InputCache {
    InputCache::with_racy_window(Duration::ZERO)
}

#[test]
fn nested_quote_includes_resolve_next_to_the_includer_as_reached() {
    let p = Project::new();
    p.write(
        "src/main.c",
        "#include \"sub/a.h\"\n#include <c.h>\nint main(void) { return A + B + C + TOP; }\n",
    );
    p.write(
        "src/sub/a.h",
        "#include \"b.h\"\n#include \"../top.h\"\n#define A 1\n",
    );
    p.write("src/sub/b.h", "#define B 2\n");
    p.write("src/b.h", "#error the includer's directory comes first\n");
    p.write("src/top.h", "#define TOP 4\n");
    p.write("inc/c.h", "#include \"b.h\"\n#define C 3\n");
    p.write("inc/b.h", "");
    let job = p.job("gcc", "src", "-I../inc -c main.c -o main.o");
    let inputs = remote(&cache(), &job);
    assert_same_as_local(&inputs, &job);
    assert!(!shipped(&inputs, &p.path("src/b.h")));
    assert!(
        inputs
            .entries
            .contains(&(p.path("inc"), InputEntry::Directory))
    );
}

#[test]
fn the_option_order_of_the_search_chains_is_kept() {
    let p = Project::new();
    for dir in ["q", "i", "s", "d"] {
        p.write(&format!("{dir}/order.h"), &format!("int from_{dir};\n"));
        p.write(
            &format!("{dir}/only_{dir}.h"),
            &format!("int only_{dir};\n"),
        );
    }
    p.mkdir("empty");
    p.write(
        "main.c",
        "#include \"order.h\"\n#include <order.h>\n#include <only_s.h>\n#include <only_d.h>\n#include \"only_q.h\"\n",
    );
    let job = p.job(
        "gcc",
        ".",
        "-idirafter d -isystem s -Iempty -I i -iquote q -Imissing -c main.c",
    );
    let inputs = remote(&cache(), &job);
    assert_same_as_local(&inputs, &job);
    // An empty chain directory exists on the box; a missing one does not.
    assert!(
        inputs
            .entries
            .contains(&(p.path("empty"), InputEntry::Directory))
    );
    assert!(
        !inputs
            .entries
            .iter()
            .any(|(path, _)| path == &p.path("missing"))
    );
    assert!(!shipped(&inputs, &p.path("s/order.h")));
}

#[test]
fn include_next_continues_after_the_directory_it_was_found_in() {
    let p = Project::new();
    p.write("x/n.h", "int x;\n#include_next <n.h>\n");
    p.write("y/n.h", "int y;\n#include_next \"n.h\"\n");
    p.write("z/n.h", "int z;\n");
    // Found next to its includer, include_next restarts at the head of the quote chain
    // (libcpp's ad-hoc directory is followed by the quote chain): x again, then y, z.
    p.write("x/main.c", "#include \"n.h\"\n");
    let job = p.job("gcc", ".", "-iquote x -Iy -Iz -c x/main.c");
    let inputs = remote(&cache(), &job);
    assert_same_as_local(&inputs, &job);
    for dir in ["x", "y", "z"] {
        assert!(shipped(&inputs, &p.path(&format!("{dir}/n.h"))), "{dir}");
    }
}

#[test]
fn a_shadowing_header_created_later_is_found_by_the_next_job() {
    let p = Project::new();
    p.write("b/foo.h", "int from_b;\n");
    p.write("main.c", "#include <foo.h>\n#include <bar.h>\n");
    p.write("b/bar.h", "int bar_b;\n");
    p.mkdir("a");
    let cache = cache();
    let job = p.job("gcc", ".", "-Ia -Inot_yet -Ib -c main.c");
    let first = remote(&cache, &job);
    assert!(shipped(&first, &p.path("b/foo.h")));
    assert_same_as_local(&first, &job);
    // In an existing directory, and in one that did not exist when the search was
    // probed (the cached probe must notice).
    p.write("a/foo.h", "int from_a;\n");
    p.write("not_yet/bar.h", "int bar_not_yet;\n");
    let second = remote(&cache, &job);
    assert!(shipped(&second, &p.path("a/foo.h")));
    assert!(shipped(&second, &p.path("not_yet/bar.h")));
    assert!(!shipped(&second, &p.path("b/foo.h")));
    assert_same_as_local(&second, &job);
}

#[test]
fn has_include_of_an_absent_file_that_appears_later() {
    let p = Project::new();
    p.mkdir("inc");
    p.write(
        "main.c",
        "#if __has_include(<opt.h>)\n#define HAVE_OPT 1\n#else\n#define HAVE_OPT 0\n#endif\n#define PROBE __has_include(\"near.h\")\n#if PROBE\nint near;\n#endif\nint have = HAVE_OPT;\n",
    );
    let cache = cache();
    let job = p.job("gcc", ".", "-Iinc -c main.c");
    assert_same_as_local(&remote(&cache, &job), &job);
    p.write("inc/opt.h", "");
    p.write("near.h", "");
    let later = remote(&cache, &job);
    assert!(shipped(&later, &p.path("inc/opt.h")));
    assert!(shipped(&later, &p.path("near.h")));
    assert_same_as_local(&later, &job);
}

#[test]
fn computed_includes_try_every_value_of_the_macro() {
    let p = Project::new();
    p.write("cfg.h", "#define CONFIG_FROM_CFG 1\n");
    p.write("inc/sub/h.h", "int h;\n");
    p.write("inc/other.h", "int other;\n");
    p.write(
        "names.h",
        "#ifdef ALT\n#define HEADER <other.h>\n#else\n#define HEADER <sub/h.h>\n#endif\n#define ALIAS HEADER\n",
    );
    p.write(
        "main.c",
        "#include CONFIG\n#include \"names.h\"\n#include ALIAS\n",
    );
    let job = p.job("gcc", ".", "-Iinc -DCONFIG=\"cfg.h\" -c main.c");
    let inputs = remote(&cache(), &job);
    assert_same_as_local(&inputs, &job);
    assert!(
        shipped(&inputs, &p.path("inc/other.h")),
        "every branch's value"
    );

    if Path::new("/usr/include/freetype2/ft2build.h").exists() {
        p.write(
            "ft.c",
            "#include <ft2build.h>\n#include FT_FREETYPE_H\n#include FT_OUTLINE_H\n",
        );
        let job = p.job("gcc", ".", "-I/usr/include/freetype2 -c ft.c");
        assert_same_as_local(&remote(&cache(), &job), &job);
    } else {
        println!("skipped FreeType's computed includes: no /usr/include/freetype2");
    }
}

#[test]
fn include_and_imacros_files_are_roots() {
    let p = Project::new();
    p.write("pre.h", "#include \"pre_dep.h\"\nint pre;\n");
    p.write("pre_dep.h", "int pre_dep;\n");
    p.write("q/mac.h", "#define FROM_IMACROS 7\n#include <stdint.h>\n");
    p.write("main.c", "int x = FROM_IMACROS;\n");
    let job = p.job(
        "gcc",
        ".",
        "-iquote q -include pre.h -imacros mac.h -c main.c",
    );
    let inputs = remote(&cache(), &job);
    // The implicit pre-include goes before the user's -include, as GCC reads it.
    assert_eq!(
        inputs.leading_args,
        ["-nostdinc", "-include", "stdc-predef.h"]
    );
    assert_same_as_local(&inputs, &job);
    assert!(shipped(&inputs, &p.path("q/mac.h")));
}

#[test]
fn symlinked_headers_and_directories_keep_their_dotdot() {
    let p = Project::new();
    p.write("real/dir/h.h", "#include \"../x.h\"\n#include \"y.h\"\n");
    p.write("real/dir/y.h", "int y_real;\n");
    p.write("real/x.h", "int x_real;\n");
    p.write(
        "x.h",
        "#error ../ from the link's target, not from the link\n",
    );
    p.symlink("real/dir", "link");
    p.write("elsewhere/target.h", "#include \"sibling.h\"\n");
    p.write(
        "elsewhere/sibling.h",
        "#error next to the symlink, not its target\n",
    );
    p.write("hdrs/sibling.h", "int sibling;\n");
    p.symlink("../elsewhere/target.h", "hdrs/t.h");
    p.symlink(p.path("real").to_str().unwrap(), "abs_link");
    p.write(
        "main.c",
        "#include \"link/h.h\"\n#include \"hdrs/t.h\"\n#include \"abs_link/dir/y.h\"\n",
    );
    let job = p.job("gcc", ".", "-c main.c");
    let inputs = remote(&cache(), &job);
    assert_same_as_local(&inputs, &job);
    assert!(inputs.entries.contains(&(
        p.path("link"),
        InputEntry::Symlink {
            target: "real/dir".into()
        }
    )));
    assert!(shipped(&inputs, &p.path("real/x.h")));
    assert!(!shipped(&inputs, &p.path("x.h")));
}

#[test]
fn a_header_generated_or_rewritten_between_jobs_is_seen() {
    let p = Project::new();
    p.mkdir("build");
    p.write(
        "main.c",
        "#if __has_include(\"build/gen.h\")\n#include \"build/gen.h\"\n#endif\nint main(void) { return GEN; }\n",
    );
    p.write("build/gen.h", "#define GEN 1\n");
    let cache = cache();
    let job = p.job("gcc", ".", "-c main.c");
    let first = remote(&cache, &job);
    assert_same_as_local(&first, &job);
    p.write("build/gen.h", "#define GEN 2\n#include \"more.h\"\n");
    p.write("build/more.h", "");
    let second = remote(&cache, &job);
    assert!(shipped(&second, &p.path("build/more.h")));
    assert_ne!(
        first.files().find(|(f, _)| f.ends_with("gen.h")),
        second.files().find(|(f, _)| f.ends_with("gen.h"))
    );
    assert_same_as_local(&second, &job);
    // The first job's object would be stale: its check says so.
    let deps = [PathBuf::from("main.c"), PathBuf::from("build/gen.h")];
    let err = cache.verify_after(&first, &deps).unwrap_err();
    assert!(err.contains("changed"), "{err}");
    cache.verify_after(&second, &deps).unwrap();
    let err = cache.verify_after(&second, &[p.path("x.c")]).unwrap_err();
    assert!(err.contains("x.c"), "{err}");
    p.write("unshipped.h", "");
    let err = cache
        .verify_after(&second, &[PathBuf::from("unshipped.h")])
        .unwrap_err();
    assert!(err.contains("not shipped"), "{err}");
}

#[test]
fn system_headers_are_shipped_and_the_builtin_directories_passed() {
    let p = Project::new();
    p.write(
        "main.c",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); }\n",
    );
    p.write(
        "main.cc",
        "#include <vector>\n#include <optional>\nstd::vector<int> v;\n",
    );
    let cache = cache();
    let job = p.job("gcc", ".", "-O2 -g -c main.c -o main.o");
    let c = remote(&cache, &job);
    assert_same_as_local(&c, &job);
    assert!(shipped(&c, Path::new("/usr/include/stdio.h")));
    assert!(
        c.extra_args
            .windows(2)
            .any(|pair| pair == ["-isystem", "/usr/include"])
    );
    let job = p.job("g++", ".", "-std=c++17 -c main.cc");
    let cxx = remote(&cache, &job);
    assert_same_as_local(&cxx, &job);
    assert!(cxx.leading_args.contains(&"-nostdinc++".to_string()));
    assert!(cxx.files().any(|(f, _)| f.ends_with("c++/12/vector")));
    cxx.input_tree().unwrap();
}

#[test]
fn arm_none_eabi_with_nano_specs() {
    let Some(_) = which("arm-none-eabi-gcc") else {
        println!("skipped: arm-none-eabi-gcc is not installed");
        return;
    };
    let p = Project::new();
    p.write(
        "main.c",
        "#include <stdio.h>\n#include <string.h>\nint main(void) { return 0; }\n",
    );
    let job = p.job(
        "arm-none-eabi-gcc",
        ".",
        "--specs=nano.specs -mcpu=cortex-m4 -mthumb -c main.c",
    );
    let inputs = remote(&cache(), &job);
    assert!(shipped(
        &inputs,
        Path::new("/usr/include/newlib/nano/newlib.h")
    ));
    // No implicit pre-include on this target.
    assert_eq!(inputs.leading_args, ["-nostdinc"]);
    let local = support::local_run(&job);
    for dep in &local.deps {
        let real = std::fs::canonicalize(job.cwd.join(dep)).unwrap();
        assert!(shipped(&inputs, &real), "{dep}");
    }
    // The box would also get nano.specs' own `-isystem /usr/include/newlib/nano`,
    // unprefixed (the specs add it inside the driver): on this machine that directory
    // exists, so a simulated box run is not hermetic and is not compared here.
}

#[test]
fn doubts_are_preprocessed_locally_with_a_reason() {
    let p = Project::new();
    p.write("main.c", "int x;\n");
    p.write(
        "abs.c",
        &format!("#include \"{}\"\n", p.path("main.c").display()),
    );
    p.write("pch.h", "int pch;\n");
    p.write("pch.h.gch", "not really");
    p.write("pch.c", "#include \"pch.h\"\n");
    p.write(
        "complex.c",
        "#define CAT(a, b) a##b\n#include CAT(<std, io.h>)\n",
    );
    p.write(
        "fn.c",
        "#define NAME(x) #x\n#define H NAME(x.h)\n#include H\n",
    );
    p.write("embed.c", "#if 0\n#embed \"x.bin\"\n#endif\n");
    p.write("asm.S", "nop\n");
    let cache = cache();
    let why = |args: &str| local_why(&cache, &p.job("gcc", ".", args));
    for (args, expected) in [
        ("-I- -c main.c", "-I-"),
        ("--coverage -c main.c", "profile"),
        ("-fprofile-generate -c main.c", "profile"),
        ("-c abs.c", "absolute path"),
        ("-c pch.c", "precompiled"),
        ("-include pch.h.gch -c main.c", "precompiled"),
        ("-c complex.c", "computed #include"),
        ("-c fn.c", "not a plain header name"),
        ("-c embed.c", "#embed"),
        ("-c asm.S", "source file"),
        ("-x assembler-with-cpp -c main.c", "assembler-with-cpp"),
        ("-include absent.h -c main.c", "absent.h"),
    ] {
        let got = why(args);
        assert!(got.contains(expected), "{args}: {got}");
    }
    let mut job = p.job("gcc", ".", "-c main.c");
    job.env = vec![("CPATH".into(), "/opt".into())];
    assert!(local_why(&cache, &job).contains("CPATH"));
    let mut job = p.job("gcc", ".", "-c main.c");
    job.compiler = PathBuf::from("/usr/bin/clang");
    assert!(local_why(&cache, &job).contains("clang"));
}

#[test]
fn an_unchanged_file_is_hashed_once_per_cache_and_a_changed_one_again() {
    let p = Project::new();
    p.write("a.h", "int a;\n");
    p.write("main.c", "#include \"a.h\"\n");
    let cache = cache();
    let job = p.job("gcc", ".", "-c main.c");
    remote(&cache, &job);
    let after_first = cache.files_hashed();
    let probes = cache.probes_run();
    remote(&cache, &job);
    assert_eq!(cache.files_hashed(), after_first, "nothing changed");
    assert_eq!(cache.probes_run(), probes, "the probe is cached");
    p.write("a.h", "int b;\n");
    remote(&cache, &job);
    assert_eq!(cache.files_hashed(), after_first + 1, "only a.h again");

    // With the default guard, a file written a moment ago is hashed on every use.
    let guarded = InputCache::new();
    remote(&guarded, &job);
    let once = guarded.files_hashed();
    remote(&guarded, &job);
    assert!(guarded.files_hashed() >= once + 2, "main.c and a.h again");
}

#[test]
fn prepare_time_of_a_heavy_cxx_file_with_warm_caches() {
    let p = Project::new();
    p.write(
        "heavy.cc",
        "#include <vector>\n#include <map>\n#include <string>\n#include <iostream>\n#include <algorithm>\n#include <regex>\nint main() {}\n",
    );
    let cache = cache();
    let job: JobSpec = p.job("g++", ".", "-std=c++17 -O2 -c heavy.cc -o heavy.o");
    let started = Instant::now();
    let inputs = remote(&cache, &job);
    let cold = started.elapsed();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        remote(&cache, &job);
    }
    let warm = started.elapsed() / rounds;
    let started = Instant::now();
    let tree = inputs.input_tree().unwrap();
    let tree_time = started.elapsed();
    println!(
        "heavy.cc: {} files, {} entries, {} directories in the tree; prepare cold {cold:?} (probe and hashing), warm {warm:?} per job; tree {tree_time:?}",
        inputs.watched.len(),
        inputs.entries.len(),
        tree.directories().len()
    );
    assert_same_as_local(&inputs, &job);
}
