//! The host list: which build boxes may take jobs and how many at once.
//!
//! This module owns the host-list grammar (`DISTCC_HOSTS` and hosts files share one
//! parser: [`scanner`] splits the text into entries and keywords, [`entry`] reads one
//! entry's fields, with C's string functions in [`cstr`]), the order in which sshcc looks
//! for the list ([`sources`]), and what `-j` and `--show-hosts` print and the
//! `--randomize` shuffle ([`list`]); one entry's types are in [`spec`], the errors in
//! [`error`], and this file only re-exports them. Existing distcc setups must keep
//! working unchanged, so [`parse`] reproduces distcc 3.4's scanner (`src/hosts.c`) byte
//! for byte, quirks included, wherever the result is representable:
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

mod cstr;
mod entry;
mod error;
mod list;
mod scanner;
mod sources;
mod spec;
#[cfg(test)]
mod test_support;

pub use error::{HostSource, HostsError};
pub use list::HostList;
pub use scanner::parse;
pub use sources::{SYSTEM_HOSTS_FILE, load, process_env};
pub use spec::{DEFAULT_PORT, HostKind, HostSpec};
