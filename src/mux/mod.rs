//! sshcc's own framing for many jobs over one long-lived byte stream.
//!
//! distcc's protocol carries one job per connection. Between the daemon and a box
//! running `sshcc --mux`, and between wrappers and the daemon, jobs travel instead as
//! [`frame::Frame`]s tagged with a job id, so one SSH channel carries every job to a box
//! and stays clear of sshd's `MaxSessions`/`MaxStartups` limits. A job's request and
//! response inside a frame are plain distcc protocol-1 messages, so the box runs them
//! with exactly the code that serves `--inetd`.

pub mod client;
pub mod frame;
pub mod server;
pub mod wire;

/// Frame kinds on a daemon ↔ box link.
pub mod kind {
    /// Box → daemon, first frame: a [`super::server::Hello`].
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
