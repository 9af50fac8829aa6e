//! What sshcc knows about C/C++ compiler command lines: file-name rules (`source`) and
//! distcc's decision whether a command can run remotely (`args`).

pub mod args;
pub mod source;
