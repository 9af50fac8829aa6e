//! The box side of remote preprocessing (`server::remote_job`) against real compilers:
//! a fixture project at an absolute path is compiled locally where it is, then from the
//! box's store in a job directory of its own, and the object, the dependency file, the
//! diagnostics and the dependency list must be the local ones, byte for byte.
//!
//! The client's part (finding the inputs, probing the builtin include chain, shipping
//! system headers hermetically with `-nostdinc -isystem …`) is done here by hand, with
//! the local compiler's own `-M` and `-v`, as `crate::inputs` does it for real.

#[path = "remote_job/lab.rs"]
mod lab;

use std::path::PathBuf;
use std::process::Command;

use lab::{Chain, LOCALE, Lab, add_path, add_tree, deps_of, local_inputs, write_files};
use sshcc::server::remote_job::RemoteJob;

/// The fixture: `#pragma once`, `__FILE__` from the source and from headers found
/// through relative and absolute `-I`, `__TIMESTAMP__`, symlinked headers (relative and
/// absolute targets), a `-include`d header, system headers.
fn project(lab: &Lab, name: &str) -> PathBuf {
    let dir = lab.dir(name).join("proj");
    let abs_link = dir.join("real/real2.h");
    write_files(
        &dir,
        &[
            (
                "src/main.c",
                "#include <stdio.h>\n#include \"util.h\"\n#include \"util.h\"\n\
                 #include \"link.h\"\n#include \"abslink.h\"\n#include \"abs.h\"\n\
                 const char *file = __FILE__;\nconst char *stamp = __TIMESTAMP__;\n\
                 const char *util_file = UTIL_FILE;\nconst char *abs_file = ABS_FILE;\n\
                 int main(void) {\n  printf(\"%s %s %d\\n\", file, stamp,\n         \
                 util(3) + PRE + ABS + REAL + REAL2);\n  return 0;\n}\n",
            ),
            (
                "include/util.h",
                "#pragma once\n#define UTIL_FILE __FILE__\n\
                 static inline int util(int x) { return x * 2; }\n",
            ),
            ("real/real.h", "#define REAL 1\n"),
            ("real/real2.h", "#define REAL2 2\n"),
            ("gen/abs.h", "#define ABS 4\n#define ABS_FILE __FILE__\n"),
            ("pre.h", "#define PRE 5\n"),
            (
                "src/vec.cc",
                "#include <vector>\n#include <string>\n#include \"util.h\"\n\
                 #include \"abs.h\"\n\
                 std::vector<std::string> names() { return {__FILE__, ABS_FILE}; }\n\
                 int total(const std::vector<int> &v) { int t = util(0);\n  \
                 for (int x : v) t += x; return t; }\n",
            ),
            (
                "src/warn.c",
                "#include \"warn.h\"\nint f(void) { int unused; return WARN; }\n",
            ),
            (
                "gen/warn.h",
                "#define WARN 1\nstatic int never_used(void) { return 0; }\n",
            ),
            (
                "src/arm.c",
                "#include <string.h>\n#include <stdint.h>\n#include \"util.h\"\n\
                 volatile uint32_t sink;\nconst char *file = __FILE__;\n\
                 void copy(char *d, const char *s) { strcpy(d, s); sink = util(7); }\n",
            ),
            (
                "src/arm.cc",
                // Debian's arm toolchain may come without libstdc++ (a separate
                // package): then newlib's C headers and the language alone.
                "#if __has_include(<array>)\n#include <array>\ntemplate <typename T, int N>\n\
                 using Array = std::array<T, N>;\n#else\n\
                 template <typename T, int N> struct Array { T v[N];\n  \
                 const T *begin() const { return v; } const T *end() const { return v + N; } };\n\
                 #endif\n#include <string.h>\n#include <stdint.h>\n#include \"util.h\"\n\
                 Array<int, 4> a{1, 2, 3, 4};\n\
                 int sum() { int s = 0; for (int x : a) s += x;\n  \
                 return s + int(strlen(__FILE__)) + util(1) + int(sizeof(uint64_t)); }\n",
            ),
        ],
    );
    std::os::unix::fs::symlink("../real/real.h", dir.join("include/link.h")).unwrap();
    std::os::unix::fs::symlink(&abs_link, dir.join("include/abslink.h")).unwrap();
    dir
}

/// One compile, in the user's words (`{P}` is the project's absolute path).
struct Case<'a> {
    compiler: &'a str,
    language: &'a str,
    args: &'a str,
    /// Client paths of the files to compare (and ask the box for).
    outputs: &'a [&'a str],
    /// Flags that change the builtin include chain (target, specs).
    chain_flags: &'a [&'a str],
}

