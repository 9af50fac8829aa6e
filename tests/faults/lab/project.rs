//! The generated C and C++ project, its objects compiled locally once per test run
//! (the reference), and the checks every run ends with: each object byte-identical to
//! the reference or absent, and no temporary files left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{run, stderr};

const C_UNITS: usize = 10;
const CXX_UNITS: usize = 6;
const CFLAGS: &str = "-O2 -Wall";
const CXXFLAGS: &str = "-O2 -Wall -std=c++17";

/// The generated project's sources, by file name.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for index in 0..C_UNITS {
        files.push((
            format!("c{index}.c"),
            format!(
                "#include <stdio.h>\n#include <string.h>\n\n\
                 static int table{index}[64];\n\n\
                 int unit_c{index}(const char *text) {{\n\
                 \x20   int sum = {index};\n\
                 \x20   for (size_t i = 0; i < strlen(text); i++)\n\
                 \x20       sum = sum * 31 + text[i] + table{index}[i % 64]++;\n\
                 \x20   if (sum == {index} * 7)\n\
                 \x20       printf(\"unit {index}: %d\\n\", sum);\n\
                 \x20   return sum;\n}}\n"
            ),
        ));
    }
    for index in 0..CXX_UNITS {
        files.push((
            format!("x{index}.cpp"),
            format!(
                "#include <algorithm>\n#include <numeric>\n#include <vector>\n\n\
                 namespace unit{index} {{\n\
                 template <typename T> T weigh(const std::vector<T> &items) {{\n\
                 \x20   std::vector<T> sorted(items);\n\
                 \x20   std::sort(sorted.begin(), sorted.end());\n\
                 \x20   return std::accumulate(sorted.begin(), sorted.end(), T({index}));\n}}\n\
                 }}\n\n\
                 long unit_x{index}(int n) {{\n\
                 \x20   std::vector<long> items(n);\n\
                 \x20   std::iota(items.begin(), items.end(), {index});\n\
                 \x20   return unit{index}::weigh(items) + unit{index}::weigh(std::vector<double>(n, 0.5));\n}}\n"
            ),
        ));
    }
    files
}

/// The object names a full build produces.
pub fn object_names() -> Vec<String> {
    sources()
        .iter()
        .map(|(name, _)| format!("{}.o", name.rsplit_once('.').unwrap().0))
        .collect()
}

/// Writes the project into `dir`: sources and a Makefile that puts the objects in
/// `$(OUT)` (default `obj`).
pub fn write_project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in sources() {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let objects: Vec<String> = object_names()
        .iter()
        .map(|name| format!("$(OUT)/{name}"))
        .collect();
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "OUT ?= obj\nCFLAGS = {CFLAGS}\nCXXFLAGS = {CXXFLAGS}\n\
             $(shell mkdir -p $(OUT))\n\
             all: {}\n\
             $(OUT)/%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n\
             $(OUT)/%.o: %.cpp\n\t$(CXX) $(CXXFLAGS) -c $< -o $@\n",
            objects.join(" ")
        ),
    )
    .unwrap();
}

/// Every object compiled here with the plain local compilers, by name (computed once).
fn reference() -> &'static BTreeMap<String, Vec<u8>> {
    static REFERENCE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path());
        let output = run(Command::new("make")
            .current_dir(dir.path())
            .args(["-j2", "CC=gcc", "CXX=g++"]));
        assert!(output.status.success(), "local build: {}", stderr(&output));
        object_names()
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(dir.path().join("obj").join(&name)).unwrap();
                (name, bytes)
            })
            .collect()
    })
}

/// Checks what a build left in `out`: only object files of the project, each
/// byte-identical to the local build (no truncated or corrupt object, no temporary
/// file); all of them when `complete`. Returns how many there are.
pub fn check_objects(out: &Path, complete: bool) -> usize {
    let reference = reference();
    let mut present = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let expected = reference
            .get(&name)
            .unwrap_or_else(|| panic!("stray file {name} in {}", out.display()));
        let actual = std::fs::read(entry.path()).unwrap();
        assert!(
            actual == *expected,
            "{name} differs from the local build ({} bytes, local {} bytes)",
            actual.len(),
            expected.len()
        );
        present += 1;
    }
    if complete {
        assert_eq!(
            present,
            reference.len(),
            "objects missing in {}",
            out.display()
        );
    }
    present
}

/// No sshcc temporary file anywhere under `dir`.
pub fn assert_no_temporary_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".sshcc-") && !name.ends_with(".tmp"),
            "temporary file {} left behind",
            entry.path().display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_no_temporary_files(&entry.path());
        }
    }
}
