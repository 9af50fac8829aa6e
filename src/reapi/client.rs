//! The connection to one engine ([`ReapiClient`]): building requests (instance name,
//! `authorization` header, deadline), bounding unary calls by the call timeout and
//! classifying their failures, GetCapabilities, and the action cache. The CAS and
//! Execute calls are in `cas` and `execute`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
use proto::action_cache_client::ActionCacheClient;
use proto::capabilities_client::CapabilitiesClient;
use proto::digest_function;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::Authorization;
use super::Endpoint;
use super::ReapiError;
use super::to_proto;
use crate::digest::Digest;

/// Largest gRPC message we accept or send. tonic's default (4 MiB) is below what a
/// batch of `max_batch_total_size_bytes` (often just under 4 MiB) plus its framing
/// can reach, and engines advertise larger batches too.
pub(super) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The `authorization` header of `value`, marked sensitive (never logged).
fn header(value: Option<&Authorization>) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
    value
        .map(|value| {
            let mut header = MetadataValue::try_from(value.0.as_str())
                .context("the REAPI authorization value is not a valid header value")?;
            header.set_sensitive(true);
            anyhow::Ok(header)
        })
        .transpose()
}

/// Batch size used when an engine advertises no limit: gRPC's usual message limit.
const DEFAULT_BATCH_BYTES: u64 = 4 << 20;

/// A client of one REAPI engine's instance. Cloning is cheap and clones share the
/// connection.
#[derive(Clone, Debug)]
pub struct ReapiClient {
    pub(super) channel: Channel,
    pub(super) instance_name: String,
    authorization: Option<MetadataValue<Ascii>>,
    pub(super) call_timeout: Duration,
    capabilities: Arc<tokio::sync::OnceCell<Capabilities>>,
}

/// What an engine says it supports (GetCapabilities), as far as this client cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The most bytes one BatchUpdateBlobs or BatchReadBlobs may carry; 0 when the
    /// engine sets no limit.
    pub max_batch_total_size_bytes: u64,
    /// Digest functions of the CAS and of execution, deduplicated.
    pub digest_functions: Vec<digest_function::Value>,
    /// Whether the engine executes actions (a cache-only engine does not).
    pub exec_enabled: bool,
    /// Whether clients may write the action cache.
    pub action_cache_update_enabled: bool,
}

impl Capabilities {
    /// Whether the engine takes SHA-256 digests, the only function this client speaks.
    pub fn supports_sha256(&self) -> bool {
        self.digest_functions
            .contains(&digest_function::Value::Sha256)
    }

    /// The byte budget of one batch call.
    pub(super) fn batch_limit(&self) -> u64 {
        match self.max_batch_total_size_bytes {
            0 => DEFAULT_BATCH_BYTES,
            limit => limit,
        }
    }
}

impl ReapiClient {
    /// A client of `endpoint`. Nothing is sent yet: an unreachable engine shows as a
    /// retryable error of the first call. Fails on bad settings only (TLS files that
    /// cannot be read, an authorization value that is not a valid header). Must be
    /// called inside a tokio runtime, which the connection's task runs on.
    pub fn connect(endpoint: &Endpoint) -> anyhow::Result<ReapiClient> {
        Ok(ReapiClient {
            channel: endpoint.channel()?,
            instance_name: endpoint.instance_name.clone(),
            authorization: header(endpoint.authorization.as_ref())?,
            call_timeout: endpoint.call_timeout,
            capabilities: Arc::default(),
        })
    }

    /// This client with another `authorization` value (a token fetched again), on the
    /// same connection.
    pub fn with_authorization(
        &self,
        authorization: Option<&Authorization>,
    ) -> anyhow::Result<ReapiClient> {
        Ok(ReapiClient {
            authorization: header(authorization)?,
            ..self.clone()
        })
    }

    /// The engine's capabilities (asked once per client, then remembered).
    pub async fn capabilities(&self) -> Result<Capabilities, ReapiError> {
        self.capabilities
            .get_or_try_init(|| self.fetch_capabilities())
            .await
            .cloned()
    }

    async fn fetch_capabilities(&self) -> Result<Capabilities, ReapiError> {
        let request = proto::GetCapabilitiesRequest {
            instance_name: self.instance_name.clone(),
        };
        let mut client = CapabilitiesClient::new(self.channel.clone());
        let answer = self
            .unary("GetCapabilities", self.call_timeout, async {
                client
                    .get_capabilities(self.request(request, Some(self.call_timeout)))
                    .await
            })
            .await?;
        let cache = answer.cache_capabilities.unwrap_or_default();
        let execution = answer.execution_capabilities.unwrap_or_default();
        let mut digest_functions = Vec::new();
        let advertised = (cache.digest_functions.iter())
            .chain(&execution.digest_functions)
            .chain([&execution.digest_function]);
        for &value in advertised {
            if let Ok(function) = digest_function::Value::try_from(value)
                && function != digest_function::Value::Unknown
                && !digest_functions.contains(&function)
            {
                digest_functions.push(function);
            }
        }
        Ok(Capabilities {
            max_batch_total_size_bytes: u64::try_from(cache.max_batch_total_size_bytes)
                .unwrap_or(0),
            digest_functions,
            exec_enabled: execution.exec_enabled,
            action_cache_update_enabled: cache
                .action_cache_update_capabilities
                .is_some_and(|update| update.update_enabled),
        })
    }

    /// The cached result of the action `action`, or None if the cache has none
    /// (NOT_FOUND). Small stdout and stderr come inline when the engine allows.
    pub async fn get_action_result(
        &self,
        action: &Digest,
    ) -> Result<Option<proto::ActionResult>, ReapiError> {
        let request = proto::GetActionResultRequest {
            instance_name: self.instance_name.clone(),
            action_digest: Some(to_proto(action)),
            inline_stdout: true,
            inline_stderr: true,
            ..Default::default()
        };
        let mut client = ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let call = format!("GetActionResult of {action}");
        let answer = self
            .unary(&call, self.call_timeout, async {
                (client.get_action_result(self.request(request, Some(self.call_timeout)))).await
            })
            .await;
        match answer {
            Ok(result) => Ok(Some(result)),
            Err(ReapiError::Failed {
                code: Code::NotFound,
                ..
            }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `message` as a request carrying our authorization header and, if given, the
    /// deadline the engine should give up at (gRPC's `grpc-timeout`).
    pub(super) fn request<T>(&self, message: T, deadline: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Awaits a call that must answer within `timeout`, classifying its failure.
    pub(super) async fn unary<T>(
        &self,
        call: &str,
        timeout: Duration,
        answer: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ReapiError> {
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(ReapiError::timed_out(call, timeout)),
            Ok(Err(status)) => Err(ReapiError::from_status(call, &status)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }
}
