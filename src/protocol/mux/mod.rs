//! sshcc's mux protocol: many jobs over one long-lived byte stream.
//!
//! distcc's protocol carries one job per connection. Between the daemon and a box
//! running `sshcc --mux`, and between wrappers and the daemon, jobs travel instead as
//! [`frame::Frame`]s tagged with a job id, so one SSH channel carries every job to a box
//! and stays clear of sshd's `MaxSessions`/`MaxStartups` limits. A job's request and
//! response inside a frame are plain distcc protocol-1 messages, so the box runs them
//! with exactly the code that serves `--inetd`.
//!
//! This module owns the wire format: [`frame`] (length-prefixed, job-tagged, optionally
//! zstd), [`wire`] (the field encoding inside payloads), the frame kinds and the
//! greeting. Both ends of a link live in [`crate::mux`].

pub mod frame;
pub mod remote;
pub mod wire;

use wire::{WireError, WireReader, WireWriter};

/// Identifies the stream as sshcc's mux protocol, so a daemon that reached a stock
/// distccd (which rejects `--mux`) or a chatty login shell can tell at once.
const MAGIC: &str = "sshcc-mux";
/// Bumped when frames or their payloads change: 2 added IDENTIFY, 3 the content store
/// and remote preprocessing ([`remote`]).
pub const PROTOCOL_VERSION: u32 = 3;

/// What the box says about itself when the link opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub hostname: String,
    /// Why this box cannot take remote-preprocessed jobs (its content store could not
    /// be opened), or `None` when it can. Boxes before protocol 3 cannot.
    pub no_remote_preprocessing: Option<String>,
}

impl Hello {
    /// This build's greeting from a box called `hostname`.
    pub fn ours(hostname: String, no_remote_preprocessing: Option<String>) -> Self {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname,
            no_remote_preprocessing,
        }
    }

    /// Whether the box takes REMOTE_JOB frames.
    pub fn remote_preprocessing(&self) -> bool {
        self.protocol >= 3 && self.no_remote_preprocessing.is_none()
    }

    pub fn encode(&self) -> Vec<u8> {
        WireWriter::new()
            .str(MAGIC)
            .u32(self.protocol)
            .str(&self.version)
            .str(&self.hostname)
            // Appended fields: older daemons stop reading before them.
            .u8(u8::from(self.no_remote_preprocessing.is_some()))
            .str(self.no_remote_preprocessing.as_deref().unwrap_or(""))
            .finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        if reader.string()? != MAGIC {
            return Err(WireError("not an sshcc greeting"));
        }
        let protocol = reader.u32()?;
        let version = reader.string()?;
        let hostname = reader.string()?;
        let no_remote_preprocessing = if protocol < 3 {
            Some(format!(
                "sshcc {version} on the box predates remote preprocessing"
            ))
        } else if reader.u8()? != 0 {
            Some(reader.string()?)
        } else {
            None
        };
        Ok(Hello {
            protocol,
            version,
            hostname,
            no_remote_preprocessing,
        })
    }
}

/// Frame kinds on a daemon ↔ box link.
pub mod kind {
    /// Box → daemon, first frame: a [`Hello`].
    pub const HELLO: u8 = 1;
    /// Daemon → box: a distcc protocol-1 request.
    pub const JOB: u8 = 2;
    /// Box → daemon: the distcc protocol-1 response to the job with the same id.
    pub const RESULT: u8 = 3;
    /// Daemon → box: nobody waits for this job any more; kill it.
    pub const CANCEL: u8 = 4;
    /// Daemon → box: which toolchain the allowlist gives this compiler name?
    pub const IDENTIFY: u8 = 5;
    /// Box → daemon: the answer to IDENTIFY with the same id, a JSON
    /// `{"Ok": Fingerprint}` or `{"Err": "why"}`.
    pub const IDENTITY: u8 = 6;
    /// Daemon → box: which of these digests the store lacks
    /// ([`super::remote::encode_digests`]).
    pub const FIND_MISSING: u8 = 7;
    /// Box → daemon: the answer to FIND_MISSING, the digests it lacks.
    pub const MISSING: u8 = 8;
    /// Daemon → box: blobs for the store ([`super::remote::encode_blobs`]).
    pub const PUT_BLOBS: u8 = 9;
    /// Box → daemon: the answer to PUT_BLOBS: empty when every blob was stored, else
    /// why one was refused (a blob whose content does not match its digest).
    pub const STORED: u8 = 10;
    /// Daemon → box: a [`super::remote::RemoteJob`]; CANCEL kills it like a JOB.
    pub const REMOTE_JOB: u8 = 11;
    /// Box → daemon: the [`super::remote::RemoteAnswer`] to the REMOTE_JOB with the
    /// same id.
    pub const REMOTE_RESULT: u8 = 12;

    /// Whether a box → daemon frame of this kind answers a request.
    pub fn is_answer(kind: u8) -> bool {
        matches!(kind, RESULT | IDENTITY | MISSING | STORED | REMOTE_RESULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_say_whether_the_box_preprocesses() {
        for hello in [
            Hello::ours("box".into(), None),
            Hello::ours("box".into(), Some("no store".into())),
        ] {
            assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        }
        assert!(Hello::ours("box".into(), None).remote_preprocessing());
        // A protocol-2 box's greeting ends after its host name.
        let old = WireWriter::new()
            .str(MAGIC)
            .u32(2)
            .str("0.1.0")
            .str("box")
            .finish();
        let decoded = Hello::decode(&old).unwrap();
        assert!(!decoded.remote_preprocessing());
        assert!(
            decoded
                .no_remote_preprocessing
                .unwrap()
                .contains("predates")
        );
    }
}
