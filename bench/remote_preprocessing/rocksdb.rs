//! The real project: RocksDB's library sources as the `librocksdb-sys` crate bundles
//! them, fetched with cargo into a throwaway project under `target/` (the exact version
//! pinned, cargo's cache and a copy kept there, so reruns are fast), a seeded sample of
//! its heavier translation units, and the compile flags its `build.rs` uses for
//! `x86_64-unknown-linux-gnu` in a release build.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::support;

/// The pinned crate version (RocksDB 11.8.1).
pub const CRATE_VERSION: &str = "0.19.0+11.8.1";

/// What `build.rs` hands gcc through the `cc` crate for a release build on x86-64
/// Linux without extra target features: `cc`'s own `-O3 -ffunction-sections
/// -fdata-sections -fPIC -m64`, the include directories, the defines, `-msse2` (the
/// baseline target feature), the C++ standard and warnings, and `-include cstdint`. No
/// `-g` (release profile) and none of the compression libraries (their features are off
/// by default).
pub const FLAGS: &[&str] = &[
    "-O3",
    "-ffunction-sections",
    "-fdata-sections",
    "-fPIC",
    "-m64",
    "-Irocksdb/include/",
    "-Irocksdb/",
    "-Irocksdb/third-party/gtest-1.8.1/fused-src/",
    "-I.",
    "-DNDEBUG=1",
    "-DHAVE_ALIGNED_NEW",
    "-DHAVE_UINT128_EXTENSION",
    "-DOS_LINUX",
    "-DROCKSDB_PLATFORM_POSIX",
    "-DROCKSDB_LIB_IO_POSIX",
    "-DROCKSDB_SCHED_GETCPU_PRESENT",
    "-DROCKSDB_AUXV_GETAUXVAL_PRESENT",
    "-DROCKSDB_FALLOCATE_PRESENT",
    "-DROCKSDB_RANGESYNC_PRESENT",
    "-msse2",
    "-std=c++20",
    "-Wsign-compare",
    "-Wshadow",
    "-Wno-unused-parameter",
    "-Wno-unused-variable",
    "-Woverloaded-virtual",
    "-Wnon-virtual-dtor",
    "-Wno-missing-field-initializers",
    "-Wno-strict-aliasing",
    "-Wno-invalid-offsetof",
    "-include",
    "cstdint",
];

/// The crate's sources, copied once under `target/`.
#[derive(Debug)]
pub struct Sources {
    /// The crate root (holds `rocksdb/` and `rocksdb_lib_sources.txt`).
    pub dir: PathBuf,
    /// Library sources relative to the crate root (`rocksdb/db/…/x.cc`), as listed.
    pub library: Vec<String>,
}

/// One translation unit of the sample.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The source relative to the project root, e.g. `rocksdb/db/db_impl/db_impl.cc`.
    pub source: String,
    /// The object relative to the project root, `obj/<key>.o`.
    pub object: String,
    /// A name unique in the project, from the source path (`/` → `+`, no suffix).
    pub key: String,
}

impl Unit {
    pub fn new(source: &str) -> Self {
        let key = source.trim_end_matches(".cc").replace('/', "+");
        Unit {
            source: source.to_owned(),
            object: format!("obj/{key}.o"),
            key,
        }
    }
}

impl Sources {
    /// Fetches `librocksdb-sys` (from cargo's cache when present) and keeps a copy of its
    /// sources in `cache` (under `target/`); a complete copy is reused as is.
    pub fn fetch(cache: &Path) -> Result<Self> {
        let dir = cache.join(format!("librocksdb-sys-{CRATE_VERSION}"));
        let done = dir.join(".sshcc-bench-complete");
        if !done.exists() {
            let crate_dir =
                support::fetch_crate(&cache.join("fetch"), "librocksdb-sys", CRATE_VERSION)?;
            ensure!(
                crate_dir.join("rocksdb/include/rocksdb/db.h").is_file(),
                "librocksdb-sys {CRATE_VERSION} in {} bundles no RocksDB sources",
                crate_dir.display()
            );
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            copy_tree(&crate_dir.join("rocksdb"), &dir.join("rocksdb"))?;
            fs::copy(
                crate_dir.join("rocksdb_lib_sources.txt"),
                dir.join("rocksdb_lib_sources.txt"),
            )?;
            fs::write(&done, "")?;
        }
        let list = fs::read_to_string(dir.join("rocksdb_lib_sources.txt"))?;
        let library: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|file| !file.is_empty() && *file != "util/build_version.cc")
            .map(|file| format!("rocksdb/{file}"))
            .filter(|file| dir.join(file).is_file())
            .collect();
        ensure!(
            library.len() >= 100,
            "only {} library sources in {}",
            library.len(),
            dir.display()
        );
        Ok(Sources { dir, library })
    }

    /// `count` sources drawn with `seed` from the heavier half (by source size) of the
    /// library, in a stable order.
    pub fn sample(&self, count: usize, seed: u64) -> Result<Vec<Unit>> {
        let mut sized: Vec<(u64, &String)> = self
            .library
            .iter()
            .map(|file| Ok((fs::metadata(self.dir.join(file))?.len(), file)))
            .collect::<Result<_>>()?;
        sized.sort();
        let mut heavy: Vec<&String> = sized[sized.len() / 2..].iter().map(|(_, f)| *f).collect();
        ensure!(
            count <= heavy.len(),
            "SSHCC_BENCH_TUS={count}: only {} heavy sources",
            heavy.len()
        );
        // A seeded Fisher–Yates shuffle (splitmix64), then the first `count`.
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for i in (1..heavy.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            heavy.swap(i, j);
        }
        let mut chosen: Vec<Unit> = heavy[..count].iter().map(|s| Unit::new(s)).collect();
        chosen.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(chosen)
    }

    /// A fresh copy of the sources at `dir` (the build edits a header in it).
    pub fn make_project(&self, dir: &Path) -> Result<()> {
        copy_tree(&self.dir.join("rocksdb"), &dir.join("rocksdb"))?;
        fs::create_dir_all(dir.join("obj"))?;
        Ok(())
    }
}

/// Writes `dir/<name>` building `units` with `$(CXX)` and [`FLAGS`].
pub fn write_makefile(dir: &Path, name: &str, units: &[Unit]) -> Result<()> {
    let mut text = format!(
        "# Generated by bench/remote_preprocessing.rs: RocksDB objects, build.rs's flags.\n\
         CXX = g++\nCXXFLAGS = {}\nOBJS = {}\n\nall: $(OBJS)\n\n",
        FLAGS.join(" "),
        units
            .iter()
            .map(|u| u.object.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for unit in units {
        text.push_str(&format!(
            "{}: {}\n\t$(CXX) $(CXXFLAGS) -c {} -o {}\n",
            unit.object, unit.source, unit.source, unit.object
        ));
    }
    text.push_str("\n.PHONY: all\n");
    fs::write(dir.join(name), text)?;
    Ok(())
}

/// Copies regular files and directories (symlinks as the files they name).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if fs::metadata(entry.path())?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
