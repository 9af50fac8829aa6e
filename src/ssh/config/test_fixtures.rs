//! What the ssh_config tests share: fixed local facts ([`local`]), a temp-dir [`Fixture`]
//! resolved through the real `ssh -G`, the example configuration most tests read, and
//! [`assert_same`], which holds the fallback parser to `ssh -G`'s answer.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;

use super::tokens::LocalInfo;
use super::{ClientOptions, SshTarget, resolve, resolve_using, resolve_without_ssh};

pub(super) fn local() -> LocalInfo {
    LocalInfo {
        user: "me".into(),
        home: "/home/me".into(),
        uid: 1000,
        hostname: "dev.example.org".into(),
    }
}

/// Writes `text` as an ssh_config in a fresh temp dir (plus any extra files) and
/// resolves `alias` through the real `ssh -G`.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with `{dir}` replaced by the temp dir.
    pub(super) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(
            &path,
            text.replace("{dir}", &self.dir.path().to_string_lossy()),
        )
        .unwrap();
        path
    }

    pub(super) fn resolve(&self, alias: &str) -> SshTarget {
        resolve(alias, None, Some(&self.path("config"))).unwrap()
    }
}

pub(super) fn home() -> String {
    LocalInfo::current().home
}

pub(super) const CONFIG: &str = "\
# Options before the first Host apply to every host.
User globaluser
ConnectTimeout 7
ServerAliveInterval 20
Include {dir}/included.conf

Host build-* !build-bad
    HostName %h.farm.example
    IdentityFile ~/.ssh/id_build
    IdentityFile {dir}/keys/%h/%r_%p
    IdentitiesOnly yes
    StrictHostKeyChecking accept-new
    UserKnownHostsFile ~/.ssh/farm_hosts {dir}/second_hosts
    HostKeyAlias Farm-Alias
    ProxyJump jumper@bastion.example:2200

Match host *.farm.example
    Port 2201
    ServerAliveCountMax 5

Host build-bad
    HostName quarantine.example
    StrictHostKeyChecking yes
    BatchMode yes

Host proxied
    ProxyCommand nc %h %p
    IdentityAgent none

Host *
    StrictHostKeyChecking no
    ConnectTimeout 30
";

pub(super) const INCLUDED: &str = "\
Host included
    HostName inc.example.com
    Port 2222
    User incuser
    ConnectTimeout none
";

pub(super) fn fixture() -> Fixture {
    let f = Fixture::new();
    f.write("config", CONFIG);
    f.write("included.conf", INCLUDED);
    f
}

/// Every `%` token in IdentityFile and UserKnownHostsFile, for `tok` and `tok2`.
pub(super) fn token_config() -> String {
    let pattern = "~/x/%d/%u/%l/%L/%h/%r/%p/%n/%k/%i/%C/%%/${HOME}";
    format!(
        "Host tok\n  HostName Tok.Example.NET\n  Port 2022\n  User someone\n  \
         IdentityFile {pattern}\n  UserKnownHostsFile {pattern}\n\
         Host tok2\n  HostKeyAlias KeyAlias\n  IdentityFile %k/%n\n  UserKnownHostsFile %k/%n\n"
    )
}

/// Resolves through `ssh -G` and through the fallback parser and insists on the
/// same result.
pub(super) fn assert_same(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    options: &ClientOptions,
) {
    let via_ssh = resolve_using(OsStr::new("ssh"), alias, user, port, options).unwrap();
    let via_parser =
        resolve_without_ssh(alias, user, port, options, &LocalInfo::current()).unwrap();
    assert_eq!(via_parser, via_ssh, "{alias} {user:?} {port:?} {options:?}");
}

pub(super) fn with_config(f: &Fixture, extra: &[&str]) -> ClientOptions {
    ClientOptions {
        config_file: Some(f.path("config")),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ClientOptions::default()
    }
}
