//! Messages between a wrapper and the daemon, carried in [`crate::protocol::mux::frame`] frames
//! over the daemon's Unix socket.
//!
//! One wrapper connection serves one compile: ACQUIRE (maybe again after a host
//! failed) → ASSIGNED, then JOB → RESULT or FAILED. The slot is held until the next
//! ACQUIRE or the connection closes, so a wrapper killed by Ctrl-C frees it and cancels
//! its job on the box. LOCAL says the wrapper compiles here (and why), DONE gives its
//! exit status, so `sshcc status` and `sshcc stats` see every compile.
//!
//! Other clients ask STATUS → STATUS_REPLY, STATS → STATS_REPLY or STOP → STOPPING on
//! a connection of their own.
//!
//! A change to these messages must bump [`super::runtime_dir::SOCKET_NAME`]: wrappers
//! and a daemon of different versions must never meet.

use std::path::PathBuf;

use crate::config::Secret;
use crate::dispatch::link::Flavour;
use crate::protocol::mux::remote::{RemoteAnswer, RemoteCompile, RemoteJob};
use crate::protocol::mux::wire::{WireError, WireReader, WireWriter};

/// Frame kinds on the daemon socket.
pub mod kind {
    pub const ACQUIRE: u8 = 16;
    pub const ASSIGNED: u8 = 17;
    pub const JOB: u8 = 18;
    pub const RESULT: u8 = 19;
    /// Daemon → wrapper: the host failed this job (payload: why).
    pub const FAILED: u8 = 20;
    /// Wrapper → daemon: the box refused the job; back it off (payload: the box's reason,
    /// possibly empty, which daemons before it was sent ignore).
    pub const REFUSED: u8 = 21;
    pub const STOP: u8 = 22;
    pub const STOPPING: u8 = 23;
    /// Any client → daemon: what is running now (no payload).
    pub const STATUS: u8 = 24;
    /// Daemon → client: a JSON [`crate::status::Status`].
    pub const STATUS_REPLY: u8 = 25;
    /// Wrapper → daemon: the job compiles here now (payload: one byte,
    /// [`crate::dispatch::tracker::LocalReason::code`]); a remote slot is released.
    pub const LOCAL: u8 = 26;
    /// Wrapper → daemon: the job's exit status (payload: one byte), just before the
    /// wrapper exits.
    pub const DONE: u8 = 27;
    /// Any client → daemon: the counts since the last reset (payload: one byte, 1 to
    /// reset them afterwards).
    pub const STATS: u8 = 28;
    /// Daemon → client: a JSON [`crate::status::Stats`], or (kind [`STATS_FAILED`]) why
    /// the counts could not be read.
    pub const STATS_REPLY: u8 = 29;
    pub const STATS_FAILED: u8 = 30;
    /// Wrapper → daemon: a [`super::RemoteRequest`] for the held remote slot.
    pub const REMOTE_JOB: u8 = 31;
    /// Daemon → wrapper: a [`super::RemoteReply`] (host failures are FAILED).
    pub const REMOTE_REPLY: u8 = 32;
}

/// A wrapper's request for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    /// Host entries in the order to use them (already shuffled for `--randomize`).
    pub hosts: Vec<String>,
    pub ssh_config: Option<PathBuf>,
    /// Options for `ssh` from `DISTCC_SSH`.
    pub ssh_options: Vec<String>,
    /// Hosts whose `StrictHostKeyChecking no` the user allowed.
    pub unchecked_host_keys: Vec<String>,
    pub backoff_secs: u32,
    pub io_timeout_secs: u32,
    /// Entries that already failed this job.
    pub excluded: Vec<String>,
    /// The compiler name a box is asked to run; empty: no toolchain check.
    pub compiler: String,
    /// The compiler a local compile runs (symlinks and ccache resolved).
    pub local_compiler: String,
    /// `host=policy` (`*=policy` for the rest): how strictly toolchains must match.
    pub toolchain_policies: Vec<String>,
    /// The source file as the build named it, and the wrapper's pid (`sshcc status`).
    pub file: String,
    pub pid: u32,
    /// config.toml's `[reapi]` tables as TOML (empty: none), `SSHCC_REAPI_CACHE`
    /// applied.
    pub reapi_settings: String,
    /// `NAME=VALUE` of each variable those tables' `authorization_env` names that is
    /// set in the build's environment (the daemon's own may be older, or lack it):
    /// tokens, which Debug does not show.
    pub reapi_environment: Vec<Secret>,
}

