//! The host list: which build boxes may take jobs and how many at once.
//!
//! This module owns the host-list grammar (`DISTCC_HOSTS` and hosts files share one
//! parser), the order in which sshcc looks for the list, what `-j` and `--show-hosts`
//! print, and the `--randomize` shuffle. Existing distcc setups must keep working
//! unchanged, so [`parse`] reproduces distcc 3.4's scanner (`src/hosts.c`) byte for byte,
//! quirks included, wherever the result is representable:
//!
//! * Entries end at `" #\t\n\f\r"`, but the field parsers read the rest of the whole
//!   text, not just the entry. So `h#note` is one entry `h` naming host `h#note`,
//!   `h#x,bogus` is rejected for its option, `h:80#x` is a bad port, and `h/ 3` gives `h`
//!   three slots and adds a host named `3`.
//! * Keywords and options match by prefix: `--randomizeX` randomizes, `,lzofoo` is `,lzo`.
//! * Anything left over after the last field is ignored: `host/4x`, `@h/3x`,
//!   `localhost/2,bogus` (a localhost entry has no options at all).
//! * `localhost,lzo` and `localhost:3632` are TCP hosts named `localhost`.
//! * `--localslots=0` is not a setting (its value is bad), so, as in distcc, it becomes a
//!   TCP host of that name; `--localslots_cpp=0` is silently dropped.
//!
//! Where distcc would store a value sshcc cannot use, the list is rejected instead: slot
//! counts outside `1..=i32::MAX` (distcc keeps `/-3` or wraps `/99999999999`), ports
//! outside `1..=65535` (distcc keeps `h:`, `h:-1`, `h:99999`), and `,auth` (sshcc has no
//! GSS-API). `+zeroconf` is accepted and contributes no hosts: sshcc has no DNS-SD
//! discovery.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::exit_code::ExitCode;

/// distccd's TCP port, used when a TCP entry names none.
pub const DEFAULT_PORT: u16 = 3632;

/// The system-wide hosts file, the last place looked at (Debian's `${sysconfdir}`).
pub const SYSTEM_HOSTS_FILE: &str = "/etc/distcc/hosts";

/// Remote entries get a little more than a box's cores so files can be in transit.
const DEFAULT_SLOTS: u32 = 4;
/// distcc's guess for this machine; users with more cores write `localhost/N`.
const LOCALHOST_SLOTS: u32 = 2;

/// What ends an entry: distcc's `strcspn(where, " #\t\n\f\r")`. `\v` is not here although
/// it separates entries, so `a\vb` is a single entry.
const ENTRY_END: &[u8] = b" #\t\n\x0c\r";
/// What ends a host name (`dcc_dup_part` separators).
const NAME_END: &[u8] = b"/: \t\n\r\x0c,";
/// What ends a bracketed IPv6 address; `:` belongs to the address there.
const IPV6_END: &[u8] = b"/] \t\n\r\x0c,";
/// What ends an SSH entry's remote command; it may contain `/`, `:` and `@`.
const COMMAND_END: &[u8] = b" \t\n\r\x0c,";

/// Where an entry sends jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// `localhost[/N]`: run on this machine.
    Local,
    /// `[user]@host[/N][:command]`: over SSH. `command` is the remote command (None =
    /// default).
    Ssh {
        user: Option<String>,
        host: String,
        command: Option<String>,
    },
    /// `host[:port][/N]` (both orders) or `[ipv6]:port`: distcc's TCP protocol, default
    /// port 3632.
    Tcp { host: String, port: u16 },
}

/// One host entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The entry verbatim, as distcc keeps it (for messages and `--show-hosts`).
    pub text: String,
    /// Where the entry sends jobs.
    pub kind: HostKind,
    /// How many jobs it takes at once: `/N`, default 4 (`localhost`: 2).
    pub slots: u32,
    /// `,lzo`: compress the job.
    pub lzo: bool,
    /// `,cpp`: pump mode (accepted; callers treat it as plain for now).
    pub cpp: bool,
    /// `,down`: never use this entry (it still counts for `-j`).
    pub down: bool,
}

