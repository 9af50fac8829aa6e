//! One host entry as distcc's `dcc_parse_localhost`, `dcc_parse_ssh_host` and
//! `dcc_parse_tcp_host` read it: `localhost[/N]`, `[user]@host[/N][:command]` and
//! `host[:port][/N]` with their `,lzo`/`,cpp`/`,down` options, field by field over the
//! rest of the whole text as distcc does, and the values sshcc cannot use rejected;
//! and sshcc's own `reapi://host:port[/N]` / `reapis://…` entries.

use super::cstr::{c_isspace, span, strtol};
use super::error::HostsError;
use super::spec::{DEFAULT_PORT, HostKind, HostSpec};

/// Remote entries get a little more than a box's cores so files can be in transit.
const DEFAULT_SLOTS: u32 = 4;
/// distcc's guess for this machine; users with more cores write `localhost/N`.
const LOCALHOST_SLOTS: u32 = 2;

/// What ends a host name (`dcc_dup_part` separators).
const NAME_END: &[u8] = b"/: \t\n\r\x0c,";
/// What ends a bracketed IPv6 address; `:` belongs to the address there.
const IPV6_END: &[u8] = b"/] \t\n\r\x0c,";
/// What ends a REAPI entry's `host:port` (an IPv6 address keeps its brackets).
const AUTHORITY_END: &[u8] = b"/ \t\n\r\x0c,";
/// What ends an SSH entry's remote command; it may contain `/`, `:` and `@`.
const COMMAND_END: &[u8] = b" \t\n\r\x0c,";

/// Parses one host entry (`dcc_parse_localhost`, `_ssh_host`, `_tcp_host`).
pub(super) fn parse_entry(rest: &str, verbatim: &str) -> Result<HostSpec, HostsError> {
    let is_local = verbatim
        .strip_prefix("localhost")
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'));
    let mut fields = Fields::at(rest, verbatim, 0);
    let reapi_scheme = ["reapi://", "reapis://"]
        .into_iter()
        .find(|scheme| verbatim.starts_with(scheme));
    let (kind, slots, options) = if let Some(scheme) = reapi_scheme {
        fields.pos = scheme.len();
        fields.reapi(scheme == "reapis://")?
    } else if is_local {
        fields.pos = "localhost".len();
        let slots = fields.slots(LOCALHOST_SLOTS)?;
        (HostKind::Local, slots, Options::default())
    } else if verbatim.contains('@') {
        fields.ssh()?
    } else {
        fields.tcp()?
    };
    Ok(HostSpec {
        text: verbatim.to_owned(),
        kind,
        slots,
        lzo: options.lzo,
        cpp: options.cpp,
        down: options.down,
    })
}

#[derive(Default)]
struct Options {
    lzo: bool,
    cpp: bool,
    down: bool,
}

