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
pub mod wire;

use wire::{WireError, WireReader, WireWriter};

/// Identifies the stream as sshcc's mux protocol, so a daemon that reached a stock
/// distccd (which rejects `--mux`) or a chatty login shell can tell at once.
const MAGIC: &str = "sshcc-mux";
/// Bumped when frames or their payloads change: 2 added IDENTIFY.
pub const PROTOCOL_VERSION: u32 = 2;

/// What the box says about itself when the link opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub hostname: String,
}

impl Hello {
    /// This build's greeting from a box called `hostname`.
    pub fn ours(hostname: String) -> Self {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        WireWriter::new()
            .str(MAGIC)
            .u32(self.protocol)
            .str(&self.version)
            .str(&self.hostname)
            .finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        if reader.string()? != MAGIC {
            return Err(WireError("not an sshcc greeting"));
        }
        Ok(Hello {
            protocol: reader.u32()?,
            version: reader.string()?,
            hostname: reader.string()?,
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
}
