//! Reaching build boxes over SSH with russh: how to reach a host (`config`, OpenSSH's
//! own resolution), whether to trust it (`known_hosts`), and the authenticated
//! connection itself (`connection`).

pub mod config;
pub mod connection;
pub mod known_hosts;
