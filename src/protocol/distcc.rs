//! distcc requests and responses (`DIST … DOTI` and `DONE … DOTO`).
//!
//! Plain mode only: version 1 sends bodies raw, version 2 LZO-compresses them. A version 3
//! (pump) request is read to its end, so the peer can read our refusal, and reported as
//! [`ProtocolError::PumpUnsupported`].

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::lzo;
use super::packet::{
    Limits, ProtocolError, encode_header, read_any_header, read_body, read_header,
};

/// A distcc protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Plain mode, raw bodies.
    V1,
    /// Plain mode, LZO1X bodies (`,lzo`).
    V2,
    /// Pump mode (`,cpp,lzo`): only ever answered with a refusal.
    V3,
}

impl Version {
    /// The number sent in `DIST` and `DONE`.
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// Whether file bodies are LZO-compressed.
    pub fn compressed(self) -> bool {
        self != Version::V1
    }

    pub fn from_number(number: u32) -> Result<Self, ProtocolError> {
        match number {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            other => Err(ProtocolError::UnsupportedVersion(other)),
        }
    }
}

/// One compile job as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    /// The compiler and its arguments; `argv[0]` is the compiler name.
    pub argv: Vec<String>,
    /// The preprocessed source, uncompressed.
    pub source: Vec<u8>,
}

/// The outcome of a job as the server reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Raw `waitpid` status: `exit << 8`, or the signal number (| 0x80 for a core).
    pub status: u32,
    pub stderr: Vec<u8>,
    pub stdout: Vec<u8>,
    /// The object (or assembly for `-S`); empty when `status` is not zero.
    pub object: Vec<u8>,
}

impl Response {
    /// A failure that never reached the compiler, explained in `stderr`.
    pub fn refusal(exit: crate::exit_code::ExitCode, message: &str) -> Self {
        Response {
            status: exit.wait_status(),
            stderr: message.as_bytes().to_vec(),
            ..Response::default()
        }
    }
}

fn push_file(buf: &mut Vec<u8>, token: &'static str, data: &[u8], version: Version) {
    let compressed;
    let body = if version.compressed() {
        compressed = lzo::compress(data);
        &compressed[..]
    } else {
        data
    };
    encode_header(buf, token, body.len() as u32);
    buf.extend_from_slice(body);
}

fn push_string(buf: &mut Vec<u8>, token: &'static str, text: &str) {
    encode_header(buf, token, text.len() as u32);
    buf.extend_from_slice(text.as_bytes());
}

/// Encodes a request exactly as distcc's client does.
pub fn encode_request(request: &Request) -> Vec<u8> {
    encode_request_as(request, request.version)
}

/// Encodes `request` in `version` whatever version it carries.
pub fn encode_request_as(request: &Request, version: Version) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + request.source.len());
    encode_header(&mut buf, "DIST", version.number());
    encode_header(&mut buf, "ARGC", request.argv.len() as u32);
    for arg in &request.argv {
        push_string(&mut buf, "ARGV", arg);
    }
    push_file(&mut buf, "DOTI", &request.source, version);
    buf
}

/// Encodes a response in `version`. `DOTO` carries no body unless the job succeeded.
pub fn encode_response(version: Version, response: &Response) -> Vec<u8> {
    let mut buf = Vec::with_capacity(80 + response.object.len());
    encode_header(&mut buf, "DONE", version.number());
    encode_header(&mut buf, "STAT", response.status);
    push_file(&mut buf, "SERR", &response.stderr, version);
    push_file(&mut buf, "SOUT", &response.stdout, version);
    let object: &[u8] = if response.status == 0 {
        &response.object
    } else {
        &[]
    };
    push_file(&mut buf, "DOTO", object, version);
    buf
}

/// Writes a request and flushes it.
pub async fn write_request<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &Request,
) -> std::io::Result<()> {
    writer.write_all(&encode_request(request)).await?;
    writer.flush().await
}

/// Writes a response and flushes it.
pub async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: Version,
    response: &Response,
) -> std::io::Result<()> {
    writer
        .write_all(&encode_response(version, response))
        .await?;
    writer.flush().await
}

