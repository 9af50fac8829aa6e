//! The content-addressable storage: which blobs the engine lacks (FindMissingBlobs),
//! uploading blobs (BatchUpdateBlobs in batches under the engine's
//! `max_batch_total_size_bytes`, ByteStream Write in chunks for a blob over it), and
//! downloading one (BatchReadBlobs or ByteStream Read), every downloaded byte checked
//! against the digest asked for: the engine is not trusted to send what it names.

use std::collections::HashSet;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use proto::content_addressable_storage_client::ContentAddressableStorageClient;
use tonic::Code;
use tonic::transport::Channel;

use super::ReapiClient;
use super::ReapiError;
use super::TRANSFER_BYTES_PER_CALL_TIMEOUT;
use super::client::MAX_MESSAGE_BYTES;
use super::from_proto;
use super::to_proto;
use crate::digest::Digest;

/// Bytes a batch entry takes beside its data, at most: the digest (64 hex digits, a
/// size), the field keys and lengths, a status in a response.
const BATCH_ENTRY_OVERHEAD: u64 = 128;

/// Digests per FindMissingBlobs call (about 1 MB of request).
const FIND_MISSING_CHUNK: usize = 10_000;

/// Bytes per ByteStream WriteRequest.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

impl ReapiClient {
    /// Which of `digests` the CAS lacks, each once. The empty blob is never missing.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, ReapiError> {
        let mut asked = HashSet::new();
        let unique: Vec<Digest> = (digests.iter().copied())
            .filter(|digest| !digest.is_empty() && asked.insert(*digest))
            .collect();
        let mut missing = Vec::new();
        for chunk in unique.chunks(FIND_MISSING_CHUNK) {
            let request = proto::FindMissingBlobsRequest {
                instance_name: self.instance_name.clone(),
                blob_digests: chunk.iter().map(to_proto).collect(),
                digest_function: proto::digest_function::Value::Sha256 as i32,
            };
            let mut cas = self.cas();
            let answer = self
                .unary("FindMissingBlobs", self.call_timeout, async {
                    let request = self.request(request, Some(self.call_timeout));
                    cas.find_missing_blobs(request).await
                })
                .await?;
            for digest in &answer.missing_blob_digests {
                let digest = from_proto("FindMissingBlobs", digest)?;
                // An engine naming blobs we did not ask about gets no upload of them.
                if asked.contains(&digest) && !missing.contains(&digest) {
                    missing.push(digest);
                }
            }
        }
        Ok(missing)
    }

    /// Stores `blobs` (digest and content; the empty blob and repeats are skipped).
    /// Blobs go in BatchUpdateBlobs calls of at most the engine's batch size; a blob
    /// too large for any batch goes alone by ByteStream Write.
    ///
    /// Panics if a content's length is not its digest's size (the caller's bug).
    pub async fn upload(&self, blobs: &[(Digest, &[u8])]) -> Result<(), ReapiError> {
        let budget = self.batch_budget().await?;
        let mut seen = HashSet::new();
        let mut batch: Vec<(Digest, &[u8])> = Vec::new();
        let mut batch_bytes = 0;
        for &(digest, data) in blobs {
            assert_eq!(
                data.len() as u64,
                digest.size_bytes,
                "blob {digest}: wrong length"
            );
            if digest.is_empty() || !seen.insert(digest) {
                continue;
            }
            let cost = digest.size_bytes + BATCH_ENTRY_OVERHEAD;
            if cost > budget {
                self.write_bytestream(digest, data).await?;
                continue;
            }
            if batch_bytes + cost > budget {
                self.batch_update(&batch).await?;
                batch.clear();
                batch_bytes = 0;
            }
            batch.push((digest, data));
            batch_bytes += cost;
        }
        if !batch.is_empty() {
            self.batch_update(&batch).await?;
        }
        Ok(())
    }

    /// The content of blob `digest`, checked against it.
    pub async fn download(&self, digest: &Digest) -> Result<Vec<u8>, ReapiError> {
        if digest.is_empty() {
            return Ok(Vec::new());
        }
        let (call, data) = if digest.size_bytes + BATCH_ENTRY_OVERHEAD > self.batch_budget().await?
        {
            let call = format!("ByteStream.Read of {digest}");
            let data = self.read_bytestream(&call, digest).await?;
            (call, data)
        } else {
            let call = format!("BatchReadBlobs of {digest}");
            let data = self.batch_read(&call, digest).await?;
            (call, data)
        };
        check_content(&call, digest, &data)?;
        Ok(data)
    }

    /// The standard output of an action: inline if the engine put it there, else
    /// from the CAS; checked against its digest either way.
    pub async fn stdout(&self, result: &proto::ActionResult) -> Result<Vec<u8>, ReapiError> {
        let digest = result.stdout_digest.as_ref();
        self.output_stream("stdout", &result.stdout_raw, digest)
            .await
    }

    /// The standard error of an action, as [`ReapiClient::stdout`].
    pub async fn stderr(&self, result: &proto::ActionResult) -> Result<Vec<u8>, ReapiError> {
        let digest = result.stderr_digest.as_ref();
        self.output_stream("stderr", &result.stderr_raw, digest)
            .await
    }

    async fn output_stream(
        &self,
        name: &str,
        inline: &[u8],
        digest: Option<&proto::Digest>,
    ) -> Result<Vec<u8>, ReapiError> {
        let Some(digest) = digest else {
            return Ok(inline.to_vec());
        };
        let digest = from_proto(format!("the action's {name}"), digest)?;
        if inline.is_empty() && !digest.is_empty() {
            return self.download(&digest).await;
        }
        check_content(&format!("the action's inline {name}"), &digest, inline)?;
        Ok(inline.to_vec())
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn bytestream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The bytes of blob entries one batch call may carry.
    async fn batch_budget(&self) -> Result<u64, ReapiError> {
        let limit = self.capabilities().await?.batch_limit();
        // The request's own fields: the instance name, the digest function.
        Ok(limit.saturating_sub(self.instance_name.len() as u64 + 16))
    }

    /// The call timeout for moving `bytes` in one streaming call.
    fn transfer_timeout(&self, bytes: u64) -> Duration {
        let calls = bytes.div_ceil(TRANSFER_BYTES_PER_CALL_TIMEOUT).max(1);
        self.call_timeout * u32::try_from(calls).unwrap_or(u32::MAX)
    }

    /// `instance/` when there is an instance name, for ByteStream resource names.
    fn resource_prefix(&self) -> String {
        match self.instance_name.as_str() {
            "" => String::new(),
            instance => format!("{instance}/"),
        }
    }

    async fn batch_update(&self, batch: &[(Digest, &[u8])]) -> Result<(), ReapiError> {
        let request = proto::BatchUpdateBlobsRequest {
            instance_name: self.instance_name.clone(),
            requests: (batch.iter())
                .map(
                    |(digest, data)| proto::batch_update_blobs_request::Request {
                        digest: Some(to_proto(digest)),
                        data: data.to_vec(),
                        compressor: 0,
                    },
                )
                .collect(),
            digest_function: proto::digest_function::Value::Sha256 as i32,
        };
        let call = format!("BatchUpdateBlobs of {} blobs", batch.len());
        let mut cas = self.cas();
        let answer = self
            .unary(&call, self.call_timeout, async {
                let request = self.request(request, Some(self.call_timeout));
                cas.batch_update_blobs(request).await
            })
            .await?;
        let mut stored = HashSet::new();
        for response in &answer.responses {
            let digest = (response.digest.as_ref())
                .ok_or_else(|| ReapiError::malformed(&call, "an entry without a digest"))
                .and_then(|digest| from_proto(&call, digest))?;
            let what = format!("BatchUpdateBlobs of {digest}");
            if let Some(err) = ReapiError::from_rpc_status(what, response.status.as_ref()) {
                return Err(err);
            }
            stored.insert(digest);
        }
        match batch.iter().find(|(digest, _)| !stored.contains(digest)) {
            Some((digest, _)) => Err(ReapiError::malformed(
                &call,
                format!("no answer for blob {digest}"),
            )),
            None => Ok(()),
        }
    }

    async fn write_bytestream(&self, digest: Digest, data: &[u8]) -> Result<(), ReapiError> {
        let call = format!("ByteStream.Write of {digest}");
        let resource_name = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.resource_prefix(),
            upload_id(),
            digest.hash_hex(),
            digest.size_bytes
        );
        // Owned, for the request stream ('static) to send from.
        let data = data.to_vec();
        let total = data.len();
        let requests = (0..total.div_ceil(WRITE_CHUNK_BYTES)).map(move |index| {
            let start = index * WRITE_CHUNK_BYTES;
            let end = total.min(start + WRITE_CHUNK_BYTES);
            WriteRequest {
                // Named in the first request only, as ByteStream allows.
                resource_name: if index == 0 {
                    resource_name.clone()
                } else {
                    String::new()
                },
                write_offset: start as i64,
                finish_write: end == total,
                data: data[start..end].to_vec(),
            }
        });
        let timeout = self.transfer_timeout(digest.size_bytes);
        let mut bytestream = self.bytestream();
        let answer = self
            .unary(&call, timeout, async {
                let stream = tonic::codegen::tokio_stream::iter(requests);
                bytestream.write(self.request(stream, Some(timeout))).await
            })
            .await?;
        // An engine that already holds the blob may stop the upload early, saying so
        // with the full size; anything else is a short write.
        if answer.committed_size != total as i64 {
            return Err(ReapiError::malformed(
                call,
                format!("{} of {total} bytes committed", answer.committed_size),
            ));
        }
        Ok(())
    }

    async fn batch_read(&self, call: &str, digest: &Digest) -> Result<Vec<u8>, ReapiError> {
        let request = proto::BatchReadBlobsRequest {
            instance_name: self.instance_name.clone(),
            digests: vec![to_proto(digest)],
            acceptable_compressors: Vec::new(),
            digest_function: proto::digest_function::Value::Sha256 as i32,
        };
        let mut cas = self.cas();
        let answer = self
            .unary(call, self.call_timeout, async {
                let request = self.request(request, Some(self.call_timeout));
                cas.batch_read_blobs(request).await
            })
            .await?;
        let wanted = to_proto(digest);
        let response = (answer.responses.into_iter())
            .find(|response| response.digest.as_ref() == Some(&wanted))
            .ok_or_else(|| ReapiError::malformed(call, "no entry for the blob asked for"))?;
        match ReapiError::from_rpc_status(call, response.status.as_ref()) {
            Some(ReapiError::Failed {
                code: Code::NotFound,
                ..
            }) => Err(missing(call, digest)),
            Some(err) => Err(err),
            None => Ok(response.data),
        }
    }

    async fn read_bytestream(&self, call: &str, digest: &Digest) -> Result<Vec<u8>, ReapiError> {
        let request = ReadRequest {
            resource_name: format!(
                "{}blobs/{}/{}",
                self.resource_prefix(),
                digest.hash_hex(),
                digest.size_bytes
            ),
            read_offset: 0,
            read_limit: 0,
        };
        let timeout = self.transfer_timeout(digest.size_bytes);
        let mut bytestream = self.bytestream();
        let read = async {
            let mut stream = bytestream
                .read(self.request(request, Some(timeout)))
                .await?
                .into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = stream.message().await? {
                data.extend_from_slice(&chunk.data);
                // A blob longer than its name says is wrong whatever follows.
                if data.len() as u64 > digest.size_bytes {
                    break;
                }
            }
            Ok::<_, tonic::Status>(data)
        };
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(ReapiError::timed_out(call, timeout)),
            Ok(Err(status)) if status.code() == Code::NotFound => Err(missing(call, digest)),
            Ok(Err(status)) => Err(ReapiError::from_status(call, &status)),
            Ok(Ok(data)) => Ok(data),
        }
    }
}

