//! Restricted build accounts: `command="sshcc --inetd",restrict` in `authorized_keys`.
//!
//! With a forced command, sshd runs the owner's command whatever the client asked for and
//! puts the client's request in `SSH_ORIGINAL_COMMAND`. sshcc clients ask for one of
//! three serving modes (the daemon for `--mux`, `sshcc check` for `--box-info`, a distcc
//! or one-shot client for `--inetd`), so the forced sshcc serves whichever of those was
//! asked for, under the owner's options, and refuses everything else: the key can serve
//! jobs and do nothing more.

use std::fmt;

/// A serving mode a restricted client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingMode {
    Inetd,
    Mux,
    BoxInfo,
}

impl fmt::Display for ServingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServingMode::Inetd => "--inetd",
            ServingMode::Mux => "--mux",
            ServingMode::BoxInfo => "--box-info",
        })
    }
}

/// Programs a client may name: sshcc itself, and distccd for stock distcc clients
/// (which run `distccd --inetd`).
const PROGRAMS: &[&str] = &["sshcc", "distccd"];

/// Options a client may add because they change nothing: distcc's client asks for
/// `distccd --inetd --enable-tcp-insecure`.
const NO_OP_OPTIONS: &[&str] = &["--enable-tcp-insecure", "--make-me-a-botnet"];

/// The mode `original` (the client's `SSH_ORIGINAL_COMMAND`) asks for: a program named
/// sshcc or distccd (any directory) followed by exactly one mode option (and options
/// that change nothing). Anything else, including extra options the client might hope
/// to override the owner's with, is refused with the reason.
pub fn requested_mode(original: &str) -> Result<ServingMode, String> {
    let words: Vec<&str> = original
        .split_ascii_whitespace()
        .filter(|word| !NO_OP_OPTIONS.contains(word))
        .collect();
    let refuse = || {
        Err(format!(
            "this account only serves compile jobs (`sshcc --mux`, `sshcc --inetd`, `sshcc --box-info` or `distccd --inetd`); refused {original:?}"
        ))
    };
    let [program, mode] = words.as_slice() else {
        return refuse();
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    if !PROGRAMS.contains(&name) {
        return refuse();
    }
    match (name, *mode) {
        (_, "--inetd") => Ok(ServingMode::Inetd),
        ("sshcc", "--mux") => Ok(ServingMode::Mux),
        ("sshcc", "--box-info") => Ok(ServingMode::BoxInfo),
        _ => refuse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_serving_modes_pass() {
        assert_eq!(requested_mode("sshcc --mux"), Ok(ServingMode::Mux));
        assert_eq!(
            requested_mode("/home/b/.cargo/bin/sshcc --box-info"),
            Ok(ServingMode::BoxInfo)
        );
        assert_eq!(requested_mode("distccd --inetd"), Ok(ServingMode::Inetd));
        assert_eq!(
            requested_mode("distccd --inetd --enable-tcp-insecure"),
            Ok(ServingMode::Inetd)
        );
        assert_eq!(
            requested_mode("~/bin/sshcc  --inetd"),
            Ok(ServingMode::Inetd)
        );
        for refused in [
            "",
            "sh",
            "cat /etc/passwd",
            "sshcc",
            "sshcc --mux --jobs 999",
            "sshcc --daemon",
            "sshcc gcc -c x.c",
            "distccd --mux",
            "sh -c sshcc --mux",
            "sshcc --mux; sh",
            "notsshcc --mux",
        ] {
            assert!(
                requested_mode(refused).is_err(),
                "{refused:?} was let through"
            );
        }
    }
}
