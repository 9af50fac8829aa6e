//! What the fault-injection tests share: a generated C and C++ project and its objects
//! compiled locally, boxes whose allowlisted compilers wait at a gate the test opens,
//! a client environment with a private daemon, builds that cannot hang the suite, small
//! tmpfs mounts, and the checks every run ends with (every object byte-identical to the
//! local build, or absent; no temporary files).
//!
//! One file each: the project and its reference objects (`project`), the boxes and
//! their gated compilers (`boxes`), the client with its builds (`client`), tmpfs mounts
//! (`tmpfs`) and the time limits (`wait`). This file only re-exports.

mod boxes;
mod client;
mod project;
mod tmpfs;
mod wait;

pub use boxes::{Compilers, job_dirs, stanza, start_box};
pub use client::{Build, Client, Finished};
pub use project::{assert_no_temporary_files, check_objects, object_names, write_project};
pub use tmpfs::Tmpfs;
pub use wait::{BUILD_LIMIT, WAIT_LIMIT, wait_for};
