//! A userspace TCP proxy on 127.0.0.1 emulating a WAN link: a fixed one-way delay in
//! each direction and, optionally, a bandwidth cap; it counts the bytes it forwards.
//!
//! `bench/client/proxy.rs` only delays; this one also serialises. Every chunk read from
//! one side (at most [`CHUNK`] bytes) leaves the sender's end of the link when the
//! chunks before it have, taking `len × 8 / rate` seconds, and arrives `delay` later:
//! `departed = max(now, previous departed) + len / rate`, `due = departed + delay`. A
//! writer per direction sends each chunk at its due time. At most [`BUFFER`] bytes may
//! be queued or in flight per direction (a router's buffer): beyond that the proxy stops
//! reading, so TCP's flow control pushes back on the sender as a real bottleneck would,
//! instead of the proxy swallowing a whole build's upload at once. End of stream is
//! delayed like data. The TCP handshake itself is not delayed (the proxy accepts
//! locally), so a new connection costs no round trip here.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The largest chunk read at once: 16 KiB take 6.6 ms at 20 Mbit/s, so the link's
/// pacing stays finer than a round trip.
const CHUNK: usize = 16 << 10;
/// Bytes queued or in flight per direction before the proxy stops reading.
const BUFFER: usize = 256 << 10;

/// What the emulated link does to the traffic.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// Bits per second in each direction; `None` for no cap.
    pub rate: Option<u64>,
}

impl Shape {
    pub fn describe(&self) -> String {
        let rtt = format!("{} ms RTT", 2 * self.delay.as_millis());
        match self.rate {
            Some(rate) => format!("{rtt}, {} Mbit/s each way", rate / 1_000_000),
            None => format!("{rtt}, no bandwidth cap"),
        }
    }
}

/// Bytes forwarded so far (or between two snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client → target.
    pub up: u64,
    /// Target → client.
    pub down: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
}

/// A listening proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Link {
    port: u16,
    counters: Arc<Counters>,
    accept_loop: JoinHandle<()>,
}

impl Link {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards every connection to
    /// `127.0.0.1:target` through a link shaped as `shape`.
    pub fn start(runtime: &Runtime, target: u16, shape: Shape) -> Result<Self> {
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .context("binding the link proxy")?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target));
        let accept_loop = {
            let counters = counters.clone();
            runtime.spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let counters = counters.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve(client, target, shape, &counters).await {
                            eprintln!("link proxy → {target}: {err:#}");
                        }
                    });
                }
            })
        };
        Ok(Link {
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
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    shape: Shape,
    counters: &Counters,
) -> Result<()> {
    let server = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, shape, &counters.up),
        pump(server_read, client_write, shape, &counters.down),
    );
    Ok(())
}

/// Forwards one direction: a reader paces and queues chunks as they arrive, a writer
/// sends each at its due time. `None` in the queue is end of stream.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shape: Shape, count: &AtomicU64) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let buffer = Arc::new(Semaphore::new(BUFFER));
    let read = {
        let buffer = buffer.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            let mut departed = Instant::now();
            loop {
                let chunk = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => Some(buf[..n].to_vec()),
                };
                let len = chunk.as_ref().map_or(0, Vec::len);
                if len > 0 {
                    // Wait for room in the link's buffer; the writer gives it back.
                    match buffer.acquire_many(len as u32).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    }
                    count.fetch_add(len as u64, Ordering::SeqCst);
                }
                let now = Instant::now();
                departed = departed.max(now);
                if let Some(rate) = shape.rate {
                    departed += Duration::from_nanos(len as u64 * 8 * 1_000_000_000 / rate);
                }
                let end = chunk.is_none();
                // A failed send means the writer gave up (the far side is gone).
                if queue.send((departed + shape.delay, chunk)).is_err() || end {
                    break;
                }
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(bytes) if to.write_all(&bytes).await.is_ok() => {
                    buffer.add_permits(bytes.len());
                }
                _ => break,
            }
        }
        buffer.close();
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