/// A parsed host list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    /// The host entries in list order. Empty is not an error here; distcc then says
    /// "contained no hosts; can't distribute work" and compiles locally.
    pub hosts: Vec<HostSpec>,
    /// `--randomize` appeared: callers apply [`HostList::shuffle`] before choosing.
    pub randomize: bool,
    /// `--localslots=N`: local compile slots (None = distcc's default, 4).
    pub local_slots: Option<u32>,
    /// `--localslots_cpp=N`: local preprocessing slots (None = distcc's default, 8).
    pub local_slots_cpp: Option<u32>,
}

/// Why a host list cannot be used. Parse errors name the entry verbatim.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hostname is required in host specification {entry:?}")]
    NoHostname { entry: String },
    #[error("IPv6 address in host specification {entry:?} requires a closing ']'")]
    UnclosedBracket { entry: String },
    #[error("invalid tcp port specification in {entry:?}")]
    BadPort { entry: String },
    #[error("tcp port {port} in host specification {entry:?} is not in 1-65535")]
    PortOutOfRange { entry: String, port: i64 },
    #[error(
        "bad multiplier in host specification {entry:?}: the slot count must be a non-zero number"
    )]
    ZeroSlots { entry: String },
    #[error("slot count {slots} in host specification {entry:?} is not in 1-2147483647")]
    SlotsOutOfRange { entry: String, slots: i64 },
    #[error("unrecognized option {option:?} in host specification {entry:?}")]
    UnknownOption { entry: String, option: String },
    #[error(
        "GSS-API authentication (',auth') in host specification {entry:?} is not supported \
         by sshcc"
    )]
    AuthUnsupported { entry: String },
    #[error("pump mode (',cpp') requires compression (',lzo') in host specification {entry:?}")]
    CppWithoutLzo { entry: String },
    #[error("cannot read host list {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A parse error in a list that [`load`] found.
    #[error("{origin}: {error}")]
    InSource {
        origin: HostSource,
        error: Box<HostsError>,
    },
}

impl HostsError {
    /// The distcc exit code for this failure (distcc's 106 for every bad list).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HostsError::Read { .. } => ExitCode::IoError,
            HostsError::InSource { error, .. } => error.exit_code(),
            _ => ExitCode::BadHostSpec,
        }
    }
}

/// Where the list came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// An environment variable, by name.
    Env(&'static str),
    /// A hosts file.
    File(PathBuf),
}

impl fmt::Display for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSource::Env(name) => write!(f, "${name}"),
            HostSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Parses a host list: the value of `DISTCC_HOSTS` or the contents of a hosts file.
pub fn parse(text: &str) -> Result<HostList, HostsError> {
    // distcc works on a C string, so a NUL (possible in a file) ends the list.
    let text = text.split('\0').next().unwrap_or_default();
    let bytes = text.as_bytes();
    let mut list = HostList::default();
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        if byte == b'#' {
            // Only newlines end a comment; a form feed does not.
            pos += 1;
            pos += span(&bytes[pos..], b"\n\r");
            continue;
        }
        if c_isspace(byte) {
            pos += 1;
            continue;
        }
        let end = pos + span(&bytes[pos..], ENTRY_END);
        let verbatim = &text[pos..end];
        let rest = &text[pos..];
        match classify(rest, verbatim)? {
            Token::Randomize => list.randomize = true,
            Token::LocalSlots(Some(n)) => list.local_slots = Some(n),
            Token::LocalSlotsCpp(Some(n)) => list.local_slots_cpp = Some(n),
            Token::LocalSlots(None) | Token::LocalSlotsCpp(None) | Token::Zeroconf => {}
            Token::Host => list.hosts.push(parse_entry(rest, verbatim)?),
        }
        pos = end;
    }
    Ok(list)
}

impl HostList {
    /// What `distcc -j` prints: the slots of every host entry, `,down` ones included,
    /// `--localslots` not.
    pub fn total_slots(&self) -> u32 {
        self.hosts
            .iter()
            .fold(0, |sum, host| sum.saturating_add(host.slots))
    }

