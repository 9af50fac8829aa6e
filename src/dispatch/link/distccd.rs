//! A job on a stock distccd over SSH: its own exec channel running `distccd --inetd`
//! on the link's connection, capped per connection and retried while sshd refuses
//! sessions beyond `MaxSessions`.

use std::time::{Duration, Instant};

use russh::ChannelMsg;

use super::host_link::{HostLink, LinkError};
use crate::mux::client::{JobEvent, Observer};
use crate::protocol::{self, Limits, Request, Response};
use crate::ssh::connection::SshConnection;

/// sshd's default `MaxSessions` is 10 and frees a slot only after it reaps the closed
/// channel, so stay below it and retry refusals.
pub(super) const EXEC_CHANNELS_PER_CONNECTION: usize = 8;
const CHANNEL_OPEN_RETRIES: u32 = 25;

impl HostLink {
    pub(super) async fn run_inetd(
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
