//! The messages of remote preprocessing (protocol 3): blobs for the box's content store
//! and jobs whose inputs are a tree of those blobs.
//!
//! They follow REAPI's content-addressed model: the daemon asks which blobs the box
//! lacks ([`encode_digests`] in a FIND_MISSING frame, answered by MISSING with the same
//! encoding), sends those ([`encode_blobs`] in PUT_BLOBS, answered by STORED), then runs
//! the job ([`RemoteJob`] in REMOTE_JOB, answered by a [`RemoteAnswer`] in
//! REMOTE_RESULT). The box verifies every blob against its digest before storing it, and
//! answers a job whose tree it cannot complete with the digests it lacks, so a blob
//! evicted in between costs one more upload, never a wrong input.

use super::wire::{WireError, WireReader, WireWriter};
use crate::digest::{Digest, WIRE_LEN};

/// How many blobs one PUT_BLOBS frame carries at most (besides its byte budget).
pub const MAX_BLOBS_PER_FRAME: usize = 4096;
/// The byte budget of one PUT_BLOBS frame; a larger blob travels alone.
pub const BLOB_FRAME_BUDGET: usize = 4 << 20;

/// Digests, as FIND_MISSING asks and MISSING answers.
pub fn encode_digests(digests: &[Digest]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + digests.len() * WIRE_LEN);
    payload.extend_from_slice(&(digests.len() as u32).to_be_bytes());
    for digest in digests {
        payload.extend_from_slice(&digest.to_bytes());
    }
    payload
}

pub fn decode_digests(payload: &[u8]) -> Result<Vec<Digest>, WireError> {
    let mut reader = WireReader::new(payload);
    let count = reader.u32()? as usize;
    let rest = reader.rest();
    if rest.len() != count * WIRE_LEN {
        return Err(WireError("digest list length does not match its count"));
    }
    rest.chunks_exact(WIRE_LEN)
        .map(|chunk| Digest::from_bytes(chunk).map_err(|_| WireError("malformed digest")))
        .collect()
}

/// Blobs with the digests their sender claims for them, as PUT_BLOBS carries them.
pub fn encode_blobs<'a>(blobs: impl IntoIterator<Item = (&'a Digest, &'a [u8])>) -> Vec<u8> {
    let blobs: Vec<_> = blobs.into_iter().collect();
    let mut writer = WireWriter::new().u32(blobs.len() as u32);
    for (digest, content) in blobs {
        writer = writer.bytes(&digest.to_bytes()).bytes(content);
    }
    writer.finish()
}

/// The claimed digest and content of each blob, in order; nothing is verified here
/// (the store does that).
pub fn decode_blobs(payload: &[u8]) -> Result<Vec<(Digest, &[u8])>, WireError> {
    let mut reader = WireReader::new(payload);
    let count = reader.u32()? as usize;
    // Each blob needs at least its two 4-byte lengths and a digest.
    if count > reader.rest().len() / (8 + WIRE_LEN) {
        return Err(WireError("blob count longer than the message"));
    }
    let mut blobs = Vec::with_capacity(count);
    for _ in 0..count {
        let digest =
            Digest::from_bytes(reader.bytes()?).map_err(|_| WireError("malformed digest"))?;
        blobs.push((digest, reader.bytes()?));
    }
    if !reader.rest().is_empty() {
        return Err(WireError("bytes after the last blob"));
    }
    Ok(blobs)
}

/// One job whose sources are in the box's store: the user's compile command as it
/// would run on the client, and everything the box needs to run it as if there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJob {
    /// The compiler as the box's allowlist knows it (argv\[0\]).
    pub compiler: String,
    /// The arguments after the compiler, with client paths, plus sshcc's own (the
    /// builtin include chain, `-nostdinc`, implicit pre-includes).
    pub args: Vec<String>,
    /// The client's working directory (absolute).
    pub cwd: String,
    /// The client's `$PWD` when it names the working directory by another path (a
    /// symlink), which the compiler records as the compilation directory.
    pub pwd: Option<String>,
    /// `LANG`/`LC_*`, so messages read as they would locally.
    pub locale: Vec<(String, String)>,
    /// The input root: a directory tree ([`crate::tree`]) whose paths are the client's.
    pub root: Digest,
    /// Client paths of the files to send back (the object, a dependency file).
    pub outputs: Vec<String>,
}

impl RemoteJob {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = WireWriter::new()
            .str(&self.compiler)
            .strings(&self.args)
            .str(&self.cwd)
            .str(self.pwd.as_deref().unwrap_or(""))
            .u32(self.locale.len() as u32);
        for (name, value) in &self.locale {
            writer = writer.str(name).str(value);
        }
        writer
            .bytes(&self.root.to_bytes())
            .strings(&self.outputs)
            .finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        let compiler = reader.string()?;
        let args = reader.strings()?;
        let cwd = reader.string()?;
        let pwd = Some(reader.string()?).filter(|pwd| !pwd.is_empty());
        let count = reader.u32()? as usize;
        if count > reader.rest().len() / 8 {
            return Err(WireError("locale count longer than the message"));
        }
        let locale = (0..count)
            .map(|_| Ok((reader.string()?, reader.string()?)))
            .collect::<Result<_, WireError>>()?;
        let root =
            Digest::from_bytes(reader.bytes()?).map_err(|_| WireError("malformed digest"))?;
        let outputs = reader.strings()?;
        Ok(RemoteJob {
            compiler,
            args,
            cwd,
            pwd,
            locale,
            root,
            outputs,
        })
    }
}