    /// What `distcc --show-hosts` prints: each entry verbatim, one per line.
    pub fn show_hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|host| format!("{}\n", host.text))
            .collect()
    }

    /// Reorders the hosts for `--randomize`; callers apply it when `randomize` is set.
    /// distcc seeds with its pid so that parallel jobs spread over the boxes; a fixed seed
    /// gives a fixed order, which tests rely on.
    pub fn shuffle(&mut self, seed: u64) {
        let mut state = seed;
        for i in (1..self.hosts.len()).rev() {
            // The modulo bias is irrelevant for lists of a few dozen hosts.
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            self.hosts.swap(i, j);
        }
    }
}

/// Loads the host list in sshcc's order: `SSHCC_HOSTS`, else `DISTCC_HOSTS` (either one,
/// once set, wins even when empty, which means "no hosts" as in distcc), else
/// `$XDG_CONFIG_HOME/sshcc/hosts` (default `~/.config/sshcc/hosts`), else
/// `$DISTCC_DIR/hosts` (default `~/.distcc/hosts`), else `/etc/distcc/hosts`. Returns
/// `Ok(None)` when no source exists. A file that exists but cannot be read is an error
/// rather than skipped, so a permissions mistake does not silently change where jobs go.
///
/// The environment is read through `lookup` so tests need not change the process
/// environment; pass [`process_env`] for the real one.
pub fn load(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<(HostList, HostSource)>, HostsError> {
    load_from(lookup, Path::new(SYSTEM_HOSTS_FILE))
}

/// Reads one variable of this process's environment for [`load`]. A value that is not
/// UTF-8 is converted lossily instead of being treated as unset, which would silently
/// fall through to the hosts files.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

fn load_from(
    lookup: impl Fn(&str) -> Option<String>,
    system_file: &Path,
) -> Result<Option<(HostList, HostSource)>, HostsError> {
    let in_source = |origin: HostSource| {
        move |error| HostsError::InSource {
            origin,
            error: Box::new(error),
        }
    };
    for name in ["SSHCC_HOSTS", "DISTCC_HOSTS"] {
        if let Some(text) = lookup(name) {
            let origin = HostSource::Env(name);
            let list = parse(&text).map_err(in_source(origin.clone()))?;
            return Ok(Some((list, origin)));
        }
    }
    for path in host_files(&lookup, system_file) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(source) => return Err(HostsError::Read { path, source }),
        };
        // A Latin-1 comment must not make the whole file unusable; distcc never looks at
        // the encoding either.
        let text = String::from_utf8_lossy(&bytes);
        let origin = HostSource::File(path);
        let list = parse(&text).map_err(in_source(origin.clone()))?;
        return Ok(Some((list, origin)));
    }
    Ok(None)
}

/// The candidate hosts files, in order.
fn host_files(lookup: &impl Fn(&str) -> Option<String>, system_file: &Path) -> Vec<PathBuf> {
    let home = lookup("HOME");
    let mut files = Vec::new();
    // The XDG spec says an empty or relative XDG_CONFIG_HOME is to be ignored.
    let xdg = lookup("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    match (xdg, &home) {
        (Some(dir), _) => files.push(dir.join("sshcc/hosts")),
        (None, Some(home)) => files.push(PathBuf::from(format!("{home}/.config/sshcc/hosts"))),
        (None, None) => {}
    }
    // Spelled as distcc's asprintf("%s/hosts") so that odd values mean the same file.
    match (lookup("DISTCC_DIR"), &home) {
        (Some(dir), _) => files.push(PathBuf::from(format!("{dir}/hosts"))),
        (None, Some(home)) => files.push(PathBuf::from(format!("{home}/.distcc/hosts"))),
        (None, None) => {}
    }
    files.push(system_file.to_path_buf());
    files
}

/// What a whitespace-delimited entry turned out to be.
enum Token {
    Randomize,
    LocalSlots(Option<u32>),
    LocalSlotsCpp(Option<u32>),
    Zeroconf,
    Host,
}