/// A cursor over the list from an entry's first byte to the end of the whole text,
/// which is what distcc's field parsers see.
pub(super) struct Fields<'a> {
    text: &'a str,
    pos: usize,
    verbatim: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn at(text: &'a str, verbatim: &'a str, pos: usize) -> Self {
        Fields {
            text,
            pos,
            verbatim,
        }
    }

    fn entry(&self) -> String {
        self.verbatim.to_owned()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// `dcc_dup_part`: the run up to a stop byte; None (and no move) when it is empty.
    fn field(&mut self, stop: &[u8]) -> Option<&'a str> {
        let len = span(&self.text.as_bytes()[self.pos..], stop);
        if len == 0 {
            return None;
        }
        let field = &self.text[self.pos..self.pos + len];
        self.pos += len;
        Some(field)
    }

    /// `dcc_parse_multiplier`: `/N` or `=N` read with `atoi`, which skips leading
    /// whitespace (even past the entry's end) and accepts a sign; the cursor moves only
    /// over digits directly after the `/`. The only error is a value that is zero as an
    /// `int`.
    pub(super) fn multiplier(&mut self) -> Result<Option<i64>, HostsError> {
        if !matches!(self.peek(), Some(b'/' | b'=')) {
            return Ok(None);
        }
        self.pos += 1;
        let bytes = &self.text.as_bytes()[self.pos..];
        let (value, _) = strtol(bytes);
        // atoi is (int)strtol, so 4294967296 is zero too.
        if value as i32 == 0 {
            return Err(HostsError::ZeroSlots {
                entry: self.entry(),
            });
        }
        self.pos += bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        Ok(Some(value))
    }

    /// A multiplier that, when present, replaces `current`.
    fn slots(&mut self, current: u32) -> Result<u32, HostsError> {
        match self.multiplier()? {
            Some(value) => slot_count(value, self.verbatim),
            None => Ok(current),
        }
    }

    /// `[USER]@HOST[/N][:COMMAND]OPTIONS`.
    fn ssh(&mut self) -> Result<(HostKind, u32, Options), HostsError> {
        let user = self.field(b"@").map(str::to_owned);
        // The entry contains '@', so the user field stopped at one.
        self.pos += 1;
        let host = self
            .field(NAME_END)
            .ok_or_else(|| HostsError::NoHostname {
                entry: self.entry(),
            })?
            .to_owned();
        let slots = self.slots(DEFAULT_SLOTS)?;
        let mut command = None;
        if self.peek() == Some(b':') {
            self.pos += 1;
            command = self.field(COMMAND_END).map(str::to_owned);
        }
        let options = self.options()?;
        Ok((
            HostKind::Ssh {
                user,
                host,
                command,
            },
            slots,
            options,
        ))
    }

    /// After `reapi://` or `reapis://`: `HOST:PORT[/N]OPTIONS` (the engine checks the
    /// authority when the daemon connects).
    fn reapi(&mut self, tls: bool) -> Result<(HostKind, u32, Options), HostsError> {
        let authority = self
            .field(AUTHORITY_END)
            .ok_or_else(|| HostsError::NoHostname {
                entry: self.entry(),
            })?
            .to_owned();
        let slots = self.slots(DEFAULT_SLOTS)?;
        let options = self.options()?;
        if options.lzo || options.cpp {
            return Err(HostsError::UnknownOption {
                entry: self.entry(),
                option: "lzo or cpp (REAPI hosts take neither)".to_owned(),
            });
        }
        Ok((HostKind::Reapi { tls, authority }, slots, options))
    }

    /// `HOST[/N][:PORT][/N]OPTIONS`, HOST being a name, IPv4 address or `[IPv6]`.
    fn tcp(&mut self) -> Result<(HostKind, u32, Options), HostsError> {
        let host = if self.peek() == Some(b'[') {
            self.pos += 1;
            let host = self.field(IPV6_END);
            if self.peek() != Some(b']') {
                return Err(HostsError::UnclosedBracket {
                    entry: self.entry(),
                });
            }
            self.pos += 1;
            host
        } else {
            self.field(NAME_END)
        };
        let host = host
            .ok_or_else(|| HostsError::NoHostname {
                entry: self.entry(),
            })?
            .to_owned();
        let mut slots = self.slots(DEFAULT_SLOTS)?;
        let mut port = DEFAULT_PORT;
        if self.peek() == Some(b':') {
            self.pos += 1;
            let (value, len) = strtol(&self.text.as_bytes()[self.pos..]);
            self.pos += len;
            match self.peek() {
                None => {}
                Some(b) if c_isspace(b) || b == b'/' || b == b',' => {}
                Some(_) => {
                    return Err(HostsError::BadPort {
                        entry: self.entry(),
                    });
                }
            }
            port = u16::try_from(value)
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| HostsError::PortOutOfRange {
                    entry: self.entry(),
                    port: value,
                })?;
        }
        slots = self.slots(slots)?;
        let options = self.options()?;
        Ok((HostKind::Tcp { host, port }, slots, options))
    }

    /// `dcc_parse_options`: `,lzo`, `,down`, `,cpp`, matched by prefix.
    fn options(&mut self) -> Result<Options, HostsError> {
        let mut options = Options::default();
        while self.peek() == Some(b',') {
            self.pos += 1;
            let rest = &self.text[self.pos..];
            if rest.starts_with("lzo") {
                options.lzo = true;
                self.pos += 3;
            } else if rest.starts_with("down") {
                options.down = true;
                self.pos += 4;
            } else if rest.starts_with("cpp") {
                options.cpp = true;
                self.pos += 3;
            } else if rest.starts_with("auth") {
                return Err(HostsError::AuthUnsupported {
                    entry: self.entry(),
                });
            } else {
                let len = span(rest.as_bytes(), b", \t\n\r\x0c#");
                return Err(HostsError::UnknownOption {
                    entry: self.entry(),
                    option: rest[..len].to_owned(),
                });
            }
        }
        if options.cpp && !options.lzo {
            return Err(HostsError::CppWithoutLzo {
                entry: self.entry(),
            });
        }
        Ok(options)
    }
}

