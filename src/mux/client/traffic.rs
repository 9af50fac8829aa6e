//! Counting what passes on a box's links ([`Traffic`]): bytes on the wire, the same
//! frames uncompressed, jobs sent, and the bytes not yet booked into the stats; and
//! [`Counted`], a stream wrapper that counts its wire bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes to and from one box, over all its connections: on the wire (the stream the
/// frames travel in, before SSH's own packet overhead and encryption) and as payload
/// (the same frames uncompressed).
#[derive(Debug, Default)]
pub struct Traffic {
    wire_sent: AtomicU64,
    wire_received: AtomicU64,
    payload_sent: AtomicU64,
    payload_received: AtomicU64,
    jobs_sent: AtomicU64,
    /// Wire bytes not yet taken by [`Traffic::take_unbooked`].
    unbooked_sent: AtomicU64,
    unbooked_received: AtomicU64,
}

/// A reading of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    pub wire_sent: u64,
    pub wire_received: u64,
    pub payload_sent: u64,
    pub payload_received: u64,
    pub jobs_sent: u64,
}

impl TrafficCounts {
    /// Uncompressed bytes per byte on the wire, both directions; `None` before the
    /// first job.
    pub fn compression_ratio(&self) -> Option<f64> {
        let wire = self.wire_sent + self.wire_received;
        (self.jobs_sent > 0 && wire > 0)
            .then(|| (self.payload_sent + self.payload_received) as f64 / wire as f64)
    }
}

impl Traffic {
    pub fn wire_sent(&self, bytes: u64) {
        self.wire_sent.fetch_add(bytes, Ordering::Relaxed);
        self.unbooked_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn wire_received(&self, bytes: u64) {
        self.wire_received.fetch_add(bytes, Ordering::Relaxed);
        self.unbooked_received.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn payload_sent(&self, bytes: u64) {
        self.payload_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn payload_received(&self, bytes: u64) {
        self.payload_received.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A job request went out.
    pub fn job_sent(&self) {
        self.jobs_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            wire_sent: self.wire_sent.load(Ordering::Relaxed),
            wire_received: self.wire_received.load(Ordering::Relaxed),
            payload_sent: self.payload_sent.load(Ordering::Relaxed),
            payload_received: self.payload_received.load(Ordering::Relaxed),
            jobs_sent: self.jobs_sent.load(Ordering::Relaxed),
        }
    }

    /// Wire bytes (sent, received) since the last call, for the persistent counts.
    pub fn take_unbooked(&self) -> (u64, u64) {
        (
            self.unbooked_sent.swap(0, Ordering::Relaxed),
            self.unbooked_received.swap(0, Ordering::Relaxed),
        )
    }
}

/// A stream that counts the bytes read from and written to it into a [`Traffic`].
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    traffic: Arc<Traffic>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, traffic: Arc<Traffic>) -> Self {
        Counted { inner, traffic }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.traffic.wire_received(read as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &polled {
            self.traffic.wire_sent(*written as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
