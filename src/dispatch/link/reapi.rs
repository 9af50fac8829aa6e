//! A Remote Execution API engine as a host (issue 14): opening it (settings from
//! config.toml, GetCapabilities as the reachability check) and running one
//! preprocessed job on it as an action, the way REAPI clients do: a `Command` naming
//! the local compiler's absolute path and its toolchain fingerprint, an input root of
//! the one preprocessed file, the action cache looked up first, FindMissingBlobs then
//! the uploads, Execute (resumed by WaitExecution inside the client), and the object
//! fetched from the CAS and checked against its digest. The answer is the distcc
//! `Response` a box would have sent, so the wrapper's path is the same for every host.
//! The retries, the cache lookup and execution are shared with `reapi_remote`, which
//! runs remote-preprocessed jobs on engines that opted in.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::host_link::{HostLink, LinkError, ReapiEndpoint, Transport};
use super::meter::LinkMeter;
use crate::compiler::{args, source};
use crate::config::{ReapiCache, ReapiConfig};
use crate::digest::Digest;
use crate::mux::client::{JobEvent, Observer};
use crate::protocol::Response;
use crate::reapi::{BuiltAction, CommandSpec, Endpoint, ReapiClient, ReapiError, proto};
use crate::server::argument_policy;
use crate::toolchain::Fingerprint;
use crate::tree::{Entry, InputTree, Timestamp};

/// The platform property carrying the toolchain fingerprint: workers that advertise
/// it are matched on it, and it names the compiler in the action's digest, so the
/// shared cache never answers one compiler's job with another's object.
pub const TOOLCHAIN_PROPERTY: &str = "sshcc-toolchain";

/// The search path of the action's command: the compiler is named by absolute path,
/// this is where its driver finds `as`.
pub(super) const ACTION_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long the engine may run one compile before killing it.
pub(super) const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Attempts of a job whose calls the engine answered "unavailable" or "overloaded".
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; it doubles after, with ±50 % jitter.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

impl HostLink {
    /// Opens the engine at `url` (a host list's `reapi://HOST:PORT`) with `config`:
    /// fails when it cannot be reached, refuses us, does not execute, or does not
    /// speak SHA-256. The GetCapabilities call's time is the first round trip.
    pub async fn reapi(
        url: &str,
        config: &ReapiConfig,
        meter: Arc<LinkMeter>,
    ) -> anyhow::Result<Self> {
        // A credential helper may take a while: not on a runtime thread.
        let endpoint = {
            let (url, config) = (url.to_string(), config.clone());
            tokio::task::spawn_blocking(move || Endpoint::configured(&url, &config)).await??
        };
        let client = ReapiClient::connect(&endpoint)?;
        let asking = Instant::now();
        let capabilities = client
            .capabilities()
            .await
            .with_context(|| format!("cannot use the REAPI engine {url}"))?;
        meter.record_rtt(asking.elapsed());
        if !capabilities.exec_enabled {
            anyhow::bail!("{url} is a cache only: it does not execute actions");
        }
        if !capabilities.supports_sha256() {
            anyhow::bail!("{url} does not take SHA-256 digests, the only ones sshcc uses");
        }
        let platform = if config.platform.is_empty() {
            vec![
                ("OSFamily".to_string(), std::env::consts::OS.to_string()),
                ("ISA".to_string(), std::env::consts::ARCH.replace('_', "-")),
            ]
        } else {
            config.platform.clone().into_iter().collect()
        };
        tracing::info!("{url}: REAPI engine, instance {:?}", endpoint.instance_name);
        Ok(HostLink {
            label: url.to_string(),
            transport: Transport::Reapi(Box::new(ReapiEndpoint {
                client: std::sync::RwLock::new((0, client)),
                refreshing: tokio::sync::Mutex::new(()),
                config: config.clone(),
                platform,
            })),
            meter,
            in_flight: AtomicUsize::new(0),
            identities: Default::default(),
            retired: AtomicBool::new(false),
        })
    }