/// A slot count sshcc can hold; distcc would keep negative or wrapped ones.
pub(super) fn slot_count(value: i64, verbatim: &str) -> Result<u32, HostsError> {
    i32::try_from(value)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| HostsError::SlotsOutOfRange {
            entry: verbatim.to_owned(),
            slots: value,
        })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::test_support::*;
    use super::*;
    use crate::exit_code::ExitCode;

    #[test]
    fn localhost_is_local() {
        let h = one("localhost");
        assert_eq!((h.kind, h.slots), (HostKind::Local, 2));
        let h = one("localhost/7");
        assert_eq!((h.kind, h.slots), (HostKind::Local, 7));
        assert_eq!(one("localhost#x").kind, HostKind::Local);
    }

    #[test]
    fn localhost_ignores_everything_after_its_limit() {
        for text in ["localhost/2,bogus", "localhost/2,cpp", "localhost/2x"] {
            let h = one(text);
            assert_eq!(
                (h.kind, h.slots, h.lzo, h.cpp),
                (HostKind::Local, 2, false, false)
            );
        }
    }

    #[test]
    fn localhost_with_anything_else_is_tcp() {
        assert_eq!(one("localhost:3632").kind, tcp("localhost", 3632));
        assert_eq!(one("localhost:3632").slots, 4);
        let h = one("localhost,lzo");
        assert_eq!((h.kind, h.lzo), (tcp("localhost", 3632), true));
        assert_eq!(one("localhost=3").kind, tcp("localhost=3", 3632));
        assert_eq!(one("localhostX").kind, tcp("localhostX", 3632));
        assert_eq!(one("127.0.0.1").kind, tcp("127.0.0.1", 3632));
        // '@' loses to the localhost test.
        assert_eq!(one("localhost/3@x").kind, HostKind::Local);
    }

    #[test]
    fn ssh_entries() {
        assert_eq!(one("@h").kind, ssh(None, "h", None));
        assert_eq!(one("u@h").kind, ssh(Some("u"), "h", None));
        // The command stops at whitespace too; "--x,lzo,down" is then an entry of its own.
        let list = parse("u@h/2:/opt/bin/distccd --x,lzo,down").unwrap();
        assert_eq!(texts(&list), ["u@h/2:/opt/bin/distccd", "--x,lzo,down"]);
        assert_eq!(
            list.hosts[0].kind,
            ssh(Some("u"), "h", Some("/opt/bin/distccd"))
        );
        assert!(!list.hosts[0].lzo);
        let h = one("u@h/2:/opt/bin/distccd,lzo,down");
        assert_eq!(h.kind, ssh(Some("u"), "h", Some("/opt/bin/distccd")));
        assert_eq!((h.slots, h.lzo, h.down), (2, true, true));
        assert_eq!(one("@h:").kind, ssh(None, "h", None));
        assert_eq!(one("a@b@c").kind, ssh(Some("a"), "b@c", None));
        let h = one("@h/3:cmd:x/5,lzo");
        assert_eq!((h.kind, h.slots), (ssh(None, "h", Some("cmd:x/5")), 3));
    }

    #[test]
    fn ssh_limit_must_come_before_command() {
        let h = one("@h:cmd/5");
        assert_eq!((h.kind, h.slots), (ssh(None, "h", Some("cmd/5")), 4));
    }

    #[test]
    fn reapi_entries() {
        let h = one("reapi://sched:8980/64");
        assert_eq!(
            (h.kind.clone(), h.slots),
            (
                HostKind::Reapi {
                    tls: false,
                    authority: "sched:8980".into()
                },
                64
            )
        );
        assert_eq!(h.kind.reapi_url().as_deref(), Some("reapi://sched:8980"));
        let h = one("reapis://[::1]:443,down");
        assert_eq!(
            (h.kind, h.slots, h.down),
            (
                HostKind::Reapi {
                    tls: true,
                    authority: "[::1]:443".into()
                },
                4,
                true
            )
        );
        assert!(parse("reapi:///8").is_err());
        assert!(parse("reapi://a:1,lzo").is_err());
    }

    #[test]
    fn ssh_needs_a_hostname() {
        for text in ["@", "u@", "u@/3", "@:cmd", "@,lzo"] {
            assert!(
                matches!(parse(text), Err(HostsError::NoHostname { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn tcp_limit_and_port_in_either_order() {
        for (text, port, slots) in [
            ("h", 3632, 4),
            ("h:4000", 4000, 4),
            ("h/3", 3632, 3),
            ("h:4000/3", 4000, 3),
            ("h/3:4000", 4000, 3),
            ("h/3:4000/5", 4000, 5),
            ("h/3/4", 3632, 4),
            ("h:+80", 80, 4),
            ("h/+3:4000", 3632, 3),
        ] {
            let h = one(text);
            assert_eq!((h.kind, h.slots), (tcp("h", port), slots), "{text:?}");
        }
    }

    #[test]
    fn ipv6_in_brackets() {
        assert_eq!(one("[::1]").kind, tcp("::1", 3632));
        let h = one("[fe80::1%eth0]:3633/5,lzo");
        assert_eq!(
            (h.kind, h.slots, h.lzo),
            (tcp("fe80::1%eth0", 3633), 5, true)
        );
        assert_eq!(one("[::1]/6").slots, 6);
        assert_eq!(one("[::1]=3").slots, 3);
        assert!(matches!(
            parse("[::1"),
            Err(HostsError::UnclosedBracket { .. })
        ));
        assert!(matches!(parse("[]"), Err(HostsError::NoHostname { .. })));
    }

    #[test]
    fn equals_is_part_of_a_host_name() {
        assert_eq!(one("h=3").kind, tcp("h=3", 3632));
        assert_eq!(one("h=3").slots, 4);
    }

    #[test]
    fn tcp_needs_a_hostname() {
        for text in [":4000", "/3", ",lzo"] {
            assert!(
                matches!(parse(text), Err(HostsError::NoHostname { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn garbage_after_port_is_an_error() {
        for text in [
            "h:port:x", "h:4000x", "h:4000:5", "h:+", "h:80#c", "[::1]:x",
        ] {
            assert!(
                matches!(parse(text), Err(HostsError::BadPort { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn ports_sshcc_cannot_use_are_errors() {
        for (text, port) in [("h:", 0), ("h:0", 0), ("h:-1", -1), ("h:99999", 99999)] {
            match parse(text) {
                Err(HostsError::PortOutOfRange { port: p, .. }) => assert_eq!(p, port),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(one("h:65535").kind, tcp("h", 65535));
    }

    #[test]
    fn garbage_after_the_last_field_is_ignored() {
        assert_eq!(one("host/4x").slots, 4);
        assert_eq!(one("@h/3x").slots, 3);
        assert!(one("h,lzofoo").lzo);
        assert!(one("h,downtown").down);
        assert_eq!(one("a,lzo/3").slots, 4);
    }

    #[test]
    fn fields_run_past_the_entry_like_distcc() {
        // The entry is "h" but the host name runs into the comment.
        let h = one("h#x");
        assert_eq!((h.text.as_str(), h.kind), ("h", tcp("h#x", 3632)));
        assert!(one("h#x,lzo").lzo);
        assert!(matches!(
            parse("h#x,bogus"),
            Err(HostsError::UnknownOption { .. })
        ));
        assert_eq!(one("@h#c").kind, ssh(None, "h#c", None));
        // atoi and strtol skip whitespace, so the next entry's digits are read too.
        let list = parse("h/ 3").unwrap();
        assert_eq!(texts(&list), ["h/", "3"]);
        assert_eq!(list.total_slots(), 7);
        let list = parse("h: 80").unwrap();
        assert_eq!(list.hosts[0].kind, tcp("h", 80));
        let list = parse("--localslots= 5").unwrap();
        assert_eq!((list.local_slots, texts(&list)), (Some(5), vec!["5"]));
    }

    #[test]
    fn options() {
        let h = one("h,lzo");
        assert_eq!((h.lzo, h.cpp, h.down), (true, false, false));
        let h = one("h,down");
        assert_eq!((h.lzo, h.cpp, h.down), (false, false, true));
        for text in ["h,lzo,cpp", "h,cpp,lzo", "h:4000/2,cpp,down,lzo"] {
            let h = one(text);
            assert!(h.lzo && h.cpp, "{text:?}");
        }
        assert!(one("@h:cmd,down").down);
    }

    #[test]
    fn unknown_option_rejects_the_whole_list() {
        for (text, option) in [
            ("good host,bogus", "bogus"),
            ("h,", ""),
            ("h,,lzo", ""),
            ("h,lzo,x,down", "x"),
            ("@h,zip", "zip"),
        ] {
            match parse(text) {
                Err(HostsError::UnknownOption { option: o, .. }) => {
                    assert_eq!(o, option, "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let err = parse("a host,bogus").unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::BadHostSpec);
        assert!(err.to_string().contains("\"host,bogus\""), "{err}");
    }

    #[test]
    fn cpp_requires_lzo() {
        let err = parse("h,cpp").unwrap_err();
        assert!(matches!(err, HostsError::CppWithoutLzo { .. }));
        assert!(
            err.to_string()
                .contains("pump mode (',cpp') requires compression (',lzo')"),
            "{err}"
        );
        assert!(parse("@h,cpp,down").is_err());
    }

    #[test]
    fn auth_is_unsupported() {
        for text in ["h,auth", "h,auth=name", "@h,lzo,auth"] {
            assert!(
                matches!(parse(text), Err(HostsError::AuthUnsupported { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn zero_slots_are_an_error() {
        for text in [
            "h/0",
            "@h/0",
            "@h/0:cmd",
            "localhost/0",
            "h/",
            "h/abc",
            "h:4000/",
            "h/4294967296",
            "h/-0",
        ] {
            assert!(
                matches!(parse(text), Err(HostsError::ZeroSlots { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn slots_sshcc_cannot_hold_are_errors() {
        for text in ["h/-3", "h/99999999999", "localhost/-1"] {
            assert!(
                matches!(parse(text), Err(HostsError::SlotsOutOfRange { .. })),
                "{text:?}"
            );
        }
        assert_eq!(one("h/2147483647").slots, 2147483647);
    }
}
