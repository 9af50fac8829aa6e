//! A remote-preprocessed job (issue 13's tree of the client's own files) run on a
//! REAPI engine as an action, so that the engine's workers, not this machine, run the
//! preprocessor, and the object and dependency file come back as a local compile's.
//!
//! The action is what an sshcc box would run ([`policy::rewrite`]: the user's command,
//! absolute paths moved under the tree's root, `-ffile-prefix-map` taking the root back
//! out), except that the root is the worker's execution directory, which the client
//! cannot know. So the command is a short POSIX `sh` script (every worker that runs gcc
//! has `/bin/sh`; the toolchain property still pins the compiler) that puts the
//! execution directory where the arguments say [`ROOT_MARKER`], writes it to an output
//! file, and execs the compiler from the client's working directory with `$PWD` as
//! the client had it. The client then takes the root out of the dependency file and
//! the diagnostics as a box does, and checks the dependencies against what it sent.
//!
//! Paths and mtimes are part of the input root, so the shared cache answers the same
//! checkout (a second build, a CI runner with the same paths), not another one: an
//! engine gets these jobs only when its config.toml section sets
//! `remote_preprocessing = true`.

use std::path::{Component, Path};

use super::host_link::{HostLink, ReapiEndpoint};
use super::reapi::{
    ACTION_PATH, ACTION_TIMEOUT, TOOLCHAIN_PROPERTY, cached_result, uncached_if_asked, unless_stale,
};
use crate::config::ReapiCache;
use crate::digest::Digest;
use crate::dispatch::remote::{JobBlobs, JobFailure};
use crate::mux::client::Observer;
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};
use crate::reapi::{CommandSpec, ReapiClient, ReapiError, from_proto, proto};
use crate::server::remote_job::{depfile, is_plain_root, policy, without};
use crate::toolchain::Fingerprint;

/// Stands for the worker's execution directory in the action's arguments.
const ROOT_MARKER: &str = "@SSHCC_EXEC_ROOT@";

/// The output the script writes the execution directory to, at the input root.
const ROOT_FILE: &str = ".sshcc-exec-root";

/// The dependency file asked for when the user asked for none, at the input root.
const OWN_DEP_FILE: &str = ".sshcc-deps.d";

/// The exit status of the script when it could not start the compiler.
const SCRIPT_FAILED: i32 = 125;

/// `sh -c SCRIPT sshcc MARKER ROOT_FILE CWD PWD COMPILER ARGS…` ([`script_args`]):
/// every MARKER in COMPILER and ARGS becomes the execution directory, which also goes
/// to ROOT_FILE; then the compiler runs in `<root>CWD` with `PWD=<root>PWD`. Exits
/// [`SCRIPT_FAILED`] when it cannot start it.
const SCRIPT: &str = r#"r=$(pwd -P) || exit 125
case $r in *[!A-Za-z0-9/._+-]*) echo "sshcc-action: unusable execution directory $r" >&2; exit 125;; esac
m=$1
root_file=$2
cwd=$3
pwd_=$4
shift 4
n=$#
while [ "$n" -gt 0 ]; do
  a=$1
  b=
  shift
  while :; do
    case $a in
      *"$m"*) b=$b${a%%"$m"*}$r; a=${a#*"$m"} ;;
      *) break ;;
    esac
  done
  set -- "$@" "$b$a"
  n=$((n - 1))
done
printf %s "$r" > "$root_file" || exit 125
mkdir -p "$r$cwd" && cd "$r$cwd" || { echo "sshcc-action: cannot enter $r$cwd" >&2; exit 125; }
PWD=$r$pwd_
export PWD
exec "$@"
"#;

/// One remote-preprocessed job as an action.
struct RemoteAction {
    cacheable: CommandSpec,
    /// Each requested output: the client's path, and its path in the action's result.
    outputs: Vec<(String, String)>,
    /// Where in the result the dependency file is (the user's or ours).
    dep_file: String,
}

