//! A userspace TCP proxy on 127.0.0.1 that adds a fixed one-way delay in each direction
//! and counts the bytes it forwards.
//!
//! Every chunk read from one side is stamped with `arrival + delay` and queued; a writer
//! per direction sends each chunk when its time comes. Delays therefore overlap (a burst
//! of chunks arrives one delay later as a burst, not one delay per chunk), as on a real
//! link with that latency and plenty of bandwidth. End of stream is delayed like data.
//! The TCP handshake itself is not delayed: the proxy accepts locally and connects to the
//! target at once, so a new connection costs nothing extra here, where a real network
//! would add one round trip before the client's first byte.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes forwarded so far (or between two snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client → target.
    pub up: u64,
    /// Target → client.
    pub down: u64,
    /// TCP connections accepted.
    pub connections: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
            connections: self.connections - earlier.connections,
        }
    }
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.up += other.up;
        self.down += other.down;
        self.connections += other.connections;
    }
}

#[derive(Debug, Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
}

/// A listening proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct DelayProxy {
    port: u16,
    counters: Arc<Counters>,
    accept_loop: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards every connection to
    /// `127.0.0.1:target` with `delay` added in each direction.
    pub fn start(runtime: &Runtime, target: u16, delay: Duration) -> Result<Self> {
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .context("binding the delay proxy")?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target));
        let accept_loop = {
            let counters = counters.clone();
            runtime.spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let counters = counters.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve(client, target, delay, &counters).await {
                            eprintln!("delay proxy → {target}: {err:#}");
                        }
                    });
                }
            })
        };
        Ok(DelayProxy {
            port,
            counters,
            accept_loop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A snapshot of the counters; subtract two to get what flowed in between.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            up: self.counters.up.load(Ordering::SeqCst),
            down: self.counters.down.load(Ordering::SeqCst),
            connections: self.counters.connections.load(Ordering::SeqCst),
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    delay: Duration,
    counters: &Counters,
) -> Result<()> {
    let server = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    // The proxy must not add Nagle delays of its own.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let trace =
        std::env::var_os("SSHCC_BENCH_TRACE_PROXY").map(|_| (target.port(), Instant::now()));
    tokio::join!(
        pump(
            client_read,
            server_write,
            delay,
            &counters.up,
            trace.map(|(p, t)| (p, "up", t))
        ),
        pump(
            server_read,
            client_write,
            delay,
            &counters.down,
            trace.map(|(p, t)| (p, "down", t))
        ),
    );
    Ok(())
}

/// Forwards one direction: a reader stamps and queues chunks as they arrive, a writer
/// sends each at its due time. `None` in the queue is end of stream.
/// `trace` (target port, direction, connection start), set by the environment variable
/// `SSHCC_BENCH_TRACE_PROXY`, prints every chunk to stderr: a debugging aid for counting
/// round trips.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    count: &AtomicU64,
    trace: Option<(u16, &str, Instant)>,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let chunk = match from.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let at = Instant::now() + delay;
            if let Some((port, direction, start)) = trace {
                eprintln!(
                    "proxy→{port} {direction:>4} {:>9.3} ms {:>7} bytes",
                    (at - delay - start).as_secs_f64() * 1e3,
                    chunk.as_ref().map_or(0, Vec::len)
                );
            }
            let end = match &chunk {
                Some(bytes) => {
                    count.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                    false
                }
                None => true,
            };
            // A failed send means the writer gave up (the far side is gone).
            if queue.send((at, chunk)).is_err() || end {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(bytes) if to.write_all(&bytes).await.is_ok() => {}
                _ => break,
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