/// What compiled where, for the caller's extra checks.
struct Compared {
    local_stderr: String,
    remote_deps: Vec<String>,
}

/// Compiles `case` locally and remotely and asserts every output, the diagnostics and
/// the dependency list are the same.
fn compare(lab: &Lab, name: &str, case: &Case) -> Compared {
    let dir = project(lab, name);
    let cwd = dir.clone();
    let p = dir.to_str().unwrap();
    let args: Vec<String> = case
        .args
        .split_whitespace()
        .map(|arg| arg.replace("{P}", p))
        .collect();
    let outputs: Vec<String> = case.outputs.iter().map(|o| o.replace("{P}", p)).collect();
    std::fs::create_dir_all(dir.join("out/deps")).unwrap();

    let chain = Chain::probe(case.compiler, case.language, case.chain_flags);
    let mut entries = Vec::new();
    add_tree(&mut entries, &dir);
    for input in local_inputs(&cwd, case.compiler, &args) {
        add_path(&mut entries, &input);
    }
    chain.add_dirs(&mut entries);
    let root = lab.store_tree(&entries);

    let local = Command::new(case.compiler)
        .current_dir(&cwd)
        .args(&args)
        .envs(LOCALE)
        .output()
        .expect("local compile");
    assert!(local.status.success(), "{name}: local compile: {local:?}");
    let local_files: Vec<Vec<u8>> = outputs
        .iter()
        .map(|output| {
            let path = cwd.join(output);
            let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{output}: {err}"));
            std::fs::remove_file(&path).unwrap();
            bytes
        })
        .collect();

    let job = RemoteJob {
        compiler: case.compiler.to_string(),
        args: chain.wrap(case.language, &args),
        cwd: cwd.to_str().unwrap().to_string(),
        pwd: None,
        locale: LOCALE.map(|(n, v)| (n.to_string(), v.to_string())).to_vec(),
        root,
        outputs: outputs.clone(),
    };
    let remote = lab
        .run(&job)
        .unwrap_or_else(|err| panic!("{name}: remote job: {err}"));
    let remote_stderr = String::from_utf8_lossy(&remote.stderr).into_owned();
    assert_eq!(remote.status, 0, "{name}: {remote_stderr}");
    let local_stderr = String::from_utf8_lossy(&local.stderr).into_owned();
    assert_eq!(remote_stderr, local_stderr, "{name}: diagnostics");
    assert_eq!(remote.stdout, local.stdout, "{name}: stdout");
    let returned: Vec<&str> = remote.outputs.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(returned, outputs, "{name}: outputs");
    for ((output, remote_bytes), local_bytes) in remote.outputs.iter().zip(&local_files) {
        if output.ends_with(".o") {
            assert!(
                remote_bytes == local_bytes,
                "{name}: {output} differs from the local object:\n{}",
                lab::object_differences(local_bytes, remote_bytes)
            );
            continue;
        }
        let local_text = String::from_utf8_lossy(local_bytes);
        assert_eq!(
            String::from_utf8_lossy(remote_bytes),
            local_text,
            "{name}: {output}"
        );
        assert_eq!(
            remote.deps,
            deps_of(&local_text),
            "{name}: the file's prerequisites"
        );
    }
    Compared {
        local_stderr,
        remote_deps: remote.deps,
    }
}

#[test]
fn c_with_relative_and_absolute_includes_and_the_default_dependency_file() {
    let lab = Lab::new();
    let compared = compare(
        &lab,
        "c_md",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c src/main.c -o out/main.o -Iinclude -I{P}/gen -include pre.h -g -O2 -MD",
            outputs: &["out/main.o", "out/main.d"],
            chain_flags: &[],
        },
    );
    assert!(compared.remote_deps.contains(&"include/link.h".to_string()));
    assert!(
        compared
            .remote_deps
            .contains(&"/usr/include/stdio.h".to_string())
    );
}

#[test]
fn c_with_absolute_paths_mmd_mf_mt_and_mp() {
    let lab = Lab::new();
    compare(
        &lab,
        "c_mmd",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c {P}/src/main.c -o {P}/out/main.o -Iinclude -I{P}/gen -include pre.h \
                   -g -MMD -MF {P}/out/deps/main.dep -MT main-target -MP",
            outputs: &["{P}/out/main.o", "{P}/out/deps/main.dep"],
            chain_flags: &[],
        },
    );
    compare(
        &lab,
        "c_md_mq",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c src/main.c -Iinclude -I{P}/gen -include pre.h -O2 -MD -MQ $(OBJ)",
            outputs: &["main.o", "main.d"],
            chain_flags: &[],
        },
    );
}

