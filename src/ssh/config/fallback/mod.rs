//! Fallback for machines without OpenSSH's client: sshcc's own ssh_config reader.
//!
//! A small ssh_config(5) reader for the subset sshcc relies on: `Host` patterns (`*`,
//! `?`, `!`), `Match` as in OpenSSH 9.2 (`all`, `canonical`, `final`, `host`,
//! `originalhost`, `user`, `localuser`, `exec`, `!` negation), options before the first
//! `Host`, first value wins (`IdentityFile` accumulates), `Include` (globs, relative to
//! ~/.ssh or /etc/ssh), `Key=Value`, quoting, case-insensitive keywords, and the `ssh`
//! options `-F -p -l -i -o -J`. It prints what `ssh -G` would print for the options
//! sshcc reads, then hands that to [`parse_ssh_g`], so both paths share one mapping.
//!
//! `Match final` makes OpenSSH read the configuration a second time, matching `Host`
//! and `Match host` against the hostname the first pass resolved; the reader does the
//! same. OpenSSH also makes that second pass for `CanonicalizeHostname`, which is not
//! supported here: so `Match canonical`, which OpenSSH 9.2 treats like `final`, only
//! matches when some `Match final` asked for the second pass. Also not supported:
//! unknown or invalid options (ignored rather than rejected), and `Port` given as a
//! service name.
//!
//! This file reads the command-line options and the files (`Host` blocks, `Include`,
//! option lines) into a [`reader::ConfigReader`]; [`match_criteria`] evaluates `Match`
//! lines, [`pattern`] matches `Host`/`Match` patterns and `Include` globs, [`syntax`]
//! splits lines into words, and [`output`] prints the collected values as `ssh -G`
//! would.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::tokens::LocalInfo;

mod match_criteria;
mod output;
mod pattern;
mod reader;
mod syntax;

use pattern::{glob, pattern_list_matches};
use reader::{ConfigKind, ConfigReader, RawConfig};
use syntax::{convtime, split_args, split_keyword};

/// `ssh` options that take an argument (OpenSSH 9.2's getopt string).
const SSH_OPTIONS_WITH_ARGUMENT: &str = "bceilmopBDEFIJLOPQRSwW";

/// Where `Include` nesting stops, as in OpenSSH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What `ssh -G ARGS -- ALIAS` would print, restricted to the options sshcc reads.
pub(super) fn ssh_g_output_without_ssh(
    alias: &str,
    args: &[OsString],
    local: &LocalInfo,
) -> Result<String> {
    let mut reader = ConfigReader {
        alias,
        local,
        raw: RawConfig::default(),
        final_hostname: None,
        want_final_pass: false,
    };
    let mut config_file: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            continue;
        };
        if text == "--" {
            break;
        }
        let Some(flags) = text.strip_prefix('-').filter(|f| !f.is_empty()) else {
            continue;
        };
        for (i, flag) in flags.char_indices() {
            if !SSH_OPTIONS_WITH_ARGUMENT.contains(flag) {
                continue;
            }
            let attached = &flags[i + flag.len_utf8()..];
            let value: OsString = if attached.is_empty() {
                args.next()
                    .cloned()
                    .with_context(|| format!("ssh option -{flag} needs an argument"))?
            } else {
                attached.into()
            };
            let value_str = value.to_string_lossy();
            match flag {
                'F' => config_file = Some(PathBuf::from(value)),
                'p' => reader.set_first("port", &value_str),
                'l' => reader.set_first("user", &value_str),
                'i' => {
                    // OpenSSH drops (with a warning) `-i` files it cannot stat.
                    let path = local.tilde(&value_str);
                    if path.exists() {
                        reader.raw.identity_files.add(None, &path.to_string_lossy());
                    } else {
                        tracing::warn!("identity file {} not accessible", path.display());
                    }
                }
                'J' => reader.set_proxy_jump(&value_str),
                'o' => {
                    if let Some((keyword, _)) = split_keyword(&value_str) {
                        ensure!(
                            !["host", "match", "include"]
                                .contains(&keyword.to_ascii_lowercase().as_str()),
                            "{keyword} is not supported as a command-line option (-o)"
                        );
                    }
                    reader.line(
                        &value_str,
                        Path::new("command-line"),
                        0,
                        true,
                        ConfigKind::User,
                        0,
                    )?
                }
                _ => {}
            }
            break;
        }
    }

    let must_exist = config_file.is_some();
    let files = match config_file {
        Some(file) if file.as_os_str() == "none" => Vec::new(),
        Some(file) => vec![(file, ConfigKind::User)],
        None => vec![
            (local.tilde("~/.ssh/config"), ConfigKind::User),
            (PathBuf::from("/etc/ssh/ssh_config"), ConfigKind::System),
        ],
    };
    reader.read_files(&files, must_exist)?;
    if reader.want_final_pass {
        reader.final_hostname = Some(reader.hostname()?);
        reader.read_files(&files, must_exist)?;
    }
    reader.output()
}

