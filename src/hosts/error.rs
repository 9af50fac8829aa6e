//! Why a host list cannot be used ([`HostsError`], with distcc's exit codes), and where
//! a list that failed came from ([`HostSource`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::exit_code::ExitCode;

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

/// Where the list came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// An environment variable, by name.
    Env(&'static str),
    /// A hosts file.
    File(PathBuf),
}

impl fmt::Display for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSource::Env(name) => write!(f, "${name}"),
            HostSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}
