//! Both ends of a multiplexed link (the wire format is [`crate::protocol::mux`]):
//! [`server`] is the box's `sshcc --mux`, running every job it receives concurrently;
//! [`client`] is the daemon's side, routing each answer to the job waiting for it.

pub mod client;
pub mod server;