    /// Runs the preprocessed job `request` on the engine as the compiler of
    /// `toolchain`, in the client's `locale` (so messages read as here), retrying with
    /// backoff while the engine is unavailable, and once with a token fetched again
    /// when the engine refuses one a credential helper gave (it may have expired).
    pub(super) async fn run_reapi(
        &self,
        endpoint: &ReapiEndpoint,
        request: &crate::protocol::Request,
        locale: &[(String, String)],
        toolchain: Option<&Fingerprint>,
        observer: Option<&Observer>,
    ) -> Result<Response, LinkError> {
        let toolchain = toolchain.ok_or_else(|| LinkError(self.no_fingerprint()))?;
        let job = ActionJob::new(
            request,
            locale,
            toolchain,
            &endpoint.platform,
            endpoint.cache(),
        )
        .map_err(|why| LinkError(format!("{}: {why}", self.label())))?;
        self.with_retries(endpoint, |client| {
            let job = &job;
            async move { self.run_action(&client, job, observer).await }
        })
        .await
        .map_err(LinkError)
    }

    /// Why a job cannot become an action: the local compiler has no fingerprint.
    pub(super) fn no_fingerprint(&self) -> String {
        format!(
            "{}: a REAPI job names its compiler by fingerprint, and the local compiler has \
             none (not found, or toolchain_check = \"off\")",
            self.label()
        )
    }