/// Recognizes the keywords, in distcc's order and with its prefix matching.
fn classify(rest: &str, verbatim: &str) -> Result<Token, HostsError> {
    if verbatim.starts_with("--randomize") {
        return Ok(Token::Randomize);
    }
    if verbatim.starts_with("--localslots_cpp") {
        return match Fields::at(rest, verbatim, 16).multiplier() {
            Ok(value) => Ok(Token::LocalSlotsCpp(
                value.map(|n| slot_count(n, verbatim)).transpose()?,
            )),
            // distcc then tries `--localslots`, which sees `_cpp` and takes no value.
            Err(_) => {
                tracing::warn!("ignoring {verbatim:?}: bad multiplier");
                Ok(Token::LocalSlots(None))
            }
        };
    }
    if verbatim.starts_with("--localslots") {
        match Fields::at(rest, verbatim, 12).multiplier() {
            Ok(value) => {
                return Ok(Token::LocalSlots(
                    value.map(|n| slot_count(n, verbatim)).transpose()?,
                ));
            }
            Err(_) => tracing::warn!("{verbatim:?} has a bad multiplier; taken as a host name"),
        }
    }
    if verbatim == "+zeroconf" {
        return Ok(Token::Zeroconf);
    }
    Ok(Token::Host)
}

/// Parses one host entry (`dcc_parse_localhost`, `_ssh_host`, `_tcp_host`).
fn parse_entry(rest: &str, verbatim: &str) -> Result<HostSpec, HostsError> {
    let is_local = verbatim
        .strip_prefix("localhost")
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'));
    let mut fields = Fields::at(rest, verbatim, 0);
    let (kind, slots, options) = if is_local {
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
struct Fields<'a> {
    text: &'a str,
    pos: usize,
    verbatim: &'a str,
}

impl<'a> Fields<'a> {
    fn at(text: &'a str, verbatim: &'a str, pos: usize) -> Self {
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
    fn multiplier(&mut self) -> Result<Option<i64>, HostsError> {
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
fn slot_count(value: i64, verbatim: &str) -> Result<u32, HostsError> {
    i32::try_from(value)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| HostsError::SlotsOutOfRange {
            entry: verbatim.to_owned(),
            slots: value,
        })
}

/// C's `isspace` in the C locale.
fn c_isspace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strcspn`.
fn span(bytes: &[u8], stop: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| stop.contains(b))
        .unwrap_or(bytes.len())
}

/// C's `strtol(s, &end, 10)` with a 64-bit long: the clamped value and how many bytes it
/// used (0 when there are no digits, as `end` is then `s`).
fn strtol(bytes: &[u8]) -> (i64, usize) {
    let mut i = bytes.iter().take_while(|&&b| c_isspace(b)).count();
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = i;
    let mut value: i64 = 0;
    while let Some(&b) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        let digit = i64::from(b - b'0');
        value = value.saturating_mul(10);
        value = if negative {
            value.saturating_sub(digit)
        } else {
            value.saturating_add(digit)
        };
        i += 1;
    }
    if i == digits { (0, 0) } else { (value, i) }
}

/// SplitMix64: tiny, and good enough to spread jobs.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> HostSpec {
        let list = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(list.hosts.len(), 1, "{text:?}: {list:?}");
        list.hosts.into_iter().next().unwrap()
    }

    fn tcp(host: &str, port: u16) -> HostKind {
        HostKind::Tcp {
            host: host.into(),
            port,
        }
    }

    fn ssh(user: Option<&str>, host: &str, command: Option<&str>) -> HostKind {
        HostKind::Ssh {
            user: user.map(Into::into),
            host: host.into(),
            command: command.map(Into::into),
        }
    }

    fn texts(list: &HostList) -> Vec<&str> {
        list.hosts.iter().map(|h| h.text.as_str()).collect()
    }

    const EXAMPLE: &str = "localhost red green:4000 blue/8 @ssh1 \
        user@ssh2/2:/opt/distccd,lzo oldstyle/3:4200,lzo,cpp [::1]:3633/5,lzo \
        --localslots=3 --localslots_cpp=9";

    #[test]
    fn distcc_md_example() {
        let list = parse(EXAMPLE).unwrap();
        assert_eq!(list.total_slots(), 32);
        assert_eq!(list.local_slots, Some(3));
        assert_eq!(list.local_slots_cpp, Some(9));
        assert!(!list.randomize);
        assert_eq!(
            list.show_hosts(),
            "localhost\nred\ngreen:4000\nblue/8\n@ssh1\nuser@ssh2/2:/opt/distccd,lzo\n\
             oldstyle/3:4200,lzo,cpp\n[::1]:3633/5,lzo\n"
        );
        let kinds: Vec<_> = list.hosts.iter().map(|h| h.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                HostKind::Local,
                tcp("red", 3632),
                tcp("green", 4000),
                tcp("blue", 3632),
                ssh(None, "ssh1", None),
                ssh(Some("user"), "ssh2", Some("/opt/distccd")),
                tcp("oldstyle", 4200),
                tcp("::1", 3633),
            ]
        );
        let slots: Vec<_> = list.hosts.iter().map(|h| h.slots).collect();
        assert_eq!(slots, [2, 4, 4, 8, 4, 2, 3, 5]);
        let lzo: Vec<_> = list.hosts.iter().map(|h| h.lzo).collect();
        assert_eq!(lzo, [false, false, false, false, false, true, true, true]);
        assert!(list.hosts[6].cpp);
        assert!(list.hosts.iter().all(|h| !h.down));
    }

    #[test]
    fn comments_run_to_end_of_line() {
        let list = parse("a # b c\n d#e f\r g # h\x0c i\n#\nj").unwrap();
        assert_eq!(texts(&list), ["a", "d", "g", "j"]);
    }

    #[test]
    fn any_whitespace_separates_entries() {
        let list = parse(" a\tb\n\nc\r\nd\x0ce \x0bf ").unwrap();
        assert_eq!(texts(&list), ["a", "b", "c", "d", "e", "f"]);
    }

    #[test]
    fn vertical_tab_inside_an_entry_does_not_end_it() {
        assert_eq!(one("a\x0bb").text, "a\x0bb");
    }

    #[test]
    fn nul_ends_the_list() {
        assert_eq!(texts(&parse("a\0b").unwrap()), ["a"]);
    }

    #[test]
    fn empty_list_has_no_hosts() {
        for text in [
            "",
            "  \n",
            "# nothing",
            "--randomize --localslots=2 +zeroconf",
        ] {
            let list = parse(text).unwrap();
            assert!(list.hosts.is_empty(), "{text:?}");
            assert_eq!(list.total_slots(), 0);
            assert_eq!(list.show_hosts(), "");
        }
    }

    #[test]
    fn randomize_keyword_is_a_prefix_match() {
        for text in ["--randomize a", "a --randomize", "--randomizefoo a"] {
            let list = parse(text).unwrap();
            assert!(list.randomize, "{text:?}");
            assert_eq!(texts(&list), ["a"]);
        }
        assert!(!parse("a").unwrap().randomize);
    }

    #[test]
    fn localslots_settings() {
        let list = parse("--localslots=3 --localslots_cpp/9 a").unwrap();
        assert_eq!((list.local_slots, list.local_slots_cpp), (Some(3), Some(9)));
        let list = parse("--localslots/5 --localslots_cpp=2").unwrap();
        assert_eq!((list.local_slots, list.local_slots_cpp), (Some(5), Some(2)));
        // The last one wins.
        let list = parse("--localslots=3 --localslots=7").unwrap();
        assert_eq!(list.local_slots, Some(7));
        // Anything else starting with the keyword is swallowed without effect.
        for text in [
            "--localslots",
            "--localslotsX",
            "--localslots_cpp",
            "--localslots_cppX",
        ] {
            let list = parse(text).unwrap();
            assert_eq!(list, HostList::default(), "{text:?}");
        }
        // Not counted by -j.
        assert_eq!(parse("--localslots=30 a").unwrap().total_slots(), 4);
    }

    #[test]
    fn bad_localslots_cpp_is_ignored() {
        let list = parse("--localslots_cpp=0 a").unwrap();
        assert_eq!(list.local_slots_cpp, None);
        assert_eq!(texts(&list), ["a"]);
    }

    #[test]
    fn bad_localslots_becomes_a_host_like_distcc() {
        let list = parse("--localslots=0 --localslots=abc").unwrap();
        assert_eq!(texts(&list), ["--localslots=0", "--localslots=abc"]);
        assert_eq!(list.hosts[0].kind, tcp("--localslots=0", 3632));
        assert_eq!(list.local_slots, None);
        // With a '/' the name ends there and the zero multiplier rejects the list.
        assert!(matches!(
            parse("--localslots/0"),
            Err(HostsError::ZeroSlots { .. })
        ));
    }

    #[test]
    fn localslots_value_out_of_range() {
        assert!(matches!(
            parse("--localslots=-2"),
            Err(HostsError::SlotsOutOfRange { slots: -2, .. })
        ));
    }

    #[test]
    fn zeroconf_contributes_no_hosts() {
        let list = parse("+zeroconf a +zeroconf").unwrap();
        assert_eq!(texts(&list), ["a"]);
        // Only the exact word.
        assert_eq!(one("+zeroconfX").kind, tcp("+zeroconfX", 3632));
    }

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

    #[test]
    fn down_hosts_still_count() {
        assert_eq!(parse("a,down b/3,down localhost").unwrap().total_slots(), 9);
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let text = "a b c d e f g h i j";
        let original = parse(text).unwrap();
        let mut one = original.clone();
        let mut two = original.clone();
        one.shuffle(42);
        two.shuffle(42);
        assert_eq!(one, two);
        let mut sorted = texts(&one);
        sorted.sort_unstable();
        assert_eq!(sorted, texts(&original));
        let orders: std::collections::HashSet<Vec<String>> = (0..20)
            .map(|seed| {
                let mut list = original.clone();
                list.shuffle(seed);
                list.hosts.into_iter().map(|h| h.text).collect()
            })
            .collect();
        assert!(orders.len() > 10, "{orders:?}");
        let mut empty = HostList::default();
        empty.shuffle(1);
        assert!(empty.hosts.is_empty());
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    struct Dirs {
        _tmp: tempfile::TempDir,
        home: PathBuf,
        xdg: PathBuf,
        distcc_dir: PathBuf,
        system: PathBuf,
    }

    impl Dirs {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dirs = Dirs {
                home: tmp.path().join("home"),
                xdg: tmp.path().join("xdg"),
                distcc_dir: tmp.path().join("distcc"),
                system: tmp.path().join("etc/distcc/hosts"),
                _tmp: tmp,
            };
            std::fs::create_dir_all(&dirs.home).unwrap();
            dirs
        }

        fn write(&self, path: &Path, text: &str) -> PathBuf {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
            path.to_path_buf()
        }

        fn load(
            &self,
            vars: &[(&str, &str)],
        ) -> Result<Option<(HostList, HostSource)>, HostsError> {
            load_from(env(vars), &self.system)
        }
    }

    fn loaded(result: Result<Option<(HostList, HostSource)>, HostsError>) -> (String, HostSource) {
        let (list, source) = result.unwrap().expect("a host list");
        (list.show_hosts(), source)
    }

    #[test]
    fn load_prefers_sshcc_hosts_then_distcc_hosts() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        d.write(&d.home.join(".config/sshcc/hosts"), "file");
        let both = [("SSHCC_HOSTS", "s"), ("DISTCC_HOSTS", "d"), ("HOME", home)];
        assert_eq!(
            loaded(d.load(&both)),
            ("s\n".into(), HostSource::Env("SSHCC_HOSTS"))
        );
        assert_eq!(
            loaded(d.load(&both[1..])),
            ("d\n".into(), HostSource::Env("DISTCC_HOSTS"))
        );
    }

    #[test]
    fn empty_variable_means_no_hosts_and_stops_the_search() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        d.write(&d.home.join(".config/sshcc/hosts"), "file");
        for name in ["SSHCC_HOSTS", "DISTCC_HOSTS"] {
            let (list, source) = d.load(&[(name, ""), ("HOME", home)]).unwrap().unwrap();
            assert!(list.hosts.is_empty());
            assert_eq!(source, HostSource::Env(name));
        }
    }

    #[test]
    fn load_file_order() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        let xdg = d.xdg.to_str().unwrap();
        let distcc_dir = d.distcc_dir.to_str().unwrap();
        let vars = [
            ("HOME", home),
            ("XDG_CONFIG_HOME", xdg),
            ("DISTCC_DIR", distcc_dir),
        ];
        assert!(d.load(&vars).unwrap().is_none());

        let system = d.write(&d.system, "sys");
        assert_eq!(
            loaded(d.load(&vars)),
            ("sys\n".into(), HostSource::File(system))
        );

        let home_distcc = d.write(&d.home.join(".distcc/hosts"), "homedistcc");
        let ddir = d.write(&d.distcc_dir.join("hosts"), "distccdir");
        assert_eq!(
            loaded(d.load(&vars)),
            ("distccdir\n".into(), HostSource::File(ddir))
        );
        assert_eq!(
            loaded(d.load(&vars[..2])),
            ("homedistcc\n".into(), HostSource::File(home_distcc))
        );

        let home_config = d.write(&d.home.join(".config/sshcc/hosts"), "homeconfig");
        let without_xdg = [("HOME", home), ("DISTCC_DIR", distcc_dir)];
        assert_eq!(
            loaded(d.load(&without_xdg)),
            ("homeconfig\n".into(), HostSource::File(home_config.clone()))
        );
        // XDG_CONFIG_HOME replaces ~/.config rather than adding to it.
        assert_eq!(loaded(d.load(&vars)).0, "distccdir\n");
        let xdg_file = d.write(&d.xdg.join("sshcc/hosts"), "xdg # comment\n");
        assert_eq!(
            loaded(d.load(&vars)),
            ("xdg\n".into(), HostSource::File(xdg_file))
        );
        // A relative XDG_CONFIG_HOME is ignored, per the XDG spec.
        let relative = [("HOME", home), ("XDG_CONFIG_HOME", "rel")];
        assert_eq!(
            loaded(d.load(&relative)),
            ("homeconfig\n".into(), HostSource::File(home_config))
        );
    }

    #[test]
    fn load_without_home_uses_the_system_file() {
        let d = Dirs::new();
        let system = d.write(&d.system, "sys");
        assert_eq!(
            loaded(d.load(&[])),
            ("sys\n".into(), HostSource::File(system))
        );
    }

    #[test]
    fn load_names_the_source_of_a_parse_error() {
        let d = Dirs::new();
        let err = d.load(&[("DISTCC_HOSTS", "a,zip")]).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::BadHostSpec);
        assert!(err.to_string().starts_with("$DISTCC_HOSTS: "), "{err}");
        let system = d.write(&d.system, "a,cpp");
        let err = d.load(&[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", system.display())),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let d = Dirs::new();
        // A directory where the file should be cannot be read, even as root.
        std::fs::create_dir_all(d.distcc_dir.join("hosts")).unwrap();
        let err = d
            .load(&[("DISTCC_DIR", d.distcc_dir.to_str().unwrap())])
            .unwrap_err();
        assert!(matches!(err, HostsError::Read { .. }), "{err:?}");
        assert_eq!(err.exit_code(), ExitCode::IoError);
    }

    #[test]
    fn non_utf8_file_still_loads() {
        let d = Dirs::new();
        std::fs::create_dir_all(d.system.parent().unwrap()).unwrap();
        std::fs::write(&d.system, b"# B\xfcro\nbox/3\n").unwrap();
        let (list, _) = d.load(&[]).unwrap().unwrap();
        assert_eq!(list.total_slots(), 3);
    }
}
