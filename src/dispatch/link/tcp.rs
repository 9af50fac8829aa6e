//! A TCP host (a stock `distccd --daemon`): nothing to open until a job needs it, then
//! one connection per job, as distcc's protocol has no way to reuse one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use super::host_link::{HostLink, LinkError, Transport};
use super::meter::LinkMeter;
use crate::mux::client::{Counted, JobEvent, Observer};
use crate::protocol::{self, Limits, Request, Response};

/// distcc's own TCP connect timeout (`dcc_connect_timeout`).
pub(crate) const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

impl HostLink {
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

    /// One job over TCP to `distccd --daemon`, with distcc's 4-second connect timeout.
    /// The connect time (one SYN round trip) is the host's round-trip time.
    pub(super) async fn run_tcp(
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
