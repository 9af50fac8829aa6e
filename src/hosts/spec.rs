//! One entry of the host list as the rest of sshcc sees it: where it sends jobs
//! ([`HostKind`]) and with how many slots and which options ([`HostSpec`]).

/// distccd's TCP port, used when a TCP entry names none.
pub const DEFAULT_PORT: u16 = 3632;

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
    /// `reapi://host:port[/N]` or `reapis://…` (TLS): a Remote Execution API engine.
    /// Its instance name, TLS files and credentials are in config.toml's
    /// `[reapi."host:port"]`, never in the host list.
    Reapi { tls: bool, authority: String },
}

impl HostKind {
    /// The engine's URL for a REAPI entry (without the slot count).
    pub fn reapi_url(&self) -> Option<String> {
        match self {
            HostKind::Reapi { tls, authority } => Some(format!(
                "{}://{authority}",
                if *tls { "reapis" } else { "reapi" }
            )),
            _ => None,
        }
    }
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
