//! The wire protocols: distcc's (versions 1 and 2; version 3 is recognised and refused)
//! and sshcc's own mux framing.
//!
//! `packet` owns distcc's 12-byte token framing, `lzo` the LZO1X bodies, `distcc` the
//! request and response messages, `job` sshcc's extension to a request, and [`mux`] the
//! frames many jobs share one stream with. Everything works over any
//! `AsyncRead`/`AsyncWrite`, so the same code serves an SSH session's stdio, a TCP socket
//! or an in-memory duplex in tests.

pub mod distcc;
pub mod job;
pub mod lzo;
pub mod mux;
pub mod packet;

pub use distcc::{
    Request, Response, Version, read_request, read_response, write_request, write_response,
};
pub use job::{JobContext, SideFile};
pub use packet::{Limits, ProtocolError};
