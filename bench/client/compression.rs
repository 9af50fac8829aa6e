//! Compression ratio and speed on what a build sends: preprocessed sources (classic
//! `-E` and `-E -fdirectives-only`) and objects, one payload per file as on the wire.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::build::Project;
use crate::lua;

/// Each timing repeats the whole corpus until at least this long has passed (and at
/// least [`MIN_REPS`] times), keeping the fastest repetition.
const MIN_TIME: Duration = Duration::from_millis(300);
const MIN_REPS: usize = 3;
/// sshcc's mux frames: compressed only from this size, and only if the result is
/// smaller by more than 1/16 (src/mux/frame.rs).
pub const SSHCC_MIN_PAYLOAD: usize = 512;

/// One kind of payload: every file's bytes.
#[derive(Debug)]
pub struct Corpus {
    pub name: String,
    pub files: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn bytes(&self) -> usize {
        self.files.iter().map(Vec::len).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// LZO1X-1 as distcc's `,lzo` and sshcc's distcc-protocol path use it (`lzo1x` level
    /// 3, decoded by the `lzo` crate).
    Lzo,
    Zstd(i32),
    /// `lz4_flex` block format (safe Rust, default features).
    Lz4,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Lzo, Codec::Zstd(1), Codec::Zstd(3), Codec::Lz4];

    pub fn label(self) -> String {
        match self {
            Codec::Lzo => "LZO1X-1 (`lzo1x` level 3)".to_owned(),
            Codec::Zstd(level) => format!("zstd {level}"),
            Codec::Lz4 => "LZ4 (`lz4_flex`)".to_owned(),
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Lzo => sshcc::protocol::lzo::compress(data),
            Codec::Zstd(level) => zstd::bulk::compress(data, level).expect("zstd compress"),
            Codec::Lz4 => lz4_flex::block::compress(data),
        }
    }

    fn decompress(self, packed: &[u8], size: usize) -> Vec<u8> {
        match self {
            Codec::Lzo => {
                let mut out = vec![0u8; size];
                let len = lzo::decompress_into(packed, &mut out).expect("lzo decompress");
                out.truncate(len);
                out
            }
            Codec::Zstd(_) => zstd::bulk::decompress(packed, size).expect("zstd decompress"),
            Codec::Lz4 => lz4_flex::block::decompress(packed, size).expect("lz4 decompress"),
        }
    }
}

/// The result for one codec on one corpus.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub codec: Codec,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// Fastest repetition over the whole corpus.
    pub compress: Duration,
    pub decompress: Duration,
    /// Files that sshcc's rule would send compressed with this codec (≥ 512 B and
    /// smaller by more than 1/16).
    pub would_compress: usize,
    pub files: usize,
}

impl Measured {
    pub fn ratio(&self) -> f64 {
        self.bytes_in as f64 / self.bytes_out as f64
    }

    fn mb_per_s(&self, time: Duration) -> f64 {
        self.bytes_in as f64 / 1e6 / time.as_secs_f64()
    }

    /// The link speed below which compressing, sending and decompressing beats
    /// sending uncompressed (no overlap assumed): bytes saved / (compress + decompress
    /// time), in Mbit/s.
    pub fn break_even_mbit(&self) -> f64 {
        let saved = self.bytes_in.saturating_sub(self.bytes_out) as f64;
        saved * 8.0 / 1e6 / (self.compress + self.decompress).as_secs_f64()
    }
}

/// Measures `codec` on every file of `corpus`, checking the round trip.
pub fn measure(codec: Codec, corpus: &Corpus) -> Result<Measured> {
    let packed: Vec<Vec<u8>> = corpus.files.iter().map(|f| codec.compress(f)).collect();
    for (file, packed) in corpus.files.iter().zip(&packed) {
        ensure!(
            codec.decompress(packed, file.len()) == *file,
            "{} does not round-trip on {}",
            codec.label(),
            corpus.name
        );
    }
    let compress = fastest(|| {
        for file in &corpus.files {
            black_box(codec.compress(black_box(file)));
        }
    });
    let decompress = fastest(|| {
        for (file, packed) in corpus.files.iter().zip(&packed) {
            black_box(codec.decompress(black_box(packed), file.len()));
        }
    });
    let would_compress = corpus
        .files
        .iter()
        .zip(&packed)
        .filter(|(file, packed)| {
            file.len() >= SSHCC_MIN_PAYLOAD && packed.len() < file.len() - file.len() / 16
        })
        .count();
    Ok(Measured {
        codec,
        bytes_in: corpus.bytes(),
        bytes_out: packed.iter().map(Vec::len).sum(),
        compress,
        decompress,
        would_compress,
        files: corpus.files.len(),
    })
}

fn fastest(mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut reps = 0;
    while reps < MIN_REPS || started.elapsed() < MIN_TIME {
        let rep = Instant::now();
        work();
        best = best.min(rep.elapsed());
        reps += 1;
    }
    best
}

/// The markdown table for all corpora.
pub fn table(results: &[(&Corpus, Vec<Measured>)]) -> String {
    let mut out = String::from(
        "| payload (files, total) | codec | ratio | compress MB/s | decompress MB/s | files sshcc's rule compresses | break-even link, Mbit/s |\n\
         |------------------------|-------|------:|--------------:|----------------:|------------------------------:|------------------------:|\n",
    );
    for (corpus, measured) in results {
        for m in measured {
            let rule = match m.codec {
                Codec::Zstd(1) => format!("{} of {}", m.would_compress, m.files),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} ({} files, {:.2} MB) | {} | {:.2} | {:.0} | {:.0} | {rule} | {:.0} |",
                corpus.name,
                corpus.files.len(),
                corpus.bytes() as f64 / 1e6,
                m.codec.label(),
                m.ratio(),
                m.mb_per_s(m.compress),
                m.mb_per_s(m.decompress),
                m.break_even_mbit(),
            );
        }
    }
    out
}

/// Section 5: the payloads of the build, compressed per file.
pub fn compression_section(
    project: &Project,
    reference: &HashMap<String, Vec<u8>>,
) -> Result<String> {
    eprintln!("compression: preprocessing");
    let preprocess = |extra: &[&str]| -> Result<Vec<Vec<u8>>> {
        project
            .objects
            .iter()
            .map(|object| {
                let source = format!("{}.c", object.trim_end_matches(".o"));
                let out = Command::new("gcc")
                    .args(lua::CFLAGS)
                    .arg("-E")
                    .args(extra)
                    .arg(&source)
                    .current_dir(&project.dir)
                    .stdin(Stdio::null())
                    .output()
                    .context("running gcc -E")?;
                ensure!(out.status.success(), "gcc -E {source} failed");
                Ok(out.stdout)
            })
            .collect()
    };
    let corpora = [
        Corpus {
            name: "`gcc -E`".to_owned(),
            files: preprocess(&[])?,
        },
        Corpus {
            name: "`gcc -E -fdirectives-only`".to_owned(),
            files: preprocess(&["-fdirectives-only"])?,
        },
        Corpus {
            name: "objects (`-O2`)".to_owned(),
            files: project
                .objects
                .iter()
                .map(|name| reference[name].clone())
                .collect(),
        },
    ];
    let mut results = Vec::new();
    for corpus in &corpora {
        let mut measured = Vec::new();
        for codec in Codec::ALL {
            eprintln!("compression: {} on {}", codec.label(), corpus.name);
            measured.push(measure(codec, corpus)?);
        }
        results.push((corpus, measured));
    }
    Ok(format!(
        "### 5. Compression of the build's payloads (per file, fastest of ≥ 3 passes)\n\n{}",
        table(&results)
    ))
}
