//! `Match` lines as OpenSSH 9.2's `match_cfg_line` evaluates them: the criteria (`all`,
//! `canonical`, `final`, `host`, `originalhost`, `user`, `localuser`, `exec`, each
//! negatable with `!`), the word splitting peculiar to `Match` lines, and running `exec`
//! commands.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use super::pattern::{hostname_matches, pattern_list_matches};
use super::reader::ConfigReader;
use crate::ssh::config::tokens::{TokenSet, Tokens};

impl ConfigReader<'_> {
    /// Whether all criteria of a `Match` line hold, as OpenSSH 9.2's `match_cfg_line`
    /// decides it, errors included.
    pub(super) fn match_condition(&mut self, condition: &str) -> Result<bool> {
        let host = self.host_so_far()?;
        let mut words = MatchWords(Some(condition));
        let mut result = true;
        let mut criteria = 0;
        while let Some(word) = words.next().filter(|w| !w.is_empty()) {
            if word.starts_with('#') {
                break;
            }
            let (negate, name) = match word.strip_prefix('!') {
                Some(name) => (true, name.to_ascii_lowercase()),
                None => (false, word.to_ascii_lowercase()),
            };
            if name == "all" {
                // OpenSSH's check: tolerated after at most one other criterion, but
                // nothing may follow it.
                let next = words.next();
                ensure!(
                    criteria <= 1 && next.is_none_or(|w| w.is_empty() || w.starts_with('#')),
                    "`{word}` cannot be combined with other Match criteria"
                );
                return Ok(result && !negate);
            }
            criteria += 1;
            let matched = if name == "canonical" || name == "final" {
                self.want_final_pass |= name == "final";
                self.final_hostname.is_some()
            } else {
                let arg = words
                    .next()
                    .filter(|a| !a.is_empty() && !a.starts_with('#'))
                    .with_context(|| format!("missing argument for Match {word}"))?;
                let user = self.raw.single.get("user").unwrap_or(&self.local.user);
                match name.as_str() {
                    "host" => hostname_matches(&arg, &host),
                    "originalhost" => hostname_matches(&arg, self.alias),
                    "user" => pattern_list_matches(arg.split(','), user),
                    "localuser" => pattern_list_matches(arg.split(','), &self.local.user),
                    "exec" => {
                        let command = self.match_exec_command(&arg, &host, user)?;
                        // As OpenSSH: expanded (and so checked) regardless, but not run
                        // once the line cannot match any more.
                        if !result {
                            continue;
                        }
                        run_match_exec(&command)?
                    }
                    _ => bail!("unsupported Match attribute `{word}`"),
                }
            };
            if matched == negate {
                result = false;
            }
        }
        ensure!(criteria > 0, "Match needs at least one criterion");
        Ok(result)
    }

    /// A `Match exec` command with the `%` tokens OpenSSH 9.2 expands there, from the
    /// configuration read so far; `host` is what `Match host` compares and `user` the
    /// remote user.
    fn match_exec_command(&self, command: &str, host: &str, user: &str) -> Result<String> {
        let port = match self.raw.single.get("port") {
            Some(port) => port.parse().with_context(|| format!("bad port {port:?}"))?,
            None => 22,
        };
        let tokens = Tokens {
            local: self.local,
            alias: self.alias,
            hostname: host,
            port,
            user,
            key_alias: self
                .raw
                .single
                .get("hostkeyalias")
                .map_or(host, String::as_str),
            proxy_jump: None,
        };
        tokens.expand_percent(command, TokenSet::MatchExec)
    }
}

/// The words of a `Match` line, split like OpenSSH's `strdelim` rather than like other
/// options' arguments: whitespace or a single `=` separates, `"` quotes (also inside a
/// word) without escapes, and an unterminated quote ends the line.
struct MatchWords<'a>(Option<&'a str>);

impl Iterator for MatchWords<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        const WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];
        let text = self.0?;
        let Some(end) = text.find(|c| WHITESPACE.contains(&c) || c == '"' || c == '=') else {
            self.0 = None;
            return Some(text.to_owned());
        };
        let (word, rest) = text.split_at(end);
        // Every delimiter is one ASCII byte.
        let (delimiter, after) = rest.split_at(1);
        if delimiter == "\"" {
            let Some(close) = after.find('"') else {
                self.0 = None;
                return None;
            };
            self.0 = Some(after[close + 1..].trim_start_matches(WHITESPACE));
            return Some(format!("{word}{}", &after[..close]));
        }
        let after = after.trim_start_matches(WHITESPACE);
        self.0 = Some(match after.strip_prefix('=') {
            // Whitespace, then the one `=` allowed.
            Some(after_equals) if delimiter != "=" => after_equals.trim_start_matches(WHITESPACE),
            _ => after,
        });
        Some(word.to_owned())
    }
}