    /// Runs `attempt` with the engine's client, again with backoff while the engine is
    /// unavailable, and once with a token fetched again when the engine refuses one a
    /// credential helper gave (it may have expired). `Err` says why, naming the engine.
    pub(super) async fn with_retries<T, Attempt>(
        &self,
        endpoint: &ReapiEndpoint,
        attempt: impl Fn(ReapiClient) -> Attempt,
    ) -> Result<T, String>
    where
        Attempt: Future<Output = Result<T, ReapiError>>,
    {
        let mut delay = FIRST_RETRY_DELAY;
        let mut refreshed = false;
        for attempt_number in 1..=ATTEMPTS {
            let (generation, client) = endpoint.client();
            match attempt(client).await {
                Ok(answer) => return Ok(answer),
                Err(err @ ReapiError::Refused { .. })
                    if !refreshed
                        && attempt_number < ATTEMPTS
                        && endpoint.config.authorization_command.is_some() =>
                {
                    refreshed = true;
                    tracing::info!(
                        "{}: {err}; asking the credential helper again",
                        self.label()
                    );
                    endpoint
                        .refresh_token(self.label(), generation)
                        .await
                        .map_err(|err| format!("{err:#}"))?;
                }
                Err(err) if err.is_retryable() && attempt_number < ATTEMPTS => {
                    let wait = jittered(delay);
                    tracing::info!("{}: {err}; trying again in {wait:?}", self.label());
                    tokio::time::sleep(wait).await;
                    delay *= 2;
                }
                Err(err) => return Err(format!("{}: {err}", self.label())),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn run_action(
        &self,
        client: &ReapiClient,
        job: &ActionJob,
        observer: Option<&Observer>,
    ) -> Result<Response, ReapiError> {
        let cacheable = job.cacheable.build();
        tracing::debug!("{}: action {}", self.label(), cacheable.action_digest);
        if let Some(result) = cached_result(client, &cacheable.action_digest, job.cache).await?
            && let Some(response) =
                unless_stale(self.label(), self.response(client, &result, job).await)?
        {
            self.cache_hit();
            return Ok(response);
        }
        let action = uncached_if_asked(&job.cacheable, cacheable, job.cache);
        let mut blobs: Vec<(Digest, &[u8])> = (job.tree.directories())
            .map(|(digest, blob)| (*digest, blob))
            .collect();
        blobs.push((job.source_digest, &job.source));
        blobs.extend(action.blobs());
        let digests: Vec<Digest> = blobs.iter().map(|(digest, _)| *digest).collect();
        let missing = client.find_missing(&digests).await?;
        let upload: Vec<(Digest, &[u8])> = (blobs.into_iter())
            .filter(|(digest, _)| missing.contains(digest))
            .collect();
        client.upload(&upload).await?;
        self.sent(&upload, observer);
        let result = self.execute(client, &action, observer).await?;
        self.response(client, &result, job)
            .await?
            .ok_or_else(|| ReapiError::Malformed {
                call: format!("Execute of action {}", action.action_digest),
                reason: format!("the compiler exited 0 but the result has no {}", job.output),
            })
    }

    /// Counts an answer taken from the action cache.
    pub(super) fn cache_hit(&self) {
        self.meter.reapi_cache_hits.fetch_add(1, Ordering::Relaxed);
        self.meter.traffic.job_sent();
    }

    /// Counts an upload of the action's blobs as the job sent.
    pub(super) fn sent(&self, upload: &[(Digest, &[u8])], observer: Option<&Observer>) {
        let traffic = &self.meter.traffic;
        let uploaded: u64 = upload.iter().map(|(_, data)| data.len() as u64).sum();
        traffic.job_sent();
        traffic.payload_sent(uploaded);
        traffic.wire_sent(uploaded);
        if let Some(observer) = observer {
            observer(JobEvent::Sent);
        }
    }

    /// Executes `action`, whose inputs are uploaded, and returns its result.
    pub(super) async fn execute(
        &self,
        client: &ReapiClient,
        action: &BuiltAction,
        observer: Option<&Observer>,
    ) -> Result<proto::ActionResult, ReapiError> {
        // The lookup before already missed; the engine need not look again, and must
        // not take a cached answer when the cache is off.
        let executed = client.execute(&action.action_digest, true).await?;
        if let Some(observer) = observer {
            observer(JobEvent::Answering);
        }
        if executed.cached_result {
            self.meter.reapi_cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(executed.result.unwrap_or_default())
    }

    /// Counts what came back of an action's result.
    pub(super) fn received(&self, bytes: usize) {
        self.meter.traffic.payload_received(bytes as u64);
        self.meter.traffic.wire_received(bytes as u64);
    }

    /// The distcc response of an action's result: its exit status, messages and (on
    /// success) the object, fetched and checked. `None` for a successful result
    /// without the object (a cache entry not worth trusting).
    async fn response(
        &self,
        client: &ReapiClient,
        result: &proto::ActionResult,
        job: &ActionJob,
    ) -> Result<Option<Response>, ReapiError> {
        let exit_code = u32::try_from(result.exit_code).unwrap_or(255).min(255);
        let mut object = Vec::new();
        if exit_code == 0 {
            let Some(file) = result
                .output_files
                .iter()
                .find(|file| file.path == job.output)
            else {
                return Ok(None);
            };
            let digest = file.digest.as_ref().ok_or_else(|| ReapiError::Malformed {
                call: "ActionResult".into(),
                reason: format!("{} has no digest", job.output),
            })?;
            object = client
                .download(&crate::reapi::from_proto("ActionResult", digest)?)
                .await?;
        }
        let (stdout, stderr) = (client.stdout(result).await?, client.stderr(result).await?);
        self.received(object.len() + stdout.len() + stderr.len());
        Ok(Some(Response {
            // The traditional wait status distcc carries.
            status: exit_code << 8,
            stderr,
            stdout,
            object,
        }))
    }
}

impl ReapiEndpoint {
    pub(super) fn cache(&self) -> ReapiCache {
        self.config.cache.unwrap_or_default()
    }

    /// The client to use now, and its token's generation.
    fn client(&self) -> (u64, ReapiClient) {
        let client = self.client.read().unwrap_or_else(PoisonError::into_inner);
        (client.0, client.1.clone())
    }

    /// Runs the credential helper again and puts its token in the client, unless
    /// another job did since the client of `generation` was refused.
    async fn refresh_token(&self, url: &str, generation: u64) -> anyhow::Result<()> {
        let _refreshing = self.refreshing.lock().await;
        if self.client().0 != generation {
            return Ok(());
        }
        let authorization = {
            let (url, config) = (url.to_string(), self.config.clone());
            tokio::task::spawn_blocking(move || Endpoint::authorization(&url, &config)).await??
        };
        let mut client = self.client.write().unwrap_or_else(PoisonError::into_inner);
        let fresh = client.1.with_authorization(authorization.as_ref())?;
        *client = (generation + 1, fresh);
        Ok(())
    }
}

/// One job as an action: the preprocessed source and its tree, and the cacheable
/// form of the command.
struct ActionJob {
    source: Vec<u8>,
    source_digest: Digest,
    tree: InputTree,
    /// The object's path in the action's outputs.
    output: String,
    /// The command with `do_not_cache` false: the name the shared cache knows it by.
    cacheable: CommandSpec,
    cache: ReapiCache,
}

impl ActionJob {
    fn new(
        request: &crate::protocol::Request,
        locale: &[(String, String)],
        toolchain: &Fingerprint,
        platform: &[(String, String)],
        cache: ReapiCache,
    ) -> Result<ActionJob, String> {
        let scan = args::scan(&request.argv).map_err(|why| why.to_string())?;
        let input = format!(
            "input.{}",
            source::preprocessed_extension(&request.argv[scan.input])
        );
        let output = format!("output.{}", scan.action.output_extension());
        let prepared = argument_policy::prepare(&request.argv, &input, &output)
            .map_err(|refusal| refusal.to_string())?;
        let compiler = toolchain
            .compiler
            .to_str()
            .ok_or("the compiler's path is not UTF-8")?;
        let mut arguments = vec![compiler.to_string()];
        arguments.extend(prepared.args);
        let source_digest = Digest::of(&request.source);
        // A fixed mtime: the action's digest must not depend on when the file was
        // written, or no two builds would share a cache entry.
        let tree = InputTree::build(vec![(
            format!("/{input}"),
            Entry::File {
                digest: source_digest,
                executable: false,
                mtime: Timestamp::default(),
            },
        )])
        .map_err(|err| err.to_string())?;
        let mut platform = platform.to_vec();
        platform.push((TOOLCHAIN_PROPERTY.to_string(), toolchain.digest()));
        Ok(ActionJob {
            source: request.source.clone(),
            source_digest,
            output: output.clone(),
            cacheable: CommandSpec {
                arguments,
                environment: [("PATH".to_string(), ACTION_PATH.to_string())]
                    .into_iter()
                    .chain(locale.iter().cloned())
                    .collect(),
                output_files: vec![output],
                working_directory: String::new(),
                platform,
                input_root: tree.root(),
                timeout: ACTION_TIMEOUT,
                do_not_cache: false,
            },
            tree,
            cache,
        })
    }
}

/// What the action cache holds for the action `digest`, unless the cache is off.
pub(super) async fn cached_result(
    client: &ReapiClient,
    digest: &Digest,
    cache: ReapiCache,
) -> Result<Option<proto::ActionResult>, ReapiError> {
    match cache {
        ReapiCache::Off => Ok(None),
        ReapiCache::Read | ReapiCache::ReadWrite => client.get_action_result(digest).await,
    }
}

/// What taking a cached result's outputs gave (`taken`), with outputs the CAS lost or
/// holds corrupt taken as no result (`label` names the engine in the log): engines
/// that do not check an entry's blobs on lookup (BuildGrid does; Buildbarn only when
/// configured to) evict blobs and entries separately, and such an entry must cost an
/// execution, not the job and a backoff.
pub(super) fn unless_stale<T>(
    label: &str,
    taken: Result<Option<T>, ReapiError>,
) -> Result<Option<T>, ReapiError> {
    match taken {
        Err(err @ (ReapiError::MissingBlob { .. } | ReapiError::CorruptBlob { .. })) => {
            tracing::info!("{label}: a stale action-cache entry ({err}); executing");
            Ok(None)
        }
        taken => taken,
    }
}

/// The action to execute: `built` (the cacheable spec's), or the same command marked
/// `do_not_cache` when the cache may only be read or is off.
pub(super) fn uncached_if_asked(
    cacheable: &CommandSpec,
    built: BuiltAction,
    cache: ReapiCache,
) -> BuiltAction {
    match cache {
        ReapiCache::ReadWrite => built,
        ReapiCache::Read | ReapiCache::Off => CommandSpec {
            do_not_cache: true,
            ..cacheable.clone()
        }
        .build(),
    }
}

/// `delay` scaled by a factor in [0.5, 1.5), so jobs that failed together do not all
/// come back at the same moment.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    let factor = 0.5 + f64::from(nanos % 1000) / 1000.0;
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, Version};

    fn gcc(version: &str) -> Fingerprint {
        Fingerprint {
            compiler: "/usr/bin/x86_64-linux-gnu-gcc-12".into(),
            target: "x86_64-linux-gnu".into(),
            version: version.into(),
            driver_sha256: "aa".into(),
            programs: Default::default(),
        }
    }

    fn action(source: &str, locale: &[(String, String)], toolchain: &Fingerprint) -> ActionJob {
        let request = Request {
            version: Version::V1,
            argv: ["gcc", "-O2", "-c", "src/x.c", "-o", "obj/x.o"]
                .map(String::from)
                .to_vec(),
            source: source.as_bytes().to_vec(),
        };
        let platform = [("OSFamily".to_string(), "linux".to_string())];
        ActionJob::new(
            &request,
            locale,
            toolchain,
            &platform,
            ReapiCache::ReadWrite,
        )
        .unwrap()
    }

    #[test]
    fn an_action_names_its_compiler_and_only_what_changes_the_object() {
        let job = action("int x;\n", &[], &gcc("12.2.0"));
        let spec = &job.cacheable;
        assert_eq!(
            spec.arguments,
            [
                "/usr/bin/x86_64-linux-gnu-gcc-12",
                "-O2",
                "-c",
                "input.i",
                "-o",
                "output.o"
            ]
        );
        assert_eq!(spec.output_files, ["output.o"]);
        assert!(
            spec.platform
                .contains(&(TOOLCHAIN_PROPERTY.to_string(), gcc("12.2.0").digest()))
        );
        // The same job again (another build, another day) is the same action…
        let again = action("int x;\n", &[], &gcc("12.2.0"));
        assert_eq!(
            again.cacheable.build().action_digest,
            spec.build().action_digest
        );
        // …and another source, compiler or locale is another one.
        for other in [
            action("int y;\n", &[], &gcc("12.2.0")),
            action("int x;\n", &[], &gcc("12.3.0")),
            action(
                "int x;\n",
                &[("LANG".into(), "de_DE.UTF-8".into())],
                &gcc("12.2.0"),
            ),
        ] {
            assert_ne!(
                other.cacheable.build().action_digest,
                spec.build().action_digest
            );
        }
    }

    #[test]
    fn a_cached_result_whose_blobs_are_gone_or_corrupt_is_no_result() {
        let digest = Digest::of(b"an object");
        let gone = ReapiError::MissingBlob {
            call: "BatchReadBlobs".into(),
            digest,
        };
        assert!(matches!(unless_stale::<u8>("e", Err(gone)), Ok(None)));
        let corrupt = ReapiError::CorruptBlob {
            call: "BatchReadBlobs".into(),
            expected: digest,
            got: Digest::of(b"another"),
        };
        assert!(matches!(unless_stale::<u8>("e", Err(corrupt)), Ok(None)));
        assert!(matches!(unless_stale("e", Ok(Some(1))), Ok(Some(1))));
        // The engine's other failures stay the job's.
        let refused = ReapiError::from_code("GetActionResult", tonic::Code::PermissionDenied, "no");
        assert!(unless_stale::<u8>("e", Err(refused)).is_err());
    }

    #[test]
    fn jitter_stays_within_half_either_way() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_millis(1000));
            assert!((500..1500).contains(&wait.as_millis()), "{wait:?}");
        }
    }
}
