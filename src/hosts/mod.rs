//! The host list: which build boxes may take jobs and how many at once.
//!
//! This module owns the host-list grammar (`DISTCC_HOSTS` and hosts files share one
//! parser: [`scanner`] splits the text into entries and keywords, [`entry`] reads one
//! entry's fields, with C's string functions in [`cstr`]), the order in which sshcc looks
//! for the list ([`sources`]), and what `-j` and `--show-hosts` print and the
//! `--randomize` shuffle ([`list`]); this file holds the entry types and the errors.
//! Existing distcc setups must keep working unchanged, so [`parse`] reproduces distcc
//! 3.4's scanner (`src/hosts.c`) byte for byte, quirks included, wherever the result is
//! representable:
//!
//! * Entries end at `" #\t\n\f\r"`, but the field parsers read the rest of the whole
//!   text, not just the entry. So `h#note` is one entry `h` naming host `h#note`,
//!   `h#x,bogus` is rejected for its option, `h:80#x` is a bad port, and `h/ 3` gives `h`
//!   three slots and adds a host named `3`.
//! * Keywords and options match by prefix: `--randomizeX` randomizes, `,lzofoo` is `,lzo`.
//! * Anything left over after the last field is ignored: `host/4x`, `@h/3x`,
//!   `localhost/2,bogus` (a localhost entry has no options at all).
//! * `localhost,lzo` and `localhost:3632` are TCP hosts named `localhost`.
//! * `--localslots=0` is not a setting (its value is bad), so, as in distcc, it becomes a
//!   TCP host of that name; `--localslots_cpp=0` is silently dropped.
//!
//! Where distcc would store a value sshcc cannot use, the list is rejected instead: slot
//! counts outside `1..=i32::MAX` (distcc keeps `/-3` or wraps `/99999999999`), ports
//! outside `1..=65535` (distcc keeps `h:`, `h:-1`, `h:99999`), and `,auth` (sshcc has no
//! GSS-API). `+zeroconf` is accepted and contributes no hosts: sshcc has no DNS-SD
//! discovery.

use std::io;
use std::path::PathBuf;

use crate::exit_code::ExitCode;

mod cstr;
mod entry;
mod list;
mod scanner;
mod sources;
#[cfg(test)]
mod test_support;

pub use list::HostList;
pub use scanner::parse;
pub use sources::{HostSource, load, process_env};

/// distccd's TCP port, used when a TCP entry names none.
pub const DEFAULT_PORT: u16 = 3632;

/// The system-wide hosts file, the last place looked at (Debian's `${sysconfdir}`).
pub const SYSTEM_HOSTS_FILE: &str = "/etc/distcc/hosts";

/// Where an entry sends jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// `localhost[/N]`: run on this machine.
    Local,
    /// `[user]@host[/N][:command]`: over SSH. `command` is the remote command (None =
    /// default).
    Ssh {
        user: Option<String>,
        host: String,
        command: Option<String>,
    },
    /// `host[:port][/N]` (both orders) or `[ipv6]:port`: distcc's TCP protocol, default
    /// port 3632.
    Tcp { host: String, port: u16 },
}

/// One host entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The entry verbatim, as distcc keeps it (for messages and `--show-hosts`).
    pub text: String,
    /// Where the entry sends jobs.
    pub kind: HostKind,
    /// How many jobs it takes at once: `/N`, default 4 (`localhost`: 2).
    pub slots: u32,
    /// `,lzo`: compress the job.
    pub lzo: bool,
    /// `,cpp`: pump mode (accepted; callers treat it as plain for now).
    pub cpp: bool,
    /// `,down`: never use this entry (it still counts for `-j`).
    pub down: bool,
}

/// Why a host list cannot be used. Parse errors name the entry verbatim.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hostname is required in host specification {entry:?}")]
    NoHostname { entry: String },
    #[error("IPv6 address in host specification {entry:?} requires a closing ']'")]
    UnclosedBracket { entry: String },
    #[error("invalid tcp port specification in {entry:?}")]
    BadPort { entry: String },
    #[error("tcp port {port} in host specification {entry:?} is not in 1-65535")]
    PortOutOfRange { entry: String, port: i64 },
    #[error(
        "bad multiplier in host specification {entry:?}: the slot count must be a non-zero number"
    )]
    ZeroSlots { entry: String },
    #[error("slot count {slots} in host specification {entry:?} is not in 1-2147483647")]
    SlotsOutOfRange { entry: String, slots: i64 },
    #[error("unrecognized option {option:?} in host specification {entry:?}")]
    UnknownOption { entry: String, option: String },
    #[error(
        "GSS-API authentication (',auth') in host specification {entry:?} is not supported \
         by sshcc"
    )]
    AuthUnsupported { entry: String },
    #[error("pump mode (',cpp') requires compression (',lzo') in host specification {entry:?}")]
    CppWithoutLzo { entry: String },
    #[error("cannot read host list {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A parse error in a list that [`load`] found.
    #[error("{origin}: {error}")]
    InSource {
        origin: HostSource,
        error: Box<HostsError>,
    },
}

impl HostsError {
    /// The distcc exit code for this failure (distcc's 106 for every bad list).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HostsError::Read { .. } => ExitCode::IoError,
            HostsError::InSource { error, .. } => error.exit_code(),
            _ => ExitCode::BadHostSpec,
        }
    }
}
