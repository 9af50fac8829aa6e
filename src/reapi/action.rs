//! The messages that name an action: a [`CommandSpec`] becomes REAPI's `Command` and
//! `Action`, prost-encoded (prost writes fields in number order and no defaults, the
//! deterministic encoding), with the digests the engine will compute for them, so
//! both blobs can be uploaded and the action executed or looked up by digest.
//!
//! REAPI's canonical-form rules are applied here rather than left to the caller:
//! environment variables, output paths and platform properties sorted (the last by
//! name, then value), outputs listed both as v2.1's `output_paths` and as the older
//! `output_files` (for workers before v2.1), the platform both in the Command (before
//! v2.2) and in the Action.

use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
use bazel_remote_apis::google::protobuf;
use prost::Message;

use super::to_proto;
use crate::digest::Digest;

/// What to run, on what, and what to bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// argv; argv\[0\] is an absolute path or one relative to the input root.
    pub arguments: Vec<String>,
    /// The whole environment of the command (name, value); nothing else is set.
    pub environment: Vec<(String, String)>,
    /// Files to collect, relative to the working directory.
    pub output_files: Vec<String>,
    /// Where the command runs, relative to the input root ("" for the root).
    pub working_directory: String,
    /// Platform properties the worker must match (name, value), e.g. `OSFamily`.
    pub platform: Vec<(String, String)>,
    /// The digest of the input root `Directory`.
    pub input_root: Digest,
    /// How long the command may run before the engine kills it.
    pub timeout: Duration,
    /// Whether the engine must neither cache the result nor merge this action with an
    /// identical one in flight.
    pub do_not_cache: bool,
}

/// A [`CommandSpec`] as the two blobs an engine needs, and their digests.
#[derive(Clone, Debug)]
pub struct BuiltAction {
    pub command: proto::Command,
    pub command_digest: Digest,
    pub command_blob: Vec<u8>,
    pub action: proto::Action,
    /// The action's name for Execute and the action cache.
    pub action_digest: Digest,
    pub action_blob: Vec<u8>,
}

impl CommandSpec {
    /// The Command and Action messages of this spec, encoded and digested.
    pub fn build(&self) -> BuiltAction {
        let mut environment = self.environment.clone();
        environment.sort();
        let mut outputs = self.output_files.clone();
        outputs.sort();
        outputs.dedup();
        let mut properties = self.platform.clone();
        properties.sort();
        let platform = (!properties.is_empty()).then(|| proto::Platform {
            properties: (properties.into_iter())
                .map(|(name, value)| proto::platform::Property { name, value })
                .collect(),
        });

        #[allow(deprecated)] // output_files and Command.platform, for older workers
        let command = proto::Command {
            arguments: self.arguments.clone(),
            environment_variables: (environment.into_iter())
                .map(|(name, value)| proto::command::EnvironmentVariable { name, value })
                .collect(),
            output_files: outputs.clone(),
            output_paths: outputs,
            platform: platform.clone(),
            working_directory: self.working_directory.clone(),
            ..Default::default()
        };
        let command_blob = command.encode_to_vec();
        let command_digest = Digest::of(&command_blob);

        let action = proto::Action {
            command_digest: Some(to_proto(&command_digest)),
            input_root_digest: Some(to_proto(&self.input_root)),
            timeout: Some(protobuf::Duration {
                seconds: i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX),
                nanos: self.timeout.subsec_nanos() as i32,
            }),
            do_not_cache: self.do_not_cache,
            salt: Vec::new(),
            platform,
        };
        let action_blob = action.encode_to_vec();
        BuiltAction {
            command,
            command_digest,
            command_blob,
            action_digest: Digest::of(&action_blob),
            action,
            action_blob,
        }
    }
}

impl BuiltAction {
    /// The Command and Action blobs, for [`ReapiClient::upload`](super::ReapiClient::upload).
    pub fn blobs(&self) -> [(Digest, &[u8]); 2] {
        [
            (self.command_digest, self.command_blob.as_slice()),
            (self.action_digest, self.action_blob.as_slice()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CommandSpec {
        CommandSpec {
            arguments: vec!["/usr/bin/gcc".into(), "-c".into(), "a.c".into()],
            environment: vec![
                ("PATH".into(), "/usr/bin".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            output_files: vec!["a.o".into(), "a.d".into(), "a.o".into()],
            working_directory: String::new(),
            platform: vec![
                ("OSFamily".into(), "linux".into()),
                ("ISA".into(), "x86-64".into()),
            ],
            input_root: Digest::EMPTY,
            timeout: Duration::from_millis(90_500),
            do_not_cache: false,
        }
    }

    #[test]
    #[allow(deprecated)]
    fn canonical_form_whatever_the_callers_order() {
        let built = spec().build();
        let names = |command: &proto::Command| -> Vec<String> {
            let env = command.environment_variables.iter().map(|v| v.name.clone());
            env.collect()
        };
        assert_eq!(names(&built.command), ["LC_ALL", "PATH"]);
        assert_eq!(built.command.output_paths, ["a.d", "a.o"]);
        assert_eq!(built.command.output_files, built.command.output_paths);
        let platform = built.action.platform.as_ref().unwrap();
        let keys: Vec<&str> = platform
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(keys, ["ISA", "OSFamily"]);
        assert_eq!(built.command.platform.as_ref(), Some(platform));
        let timeout = built.action.timeout.unwrap();
        assert_eq!((timeout.seconds, timeout.nanos), (90, 500_000_000));

        let mut shuffled = spec();
        shuffled.environment.reverse();
        shuffled.platform.reverse();
        shuffled.output_files.reverse();
        assert_eq!(shuffled.build().action_digest, built.action_digest);
    }

    #[test]
    fn digests_name_the_encoded_blobs() {
        let built = spec().build();
        assert_eq!(built.command_digest, Digest::of(&built.command_blob));
        assert_eq!(built.action_digest, Digest::of(&built.action_blob));
        let action = proto::Action::decode(built.action_blob.as_slice()).unwrap();
        assert_eq!(action.command_digest, Some(to_proto(&built.command_digest)));
        assert_eq!(built.blobs()[1].0, built.action_digest);

        let mut uncached = spec();
        uncached.do_not_cache = true;
        assert_ne!(uncached.build().action_digest, built.action_digest);
    }
}
