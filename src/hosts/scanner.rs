//! The list as distcc 3.4's `dcc_parse_hosts` scans it: entries end at whitespace or
//! `#`, comments run to the end of the line, a NUL ends the text, and the keywords
//! (`--randomize`, `--localslots`, `--localslots_cpp`, `+zeroconf`) are told apart from
//! host entries, which [`entry`](super::entry) parses.

use super::cstr::{c_isspace, span};
use super::entry::{Fields, parse_entry, slot_count};
use super::error::HostsError;
use super::list::HostList;

/// What ends an entry: distcc's `strcspn(where, " #\t\n\f\r")`. `\v` is not here although
/// it separates entries, so `a\vb` is a single entry.
const ENTRY_END: &[u8] = b" #\t\n\x0c\r";

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

#[cfg(test)]
mod tests {
    use super::super::HostKind;
    use super::super::test_support::*;
    use super::*;

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
}