impl Acquire {
    pub fn encode(&self) -> Vec<u8> {
        WireWriter::new()
            .strings(&self.hosts)
            .str(
                &self
                    .ssh_config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .strings(&self.ssh_options)
            .strings(&self.unchecked_host_keys)
            .u32(self.backoff_secs)
            .u32(self.io_timeout_secs)
            .strings(&self.excluded)
            .str(&self.compiler)
            .str(&self.local_compiler)
            .strings(&self.toolchain_policies)
            .str(&self.file)
            .u32(self.pid)
            .str(&self.reapi_settings)
            .strings(
                &(self.reapi_environment.iter())
                    .map(|pair| pair.0.clone())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        Ok(Acquire {
            hosts: reader.strings()?,
            ssh_config: Some(reader.string()?)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            ssh_options: reader.strings()?,
            unchecked_host_keys: reader.strings()?,
            backoff_secs: reader.u32()?,
            io_timeout_secs: reader.u32()?,
            excluded: reader.strings()?,
            compiler: reader.string()?,
            local_compiler: reader.string()?,
            toolchain_policies: reader.strings()?,
            file: reader.string()?,
            pid: reader.u32()?,
            reapi_settings: reader.string()?,
            reapi_environment: reader.strings()?.into_iter().map(Secret).collect(),
        })
    }
}

/// The daemon's answer to [`Acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    Remote {
        host: String,
        flavour: Flavour,
        /// Why the box cannot preprocess the job itself, or `None` when it can.
        no_remote_preprocessing: Option<String>,
    },
    Local {
        host: String,
    },
    NoHosts(String),
}

/// The daemon's whole answer: the assignment and what the user should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub assigned: Assigned,
    pub notices: Vec<String>,
}

impl Placement {
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = WireWriter::new().strings(&self.notices).finish();
        payload.extend(self.assigned.encode());
        payload
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        let notices = reader.strings()?;
        Ok(Placement {
            assigned: Assigned::decode(reader.rest())?,
            notices,
        })
    }
}

impl Assigned {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Assigned::Remote {
                host,
                flavour,
                no_remote_preprocessing,
            } => WireWriter::new()
                .u8(0)
                .str(host)
                .u8(match flavour {
                    Flavour::Sshcc => 0,
                    Flavour::Distccd => 1,
                    Flavour::Reapi => 2,
                })
                .u8(u8::from(no_remote_preprocessing.is_some()))
                .str(no_remote_preprocessing.as_deref().unwrap_or(""))
                .finish(),
            Assigned::Local { host } => WireWriter::new().u8(1).str(host).finish(),
            Assigned::NoHosts(why) => WireWriter::new().u8(2).str(why).finish(),
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        match reader.u8()? {
            0 => {
                let host = reader.string()?;
                let flavour = match reader.u8()? {
                    0 => Flavour::Sshcc,
                    1 => Flavour::Distccd,
                    2 => Flavour::Reapi,
                    _ => return Err(WireError("unknown flavour")),
                };
                let no_remote_preprocessing = match reader.u8()? {
                    0 => {
                        reader.string()?;
                        None
                    }
                    _ => Some(reader.string()?),
                };
                Ok(Assigned::Remote {
                    host,
                    flavour,
                    no_remote_preprocessing,
                })
            }
            1 => Ok(Assigned::Local {
                host: reader.string()?,
            }),
            2 => Ok(Assigned::NoHosts(reader.string()?)),
            _ => Err(WireError("unknown assignment")),
        }
    }
}

