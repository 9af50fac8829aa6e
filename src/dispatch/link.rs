//! One pooled connection to a box, and how jobs travel on it.
//!
//! When the box runs sshcc, one long-lived `sshcc --mux` channel carries every job (no
//! per-job channel, process or shell; clear of sshd's `MaxSessions`). When the host's
//! command is a stock distccd (it rejects `--mux`), each job gets its own exec channel
//! running `distccd --inetd` on the same connection, capped per connection and retried
//! when sshd refuses a session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::remote::{self, JobBlobs, JobFailure, KnownBlobs};
use crate::mux::client::{Counted, JobEvent, MuxClient, MuxError, Observer, Traffic};
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::protocol::{self, Limits, Request, Response, Version};
use crate::ssh::config::{ClientOptions, SshTarget};
use crate::ssh::connection::SshConnection;
use crate::toolchain::Fingerprint;

/// How long a box may take to greet: covers a cold login shell on a slow box.
const GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// sshd's default `MaxSessions` is 10 and frees a slot only after it reaps the closed
/// channel, so stay below it and retry refusals.
const EXEC_CHANNELS_PER_CONNECTION: usize = 8;
const CHANNEL_OPEN_RETRIES: u32 = 25;
/// distcc's own TCP connect timeout (`dcc_connect_timeout`).
pub(crate) const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// The last bytes of the box worker's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;
/// How long a box's answer about a compiler is trusted before it is asked again, so a
/// compiler upgraded on the box is noticed while the connection stays up. Asking again
/// costs one round trip: the box re-hashes only files that changed.
const IDENTITY_TTL: Duration = Duration::from_secs(60);

/// What runs on the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `sshcc --mux`: multiplexed, and it understands `-fdirectives-only` input.
    Sshcc,
    /// A stock distccd: one `--inetd` exec channel per job, classic `-E` input.
    Distccd,
}

/// Why a job got no answer from the box (as opposed to a compile error, which is an
/// answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// What a box says about the compiler a job names.
#[derive(Debug, Clone)]
pub enum RemoteIdentity {
    /// The toolchain the box's allowlist maps the name to.
    Known(Fingerprint),
    /// The box has no usable compiler under that name; it says why.
    Missing(String),
    /// The box cannot say (a stock distccd, or an sshcc too old to be asked).
    Unverifiable(&'static str),
}

/// What is measured about a host's connections, kept across reconnections: the bytes
/// ([`Traffic`]) and the last round-trip time.
#[derive(Debug, Default)]
pub struct LinkMeter {
    pub traffic: Arc<Traffic>,
    /// The last round-trip time measured, and when.
    rtt: Mutex<Option<(Duration, Instant)>>,
    /// Set while a round-trip probe is under way.
    probing: AtomicBool,
}

impl LinkMeter {
    pub fn record_rtt(&self, rtt: Duration) {
        *self.rtt.lock().expect("rtt lock") = Some((rtt, Instant::now()));
    }