#[test]
fn c_without_dependency_output_and_the_users_own_prefix_maps() {
    let lab = Lab::new();
    let compared = compare(
        &lab,
        "c_maps",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c src/main.c -Iinclude -I{P}/gen -include pre.h -g -O2 \
                   -ffile-prefix-map={P}=/project -fdebug-prefix-map=/usr/include=/sys",
            outputs: &["main.o"],
            chain_flags: &[],
        },
    );
    // The box asked for dependencies itself.
    let deps = compared.remote_deps;
    assert_eq!(deps.first().map(String::as_str), Some("src/main.c"));
    assert!(
        deps.iter().any(|dep| dep.ends_with("/gen/abs.h")),
        "{deps:?}"
    );
    assert!(
        deps.contains(&"/usr/include/stdio.h".to_string()),
        "{deps:?}"
    );
}

#[test]
fn cxx_with_standard_headers_shipped() {
    let lab = Lab::new();
    compare(
        &lab,
        "cxx",
        &Case {
            compiler: "g++",
            language: "c++",
            args: "-c src/vec.cc -o out/vec.o -Iinclude -I{P}/gen -g -O2 -std=gnu++17 -MD -MP",
            outputs: &["out/vec.o", "out/vec.d"],
            chain_flags: &[],
        },
    );
}

#[test]
fn warnings_come_back_with_client_paths() {
    let lab = Lab::new();
    let compared = compare(
        &lab,
        "warn",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c {P}/src/warn.c -o out/warn.o -Wall -I{P}/gen",
            outputs: &["out/warn.o"],
            chain_flags: &[],
        },
    );
    // Equal to the local diagnostics (checked above), so it names the client's paths.
    assert!(
        compared.local_stderr.contains("warning"),
        "{}",
        compared.local_stderr
    );
    assert!(compared.local_stderr.contains("/proj/gen/warn.h"));
}

#[test]
fn arm_none_eabi_c_and_cxx_with_nano_specs() {
    if !lab::have("arm-none-eabi-gcc") || !lab::have("arm-none-eabi-g++") {
        println!("skipped: arm-none-eabi-gcc/g++ is not installed");
        return;
    }
    let lab = Lab::new();
    let target = [
        "-mcpu=cortex-m7",
        "-mthumb",
        "-mfloat-abi=hard",
        "--specs=nano.specs",
    ];
    compare(
        &lab,
        "arm_c",
        &Case {
            compiler: "arm-none-eabi-gcc",
            language: "c",
            args: "-c src/arm.c -o out/arm.o -mcpu=cortex-m7 -mthumb -mfloat-abi=hard \
                   --specs=nano.specs -Iinclude -g -O2 -MD",
            outputs: &["out/arm.o", "out/arm.d"],
            chain_flags: &target,
        },
    );
    compare(
        &lab,
        "arm_cxx",
        &Case {
            compiler: "arm-none-eabi-g++",
            language: "c++",
            args: "-c src/arm.cc -o out/arm_cc.o -mcpu=cortex-m7 -mthumb -mfloat-abi=hard \
                   --specs=nano.specs -Iinclude -I{P}/gen -g -Os -fno-exceptions -fno-rtti -MMD",
            outputs: &["out/arm_cc.o", "out/arm_cc.d"],
            chain_flags: &target,
        },
    );
}

/// gcc 12, when it leaves the line table to the assembler (`.file`/`.loc`: always for
/// arm-none-eabi, with `-gdwarf-4` and older on x86-64), looks the main source up once
/// by its remapped name (the compile unit's `DW_AT_name`) and once by the name it was
/// given; when a prefix map renames an absolute source, the two differ and the line
/// table gets the source twice (`.file 1` and `.file 2`, same name), shifting every
/// `DW_AT_decl_file` after it. A local compile has no map to apply, so the objects
/// differ (only in `.debug_line` and the `DW_AT_decl_file` numbers; code and `.comment`
/// are equal). Relative sources and absolute headers are not affected.
#[test]
#[ignore = "known gcc 12 difference: an absolute source with gas line directives (see above)"]
fn absolute_source_with_assembler_line_directives() {
    let lab = Lab::new();
    compare(
        &lab,
        "dwarf4_abs",
        &Case {
            compiler: "gcc",
            language: "c",
            args: "-c {P}/src/warn.c -o out/warn.o -I{P}/gen -gdwarf-4",
            outputs: &["out/warn.o"],
            chain_flags: &[],
        },
    );
}