/// A wrapper's remote-preprocessed job: what the box runs, less the input tree, which
/// the daemon finds (it keeps the file-state cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRequest {
    /// The job as the box will run it; its `root` is filled in by the daemon.
    pub job: RemoteJob,
    /// The local compiler (absolute, symlinks and ccache resolved), whose include
    /// search the daemon asks for.
    pub local_compiler: String,
    /// The wrapper's environment variables that change what the preprocessor reads.
    pub env: Vec<(String, String)>,
}

impl RemoteRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = WireWriter::new()
            .bytes(&self.job.encode())
            .str(&self.local_compiler)
            .u32(self.env.len() as u32);
        for (name, value) in &self.env {
            writer = writer.str(name).str(value);
        }
        writer.finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        let job = RemoteJob::decode(reader.bytes()?)?;
        let local_compiler = reader.string()?;
        let count = reader.u32()? as usize;
        if count > reader.rest().len() / 8 {
            return Err(WireError("environment count longer than the message"));
        }
        let env = (0..count)
            .map(|_| Ok((reader.string()?, reader.string()?)))
            .collect::<Result<_, WireError>>()?;
        Ok(RemoteRequest {
            job,
            local_compiler,
            env,
        })
    }
}

/// The daemon's answer to a [`RemoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteReply {
    /// The box compiled it (successfully or not), as the compiler reported.
    Compiled(RemoteCompile),
    /// Remote preprocessing cannot be trusted for this job (why): preprocess here and
    /// send the result, as towards any box.
    Local(String),
}

impl RemoteReply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RemoteReply::Compiled(compile) => {
                let mut payload = vec![0];
                payload.extend(RemoteAnswer::Compiled(compile.clone()).encode());
                payload
            }
            RemoteReply::Local(why) => WireWriter::new().u8(1).str(why).finish(),
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = WireReader::new(payload);
        match reader.u8()? {
            0 => match RemoteAnswer::decode(reader.rest())? {
                RemoteAnswer::Compiled(compile) => Ok(RemoteReply::Compiled(compile)),
                _ => Err(WireError("a remote reply carries only a compile")),
            },
            1 => Ok(RemoteReply::Local(reader.string()?)),
            _ => Err(WireError("unknown remote reply")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let acquire = Acquire {
            hosts: vec!["@box/8".into(), "localhost/2".into()],
            ssh_config: Some("/tmp/cfg".into()),
            ssh_options: vec!["-p".into(), "2222".into()],
            unchecked_host_keys: vec!["lab".into()],
            backoff_secs: 60,
            io_timeout_secs: 300,
            excluded: vec!["@box/8".into()],
            compiler: "x86_64-linux-gnu-gcc".into(),
            local_compiler: "/usr/bin/x86_64-linux-gnu-gcc-12".into(),
            toolchain_policies: vec!["*=strict".into(), "old=version".into()],
            file: "src/x.c".into(),
            pid: 4242,
            reapi_settings: "[\"a:1\"]\ninstance_name = \"main\"\n".into(),
            reapi_environment: vec![Secret("RE_TOKEN=t0k=en".into())],
        };
        assert_eq!(Acquire::decode(&acquire.encode()).unwrap(), acquire);
        assert!(!format!("{acquire:?}").contains("t0k"), "{acquire:?}");
        for assigned in [
            Assigned::Remote {
                host: "@b".into(),
                flavour: Flavour::Distccd,
                no_remote_preprocessing: Some("stock distccd".into()),
            },
            Assigned::Remote {
                host: "@c".into(),
                flavour: Flavour::Sshcc,
                no_remote_preprocessing: None,
            },
            Assigned::Remote {
                host: "reapi://e:1".into(),
                flavour: Flavour::Reapi,
                no_remote_preprocessing: Some("not yet".into()),
            },
            Assigned::Local {
                host: "localhost".into(),
            },
            Assigned::NoHosts("none".into()),
        ] {
            let placement = Placement {
                assigned,
                notices: vec!["@b: not sending gcc jobs there".into()],
            };
            assert_eq!(Placement::decode(&placement.encode()).unwrap(), placement);
        }
    }
}
