//! One wrapper's compile as the dispatcher sees it: the slot it holds and the job it
//! runs. The daemon drives a `Session` per wrapper connection; with `SSHCC_NO_DAEMON=1`
//! the wrapper drives one itself, in-process.

use std::sync::Arc;
use std::time::Duration;

use super::ipc::{Acquire, Assigned, Placement};
use crate::dispatch::{Assignment, Dispatcher, LocalSlot, RemoteSlot, Route, ToolchainCheck};
use crate::hosts;
use crate::toolchain::Policy;

/// The request's toolchain check; none when the wrapper named no compiler.
fn toolchain_check(request: &Acquire) -> Option<ToolchainCheck> {
    if request.compiler.is_empty() || request.local_compiler.is_empty() {
        return None;
    }
    let policies = request
        .toolchain_policies
        .iter()
        .filter_map(|entry| {
            let (host, policy) = entry.split_once('=')?;
            Some((host.to_string(), Policy::parse(policy)?))
        })
        .collect();
    Some(ToolchainCheck {
        compiler: request.compiler.clone(),
        local: request.local_compiler.clone().into(),
        policies,
    })
}

#[derive(Debug)]
enum Held {
    Remote(RemoteSlot),
    /// Held only so the slot stays taken while the wrapper compiles locally.
    Local {
        _slot: LocalSlot,
    },
}

/// A wrapper's slot and settings.
#[derive(Debug)]
pub struct Session {
    dispatcher: Arc<Dispatcher>,
    held: Option<Held>,
    backoff: Duration,
    io_timeout: Duration,
}

impl Session {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Session {
            dispatcher,
            held: None,
            backoff: Duration::from_secs(60),
            io_timeout: Duration::from_secs(300),
        }
    }

    /// Releases any slot held, then waits for a new one.
    pub async fn acquire(&mut self, request: &Acquire) -> Placement {
        self.held = None;
        self.backoff = Duration::from_secs(request.backoff_secs.into());
        self.io_timeout = Duration::from_secs(request.io_timeout_secs.into());
        let specs = match hosts::parse(&request.hosts.join("\n")) {
            Ok(list) => list.hosts,
            Err(err) => {
                return Placement {
                    assigned: Assigned::NoHosts(format!("bad host list: {err}")),
                    notices: Vec::new(),
                };
            }
        };
        let route = Route {
            hosts: specs,
            ssh: crate::ssh::config::ClientOptions {
                config_file: request.ssh_config.clone(),
                extra: request.ssh_options.clone(),
                unchecked_host_keys: request.unchecked_host_keys.clone(),
            },
            backoff: self.backoff,
            excluded: request.excluded.clone(),
            toolchain: toolchain_check(request),
        };
        let (assignment, notices) = self.dispatcher.acquire(&route).await;
        let assigned = match assignment {
            Assignment::Remote(slot) => {
                let assigned = Assigned::Remote {
                    host: slot.host().to_string(),
                    flavour: slot.flavour(),
                };
                self.held = Some(Held::Remote(slot));
                assigned
            }
            Assignment::Local(slot) => {
                self.held = Some(Held::Local { _slot: slot });
                Assigned::Local {
                    host: "localhost".to_string(),
                }
            }
            Assignment::NoHosts(why) => Assigned::NoHosts(why),
        };
        Placement { assigned, notices }
    }

    /// Runs an encoded job ([`crate::protocol::job::encode_job`]) on the held remote
    /// slot and returns the encoded protocol-1 response. `Err` means the host failed (it
    /// is backed off and the slot released); a compile error is an `Ok` response.
    pub async fn run(&mut self, job_payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let Some(Held::Remote(slot)) = &self.held else {
            return Err("no remote slot is held for this job".to_string());
        };
        match slot.run(job_payload, self.io_timeout).await {
            Ok(response) => Ok(response),
            Err(err) => {
                let why = err.to_string();
                slot.mark_failed(self.backoff, &why);
                self.held = None;
                Err(why)
            }
        }
    }

    /// The box refused the job (allowlist, full disk, …), saying `why`: avoid it for the
    /// backoff period.
    pub fn refused(&mut self, why: &str) {
        if let Some(Held::Remote(slot)) = self.held.take() {
            let why = if why.is_empty() {
                "it refused a job"
            } else {
                why
            };
            slot.mark_failed(self.backoff, why);
        }
    }
}
