//! Opening an SSH link ([`HostLink::open`]): the connection, `command --mux` started
//! on it and drained continuously, and the mux handshake; when the command does not
//! speak it, distccd's per-job mode on the same connection (unless the command is not
//! installed at all).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::distccd::EXEC_CHANNELS_PER_CONNECTION;
use super::host_link::{HostLink, Transport};
use super::meter::LinkMeter;
use crate::mux::client::MuxClient;
use crate::ssh::config::{ClientOptions, SshTarget};
use crate::ssh::connection::SshConnection;

/// How long a box may take to greet: covers a cold login shell on a slow box.
const GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// The last bytes of the box worker's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

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
}