/// Runs a `Match exec` command as OpenSSH does (`$SHELL -c`, stdin and stdout on
/// /dev/null); whether it exited with status 0.
fn run_match_exec(command: &str) -> Result<bool> {
    let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
    // stderr is captured because `ssh -G`'s is too, and would disturb the output of
    // the compiler sshcc runs for.
    let output = Command::new(&shell)
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| {
            format!(
                "cannot run Match exec command {command:?} with {}",
                shell.to_string_lossy()
            )
        })?;
    let code = output.status.code().with_context(|| {
        format!(
            "Match exec command {command:?} exited abnormally ({})",
            output.status
        )
    })?;
    tracing::debug!(
        "Match exec {command:?} exited with {code}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(code == 0)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::fs;
    use std::time::Duration;

    use crate::ssh::config::test_fixtures::*;
    use crate::ssh::config::tokens::LocalInfo;
    use crate::ssh::config::{StrictHostKeyChecking, resolve_using, resolve_without_ssh};

    use super::*;

    #[test]
    fn fallback_applies_match_blocks() {
        let f = fixture();
        let options = with_config(&f, &[]);
        let t =
            resolve_without_ssh("build-7", None, None, &options, &LocalInfo::current()).unwrap();
        // From `Match host *.farm.example`, which sees the HostName set earlier.
        assert_eq!(t.port, 2201);
        assert_eq!(t.server_alive_count_max, 5);
        assert_eq!(t, f.resolve("build-7"));
    }

    /// `Match` criteria, negation, pattern lists, `all` and OpenSSH's word splitting,
    /// each observed through the options its block sets.
    #[test]
    fn fallback_agrees_with_ssh_g_on_match() {
        let me = LocalInfo::current().user;
        let f = Fixture::new();
        f.write(
            "config",
            &format!(
                "\
Host *.farm.example !bad.farm.example
  HostName %h.Build.Example
Host plain*
  HostName Plain.Example
Match host *.build.example
  Port 1001
Match originalhost *.farm.example,!*.build.example
  ServerAliveCountMax 11
Match Host \"plain.example\" originalhost=PLAIN*
  ConnectTimeout 12
Match !host *.example
  IdentityFile ~/.ssh/not_example
Match host nothing*,!plain* !originalhost x
  HostKeyAlias NeverSet
Match user {me}
  IdentityFile ~/.ssh/as_{me}
Match !user {me},other
  User fromrule
  IdentityFile ~/.ssh/not_{me}
Match localuser {me},nobody user fromrule # a comment
  BatchMode yes
Match LOCALUSER !{me}
  HashKnownHosts yes
Match host *.build.example all
  IdentitiesOnly yes
Match !all
  Port 1002
Match all # everything from here on
  StrictHostKeyChecking accept-new
  IdentityFile ~/.ssh/last
"
            ),
        );
        for extra in [vec![], vec!["-l", "other"], vec!["-o", "User=someone"]] {
            let options = with_config(&f, &extra);
            for alias in [
                "box.farm.example",
                "BOX.Farm.Example",
                "bad.farm.example",
                "plain",
                "plainer",
                "Plain.Example",
                "elsewhere",
                "1.2.3.4",
            ] {
                assert_same(alias, None, None, &options);
                assert_same(alias, Some("fromrule"), Some(9), &options);
            }
        }
        // Spot checks that the blocks really applied.
        let options = with_config(&f, &[]);
        let local = LocalInfo::current();
        let t = resolve_without_ssh("box.farm.example", None, None, &options, &local).unwrap();
        assert_eq!(t.hostname, "box.farm.example.build.example");
        assert_eq!((t.port, t.server_alive_count_max), (1001, 11));
        assert!(t.identities_only && !t.batch_mode);
        assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        let t = resolve_without_ssh("plainer", None, None, &options, &local).unwrap();
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(12)));
        assert!(!t.identities_only);
        let t = resolve_without_ssh("plain", Some("fromrule"), None, &options, &local).unwrap();
        assert!(t.batch_mode);
        let t = resolve_without_ssh("plain", Some("x"), None, &options, &local).unwrap();
        assert_eq!(t.user, "x");
        assert!(!t.batch_mode);
    }

    /// `Match exec`: which commands run, with which `%` tokens, and what their exit
    /// status selects. Every command appends to a log, which must read the same after
    /// `ssh -G` and after the fallback.
    #[test]
    fn fallback_agrees_with_ssh_g_on_match_exec() {
        let f = Fixture::new();
        let log = f.path("exec.log");
        let log = log.to_str().unwrap();
        f.write(
            "never.conf",
            "Match exec \"echo never.conf %n >> {dir}/exec.log\"\n  Port 1\n",
        );
        f.write(
            "config",
            "\
Host *
  HostName %h.Example
Host keyed
  HostKeyAlias Key.Alias
  User keyuser
  Port 2022
Host nomatch
  Include {dir}/never.conf
Match exec \"echo tokens %h %p %r %n %u %L %l %d %C %k %i %%%% >> {dir}/exec.log\"
  ServerAliveCountMax 21
Match exec \"test %n = keyed\"
  ConnectTimeout 22
Match !exec false
  ServerAliveInterval 23
Match host nothing exec \"echo skipped >> {dir}/exec.log\"
  BatchMode yes
Match exec \"echo ran >> {dir}/exec.log; false\" exec \"echo not run >> {dir}/exec.log\"
  BatchMode yes
Match exec=true exec \"echo second %r >> {dir}/exec.log\"
  IdentityFile ~/.ssh/second_%r
",
        );
        for alias in ["keyed", "other"] {
            for (user, port) in [(None, None), (Some("cli"), Some(3000))] {
                let options = with_config(&f, &[]);
                let _ = fs::remove_file(log);
                let via_ssh = resolve_using(OsStr::new("ssh"), alias, user, port, &options);
                let ssh_log = fs::read_to_string(log).unwrap();
                fs::remove_file(log).unwrap();
                let via_parser =
                    resolve_without_ssh(alias, user, port, &options, &LocalInfo::current());
                let parser_log = fs::read_to_string(log).unwrap();
                assert_eq!(via_parser.unwrap(), via_ssh.unwrap(), "{alias} {user:?}");
                assert_eq!(parser_log, ssh_log, "{alias} {user:?}");
                assert!(parser_log.contains("never.conf"), "{parser_log}");
                assert!(!parser_log.contains("skipped"), "{parser_log}");
                assert!(!parser_log.contains("not run"), "{parser_log}");
            }
        }
        let t = resolve_without_ssh(
            "keyed",
            None,
            None,
            &with_config(&f, &[]),
            &LocalInfo::current(),
        )
        .unwrap();
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(22)));
        assert_eq!(t.server_alive_interval, Some(Duration::from_secs(23)));
        assert!(!t.batch_mode);
    }

    /// `Match final` (and `canonical` with it) makes a second pass in which `Host` and
    /// `Match host` see the resolved hostname and nothing is listed twice.
    #[test]
    fn fallback_agrees_with_ssh_g_on_final_pass() {
        let f = Fixture::new();
        f.write(
            "config",
            "\
Host short
  HostName Real.Example
  IdentityFile ~/.ssh/short
  CertificateFile ~/.ssh/short-cert.pub
Host pct
  HostName %h.%%x
Host real.example pct.%x
  Port 2000
Match final host real.example
  User finaluser
Match canonical
  ServerAliveCountMax 31
Match !final
  ConnectTimeout 32
Match host short
  HostName never.example
Match exec \"test %h = real.example\"
  IdentitiesOnly yes
Host *
  IdentityFile ~/.ssh/all
  CertificateFile ~/.ssh/short-cert.pub
",
        );
        let options = with_config(&f, &[]);
        for alias in ["short", "pct", "real.example", "Real.Example", "other"] {
            assert_same(alias, None, None, &options);
            assert_same(alias, Some("u"), Some(5), &options);
        }
        let t = resolve_without_ssh("short", None, None, &options, &LocalInfo::current()).unwrap();
        assert_eq!(t.hostname, "real.example");
        assert_eq!((t.port, t.user.as_str()), (2000, "finaluser"));
        assert_eq!(t.identity_files.len(), 2);
        assert_eq!(t.certificate_files.len(), 1);
        assert_eq!(t.server_alive_count_max, 31);
        // `test %h = real.example` holds on the final pass only: the first pass's `%h`
        // is `Real.Example`.
        assert!(t.identities_only);

        // Without `Match final` (or canonicalization, which the fallback does not do)
        // there is no final pass, so `canonical` never matches.
        f.write("config", "Match canonical\n  Port 4000\n");
        assert_same("short", None, None, &options);
        assert_eq!(f.resolve("short").port, 22);
    }

    /// Malformed `Match` lines make `ssh -G` fail; the fallback fails too, naming the
    /// file and line.
    #[test]
    fn fallback_rejects_bad_match_lines_like_ssh_g() {
        let f = Fixture::new();
        let local = LocalInfo::current();
        for line in [
            "Match hots x",
            "Match host",
            "Match host x user",
            "Match all host x",
            "Match final canonical all",
            "Match !final host # x",
            "Match # only a comment",
            "Match exec \"echo %j\"",
            "Match host %h exec \"echo %z\"",
            "Match host \"x",
            "Match host x \"y",
        ] {
            let config = f.write("config", &format!("Host *\n  Port 7\n\n{line}\n  Port 8\n"));
            let options = with_config(&f, &[]);
            assert!(
                resolve_using(OsStr::new("ssh"), "h", None, None, &options).is_err(),
                "ssh -G accepted {line:?}"
            );
            let err = resolve_without_ssh("h", None, None, &options, &local).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!("{}:4: ", config.display())),
                "{line:?}: {msg}"
            );
        }
        // Not on the command line either.
        f.write("config", "");
        for option in ["Match=all", "Host *"] {
            let options = with_config(&f, &["-o", option]);
            assert!(resolve_using(OsStr::new("ssh"), "h", None, None, &options).is_err());
            assert!(resolve_without_ssh("h", None, None, &options, &local).is_err());
        }
    }

    #[test]
    fn match_words() {
        assert_eq!(
            MatchWords(Some(r#"host=a  =  b"c d"e x= "q""#)).collect::<Vec<_>>(),
            ["host", "a", "bc d", "e", "x", "q", ""]
        );
        assert_eq!(MatchWords(Some(r#"exec "x"#)).collect::<Vec<_>>(), ["exec"]);
    }
}
