//! sshcc's extension of a distcc request, exchanged only between sshcc peers (wrapper →
//! daemon → `sshcc --mux`), never sent to a stock distccd.
//!
//! After the request's `DOTI` come the client's locale (so diagnostics use the same
//! quotes and language as a local compile) and the project's own source files named in
//! the preprocessed output's line markers (so diagnostics can quote the offending source
//! line, which the compiler reads from disk). Both reuse distcc's packet framing.

use super::distcc::{Request, Version, encode_request_as, read_request};
use super::packet::{Limits, ProtocolError, encode_header, read_body, read_header};

/// Environment variables the client may pass to the box's compiler: locale only, which
/// changes messages and nothing in the object.
pub const PASSED_ENVIRONMENT: &[&str] = &["LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES"];

/// At most this much source is shipped with one job; beyond it diagnostics simply
/// lack the quoted line, as distcc's always do.
pub const MAX_SIDE_FILE_BYTES: usize = 8 << 20;
pub const MAX_SIDE_FILES: u32 = 4096;
/// Longest side-file path accepted.
pub const MAX_SIDE_FILE_NAME: u32 = 4096;

/// A file placed in the job's directory at a relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// What accompanies a request between sshcc peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    pub env: Vec<(String, String)>,
    pub files: Vec<SideFile>,
}

impl JobContext {
    /// The locale of this process, to reproduce on the box.
    pub fn with_local_locale() -> Self {
        let env = PASSED_ENVIRONMENT
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .map(|value| (name.to_string(), value))
            })
            .collect();
        JobContext {
            env,
            files: Vec::new(),
        }
    }
}

/// Encodes `request` (as protocol 1) followed by `context`.
pub fn encode_job(request: &Request, context: &JobContext) -> Vec<u8> {
    let mut buf = encode_request_as(request, Version::V1);
    encode_header(&mut buf, "ENVC", context.env.len() as u32);
    for (name, value) in &context.env {
        let pair = format!("{name}={value}");
        encode_header(&mut buf, "ENVV", pair.len() as u32);
        buf.extend_from_slice(pair.as_bytes());
    }
    encode_header(&mut buf, "NFIL", context.files.len() as u32);
    for file in &context.files {
        encode_header(&mut buf, "NAME", file.path.len() as u32);
        buf.extend_from_slice(file.path.as_bytes());
        encode_header(&mut buf, "FILE", file.contents.len() as u32);
        buf.extend_from_slice(&file.contents);
    }
    buf
}

/// Decodes what [`encode_job`] wrote; a plain request without context is accepted too.
/// Environment names outside [`PASSED_ENVIRONMENT`] are dropped.
pub async fn decode_job(
    payload: &[u8],
    limits: &Limits,
) -> Result<(Request, JobContext), ProtocolError> {
    let mut input = payload;
    let request = read_request(&mut input, limits).await?;
    let mut context = JobContext::default();
    if input.is_empty() {
        return Ok((request, context));
    }
    let count = read_header(&mut input, "ENVC").await?;
    for _ in 0..count.min(64) {
        let len = read_header(&mut input, "ENVV").await?;
        let pair = read_body(&mut input, "ENVV", len, limits.max_arg_len.into()).await?;
        let pair = String::from_utf8_lossy(&pair).into_owned();
        if let Some((name, value)) = pair.split_once('=')
            && PASSED_ENVIRONMENT.contains(&name)
            && !value.contains('\0')
        {
            context.env.push((name.to_string(), value.to_string()));
        }
    }
    let count = read_header(&mut input, "NFIL").await?;
    if count > MAX_SIDE_FILES {
        return Err(ProtocolError::TooLarge {
            what: "NFIL",
            len: count.into(),
            max: MAX_SIDE_FILES.into(),
        });
    }
    let mut total = 0usize;
    for _ in 0..count {
        let len = read_header(&mut input, "NAME").await?;
        let path = read_body(&mut input, "NAME", len, MAX_SIDE_FILE_NAME.into()).await?;
        let len = read_header(&mut input, "FILE").await?;
        let contents = read_body(&mut input, "FILE", len, MAX_SIDE_FILE_BYTES as u64).await?;
        total += contents.len();
        if total > MAX_SIDE_FILE_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "side files",
                len: total as u64,
                max: MAX_SIDE_FILE_BYTES as u64,
            });
        }
        if let Ok(path) = String::from_utf8(path) {
            context.files.push(SideFile { path, contents });
        }
    }
    Ok((request, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_round_trip_and_plain_requests_still_decode() {
        let request = Request {
            version: Version::V1,
            argv: vec!["gcc".into(), "-c".into(), "a.c".into()],
            source: b"int a;\n".to_vec(),
        };
        let context = JobContext {
            env: vec![("LANG".into(), "C.UTF-8".into())],
            files: vec![SideFile {
                path: "src/a.c".into(),
                contents: b"int a;\n".to_vec(),
            }],
        };
        let decoded = decode_job(&encode_job(&request, &context), &Limits::default())
            .await
            .unwrap();
        assert_eq!(decoded, (request.clone(), context));
        let plain = decode_job(
            &crate::protocol::distcc::encode_request(&request),
            &Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(plain, (request, JobContext::default()));
    }

    #[tokio::test]
    async fn only_locale_variables_pass() {
        let request = Request {
            version: Version::V1,
            argv: vec!["gcc".into()],
            source: vec![],
        };
        let context = JobContext {
            env: vec![
                ("LD_PRELOAD".into(), "/tmp/evil.so".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            files: vec![],
        };
        let (_, decoded) = decode_job(&encode_job(&request, &context), &Limits::default())
            .await
            .unwrap();
        assert_eq!(decoded.env, [("LC_ALL".to_string(), "C".to_string())]);
    }
}
