//! The local reference build of the sample (plain `g++`, `make -j2`): every object the
//! remote builds must equal byte for byte, and each unit's dependency list (`g++ -M`),
//! from which the widely included header and the emulated compiler's dependency
//! templates are made. Kept under `target/` by a digest of the flags, the sample and
//! the compiler, so a rerun does not compile it again.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use crate::rocksdb::{CRATE_VERSION, FLAGS, Unit, write_makefile};
use crate::support::tail;

pub struct Reference {
    /// By unit key.
    pub objects: HashMap<String, Vec<u8>>,
    pub deps: HashMap<String, String>,
    /// The local build: CPU of make and its children, and wall time.
    pub local_cpu: Duration,
    pub local_wall: Duration,
    /// Whether it was read from the cache rather than built now.
    pub cached: bool,
}

impl Reference {
    /// Builds (or reads from `cache`) the reference for `units` in `project`.
    pub fn get(cache: &Path, project: &Path, units: &[Unit]) -> Result<Self> {
        let gcc = crate::support::capture("g++", &["--version"])?;
        let mut hash = Sha256::new();
        for part in [CRATE_VERSION, &gcc, &FLAGS.join(" ")] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for unit in units {
            hash.update(unit.source.as_bytes());
            hash.update([0]);
        }
        let digest: String = hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = cache.join(format!("reference-{digest}"));
        let done = dir.join("local.txt");
        let cached = done.exists();
        if !cached {
            eprintln!("reference: local build of {} units (make -j2)", units.len());
            let (cpu, wall) = build_locally(project, units)?;
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            for unit in units {
                fs::copy(
                    project.join(&unit.object),
                    dir.join(format!("{}.o", unit.key)),
                )?;
                let deps = Command::new("g++")
                    .args(FLAGS)
                    .args(["-M", "-MT", &unit.object, &unit.source])
                    .current_dir(project)
                    .stdin(Stdio::null())
                    .output()
                    .context("running g++ -M")?;
                ensure!(deps.status.success(), "g++ -M {} failed", unit.source);
                fs::write(dir.join(format!("{}.d", unit.key)), deps.stdout)?;
            }
            fs::write(&done, format!("{} {}\n", cpu.as_nanos(), wall.as_nanos()))?;
        }
        let text = fs::read_to_string(&done)?;
        let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>());
        let mut next = || -> Result<Duration> {
            Ok(Duration::from_nanos(numbers.next().context("local.txt")??))
        };
        let (local_cpu, local_wall) = (next()?, next()?);
        let mut objects = HashMap::new();
        let mut deps = HashMap::new();
        for unit in units {
            objects.insert(
                unit.key.clone(),
                fs::read(dir.join(format!("{}.o", unit.key)))?,
            );
            deps.insert(
                unit.key.clone(),
                fs::read_to_string(dir.join(format!("{}.d", unit.key)))?,
            );
        }
        Ok(Reference {
            objects,
            deps,
            local_cpu,
            local_wall,
            cached,
        })
    }

    /// How many of `units` have an object equal to the reference's.
    pub fn identical(&self, project: &Path, units: &[Unit]) -> Result<usize> {
        let mut same = 0;
        for unit in units {
            let key = unit.key.split("__c").next().unwrap_or(&unit.key);
            let built = fs::read(project.join(&unit.object))
                .with_context(|| format!("reading {}", unit.object))?;
            if self.objects.get(key) == Some(&built) {
                same += 1;
            } else {
                eprintln!("  {} differs from the local compile's", unit.object);
            }
        }
        Ok(same)
    }

    /// The project header (not a source) included by the most units, and by how many.
    pub fn widest_header(&self, units: &[Unit]) -> Option<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for unit in units {
            let Some(deps) = self.deps.get(&unit.key) else {
                continue;
            };
            for word in deps.split_whitespace().skip(1) {
                if word.starts_with("rocksdb/") && word.ends_with(".h") {
                    *counts.entry(word.to_owned()).or_default() += 1;
                }
            }
        }
        let most = counts.values().copied().max()?;
        // Of the most included, the one in the public API directory, else the first.
        counts
            .iter()
            .filter(|(_, n)| **n == most)
            .map(|(h, n)| (h.clone(), *n))
            .min_by_key(|(h, _)| (!h.starts_with("rocksdb/include/"), h.clone()))
    }
}

fn build_locally(project: &Path, units: &[Unit]) -> Result<(Duration, Duration)> {
    write_makefile(project, "Makefile.reference", units)?;
    for unit in units {
        let _ = fs::remove_file(project.join(&unit.object));
    }
    let before = crate::support::children_cpu();
    let started = Instant::now();
    let output = Command::new("make")
        .args(["-f", "Makefile.reference", "-j2", "CXX=g++"])
        .env_remove("MAKEFLAGS")
        .current_dir(project)
        .stdin(Stdio::null())
        .output()
        .context("running make")?;
    let wall = started.elapsed();
    ensure!(
        output.status.success(),
        "the local reference build failed:\n{}",
        tail(&String::from_utf8_lossy(&output.stderr), 30)
    );
    Ok((crate::support::children_cpu().saturating_sub(before), wall))
}