fn missing(call: &str, digest: &Digest) -> ReapiError {
    ReapiError::MissingBlob {
        call: call.to_owned(),
        digest: *digest,
    }
}

/// Checks that `data` is the blob `expected` names.
fn check_content(call: &str, expected: &Digest, data: &[u8]) -> Result<(), ReapiError> {
    let got = Digest::of(data);
    if got != *expected {
        return Err(ReapiError::CorruptBlob {
            call: call.to_owned(),
            expected: *expected,
            got,
        });
    }
    Ok(())
}

/// A fresh UUID (version 4 layout) for a ByteStream upload's resource name: unique
/// per upload of this process (a counter), and across processes and restarts (the
/// process id and the time), hashed so that it looks like the random UUID it stands for.
fn upload_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static UPLOADS: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        now.as_nanos(),
        UPLOADS.fetch_add(1, Ordering::Relaxed)
    );
    let mut bytes = Digest::of(seed.as_bytes()).hash;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = Digest {
        hash: bytes,
        size_bytes: 0,
    }
    .hash_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_uuids_and_differ() {
        let (first, second) = (upload_id(), upload_id());
        assert_ne!(first, second);
        let groups: Vec<&str> = first.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{first}");
        assert!(groups[2].starts_with('4'), "{first}");
        assert!(matches!(groups[3].as_bytes()[0], b'8'..=b'b'), "{first}");
    }

    #[test]
    fn contents_are_checked_against_their_digest() {
        let digest = Digest::of(b"int x;");
        assert!(check_content("t", &digest, b"int x;").is_ok());
        let err = check_content("t", &digest, b"int y;").unwrap_err();
        assert!(matches!(err, ReapiError::CorruptBlob { .. }), "{err}");
    }
}