    /// The last round-trip time and when it was measured.
    pub fn rtt(&self) -> Option<(Duration, Instant)> {
        *self.rtt.lock().expect("rtt lock")
    }
}

/// How long a round-trip probe may take before it is given up (the box is busy or the
/// link is stalling; the next probe tries again).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one box and the way jobs use it.
#[derive(Debug)]
pub struct HostLink {
    label: String,
    transport: Transport,
    meter: Arc<LinkMeter>,
    /// Jobs running on the link now (TCP: connections open now).
    in_flight: AtomicUsize,
    /// Answers about compilers, by compiler name, with when they were given. The lock
    /// is held while asking, so concurrent first jobs ask (and the box hashes) once.
    identities: tokio::sync::Mutex<HashMap<String, (Instant, RemoteIdentity)>>,
    /// Set when a job got no answer in time: the connection may be stalled, so no new
    /// job is given to it (see [`HostLink::retire`]).
    retired: AtomicBool,
}

#[derive(Debug)]
enum Transport {
    Mux {
        ssh: SshConnection,
        client: MuxClient,
    },
    Distccd {
        ssh: SshConnection,
        command: String,
        channels: Semaphore,
    },
    /// A stock `distccd --daemon` over plain TCP: one connection per job, as distcc's
    /// protocol has no way to reuse one.
    Tcp { host: String, port: u16 },
}

impl HostLink {
    /// Connects to `target` and starts `command --mux`; falls back to distccd's per-job
    /// mode when the command does not speak it. What the link measures goes to `meter`;
    /// the first round-trip time is the SSH channel open (sshd confirms it before it
    /// starts any process).
    pub async fn open(
        target: &SshTarget,
        options: &ClientOptions,
        command: &str,
        meter: Arc<LinkMeter>,
    ) -> anyhow::Result<Self> {
        let ssh = SshConnection::connect(target, options).await?;
        // Opening a channel has no deadline of its own: a box that authenticated and then
        // hung would hold every job waiting for this connection.
        let opening = Instant::now();
        let channel = tokio::time::timeout(GREETING_TIMEOUT, ssh.exec(&format!("{command} --mux")))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} did not open a session within {GREETING_TIMEOUT:?}",
                    ssh.label()
                )
            })?
            .with_context(|| format!("cannot start `{command} --mux` on {}", ssh.label()))?;
        meter.record_rtt(opening.elapsed());
        let (mut from_box, to_box) = channel.split();
        let (pipe_writer, pipe_reader) = tokio::io::duplex(1 << 20);
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let exit_status = Arc::new(Mutex::new(None));
        {
            let (stderr_tail, exit_status) = (stderr_tail.clone(), exit_status.clone());
            // Drain the channel continuously: an unread russh channel stalls the whole
            // connection.
            tokio::spawn(async move {
                let mut pipe_writer = Some(pipe_writer);
                while let Some(message) = from_box.wait().await {
                    match message {
                        ChannelMsg::Data { data } => {
                            if let Some(writer) = pipe_writer.as_mut()
                                && writer.write_all(&data).await.is_err()
                            {
                                pipe_writer = None;
                            }
                        }
                        ChannelMsg::ExtendedData { data, .. } => {
                            let text = String::from_utf8_lossy(&data);
                            for line in text.lines() {
                                tracing::info!(target: "sshcc::box", "{line}");
                            }
                            let mut tail = stderr_tail.lock().expect("stderr lock");
                            tail.extend_from_slice(&data);
                            let excess = tail.len().saturating_sub(STDERR_TAIL);
                            tail.drain(..excess);
                        }
                        ChannelMsg::ExitStatus {
                            exit_status: status,
                        } => {
                            *exit_status.lock().expect("status lock") = Some(status);
                        }
                        ChannelMsg::Eof => pipe_writer = None,
                        _ => {}
                    }
                }
            });
        }
        match MuxClient::handshake_counted(
            pipe_reader,
            to_box.make_writer(),
            GREETING_TIMEOUT,
            meter.traffic.clone(),
        )
        .await
        {
            Ok(client) => {
                tracing::info!(
                    "{}: sshcc {} on {}",
                    ssh.label(),
                    client.hello().version,
                    client.hello().hostname
                );
                Ok(HostLink {
                    label: ssh.label().to_string(),
                    transport: Transport::Mux { ssh, client },
                    meter,
                    in_flight: AtomicUsize::new(0),
                    identities: Default::default(),
                    retired: AtomicBool::new(false),
                })
            }
            Err(err) => {
                // Give the exit status and stderr a moment to arrive after the stream ended.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let stderr = String::from_utf8_lossy(&stderr_tail.lock().expect("stderr lock"))
                    .trim()
                    .to_string();
                let status = *exit_status.lock().expect("status lock");
                if status == Some(127) || stderr.contains("not found") {
                    bail!(
                        "`{command}` is not installed on {} (or not on the login PATH): {stderr}",
                        ssh.label()
                    );
                }
                tracing::info!(
                    "{}: `{command} --mux` failed ({err}; exit {status:?}; {stderr}); using one distccd channel per job",
                    ssh.label()
                );
                Ok(HostLink {
                    label: ssh.label().to_string(),
                    transport: Transport::Distccd {
                        ssh,
                        command: command.to_string(),
                        channels: Semaphore::new(EXEC_CHANNELS_PER_CONNECTION),
                    },
                    meter,
                    in_flight: AtomicUsize::new(0),
                    identities: Default::default(),
                    retired: AtomicBool::new(false),
                })
            }
        }
    }

    /// A TCP host: nothing to open until a job needs it.
    pub fn tcp(host: &str, port: u16, meter: Arc<LinkMeter>) -> Self {
        HostLink {
            label: format!("{host}:{port}"),
            transport: Transport::Tcp {
                host: host.to_string(),
                port,
            },
            meter,
            in_flight: AtomicUsize::new(0),
            identities: Default::default(),
            retired: AtomicBool::new(false),
        }
    }

    /// Which toolchain the box would run for `compiler`, asked over the link at most
    /// once per [`IDENTITY_TTL`].
    pub async fn identity(&self, compiler: &str) -> Result<RemoteIdentity, LinkError> {
        let Transport::Mux { client, .. } = &self.transport else {
            return Ok(RemoteIdentity::Unverifiable(
                "a stock distccd cannot report its compiler",
            ));
        };
        let mut identities = self.identities.lock().await;
        if let Some((asked, identity)) = identities.get(compiler)
            && asked.elapsed() < IDENTITY_TTL
        {
            return Ok(identity.clone());
        }
        let identity = match client.identify(compiler).await {
            Ok(Some(Ok(fingerprint))) => RemoteIdentity::Known(fingerprint),
            Ok(Some(Err(why))) => RemoteIdentity::Missing(why),
            Ok(None) => RemoteIdentity::Unverifiable(
                "its sshcc is too old to report compilers (protocol 1)",
            ),
            Err(err) => return Err(LinkError(format!("{}: {err}", self.label))),
        };
        identities.insert(compiler.to_string(), (Instant::now(), identity.clone()));
        Ok(identity)
    }

    /// Why the box cannot take remote-preprocessed jobs, or `None` when it can.
    pub fn no_remote_preprocessing(&self) -> Option<String> {
        match &self.transport {
            Transport::Mux { client, .. } => client.hello().no_remote_preprocessing.clone(),
            _ => Some("a stock distccd preprocesses nothing".to_string()),
        }
    }

    pub fn flavour(&self) -> Flavour {
        match self.transport {
            Transport::Mux { .. } => Flavour::Sshcc,
            Transport::Distccd { .. } | Transport::Tcp { .. } => Flavour::Distccd,
        }
    }

    /// Whether the connection or its worker is gone, or the link was retired (then the
    /// pool opens a new one).
    pub fn is_closed(&self) -> bool {
        if self.retired.load(Ordering::SeqCst) {
            return true;
        }
        match &self.transport {
            Transport::Mux { ssh, client } => ssh.is_closed() || client.is_closed(),
            Transport::Distccd { ssh, .. } => ssh.is_closed(),
            Transport::Tcp { .. } => false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the box is connected now: the SSH connection is up, or (TCP) a job's
    /// connection is open.
    pub fn is_connected(&self) -> bool {
        match &self.transport {
            Transport::Tcp { .. } => self.in_flight.load(Ordering::Relaxed) > 0,
            _ => !self.is_closed(),
        }
    }

    /// Measures the round-trip time again if the last measure is older than `max_age`
    /// and no probe is under way (only an `sshcc --mux` link can be probed: see
    /// [`MuxClient::round_trip`]); returns at once, the probe runs in the background.
    pub fn refresh_rtt(self: &Arc<Self>, max_age: Duration) {
        let Transport::Mux { client, .. } = &self.transport else {
            return;
        };
        if client.hello().protocol < 2
            || self.is_closed()
            || self
                .meter
                .rtt()
                .is_some_and(|(_, measured)| measured.elapsed() < max_age)
            || self.meter.probing.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            if let Transport::Mux { client, .. } = &link.transport
                && let Ok(Ok(Some(rtt))) =
                    tokio::time::timeout(PROBE_TIMEOUT, client.round_trip()).await
            {
                link.meter.record_rtt(rtt);
            }
            link.meter.probing.store(false, Ordering::SeqCst);
        });
    }

    /// Takes the link out of service after a job got no answer within
    /// `DISTCC_IO_TIMEOUT`. A connection that went silent without closing (a stalled
    /// network path, a hung or rebooted box) stays open until the SSH keepalive gives up
    /// on it, which takes minutes; the next job opens a new connection instead. Jobs
    /// still running on this link finish on it, and it closes with the last of them.
    pub fn retire(&self) {
        if !self.retired.swap(true, Ordering::SeqCst) {
            tracing::info!(
                "{}: no answer in time; later jobs use a new connection",
                self.label
            );
        }
    }

    /// Runs a remote-preprocessed job (see [`remote::run`]), counted as in flight.
    pub async fn run_remote(
        &self,
        job: &RemoteJob,
        blobs: &JobBlobs,
        known: &KnownBlobs,
        observer: Option<Observer>,
    ) -> Result<RemoteCompile, JobFailure> {
        let Transport::Mux { client, .. } = &self.transport else {
            return Err(JobFailure::Box(format!(
                "{} does not run sshcc --mux",
                self.label()
            )));
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = remote::run(client, job, blobs, known, observer).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result.map_err(|failure| match failure {
            JobFailure::Link(err) => JobFailure::Box(self.describe(err)),
            other => other,
        })
    }

    /// What went wrong on the link, naming the box.
    fn describe(&self, err: MuxError) -> String {
        match err {
            MuxError::Lost => format!("lost the connection to {}", self.label()),
            other => format!("{}: {other}", self.label()),
        }
    }

    /// Runs one job, given and answered in encoded form (see
    /// [`protocol::job::encode_job`]; the answer is a protocol-1 response). An sshcc box
    /// gets the bytes as they are; a stock distccd gets the plain request in protocol 2
    /// when `lzo` is set, else 1, and no context (distcc's protocol has no place for it).
    /// `observer` hears when the request is out and when the answer starts arriving.
    pub async fn run(
        &self,
        job_payload: Vec<u8>,
        lzo: bool,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.run_counted(job_payload, lzo, observer).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    async fn run_counted(
        &self,
        job_payload: Vec<u8>,
        lzo: bool,
        observer: Option<Observer>,
    ) -> Result<Vec<u8>, LinkError> {
        if let Transport::Mux { client, .. } = &self.transport {
            return client
                .run_observed(job_payload, observer)
                .await
                .map_err(|err| LinkError(self.describe(err)));
        }
        let (request, _context) = protocol::job::decode_job(&job_payload, &Limits::default())
            .await
            .map_err(|err| LinkError(format!("cannot decode the job: {err}")))?;
        let version = if lzo { Version::V2 } else { Version::V1 };
        let request = Request { version, ..request };
        let response = match &self.transport {
            Transport::Distccd {
                ssh,
                command,
                channels,
            } => {
                let _permit = channels.acquire().await.expect("semaphore never closed");
                self.run_inetd(ssh, command, &request, observer.as_ref())
                    .await?
            }
            Transport::Tcp { host, port } => {
                self.run_tcp(host, *port, &request, observer.as_ref())
                    .await?
            }
            Transport::Mux { .. } => unreachable!("handled above"),
        };
        let traffic = &self.meter.traffic;
        traffic.job_sent();
        traffic.payload_sent(plain_request_len(&request));
        let answer = protocol::distcc::encode_response(Version::V1, &response);
        traffic.payload_received(answer.len() as u64);
        Ok(answer)
    }

    /// One job over TCP to `distccd --daemon`, with distcc's 4-second connect timeout.
    /// The connect time (one SYN round trip) is the host's round-trip time.
    async fn run_tcp(
        &self,
        host: &str,
        port: u16,
        request: &Request,
        observer: Option<&Observer>,
    ) -> Result<Response, LinkError> {
        let connect = tokio::net::TcpStream::connect((host, port));
        let connecting = Instant::now();
        let stream = match tokio::time::timeout(TCP_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => {
                self.meter.record_rtt(connecting.elapsed());
                stream
            }
            Ok(Err(err)) => {
                return Err(LinkError(format!(
                    "cannot connect to {}: {err}",
                    self.label()
                )));
            }
            Err(_) => {
                return Err(LinkError(format!(
                    "timed out connecting to {}",
                    self.label()
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        // distccd reads the whole request before answering, and treats EOF as the client
        // going away, so write everything, keep the socket open, then read.
        let mut stream = Counted::new(stream, self.meter.traffic.clone());
        protocol::write_request(&mut stream, request)
            .await
            .map_err(|err| LinkError(format!("{}: sending the job failed: {err}", self.label())))?;
        if let Some(observer) = observer {
            observer(JobEvent::Sent);
        }
        let mut stream = AnnounceFirstByte {
            inner: stream,
            observer,
        };
        protocol::read_response(&mut stream, request.version, &Limits::default())
            .await
            .map_err(|err| {
                LinkError(format!(
                    "{}: no valid answer from distccd ({err})",
                    self.label()
                ))
            })
    }

    async fn run_inetd(
        &self,
        ssh: &SshConnection,
        command: &str,
        request: &Request,
        observer: Option<&Observer>,
    ) -> Result<Response, LinkError> {
        let remote = format!("{command} --inetd --enable-tcp-insecure");
        let mut attempt = 0;
        let channel = loop {
            let opening = Instant::now();
            match ssh.exec(&remote).await {
                Ok(channel) => {
                    self.meter.record_rtt(opening.elapsed());
                    break channel;
                }
                // sshd refuses sessions beyond MaxSessions until it reaps closed ones.
                Err(russh::Error::ChannelOpenFailure(_)) if attempt < CHANNEL_OPEN_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt.min(6))).await;
                }
                Err(err) => {
                    return Err(LinkError(format!(
                        "{}: cannot start `{remote}`: {err}",
                        self.label()
                    )));
                }
            }
        };
        let (mut from_box, to_box) = channel.split();
        let bytes = protocol::distcc::encode_request(request);
        // distccd kills the job on EOF, so send no EOF; read while writing so neither
        // side's window fills up.
        let traffic = &self.meter.traffic;
        let send = async {
            let sent = to_box.data(&bytes[..]).await;
            traffic.wire_sent(bytes.len() as u64);
            if let Some(observer) = observer {
                observer(JobEvent::Sent);
            }
            sent
        };
        let receive = async {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(message) = from_box.wait().await {
                match message {
                    ChannelMsg::Data { data } => {
                        if stdout.is_empty()
                            && let Some(observer) = observer
                        {
                            observer(JobEvent::Answering);
                        }
                        traffic.wire_received(data.len() as u64);
                        stdout.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            (stdout, stderr)
        };
        let (sent, (stdout, stderr)) = tokio::join!(send, receive);
        let _ = to_box.close().await;
        if let Err(err) = sent {
            return Err(LinkError(format!(
                "{}: sending the job failed: {err}",
                self.label()
            )));
        }
        let mut input = &stdout[..];
        protocol::read_response(&mut input, request.version, &Limits::default())
            .await
            .map_err(|err| {
                LinkError(format!(
                    "{}: `{remote}` gave no valid answer ({err}){}",
                    self.label(),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", String::from_utf8_lossy(&stderr).trim())
                    }
                ))
            })
    }
}

/// The length of `request` in distcc's protocol 1 (uncompressed): the `DIST`, `ARGC`,
/// `ARGV` and `DOTI` tokens (12 bytes each) and what follows them.
fn plain_request_len(request: &Request) -> u64 {
    let tokens = 3 + request.argv.len() as u64;
    let argv: u64 = request.argv.iter().map(|arg| arg.len() as u64).sum();
    12 * tokens + argv + request.source.len() as u64
}

/// A reader that tells the job's observer when the first byte of the answer arrives.
struct AnnounceFirstByte<'a, R> {
    inner: R,
    observer: Option<&'a Observer>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for AnnounceFirstByte<'_, R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(observer) = self.observer.take()
        {
            observer(JobEvent::Answering);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_request_length_is_what_protocol_1_encodes() {
        let request = Request {
            version: Version::V1,
            argv: vec!["gcc".into(), "-c".into(), "x.c".into()],
            source: b"int x;\n".to_vec(),
        };
        assert_eq!(
            plain_request_len(&request),
            protocol::distcc::encode_request(&request).len() as u64
        );
    }
}
