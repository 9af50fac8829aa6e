//! distcc packet framing: a 4-byte token, 8 hex digits, then an optional body.
//!
//! The value is either a count/status or the length of the body that follows. Bodies are
//! read incrementally and checked against [`Limits`], so a peer that announces a huge
//! length cannot make us allocate memory it has not actually sent.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::exit_code::ExitCode;

/// Length of a packet header: token plus eight hex digits.
pub const HEADER_LEN: usize = 12;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection closed while waiting for {expected}")]
    Truncated { expected: &'static str },
    #[error("protocol derailment: expected token {expected}, got {got:?}")]
    UnexpectedToken { expected: &'static str, got: String },
    #[error("bad number in {token} header: {digits:?}")]
    BadNumber { token: &'static str, digits: String },
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u32),
    #[error(
        "protocol version 3 (distcc pump mode, ',cpp') is not supported by sshcc; \
         drop ',cpp' from the host entry"
    )]
    PumpUnsupported,
    #[error("argument {index} is not valid UTF-8 or contains a NUL byte")]
    BadArgument { index: usize },
    #[error("corrupt LZO data in {token}: {reason}")]
    Lzo { token: &'static str, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ProtocolError {
    /// The distcc exit code that describes this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ProtocolError::Truncated { .. } => ExitCode::Truncated,
            ProtocolError::Io(_) => ExitCode::IoError,
            ProtocolError::TooLarge { .. } => ExitCode::OutOfMemory,
            ProtocolError::PumpUnsupported | ProtocolError::BadArgument { .. } => {
                ExitCode::BadArguments
            }
            _ => ExitCode::ProtocolError,
        }
    }
}

/// Bounds on what a peer may make us hold in memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum number of argv words.
    pub max_args: u32,
    /// Maximum bytes of one argv word (Linux's own limit is 128 KiB).
    pub max_arg_len: u32,
    /// Maximum size of a file body (source, object, compiler output), before and after
    /// decompression.
    pub max_file_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_args: 65_536,
            max_arg_len: 1 << 20,
            max_file_len: 1 << 30,
        }
    }
}

/// Writes one header with `value` in lower-case hex, as distcc does.
pub fn encode_header(buf: &mut Vec<u8>, token: &'static str, value: u32) {
    debug_assert_eq!(token.len(), 4);
    buf.extend_from_slice(token.as_bytes());
    buf.extend_from_slice(format!("{value:08x}").as_bytes());
}

/// Writes a header followed by its body; the value is the body length.
pub async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    token: &'static str,
    body: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "body exceeds 4 GiB"))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    encode_header(&mut header, token, len);
    writer.write_all(&header).await?;
    writer.write_all(body).await
}

/// Reads a header, insists on `token` and returns its value.
pub async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &'static str,
) -> Result<u32, ProtocolError> {
    let (got, value) = read_any_header(reader, token).await?;
    if got != token.as_bytes() {
        return Err(ProtocolError::UnexpectedToken {
            expected: token,
            got: String::from_utf8_lossy(&got).into_owned(),
        });
    }
    Ok(value)
}

/// Reads a header whose token is one of several possibilities (the caller checks which).
/// `expecting` names what we were waiting for, for the error message.
pub async fn read_any_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    expecting: &'static str,
) -> Result<([u8; 4], u32), ProtocolError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_truncated(reader, &mut header, expecting).await?;
    let mut token = [0u8; 4];
    token.copy_from_slice(&header[..4]);
    let digits = &header[4..];
    // distcc parses with strtoul(…, 16) and requires all eight characters to be consumed,
    // so upper-case hex is legal on input; we always emit lower-case.
    let value = std::str::from_utf8(digits)
        .ok()
        .filter(|text| text.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|text| u32::from_str_radix(text, 16).ok())
        .ok_or_else(|| ProtocolError::BadNumber {
            token: expecting,
            digits: String::from_utf8_lossy(digits).into_owned(),
        })?;
    Ok((token, value))
}

/// Reads exactly `len` body bytes without trusting `len` for the allocation size.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &'static str,
    len: u32,
    max: u64,
) -> Result<Vec<u8>, ProtocolError> {
    if u64::from(len) > max {
        return Err(ProtocolError::TooLarge {
            what: token,
            len: len.into(),
            max,
        });
    }
    // Grow with the data actually received instead of reserving the announced length.
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    (&mut *reader)
        .take(len.into())
        .read_to_end(&mut body)
        .await?;
    if body.len() != len as usize {
        return Err(ProtocolError::Truncated { expected: token });
    }
    Ok(body)
}

async fn read_exact_or_truncated<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    expecting: &'static str,
) -> Result<(), ProtocolError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(ProtocolError::Truncated {
            expected: expecting,
        }),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_accepts_upper_case_and_emits_lower_case() {
        let mut input: &[u8] = b"DOTO0000ABCD";
        assert_eq!(read_header(&mut input, "DOTO").await.unwrap(), 0xabcd);
        let mut out = Vec::new();
        encode_header(&mut out, "DOTO", 0xabcd);
        assert_eq!(out, b"DOTO0000abcd");
    }

    #[tokio::test]
    async fn header_rejects_signs_spaces_and_short_input() {
        for bad in [&b"ARGC+0000001"[..], b"ARGC 0000001", b"ARGC0x000001"] {
            let mut input = bad;
            assert!(matches!(
                read_header(&mut input, "ARGC").await,
                Err(ProtocolError::BadNumber { .. })
            ));
        }
        let mut short: &[u8] = b"ARGC000";
        assert!(matches!(
            read_header(&mut short, "ARGC").await,
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[tokio::test]
    async fn announced_length_beyond_data_is_truncation_not_allocation() {
        let mut input: &[u8] = b"abc";
        let err = read_body(&mut input, "DOTI", u32::MAX, u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Truncated { .. }));
        let mut input: &[u8] = b"abc";
        let err = read_body(&mut input, "DOTI", 4096, 1024).await.unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }));
    }
}