/// What ran, as the compiler reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteCompile {
    /// The compiler's wait status, as distcc's `STAT`.
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Client path and content of each requested output the compile produced.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Client paths of every file the compile read, from its own dependency output.
    pub deps: Vec<String>,
}

/// The box's answer to a [`RemoteJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAnswer {
    Compiled(RemoteCompile),
    /// The tree names blobs the store does not hold (any more): upload and ask again.
    Missing(Vec<Digest>),
    /// The box will not run it: distcc's exit code and the reason.
    Refused {
        code: u8,
        reason: String,
    },
}

const COMPILED: u8 = 0;
const MISSING: u8 = 1;
const REFUSED: u8 = 2;

impl RemoteAnswer {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RemoteAnswer::Compiled(compile) => {
                let mut writer = WireWriter::new()
                    .u8(COMPILED)
                    .u32(compile.status)
                    .bytes(&compile.stdout)
                    .bytes(&compile.stderr)
                    .u32(compile.outputs.len() as u32);
                for (path, content) in &compile.outputs {
                    writer = writer.str(path).bytes(content);
                }
                writer.strings(&compile.deps).finish()
            }
            RemoteAnswer::Missing(digests) => {
                let mut payload = vec![MISSING];
                payload.extend_from_slice(&encode_digests(digests));
                payload
            }
            RemoteAnswer::Refused { code, reason } => {
                WireWriter::new().u8(REFUSED).u8(*code).str(reason).finish()
            }
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        match reader.u8()? {
            COMPILED => {
                let status = reader.u32()?;
                let stdout = reader.bytes()?.to_vec();
                let stderr = reader.bytes()?.to_vec();
                let count = reader.u32()? as usize;
                if count > reader.rest().len() / 8 {
                    return Err(WireError("output count longer than the message"));
                }
                let outputs = (0..count)
                    .map(|_| Ok((reader.string()?, reader.bytes()?.to_vec())))
                    .collect::<Result<_, WireError>>()?;
                let deps = reader.strings()?;
                Ok(RemoteAnswer::Compiled(RemoteCompile {
                    status,
                    stdout,
                    stderr,
                    outputs,
                    deps,
                }))
            }
            MISSING => Ok(RemoteAnswer::Missing(decode_digests(reader.rest())?)),
            REFUSED => Ok(RemoteAnswer::Refused {
                code: reader.u8()?,
                reason: reader.string()?,
            }),
            _ => Err(WireError("unknown remote answer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let digests = vec![Digest::of(b"a"), Digest::of(b"")];
        assert_eq!(decode_digests(&encode_digests(&digests)).unwrap(), digests);
        let blobs = [(Digest::of(b"x"), &b"x"[..]), (Digest::of(b""), &b""[..])];
        let encoded = encode_blobs(blobs.iter().map(|(d, c)| (d, *c)));
        assert_eq!(decode_blobs(&encoded).unwrap(), blobs.to_vec());
        let job = RemoteJob {
            compiler: "gcc".into(),
            args: vec!["-c".into(), "x.c".into()],
            cwd: "/p".into(),
            pwd: None,
            locale: vec![("LANG".into(), "C".into())],
            root: Digest::of(b"tree"),
            outputs: vec!["x.o".into()],
        };
        assert_eq!(RemoteJob::decode(&job.encode()).unwrap(), job);
        for answer in [
            RemoteAnswer::Compiled(RemoteCompile {
                status: 256,
                stdout: b"o".to_vec(),
                stderr: b"e".to_vec(),
                outputs: vec![("x.o".into(), vec![1, 2])],
                deps: vec!["x.c".into()],
            }),
            RemoteAnswer::Missing(digests.clone()),
            RemoteAnswer::Refused {
                code: 110,
                reason: "no".into(),
            },
        ] {
            assert_eq!(RemoteAnswer::decode(&answer.encode()).unwrap(), answer);
        }
    }

    #[test]
    fn lying_counts_and_trailing_bytes_are_refused() {
        assert!(decode_digests(&[0, 0, 0, 2]).is_err());
        assert!(decode_blobs(&[0xff, 0xff, 0xff, 0xff]).is_err());
        let mut encoded = encode_blobs([(&Digest::of(b"x"), &b"x"[..])]);
        encoded.push(0);
        assert!(decode_blobs(&encoded).is_err());
        assert!(RemoteAnswer::decode(&[9]).is_err());
    }
}
