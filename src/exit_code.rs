//! distcc's process exit codes (100–120), shared by the wrapper and the box worker.
//!
//! Build tools and scripts written for distcc branch on these numbers, so sshcc uses
//! exactly distcc's values (`src/exitcode.h`); a compiler's own status passes through
//! unchanged and a signal death becomes 128 + signal, as with distcc.

/// A distcc-compatible exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// General failure.
    Failure = 100,
    /// Bad or unsupported arguments.
    BadArguments = 101,
    /// Could not bind a socket.
    BindFailed = 102,
    /// Could not connect to a host.
    ConnectFailed = 103,
    /// The compiler crashed.
    CompilerCrashed = 104,
    /// Out of memory.
    OutOfMemory = 105,
    /// A host specification could not be parsed.
    BadHostSpec = 106,
    /// Read or write error on the connection.
    IoError = 107,
    /// The peer closed the connection early.
    Truncated = 108,
    /// The peer sent something other than the expected token.
    ProtocolError = 109,
    /// The compiler is missing or not allowed.
    CompilerMissing = 110,
    /// sshcc would have run itself recursively.
    RecursiveCall = 111,
    /// Could not change user.
    SetuidFailed = 112,
    /// Access denied.
    AccessDenied = 113,
    /// All slots are busy.
    Busy = 114,
    /// A file does not exist.
    NoSuchFile = 115,
    /// No usable hosts.
    NoHosts = 116,
    /// The process was asked to go away.
    Gone = 117,
    /// A time limit expired.
    Timeout = 118,
    /// GSS-API failure (never produced by sshcc, kept for completeness of the table).
    GssapiFailed = 119,
    /// The command must run on this machine (for example `-E`).
    LocalCpp = 120,
}

impl ExitCode {
    /// The numeric process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The raw `waitpid` status a distcc server reports for this code in `STAT`.
    pub fn wait_status(self) -> u32 {
        (self as u32) << 8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