async fn read_file<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &'static str,
    version: Version,
    limits: &Limits,
) -> Result<Vec<u8>, ProtocolError> {
    let len = read_header(reader, token).await?;
    let body = read_body(reader, token, len, limits.max_file_len).await?;
    if !version.compressed() {
        return Ok(body);
    }
    lzo::decompress(&body, limits.max_file_len).map_err(|err| ProtocolError::Lzo {
        token,
        reason: err.to_string(),
    })
}

async fn read_string<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &'static str,
    index: usize,
    limits: &Limits,
) -> Result<String, ProtocolError> {
    let len = read_header(reader, token).await?;
    let body = read_body(reader, token, len, limits.max_arg_len.into()).await?;
    // distcc turns these into C strings, so a NUL could never mean anything.
    String::from_utf8(body)
        .ok()
        .filter(|text| !text.contains('\0'))
        .ok_or(ProtocolError::BadArgument { index })
}

async fn read_argv<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
) -> Result<Vec<String>, ProtocolError> {
    let argc = read_header(reader, "ARGC").await?;
    if argc == 0 || argc > limits.max_args {
        return Err(ProtocolError::TooLarge {
            what: "ARGC",
            len: argc.into(),
            max: limits.max_args.into(),
        });
    }
    let mut argv = Vec::with_capacity(argc.min(256) as usize);
    for index in 0..argc as usize {
        argv.push(read_string(reader, "ARGV", index, limits).await?);
    }
    Ok(argv)
}

/// Reads one whole request.
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
) -> Result<Request, ProtocolError> {
    let version = Version::from_number(read_header(reader, "DIST").await?)?;
    if version == Version::V3 {
        drain_pump_request(reader, limits).await?;
        return Err(ProtocolError::PumpUnsupported);
    }
    let argv = read_argv(reader, limits).await?;
    let source = read_file(reader, "DOTI", version, limits).await?;
    Ok(Request {
        version,
        argv,
        source,
    })
}

/// Consumes the rest of a pump-mode request (`CDIR`, argv, then `NFIL` × `NAME` +
/// `FILE`|`LINK`) without keeping it.
async fn drain_pump_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    read_string(reader, "CDIR", 0, limits).await?;
    read_argv(reader, limits).await?;
    let files = read_header(reader, "NFIL").await?;
    for index in 0..files as usize {
        read_string(reader, "NAME", index, limits).await?;
        let (token, len) = read_any_header(reader, "FILE or LINK").await?;
        let (token, max) = match &token {
            b"FILE" => ("FILE", limits.max_file_len),
            b"LINK" => ("LINK", limits.max_arg_len.into()),
            other => {
                return Err(ProtocolError::UnexpectedToken {
                    expected: "FILE or LINK",
                    got: String::from_utf8_lossy(other).into_owned(),
                });
            }
        };
        read_body(reader, token, len, max).await?;
    }
    Ok(())
}

