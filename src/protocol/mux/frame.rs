//! Frames: `u32` length, kind, flags, `u64` job id, payload (optionally zstd-compressed).
//!
//! Works over any `AsyncRead`/`AsyncWrite`. Payloads are compressed when that pays:
//! above a small size and only if the result is clearly smaller, so objects that
//! barely compress and tiny control frames cost no CPU.

use std::borrow::Cow;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes before the payload: length (4, counting what follows it), kind, flags, job id.
const HEADER_LEN: usize = 4 + 1 + 1 + 8;
const FLAG_ZSTD: u8 = 1;
/// Below this, compression cannot save a network round trip's worth of bytes.
const COMPRESS_MIN: usize = 512;
/// zstd level 1: 4–5:1 on preprocessed C and ~2.7:1 on objects, compressing nearly as
/// fast as LZO1X-1 and decompressing faster (docs/benchmarks.md, compression section).
const ZSTD_LEVEL: i32 = 1;
/// Frames up to this size are copied into one buffer and written at once.
const COALESCE_MAX: usize = 64 * 1024;
/// Largest payload accepted, compressed or not (a preprocessed file or object).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// One frame, payload uncompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub job: u64,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: u8, job: u64, payload: Vec<u8>) -> Self {
        Frame { kind, job, payload }
    }
}

/// Whether a link's frames may be compressed (worth it over a network, not over a local
/// Unix socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("corrupt compressed frame: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The header and (possibly compressed) body of `frame`, compressing when that pays.
/// Kept apart so that an uncompressed payload is written without being copied.
fn encode_parts(frame: &Frame, compression: Compression) -> ([u8; HEADER_LEN], Cow<'_, [u8]>) {
    let compressed = match compression {
        Compression::Zstd if frame.payload.len() >= COMPRESS_MIN => {
            zstd::bulk::compress(&frame.payload, ZSTD_LEVEL)
                .ok()
                .filter(|packed| packed.len() < frame.payload.len() - frame.payload.len() / 16)
        }
        _ => None,
    };
    let (flags, body) = match compressed {
        Some(packed) => (FLAG_ZSTD, Cow::Owned(packed)),
        None => (0, Cow::Borrowed(frame.payload.as_slice())),
    };
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&((HEADER_LEN - 4 + body.len()) as u32).to_be_bytes());
    header[4] = frame.kind;
    header[5] = flags;
    header[6..].copy_from_slice(&frame.job.to_be_bytes());
    (header, body)
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    compression: Compression,
) -> io::Result<()> {
    let (header, body) = encode_parts(frame, compression);
    if body.len() <= COALESCE_MAX {
        // One write, so a small frame leaves as one SSH packet: two back to back can
        // wait a delayed-ACK round (~40 ms) in a bastion's sshd, which never sets
        // TCP_NODELAY on forwarding-only connections.
        writer.write_all(&[&header[..], &body].concat()).await?;
    } else {
        writer.write_all(&header).await?;
        writer.write_all(&body).await?;
    }
    writer.flush().await
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut length = [0u8; 4];
    let mut filled = 0;
    while filled < length.len() {
        match reader.read(&mut length[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let length = u32::from_be_bytes(length) as usize;
    if length < HEADER_LEN - 4 || length - (HEADER_LEN - 4) > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(length));
    }
    let mut header = [0u8; HEADER_LEN - 4];
    reader
        .read_exact(&mut header)
        .await
        .map_err(eof_is_truncation)?;
    let payload_len = length - header.len();
    // Grow with the bytes that actually arrive rather than trusting the length.
    let mut payload = Vec::with_capacity(payload_len.min(1 << 20));
    (&mut *reader)
        .take(payload_len as u64)
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != payload_len {
        return Err(FrameError::Truncated);
    }
    if header[1] & FLAG_ZSTD != 0 {
        payload = decompress(&payload)?;
    }
    Ok(Some(Frame {
        kind: header[0],
        job: u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")),
        payload,
    }))
}

/// Space reserved up front for a decompressed payload: a frame's declared size is only
/// believed this far, so a 24-byte frame cannot make us reserve a gigabyte.
const RESERVE_LIMIT: usize = 8 << 20;

fn decompress(packed: &[u8]) -> Result<Vec<u8>, FrameError> {
    use std::io::Read;
    let declared = zstd::zstd_safe::get_frame_content_size(packed)
        .map_err(|_| FrameError::Corrupt("unreadable zstd header".into()))?
        .ok_or_else(|| FrameError::Corrupt("zstd frame without a content size".into()))?;
    let declared = usize::try_from(declared).unwrap_or(usize::MAX);
    if declared > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(declared));
    }
    let corrupt = |err: io::Error| FrameError::Corrupt(err.to_string());
    let decoder = zstd::stream::read::Decoder::with_buffer(packed).map_err(corrupt)?;
    let mut payload = Vec::with_capacity(declared.min(RESERVE_LIMIT));
    // One byte more than allowed tells an oversized payload from one exactly at the limit.
    decoder
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(corrupt)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload.len()));
    }
    if payload.len() != declared {
        return Err(FrameError::Corrupt(format!(
            "zstd frame declared {declared} bytes but held {}",
            payload.len()
        )));
    }
    Ok(payload)
}

fn eof_is_truncation(err: io::Error) -> FrameError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &Frame, compression: Compression) -> Vec<u8> {
        let (header, body) = encode_parts(frame, compression);
        [&header[..], &body].concat()
    }

    #[tokio::test]
    async fn frames_round_trip_with_and_without_compression() {
        let source = b"int main(void) { return 0; }\n".repeat(200);
        let frames = [
            Frame::new(2, 7, source.clone()),
            Frame::new(3, u64::MAX, vec![]),
            Frame::new(1, 0, b"tiny".to_vec()),
        ];
        for compression in [Compression::None, Compression::Zstd] {
            let mut stream = Vec::new();
            for frame in &frames {
                stream.extend(encode(frame, compression));
            }
            if compression == Compression::Zstd {
                assert!(stream.len() < source.len() / 4, "source must compress");
            }
            let mut input = &stream[..];
            for frame in &frames {
                assert_eq!(read_frame(&mut input).await.unwrap().as_ref(), Some(frame));
            }
            assert!(read_frame(&mut input).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn incompressible_payloads_travel_raw() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let encoded = encode(&Frame::new(2, 1, noise.clone()), Compression::Zstd);
        assert_eq!(encoded[5], 0, "not flagged as compressed");
        assert_eq!(encoded.len(), HEADER_LEN + noise.len());
    }

    #[tokio::test]
    async fn truncated_oversized_and_corrupt_frames_are_errors() {
        let encoded = encode(&Frame::new(2, 1, vec![1, 2, 3]), Compression::None);
        let mut cut = &encoded[..encoded.len() - 1];
        assert!(matches!(
            read_frame(&mut cut).await,
            Err(FrameError::Truncated)
        ));
        let mut header_only = &encoded[..6];
        assert!(matches!(
            read_frame(&mut header_only).await,
            Err(FrameError::Truncated)
        ));
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            read_frame(&mut huge).await,
            Err(FrameError::TooLarge(_))
        ));
        let mut corrupt = encode(&Frame::new(2, 1, vec![0; 4096]), Compression::Zstd);
        let len = corrupt.len();
        corrupt[len - 4..].copy_from_slice(&[9, 9, 9, 9]);
        let mut input = &corrupt[..];
        assert!(matches!(
            read_frame(&mut input).await,
            Err(FrameError::Corrupt(_))
        ));
    }
}