impl RemoteAction {
    fn new(
        job: &RemoteJob,
        toolchain: &Fingerprint,
        platform: &[(String, String)],
    ) -> Result<RemoteAction, String> {
        let compiler = toolchain
            .compiler
            .to_str()
            .ok_or("the compiler's path is not UTF-8")?;
        let own_dep_file = format!("{ROOT_MARKER}/{OWN_DEP_FILE}");
        let argv: Vec<String> = std::iter::once(compiler.to_string())
            .chain(job.args.iter().cloned())
            .collect();
        if argv.iter().any(|arg| arg.contains(ROOT_MARKER)) {
            return Err(format!("an argument contains {ROOT_MARKER}"));
        }
        let command = policy::rewrite(
            &argv,
            &policy::Layout {
                root: ROOT_MARKER,
                cwd: &job.cwd,
                own_dep_file: &own_dep_file,
            },
        )
        .map_err(|refusal| refusal.to_string())?;
        let outputs = (job.outputs.iter())
            .map(|output| Ok((output.clone(), in_root(&job.cwd, output)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let dep_file = match &command.user_dep_file {
            Some(path) => in_root(&job.cwd, path)?,
            None => OWN_DEP_FILE.to_string(),
        };
        let mut output_files: Vec<String> = outputs.iter().map(|(_, at)| at.clone()).collect();
        output_files.extend([dep_file.clone(), ROOT_FILE.to_string()]);
        let pwd = job.pwd.as_deref().unwrap_or(&job.cwd);
        let mut arguments = script_args(&job.cwd, pwd);
        arguments.push(compiler.to_string());
        arguments.extend(command.args);
        let mut platform = platform.to_vec();
        platform.push((TOOLCHAIN_PROPERTY.to_string(), toolchain.digest()));
        Ok(RemoteAction {
            cacheable: CommandSpec {
                arguments,
                environment: [("PATH".to_string(), ACTION_PATH.to_string())]
                    .into_iter()
                    .chain(job.locale.iter().cloned())
                    .collect(),
                output_files,
                working_directory: String::new(),
                platform,
                input_root: job.root,
                timeout: ACTION_TIMEOUT,
                do_not_cache: false,
            },
            outputs,
            dep_file,
        })
    }
}

/// The action's arguments up to the compiler: [`SCRIPT`] and what it takes first.
fn script_args(cwd: &str, pwd: &str) -> Vec<String> {
    [
        "/bin/sh",
        "-c",
        SCRIPT,
        "sshcc",
        ROOT_MARKER,
        ROOT_FILE,
        cwd,
        pwd,
    ]
    .map(String::from)
    .into()
}

/// A client path (absolute, or relative to the client's `cwd`) as a path relative to
/// the input root, without `.` or `..`.
fn in_root(cwd: &str, path: &str) -> Result<String, String> {
    let full = Path::new(cwd).join(path);
    let mut parts: Vec<&str> = Vec::new();
    for component in full.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or("a path is not UTF-8")?),
            Component::ParentDir if parts.pop().is_some() => {}
            Component::ParentDir => return Err(format!("{path:?} climbs above /")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return Err(format!("{path:?} is no file"));
    }
    Ok(parts.join("/"))
}

impl HostLink {
    /// Runs `job` (whose tree's blobs are `blobs`) on the engine as the compiler of
    /// `toolchain`: the action cache first, then what the CAS lacks uploaded and the
    /// action executed, retried as every REAPI job is.
    pub(super) async fn run_reapi_remote(
        &self,
        endpoint: &ReapiEndpoint,
        job: &RemoteJob,
        blobs: &JobBlobs,
        toolchain: Option<&Fingerprint>,
        observer: Option<Observer>,
    ) -> Result<RemoteCompile, JobFailure> {
        let toolchain = toolchain.ok_or_else(|| JobFailure::Changed(self.no_fingerprint()))?;
        let action = RemoteAction::new(job, toolchain, &endpoint.platform)
            .map_err(|why| JobFailure::Changed(format!("{}: {why}", self.label())))?;
        // The action's key holds the inputs, not the time the compile expands into
        // __DATE__ and __TIME__: such a job is never answered or kept by the cache.
        let cache = match blobs.reads_the_clock {
            true => ReapiCache::Off,
            false => endpoint.cache(),
        };
        self.with_retries(endpoint, |client| {
            let (action, observer) = (&action, observer.as_ref());
            async move {
                self.run_remote_action(&client, action, cache, blobs, observer)
                    .await
            }
        })
        .await
        .map_err(JobFailure::Box)?
    }

    /// One attempt; the outer `Err` is the engine's (retried), the inner the job's.
    async fn run_remote_action(
        &self,
        client: &ReapiClient,
        action: &RemoteAction,
        cache: ReapiCache,
        blobs: &JobBlobs,
        observer: Option<&Observer>,
    ) -> Result<Result<RemoteCompile, JobFailure>, ReapiError> {
        let cacheable = action.cacheable.build();
        tracing::debug!("{}: action {}", self.label(), cacheable.action_digest);
        if let Some(result) = cached_result(client, &cacheable.action_digest, cache).await?
            && result.exit_code == 0
            && let Some(compile) = unless_stale(
                self.label(),
                (self.compile_of(client, &result, action).await).map(Result::ok),
            )?
        {
            self.cache_hit();
            return Ok(Ok(compile));
        }
        let built = uncached_if_asked(&action.cacheable, cacheable, cache);
        let action_blobs = built.blobs();
        let mut digests: Vec<Digest> = blobs.all().copied().collect();
        digests.extend(action_blobs.iter().map(|(digest, _)| *digest));
        let missing = client.find_missing(&digests).await?;
        let mut contents: Vec<(Digest, Vec<u8>)> = Vec::with_capacity(missing.len());
        for digest in &missing {
            let data = match action_blobs.iter().find(|(blob, _)| blob == digest) {
                Some((_, data)) => data.to_vec(),
                None => match blobs.read(digest).await {
                    Ok(data) => data,
                    Err(failure) => return Ok(Err(failure)),
                },
            };
            contents.push((*digest, data));
        }
        let upload: Vec<(Digest, &[u8])> = (contents.iter())
            .map(|(digest, data)| (*digest, data.as_slice()))
            .collect();
        client.upload(&upload).await?;
        self.sent(&upload, observer);
        let result = self.execute(client, &built, observer).await?;
        self.compile_of(client, &result, action).await
    }

    /// The job's answer from an action result: outputs fetched and checked, the
    /// execution directory taken out of the dependency file and the messages. The inner
    /// `Err` is a result that is no compile's (the script could not start it).
    async fn compile_of(
        &self,
        client: &ReapiClient,
        result: &proto::ActionResult,
        action: &RemoteAction,
    ) -> Result<Result<RemoteCompile, JobFailure>, ReapiError> {
        let (stdout, stderr) = (client.stdout(result).await?, client.stderr(result).await?);
        let root = match self.output(client, result, ROOT_FILE).await? {
            Some(root) => String::from_utf8(root).unwrap_or_default(),
            None => String::new(),
        };
        if result.exit_code == SCRIPT_FAILED || !is_plain_root(&root) {
            return Ok(Err(JobFailure::Box(format!(
                "{}: the action did not start the compiler (exit {}): {}",
                self.label(),
                result.exit_code,
                String::from_utf8_lossy(&stderr).trim()
            ))));
        }
        let mut compile = RemoteCompile {
            status: u32::try_from(result.exit_code).unwrap_or(255).min(255) << 8,
            stdout: without(&stdout, root.as_bytes()),
            stderr: without(&stderr, root.as_bytes()),
            outputs: Vec::new(),
            deps: Vec::new(),
        };
        let mut received = stdout.len() + stderr.len();
        if result.exit_code == 0 {
            let missing = |what: &str| {
                Ok(Err(JobFailure::Box(format!(
                    "{}: the compiler exited 0 but the result has no {what}",
                    self.label()
                ))))
            };
            let Some(dep_text) = self.output(client, result, &action.dep_file).await? else {
                return missing(&action.dep_file);
            };
            received += dep_text.len();
            let deps = depfile::to_client(&String::from_utf8_lossy(&dep_text), &root);
            for (client_path, at) in &action.outputs {
                let content = if *at == action.dep_file {
                    deps.text.clone().into_bytes()
                } else {
                    match self.output(client, result, at).await? {
                        Some(content) => content,
                        None => return missing(at),
                    }
                };
                received += content.len();
                compile.outputs.push((client_path.clone(), content));
            }
            compile.deps = deps.deps;
        }
        self.received(received);
        Ok(Ok(compile))
    }

    /// The content of the result's output file at `path`, checked against its digest.
    async fn output(
        &self,
        client: &ReapiClient,
        result: &proto::ActionResult,
        path: &str,
    ) -> Result<Option<Vec<u8>>, ReapiError> {
        let Some(file) = result.output_files.iter().find(|file| file.path == path) else {
            return Ok(None);
        };
        let digest = file.digest.as_ref().ok_or_else(|| ReapiError::Malformed {
            call: "ActionResult".into(),
            reason: format!("{path} has no digest"),
        })?;
        client
            .download(&from_proto("ActionResult", digest)?)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_named_from_the_input_root() {
        assert_eq!(in_root("/home/a/p", "src/x.o").unwrap(), "home/a/p/src/x.o");
        assert_eq!(in_root("/home/a/p", "/tmp/y.o").unwrap(), "tmp/y.o");
        assert_eq!(in_root("/home/a/p", "../q/./z.d").unwrap(), "home/a/q/z.d");
        assert!(in_root("/a", "../../x.o").is_err());
    }

    #[test]
    fn the_script_puts_the_execution_directory_in_place_of_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        // The client's $PWD names its working directory through a symlink.
        std::fs::create_dir(root.join("w")).unwrap();
        std::os::unix::fs::symlink("d", root.join("w/link")).unwrap();
        let script = script_args("/w/d", "/w/link");
        let output = std::process::Command::new(&script[0])
            .current_dir(&root)
            .args(&script[1..])
            .args(["/bin/sh", "-c", "echo \"$PWD|$(pwd -P)|$1|$2\"", "-"])
            .args([
                &format!("-I{ROOT_MARKER}/i"),
                &format!("{ROOT_MARKER}a{ROOT_MARKER}"),
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let root = root.display().to_string();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{root}/w/link|{root}/w/d|-I{root}/i|{root}a{root}")
        );
        assert_eq!(
            std::fs::read_to_string(Path::new(&root).join(ROOT_FILE)).unwrap(),
            root
        );
    }
}
