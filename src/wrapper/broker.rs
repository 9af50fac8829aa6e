//! How a wrapper reaches the dispatcher: through the per-user daemon, moving to a new
//! daemon if the one serving it dies, or (`SSHCC_NO_DAEMON=1`) with a dispatcher of its
//! own in this process.

use crate::client_settings::ClientSettings;
use crate::daemon::client::DaemonClient;
use crate::daemon::ipc::{Acquire, Assigned, RemoteReply, RemoteRequest};
use crate::daemon::runtime_dir::RuntimeDir;
use crate::daemon::session::Session;
use crate::daemon::stats_file;
use crate::dispatch::Dispatcher;
use crate::dispatch::tracker::LocalReason;
use crate::protocol::{JobContext, Request, Response, Version};

/// How many times one job may move to a new daemon after the one serving it failed.
const DAEMON_REPLACEMENTS: u32 = 2;

/// How the wrapper reaches the dispatcher.
pub(super) enum Broker {
    Daemon(DaemonClient),
    InProcess(Session),
}

impl Broker {
    pub(super) async fn open(settings: &ClientSettings) -> Broker {
        if !settings.no_daemon {
            let connected = match RuntimeDir::prepare() {
                Ok(dir) => DaemonClient::connect_or_start(&dir).await,
                Err(err) => Err(err),
            };
            match connected {
                Ok(client) => return Broker::Daemon(client),
                Err(err) => {
                    tracing::warn!("no sshcc daemon ({err:#}); dispatching this job directly")
                }
            }
        }
        Broker::InProcess(Session::new(Dispatcher::new()))
    }

    /// After the daemon failed (killed, crashed, stopped) while serving this job: a new
    /// daemon, so the job is not compiled here (or, with `DISTCC_FALLBACK=0`, lost)
    /// because of a daemon that is gone. At most [`DAEMON_REPLACEMENTS`] times per job
    /// (a killed daemon's socket accepts connections for a moment while it dies, so the
    /// first replacement can meet it again); `None` after that, or without a daemon.
    pub(super) async fn replace_daemon(
        &self,
        settings: &ClientSettings,
        replaced: &mut u32,
        err: &anyhow::Error,
        input: &str,
    ) -> Option<Broker> {
        if !matches!(self, Broker::Daemon(_)) || *replaced >= DAEMON_REPLACEMENTS {
            return None;
        }
        *replaced += 1;
        tracing::warn!("the sshcc daemon failed ({err:#}); retrying {input} through a new one");
        Some(Broker::open(settings).await)
    }

    /// Asks for a slot, telling the user what the dispatcher says they should know.
    pub(super) async fn acquire(&mut self, acquire: &Acquire) -> anyhow::Result<Assigned> {
        let placement = match self {
            Broker::Daemon(client) => client.acquire(acquire).await?,
            Broker::InProcess(session) => session.acquire(acquire).await,
        };
        for notice in &placement.notices {
            tracing::warn!("{notice}");
        }
        Ok(placement.assigned)
    }

    pub(super) async fn run(
        &mut self,
        request: &Request,
        context: &JobContext,
    ) -> anyhow::Result<Result<Response, String>> {
        let job_payload = crate::protocol::job::encode_job(request, context);
        let answer = match self {
            Broker::Daemon(client) => client.run(job_payload).await?,
            Broker::InProcess(session) => session.run(job_payload).await,
        };
        match answer {
            Err(why) => Ok(Err(why)),
            Ok(encoded) => {
                let mut input = &encoded[..];
                let limits = crate::protocol::Limits::default();
                Ok(Ok(crate::protocol::read_response(
                    &mut input,
                    Version::V1,
                    &limits,
                )
                .await?))
            }
        }
    }

    /// Runs a remote-preprocessed job on the held slot; `Err(why)` when the host failed.
    pub(super) async fn run_remote(
        &mut self,
        request: &RemoteRequest,
    ) -> anyhow::Result<Result<RemoteReply, String>> {
        Ok(match self {
            Broker::Daemon(client) => client.run_remote(request).await?,
            Broker::InProcess(session) => session.run_remote(request.clone()).await,
        })
    }

    /// The box would not (or could not) run the job, saying `why`: avoid it for a while.
    pub(super) async fn refused(&mut self, why: &str) {
        match self {
            Broker::Daemon(client) => {
                let _ = client.refused(why).await;
            }
            Broker::InProcess(session) => session.refused(why),
        }
    }

    /// The job compiles here now, for `reason` (a remote slot is released).
    pub(super) async fn local(&mut self, reason: LocalReason) {
        match self {
            Broker::Daemon(client) => {
                let _ = client.local(reason).await;
            }
            Broker::InProcess(session) => session.local(reason),
        }
    }

    /// The job ends with `status`. Without a daemon, its counts go to the stats file now.
    pub(super) async fn finish(self, status: u8) {
        match self {
            Broker::Daemon(mut client) => {
                let _ = client.done(status).await;
            }
            Broker::InProcess(mut session) => {
                session.done(status);
                let dispatcher = session.dispatcher().clone();
                drop(session);
                dispatcher.book_traffic();
                let counts = dispatcher.tracker().take_pending();
                let saved = tokio::task::spawn_blocking(move || stats_file::merge(&counts)).await;
                if let Ok(Err(err)) = saved {
                    tracing::debug!("cannot count the job: {err:#}");
                }
            }
        }
    }
}
