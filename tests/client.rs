//! The `sshcc` wrapper, daemon and pooled SSH dispatch against real OpenSSH sshd boxes,
//! real gcc, ccache and Debian's distccd.//!
//! One test binary, in groups: builds whose results are a local compile's (`builds`),
//! which hosts get the jobs and what happens when one dies (`hosts`), and the daemon's
//! life (`daemon`); the box-and-client lab they share is in `lab`.

mod common;
#[path = "client/lab.rs"]
mod lab;

#[path = "client/builds.rs"]
mod builds;
#[path = "client/daemon.rs"]
mod daemon;
#[path = "client/hosts.rs"]
mod hosts;
