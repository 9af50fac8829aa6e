//! Running an action: Execute, following the stream of operation updates until the
//! operation is done, and taking up a broken stream again: WaitExecution of the
//! operation by name once the engine has named it (the action keeps running on the
//! engine meanwhile), Execute again if it has not or forgot it. The answer is the
//! engine's `ExecuteResponse`; a failed operation or a non-OK status in it is the
//! classified [`ReapiError`].

use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
use bazel_remote_apis::google::longrunning::{Operation, operation};
use prost::Message;
use proto::execution_client::ExecutionClient;
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use super::ReapiClient;
use super::ReapiError;
use super::client::MAX_MESSAGE_BYTES;
use super::to_proto;
use crate::digest::Digest;

/// How often one execute takes up a broken stream before giving up.
const MAX_RESUMES: u32 = 5;

/// The wait before the first resumption; it doubles with each one after.
const FIRST_RESUME_DELAY: Duration = Duration::from_millis(200);

/// `type_url` suffix of the `Any` a done Execute operation answers with.
const EXECUTE_RESPONSE_TYPE: &str = "/build.bazel.remote.execution.v2.ExecuteResponse";

/// How following one operation stream ended.
enum StreamEnd {
    Done(Operation),
    /// The connection or the stream went away before the operation was done.
    Broken(String),
    /// The engine ended the call with an error status.
    Failed(tonic::Status),
}

impl ReapiClient {
    /// Runs the action `action` (its Action, Command and input tree already in the
    /// CAS) and waits for it, however long it queues and runs: the caller bounds the
    /// whole wait if it wants to. With `skip_cache_lookup` false a cached result may
    /// answer (`cached_result` is then true). The response's `result` is present;
    /// the action's own failure (a non-zero exit code) is in it, not an error.
    pub async fn execute(
        &self,
        action: &Digest,
        skip_cache_lookup: bool,
    ) -> Result<proto::ExecuteResponse, ReapiError> {
        let call = format!("Execute of action {action}");
        let mut operation_name: Option<String> = None;
        let mut resumes = 0;
        loop {
            let started = match &operation_name {
                None => self.start(action, skip_cache_lookup).await,
                Some(name) => self.wait(name).await,
            };
            let end = match started {
                Ok(stream) => follow(stream, &mut operation_name).await,
                // A WaitExecution that cannot reach the engine yet is one more break;
                // the first Execute's failure is the caller's to retry.
                Err(status) if operation_name.is_some() && is_break(&status) => {
                    StreamEnd::Broken(status.message().to_owned())
                }
                Err(status) if operation_name.is_some() && status.code() == Code::NotFound => {
                    // The engine forgot the operation: ask again from the start.
                    operation_name = None;
                    StreamEnd::Broken(format!("operation forgotten: {}", status.message()))
                }
                Err(status) => StreamEnd::Failed(status),
            };
            match end {
                StreamEnd::Done(operation) => return finish(&call, operation),
                StreamEnd::Failed(status) => return Err(ReapiError::from_status(&call, &status)),
                StreamEnd::Broken(why) if resumes == MAX_RESUMES => {
                    return Err(ReapiError::Retryable {
                        call,
                        code: Code::Unavailable,
                        message: format!("the operation stream broke {} times: {why}", resumes + 1),
                    });
                }
                StreamEnd::Broken(why) => {
                    tracing::debug!("{call}: stream broken ({why}); resuming");
                    tokio::time::sleep(FIRST_RESUME_DELAY * 2u32.pow(resumes)).await;
                    resumes += 1;
                }
            }
        }
    }

    fn execution(&self) -> ExecutionClient<Channel> {
        ExecutionClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Starts Execute; the stream's first message comes within the call timeout.
    async fn start(
        &self,
        action: &Digest,
        skip_cache_lookup: bool,
    ) -> Result<Streaming<Operation>, tonic::Status> {
        let request = proto::ExecuteRequest {
            instance_name: self.instance_name.clone(),
            skip_cache_lookup,
            action_digest: Some(to_proto(action)),
            digest_function: proto::digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        let mut execution = self.execution();
        let started = execution.execute(self.request(request, None));
        self.bounded(started).await
    }

    /// Takes up the operation `name` again with WaitExecution.
    async fn wait(&self, name: &str) -> Result<Streaming<Operation>, tonic::Status> {
        let request = proto::WaitExecutionRequest {
            name: name.to_owned(),
        };
        let mut execution = self.execution();
        let started = execution.wait_execution(self.request(request, None));
        self.bounded(started).await
    }

    /// Bounds how long a streaming call may take to answer at all.
    async fn bounded(
        &self,
        started: impl Future<Output = Result<tonic::Response<Streaming<Operation>>, tonic::Status>>,
    ) -> Result<Streaming<Operation>, tonic::Status> {
        match tokio::time::timeout(self.call_timeout, started).await {
            Err(_) => Err(tonic::Status::unavailable(format!(
                "no answer within {:?}",
                self.call_timeout
            ))),
            Ok(answer) => answer.map(tonic::Response::into_inner),
        }
    }
}

/// Reads operation updates until one is done, remembering the operation's name.
async fn follow(mut stream: Streaming<Operation>, name: &mut Option<String>) -> StreamEnd {
    loop {
        match stream.message().await {
            Ok(Some(operation)) => {
                if !operation.name.is_empty() {
                    *name = Some(operation.name.clone());
                }
                if operation.done {
                    return StreamEnd::Done(operation);
                }
            }
            Ok(None) => return StreamEnd::Broken("the stream ended before the operation".into()),
            Err(status) if is_break(&status) => {
                return StreamEnd::Broken(status.message().to_owned());
            }
            Err(status) => return StreamEnd::Failed(status),
        }
    }
}

/// Whether a call's failure is the connection's (a lost or refused connection, an
/// engine too busy to answer) rather than the engine's verdict on the request. A
/// status built from a transport error carries that error as its source; one the
/// engine sent has none.
fn is_break(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
        || matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
}

/// The `ExecuteResponse` of a done operation, or the error it stands for.
fn finish(call: &str, operation: Operation) -> Result<proto::ExecuteResponse, ReapiError> {
    let response = match operation.result {
        None => {
            return Err(ReapiError::malformed(
                call,
                "a done operation without a result",
            ));
        }
        Some(operation::Result::Error(status)) => {
            let code = Code::from_i32(status.code);
            return Err(ReapiError::from_code(call, code, status.message));
        }
        Some(operation::Result::Response(any)) => {
            if !any.type_url.ends_with(EXECUTE_RESPONSE_TYPE) {
                let reason = format!("a result of type {:?}", any.type_url);
                return Err(ReapiError::malformed(call, reason));
            }
            proto::ExecuteResponse::decode(any.value.as_slice()).map_err(|err| {
                ReapiError::malformed(call, format!("undecodable ExecuteResponse: {err}"))
            })?
        }
    };
    if let Some(err) = ReapiError::from_rpc_status(call, response.status.as_ref()) {
        return Err(err);
    }
    if response.result.is_none() {
        return Err(ReapiError::malformed(
            call,
            "an ExecuteResponse without a result",
        ));
    }
    Ok(response)
}