impl ConfigReader<'_> {
    /// One pass over the configuration `files`; a missing file is an error only when
    /// `must_exist` (`-F`).
    fn read_files(&mut self, files: &[(PathBuf, ConfigKind)], must_exist: bool) -> Result<()> {
        for (file, kind) in files {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(err) if !must_exist && err.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(err) => {
                    return Err(anyhow!(err)
                        .context(format!("cannot read SSH config file {}", file.display())));
                }
            };
            self.file(&text, file, true, *kind, 0)?;
        }
        Ok(())
    }

    /// Reads one file's `text`; `can_match` says whether the surrounding context applies
    /// (an `Include` in a non-matching `Host` block can never match).
    fn file(
        &mut self,
        text: &str,
        path: &Path,
        can_match: bool,
        kind: ConfigKind,
        depth: usize,
    ) -> Result<()> {
        let mut active = can_match;
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let Some((keyword, rest)) = split_keyword(line) else {
                continue;
            };
            let location = || format!("{}:{number}", path.display());
            match keyword.to_ascii_lowercase().as_str() {
                "host" => {
                    let patterns = split_args(rest).with_context(location)?;
                    let host = self.final_hostname.as_deref().unwrap_or(self.alias);
                    active = can_match
                        && pattern_list_matches(patterns.iter().map(String::as_str), host);
                }
                "match" => {
                    // OpenSSH checks the quoting of every line like this before
                    // splitting the criteria differently (see `MatchWords`).
                    split_args(rest).with_context(location)?;
                    // Evaluated even where it cannot apply: OpenSSH runs its `exec`
                    // commands and notes `final` there too.
                    let matched = self
                        .match_condition(rest)
                        .with_context(|| format!("{}: bad Match condition", location()))?;
                    active = can_match && matched;
                }
                _ => self.line(line, path, number, active, kind, depth)?,
            }
        }
        Ok(())
    }

    /// One option line (not `Host`/`Match`).
    fn line(
        &mut self,
        line: &str,
        path: &Path,
        number: usize,
        active: bool,
        kind: ConfigKind,
        depth: usize,
    ) -> Result<()> {
        let Some((keyword, rest)) = split_keyword(line) else {
            return Ok(());
        };
        let key = keyword.to_ascii_lowercase();
        let args = split_args(rest).with_context(|| format!("{}:{number}", path.display()))?;
        if key == "include" {
            ensure!(
                depth < MAX_INCLUDE_DEPTH,
                "{}:{number}: Include nested too deeply",
                path.display()
            );
            for pattern in args {
                let pattern = self.local.tilde(&pattern);
                let pattern = if pattern.is_absolute() {
                    pattern
                } else if kind == ConfigKind::User {
                    self.local.tilde("~/.ssh").join(pattern)
                } else {
                    Path::new("/etc/ssh").join(pattern)
                };
                for file in glob(&pattern) {
                    let Ok(text) = std::fs::read_to_string(&file) else {
                        continue;
                    };
                    self.file(&text, &file, active, kind, depth + 1)?;
                }
            }
            return Ok(());
        }
        if !active {
            return Ok(());
        }
        if key == "proxycommand" {
            // The rest of the line, verbatim, as OpenSSH keeps it.
            if self.raw.proxy_command.is_none() {
                self.raw.proxy_command = Some(rest.to_owned());
            }
            return Ok(());
        }
        let Some(first) = args.first() else {
            bail!(
                "{}:{number}: missing argument for {keyword}",
                path.display()
            );
        };
        match key.as_str() {
            "identityfile" => self.raw.identity_files.add(Some(kind), first),
            "certificatefile" => self.raw.certificate_files.add(Some(kind), first),
            "userknownhostsfile" if self.raw.user_known_hosts_files.is_none() => {
                self.raw.user_known_hosts_files = Some(args.join(" "));
            }
            "globalknownhostsfile" if self.raw.global_known_hosts_files.is_none() => {
                self.raw.global_known_hosts_files = Some(args.join(" "));
            }
            "proxyjump" => self.set_proxy_jump(first),
            // `none` leaves these unset, so a later value still applies.
            "connecttimeout" | "serveraliveinterval" if first.eq_ignore_ascii_case("none") => {}
            "connecttimeout" | "serveraliveinterval" => {
                let secs = convtime(first).with_context(|| {
                    format!("{}:{number}: bad {keyword} {first:?}", path.display())
                })?;
                self.set_first(&key, &secs.to_string());
            }
            "hostname"
            | "port"
            | "user"
            | "identitiesonly"
            | "identityagent"
            | "stricthostkeychecking"
            | "hostkeyalias"
            | "serveralivecountmax"
            | "batchmode"
            | "hashknownhosts" => self.set_first(&key, first),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::ssh::config::ClientOptions;
    use crate::ssh::config::test_fixtures::*;

    #[test]
    fn fallback_agrees_with_ssh_g_on_fixtures() {
        let f = Fixture::new();
        f.write("config", CONFIG);
        f.write("included.conf", INCLUDED);
        let options = with_config(&f, &[]);
        for alias in [
            "build-7",
            "build-bad",
            "included",
            "proxied",
            "elsewhere",
            "Mixed.Case",
        ] {
            assert_same(alias, None, None, &options);
        }
        assert_same("build-1", Some("override"), Some(4000), &options);
        assert_same("build-1", Some("bob"), None, &options);

        f.write("config", &token_config());
        assert_same("tok", None, None, &options);
        assert_same("tok2", None, None, &options);

        f.write("config", "");
        assert_same("Plain.Example", None, None, &options);
    }

    #[test]
    fn fallback_agrees_with_ssh_g_on_syntax_details() {
        let f = Fixture::new();
        fs::create_dir(f.path("conf.d")).unwrap();
        f.write(
            "conf.d/10-a.conf",
            "Host glob*\n  Port 1010\n  User first\n",
        );
        f.write(
            "conf.d/20-b.conf",
            "Host glob*\n  Port 2020\n  BatchMode yes\n",
        );
        f.write("conf.d/.hidden.conf", "Host glob*\n  HashKnownHosts yes\n");
        f.write(
            "config",
            "\
# comment
Include {dir}/conf.d/*.conf
Host eq
  Port=3333
  User = \"Some One\"
  HostName=%h.X.%%
  ConnectTimeout none
  ConnectTimeout 1m30s
  ServerAliveInterval 2h
  ServerAliveCountMax=9
  IDENTITYFILE none
  identitiesonly Yes
Host kh ?h2 !nope
  UserKnownHostsFile ~/a %h
  UserKnownHostsFile /never
  GlobalKnownHostsFile /g1 /g2
  IdentityAgent ~/%h/sock
  StrictHostKeyChecking off
Host pj
  ProxyJump ssh://U@Bast:22,a@b:3,ssh://x@Last.Example:5
  ProxyCommand nc %h
Host pj1
  ProxyJump ssh://U@Bast
Host pc
  ProxyCommand   nc  \"%h\"   %p  # not a comment
  ProxyJump a@b
Host v6
  HostName FE80::AB
Host *
  IdentityFile ~/.ssh/id_%r
  IdentityFile {dir}/second
  IdentityAgent SSH_AUTH_SOCK
  HashKnownHosts no
",
        );
        let options = with_config(&f, &[]);
        for alias in [
            "eq", "kh", "xh2", "nope", "pj", "pj1", "pc", "v6", "glob1", "FE80::AB",
        ] {
            assert_same(alias, None, None, &options);
        }
        // Include inside a non-matching Host block contributes nothing.
        f.write(
            "config",
            "Host other\n  Include {dir}/conf.d/*.conf\nHost *\n  Port 7\n",
        );
        assert_same("glob1", None, None, &options);
    }

    #[test]
    fn fallback_agrees_with_ssh_g_on_command_line_options() {
        let f = fixture();
        f.write("config", CONFIG);
        let key = f.write("key", "");
        let key = key.to_str().unwrap();
        let other = f.write("other_config", "Host *\n  Port 5555\n");
        let other = other.to_str().unwrap();
        for extra in [
            vec!["-p", "2300", "-l", "cli"],
            vec!["-oPort=5", "-p", "7", "-o", "User x", "-l", "y"],
            vec![
                "-i",
                key,
                "-o",
                "IdentityFile=/k0",
                "-i",
                "/nonexistent/key",
            ],
            vec!["-J", "j@h:99"],
            vec!["-4", "-C", "-J", "ssh://j@h", "-o", "ProxyCommand=none"],
            vec![
                "-Tq",
                "-oStrictHostKeyChecking=yes",
                "-vp2400",
                "-oConnectTimeout=3",
            ],
            vec!["-o", "UserKnownHostsFile=/u1 /u2", "-o", "HostKeyAlias=CLI"],
        ] {
            let options = with_config(&f, &extra);
            for alias in ["build-3", "build-bad", "proxied"] {
                assert_same(alias, None, None, &options);
                assert_same(alias, Some("arg"), Some(4242), &options);
            }
        }
        // `-F` in the extra options, with SSHCC_SSH_CONFIG unset, and `-F none`.
        for file in [other, "none"] {
            let options = ClientOptions {
                config_file: None,
                extra: vec!["-F".into(), file.into()],
                ..ClientOptions::default()
            };
            assert_same("build-3", None, None, &options);
        }
    }

    /// With no `-F`: the user's ~/.ssh/config and the system ssh_config (Debian's
    /// includes ssh_config.d/*.conf and sets HashKnownHosts).
    #[test]
    fn fallback_agrees_with_ssh_g_on_default_config_files() {
        assert_same("some-host.example", None, None, &ClientOptions::default());
    }
}