/// Reads the server's answer to a request sent in `version`.
pub async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut R,
    version: Version,
    limits: &Limits,
) -> Result<Response, ProtocolError> {
    let done = read_header(reader, "DONE").await?;
    if done != version.number() {
        return Err(ProtocolError::UnsupportedVersion(done));
    }
    let status = read_header(reader, "STAT").await?;
    let stderr = read_file(reader, "SERR", version, limits).await?;
    let stdout = read_file(reader, "SOUT", version, limits).await?;
    let object = read_file(reader, "DOTO", version, limits).await?;
    Ok(Response {
        status,
        stderr,
        stdout,
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/distcc-vectors/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    async fn decode_request(bytes: &[u8]) -> Result<Request, ProtocolError> {
        let mut input = bytes;
        let request = read_request(&mut input, &Limits::default()).await;
        assert!(
            request.is_err() || input.is_empty(),
            "request left bytes unread"
        );
        request
    }

    #[tokio::test]
    async fn captured_requests_round_trip_byte_for_byte() {
        for (name, version, source) in [
            ("ex_req_v1.bin", Version::V1, &b"int x;\n"[..]),
            ("ex_req_v2.bin", Version::V2, b"int x;\n"),
            ("ex_req_err_v1.bin", Version::V1, b"int x = ;\n"),
            ("ex_req_err_v2.bin", Version::V2, b"int x = ;\n"),
        ] {
            let bytes = vector(name);
            let request = decode_request(&bytes).await.unwrap();
            assert_eq!(request.version, version, "{name}");
            assert_eq!(request.argv, ["gcc", "-c", "x.c", "-o", "x.o"], "{name}");
            assert_eq!(request.source, source, "{name}");
            assert_eq!(encode_request(&request), bytes, "{name}");
        }
    }

    #[tokio::test]
    async fn real_client_requests_round_trip_including_our_lzo_output() {
        for (name, version) in [
            ("real_client_req_v1_hello2.bin", Version::V1),
            ("real_client_req_v2_hello2.bin", Version::V2),
        ] {
            let bytes = vector(name);
            let request = decode_request(&bytes).await.unwrap();
            assert_eq!(request.version, version);
            assert_eq!(
                request.argv,
                ["x86_64-linux-gnu-gcc", "-c", "hello2.c", "-o", "hello2.o"]
            );
            assert_eq!(encode_request(&request), bytes, "{name}");
        }
    }

    #[tokio::test]
    async fn captured_responses_decode_and_re_encode() {
        for (name, version, status) in [
            ("ex_resp_v1.bin", Version::V1, 0),
            ("ex_resp_v2.bin", Version::V2, 0),
            ("ex_resp_err_v1.bin", Version::V1, 0x100),
            ("ex_resp_err_v2.bin", Version::V2, 0x100),
        ] {
            let bytes = vector(name);
            let mut input = &bytes[..];
            let response = read_response(&mut input, version, &Limits::default())
                .await
                .unwrap();
            assert!(input.is_empty(), "{name}");
            assert_eq!(response.status, status, "{name}");
            if status == 0 {
                assert_eq!(response.object.len(), 848, "{name}");
                assert_eq!(&response.object[..4], b"\x7fELF");
            } else {
                let text = String::from_utf8_lossy(&response.stderr);
                assert!(
                    text.contains("error: expected expression"),
                    "{name}: {text}"
                );
            }
            let again = encode_response(version, &response);
            let mut input = &again[..];
            let decoded = read_response(&mut input, version, &Limits::default())
                .await
                .unwrap();
            assert_eq!(decoded, response, "{name}");
            if version == Version::V1 {
                assert_eq!(again, bytes, "{name}");
            }
        }
    }

    #[tokio::test]
    async fn pump_request_is_consumed_then_refused() {
        let bytes = vector("ex_req_v3.bin");
        let mut input = &bytes[..];
        let err = read_request(&mut input, &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::PumpUnsupported));
        assert!(input.is_empty(), "the whole v3 request must be read");
    }

    #[tokio::test]
    async fn malformed_requests_are_typed_errors() {
        let good = vector("ex_req_v1.bin");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "version 9",
                [b"DIST00000009".as_slice(), &good[12..]].concat(),
            ),
            ("truncated", good[..good.len() - 3].to_vec()),
            (
                "wrong order",
                [&good[..12], b"ARGV00000003gcc".as_slice()].concat(),
            ),
            (
                "argc zero",
                [&good[..12], b"ARGC00000000".as_slice()].concat(),
            ),
            (
                "argc absurd",
                [&good[..12], b"ARGCffffffff".as_slice()].concat(),
            ),
            (
                "arg absurd",
                [&good[..24], b"ARGVfffffff0".as_slice(), b"gcc"].concat(),
            ),
            (
                "doti absurd",
                [&good[..good.len() - 19], b"DOTIfffffff0int x;\n".as_slice()].concat(),
            ),
            (
                "corrupt lzo",
                [
                    b"DIST00000002".as_slice(),
                    &good[12..good.len() - 19],
                    b"DOTI00000004\x18int",
                ]
                .concat(),
            ),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            let err = decode_request(&bytes).await.unwrap_err();
            let expected = match what {
                "version 9" => matches!(err, ProtocolError::UnsupportedVersion(9)),
                "truncated" | "empty" | "doti absurd" | "arg absurd" => {
                    matches!(
                        err,
                        ProtocolError::Truncated { .. } | ProtocolError::TooLarge { .. }
                    )
                }
                "wrong order" => matches!(err, ProtocolError::UnexpectedToken { .. }),
                "argc zero" | "argc absurd" => matches!(err, ProtocolError::TooLarge { .. }),
                "corrupt lzo" => matches!(err, ProtocolError::Lzo { .. }),
                _ => unreachable!(),
            };
            assert!(expected, "{what}: {err}");
        }
    }
}
