//! One wrapper's compile as the dispatcher sees it: the slot it holds and the job it
//! runs. The daemon drives a `Session` per wrapper connection; with `SSHCC_NO_DAEMON=1`
//! the wrapper drives one itself, in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ipc::{Acquire, Assigned, Placement, RemoteReply, RemoteRequest};
use crate::config::Config;
use crate::dispatch::remote::{self, JobFailure};
use crate::dispatch::tracker::LocalReason;
use crate::dispatch::{Assignment, Dispatcher, LocalSlot, RemoteSlot, Route, ToolchainCheck};
use crate::hosts;
use crate::inputs::{JobSpec, Prepared};
use crate::mux::client::{JobEvent, Observer};
use crate::protocol::mux::remote::RemoteCompile;
use crate::status::Phase;
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

/// A wrapper's slot and settings, and its job as `sshcc status` shows it.
#[derive(Debug)]
pub struct Session {
    dispatcher: Arc<Dispatcher>,
    held: Option<Held>,
    backoff: Duration,
    io_timeout: Duration,
    /// The job's id in the dispatcher's tracker, from the first ACQUIRE.
    job: Option<u64>,
}

impl Session {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Session {
            dispatcher,
            held: None,
            backoff: Duration::from_secs(60),
            io_timeout: Duration::from_secs(300),
            job: None,
        }
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Releases any slot held, then waits for a new one.
    pub async fn acquire(&mut self, request: &Acquire) -> Placement {
        self.held = None;
        let tracker = self.dispatcher.tracker();
        let job = match self.job {
            Some(job) => {
                tracker.requeue(job);
                job
            }
            None => *self.job.insert(tracker.begin(&request.file, request.pid)),
        };
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
        let reapi =
            match Config::reapi_from_toml(&request.reapi_settings, &request.reapi_environment) {
                Ok(reapi) => reapi,
                Err(err) => {
                    return Placement {
                        assigned: Assigned::NoHosts(format!("{err:#}")),
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
            reapi,
        };
        let (assignment, notices) = self.dispatcher.acquire(&route).await;
        let assigned = match assignment {
            Assignment::Remote(slot) => {
                let assigned = Assigned::Remote {
                    host: slot.host().to_string(),
                    flavour: slot.flavour(),
                    no_remote_preprocessing: slot.no_remote_preprocessing(),
                };
                tracker.phase(job, Phase::Preprocess, Some(slot.host()));
                self.held = Some(Held::Remote(slot));
                assigned
            }
            Assignment::Local(slot) => {
                tracker.local(job, LocalReason::Slot);
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
        let observer = self.observer();
        let started = Instant::now();
        match slot.run(job_payload, self.io_timeout, observer).await {
            Ok(response) => {
                if let Some(job) = self.job {
                    let tracker = self.dispatcher.tracker();
                    // A box that answered at once (before the writer reported the
                    // request written) still shows it was asked and answered.
                    tracker.advance(job, Phase::Receive);
                    tracker.answered(job, slot.host(), started.elapsed());
                }
                Ok(response)
            }
            Err(err) => {
                let why = err.to_string();
                slot.mark_failed(self.backoff, &why);
                self.held = None;
                if let Some(job) = self.job {
                    self.dispatcher.tracker().requeue(job);
                }
                Err(why)
            }
        }
    }

    /// Runs a remote-preprocessed job on the held remote slot: finds its inputs, sends
    /// the box what it lacks, runs it there and checks that what the compile read is
    /// what was sent. [`RemoteReply::Local`] says why the job must be preprocessed here
    /// instead (the slot stays held for that); `Err` means the host failed (it is
    /// backed off and the slot released).
    pub async fn run_remote(&mut self, request: RemoteRequest) -> Result<RemoteReply, String> {
        let Some(Held::Remote(slot)) = &self.held else {
            return Err("no remote slot is held for this job".to_string());
        };
        if let Some(why) = slot.no_remote_preprocessing() {
            return Ok(RemoteReply::Local(why));
        }
        let spec = JobSpec {
            compiler: request.local_compiler.into(),
            args: request.job.args.clone(),
            cwd: request.job.cwd.clone().into(),
            pwd: request.job.pwd.clone().map(Into::into),
            env: request.env,
        };
        let dispatcher = self.dispatcher.clone();
        let prepared = tokio::task::spawn_blocking(move || dispatcher.inputs().prepare(&spec))
            .await
            .map_err(|err| format!("finding the job's inputs failed: {err}"))?;
        let inputs = match prepared {
            Prepared::Remote(inputs) => inputs,
            Prepared::Local { why } => return Ok(RemoteReply::Local(why)),
        };
        let (job, blobs) = match remote::assemble(request.job, &inputs) {
            Ok(assembled) => assembled,
            Err(why) => return Ok(RemoteReply::Local(why)),
        };
        let observer = self.observer();
        let started = Instant::now();
        match slot
            .run_remote(&job, &blobs, self.io_timeout, observer)
            .await
        {
            Ok(compile) => {
                if let Some(id) = self.job {
                    let tracker = self.dispatcher.tracker();
                    tracker.advance(id, Phase::Receive);
                    tracker.answered(id, slot.host(), started.elapsed());
                }
                if compile.status != 0 {
                    return Ok(RemoteReply::Compiled(compile));
                }
                let deps: Vec<PathBuf> = compile.deps.iter().map(PathBuf::from).collect();
                let dispatcher = self.dispatcher.clone();
                let verified = tokio::task::spawn_blocking(move || {
                    dispatcher.inputs().verify_after(&inputs, &deps)
                })
                .await
                .map_err(|err| format!("checking the job's inputs failed: {err}"))?;
                Ok(match verified {
                    Ok(()) => RemoteReply::Compiled(compile),
                    Err(why) => RemoteReply::Local(why),
                })
            }
            Err(JobFailure::Changed(why) | JobFailure::StoreTooSmall(why)) => {
                Ok(RemoteReply::Local(why))
            }
            // As a refusal of a preprocessed job is answered: distcc's code and why.
            Err(JobFailure::Refused { code, reason }) => Ok(RemoteReply::Compiled(RemoteCompile {
                status: u32::from(code) << 8,
                stderr: format!("{reason}\n").into_bytes(),
                ..RemoteCompile::default()
            })),
            Err(failure @ (JobFailure::Box(_) | JobFailure::Link(_))) => {
                let why = failure.to_string();
                slot.mark_failed(self.backoff, &why);
                self.held = None;
                if let Some(id) = self.job {
                    self.dispatcher.tracker().requeue(id);
                }
                Err(why)
            }
        }
    }

    /// Follows a job on the link for `sshcc status`: sent, compiling, answering.
    fn observer(&self) -> Option<Observer> {
        self.job.map(|job| {
            let dispatcher = self.dispatcher.clone();
            dispatcher.tracker().phase(job, Phase::Send, None);
            Arc::new(move |event| {
                let phase = match event {
                    JobEvent::Sent => Phase::Compile,
                    JobEvent::Answering => Phase::Receive,
                };
                dispatcher.tracker().advance(job, phase);
            }) as Observer
        })
    }

    /// The wrapper compiles the job here now, for `reason`; a remote slot is released
    /// (a `localhost` slot stays held while it compiles).
    pub fn local(&mut self, reason: LocalReason) {
        if matches!(self.held, Some(Held::Remote(_))) {
            self.held = None;
        }
        if let Some(job) = self.job {
            self.dispatcher.tracker().local(job, reason);
        }
    }

    /// The wrapper is about to exit with `status`.
    pub fn done(&mut self, status: u8) {
        if let Some(job) = self.job {
            self.dispatcher.tracker().done(job, status);
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

impl Drop for Session {
    /// The wrapper's connection ended: the job leaves `sshcc status` and is counted.
    fn drop(&mut self) {
        self.held = None;
        if let Some(job) = self.job {
            self.dispatcher.tracker().finish(job);
        }
    }
}
