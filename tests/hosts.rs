//! `sshcc::hosts` against Debian's real `distcc`: `total_slots()` must print what
//! `distcc -j` prints, `show_hosts()` what `distcc --show-hosts` prints, and lists distcc
//! refuses must be refused by `parse`.
//!
//! distcc 3.4 exits 0 from `-j` and `--show-hosts` even when the list is bad; it says
//! "Failed to get host list" on stderr and prints nothing, so that is what is checked.

use std::process::Command;

use sshcc::hosts::{self, HostsError};

/// One run of `distcc <flag>` with `DISTCC_HOSTS=hosts`.
struct Distcc {
    stdout: String,
    stderr: String,
}

impl Distcc {
    fn failed(&self) -> bool {
        self.stderr.contains("Failed to get host list")
    }
}

fn distcc(flag: &str, hosts: &str) -> Distcc {
    let dir = tempfile::tempdir().expect("DISTCC_DIR");
    // The flag must be distcc's first argument or it is taken for a compiler.
    let out = Command::new("distcc")
        .arg(flag)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", dir.path())
        .env_remove("DISTCC_LOG")
        .env_remove("DISTCC_VERBOSE")
        .output()
        .expect("run distcc");
    assert!(out.status.success(), "distcc {flag} {hosts:?}: {out:?}");
    Distcc {
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn have_distcc() -> bool {
    // Even --version creates distcc's state directory, in ~/.distcc by default.
    let dir = tempfile::tempdir().expect("DISTCC_DIR");
    let found = Command::new("distcc")
        .arg("--version")
        .env("DISTCC_DIR", dir.path())
        .output()
        .is_ok();
    if !found {
        eprintln!("skipping: no distcc on PATH");
    }
    found
}

/// Lists distcc accepts, with varied syntax; each must agree on -j and --show-hosts.
const ACCEPTED: &[&str] = &[
    // distcc.md §3.3's example; distcc prints 32.
    "localhost red green:4000 blue/8 @ssh1 user@ssh2/2:/opt/distccd,lzo \
     oldstyle/3:4200,lzo,cpp [::1]:3633/5,lzo --localslots=3 --localslots_cpp=9",
    "a",
    "  a b   c  ",
    // Comments, including one glued to an entry and one ended by \r.
    "# build boxes\na # the fast one\nb/3#no space\n#c/100\r d\n  # e/7",
    // ,down entries still count.
    "a,down b/2,down,lzo @c,down localhost/3 d,lzo,down,cpp",
    // Multiple lines, tabs, CRLF, form feed; \v inside an entry does not split it.
    "a\tb/3\n\tc:4000/2\r\n\x0cd\n\n\t\te/6,lzo\n\x0bf\x0bg",
    // IPv6.
    "[::1] [fe80::1]:3633 [::1]/6 [2001:db8::1]:4000/2,lzo [::1]=3 [fe80::1%eth0]:3633/7",
    // SSH.
    "@h u@h/3 u@h/2:/usr/bin/distccd,lzo,cpp @h:cmd,down a@b@c @h: @h/3:cmd:x/5,lzo",
    // localhost forms; only the first two are local.
    "localhost localhost/5 localhost:3632 localhost,lzo 127.0.0.1 localhost=3 \
     localhost/2,bogus localhost#x",
    // Limit and port in both orders.
    "h:4000/3 h/3:4000 h/3:4000/5 h:4000 h/3/4 h:+80 h/+3:4000",
    // Local-slot settings are not hosts; bad ones are dropped or become hosts.
    "--localslots=3 --localslots/4 --localslots_cpp=9 --localslots_cpp/2 a \
     --localslotsX --localslots_cpp=0 b --localslots=0",
    // Leftovers after the last field are ignored; prefixes of options match.
    "host/4x h,lzofoo @h/3x h,downtown a,lzo/3 a:3632,lzo/3",
    // Fields that run past the entry's end.
    "h/ 3 h: 80 h#x,lzo @h#c --localslots= 5",
    "+zeroconfX h=3",
];

/// Lists distcc rejects ("Failed to get host list").
const REJECTED: &[&str] = &[
    "host,bogus",
    "good host,bogus",
    "@h/0",
    "h:port:x",
    "h,cpp",
    "@h,cpp,down",
    "h,",
    "h,,lzo",
    "[::1",
    "[]",
    ":4000",
    "/3",
    "@",
    "u@",
    "h:4000/",
    "h/abc",
    "localhost/0",
    "h:80#c",
    "h#x,bogus",
    "--localslots/0",
    "h/4294967296",
    "@h/0:cmd",
    "[::1]:x",
];

#[test]
fn accepted_lists_match_distcc() {
    if !have_distcc() {
        return;
    }
    for text in ACCEPTED {
        let list = hosts::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let j = distcc("-j", text);
        assert!(!j.failed(), "distcc -j rejected {text:?}: {}", j.stderr);
        assert_eq!(
            format!("{}\n", list.total_slots()),
            j.stdout,
            "-j for {text:?}"
        );
        let show = distcc("--show-hosts", text);
        assert!(!show.failed(), "distcc rejected {text:?}: {}", show.stderr);
        assert_eq!(list.show_hosts(), show.stdout, "--show-hosts for {text:?}");
    }
}

#[test]
fn example_gives_32() {
    if !have_distcc() {
        return;
    }
    let text = ACCEPTED[0];
    assert_eq!(hosts::parse(text).unwrap().total_slots(), 32);
    assert_eq!(distcc("-j", text).stdout, "32\n");
}

#[test]
fn randomized_lists_match_distcc_on_j() {
    if !have_distcc() {
        return;
    }
    for text in [
        "--randomize a b/3 c/5 localhost",
        "a/2 b/7 --randomize\n@c/9,lzo",
        "--randomizefoo x y",
    ] {
        let mut list = hosts::parse(text).unwrap();
        assert!(list.randomize, "{text:?}");
        list.shuffle(7);
        assert_eq!(
            format!("{}\n", list.total_slots()),
            distcc("-j", text).stdout,
            "{text:?}"
        );
        // The order is random, the entries are not.
        let mut ours: Vec<String> = list.show_hosts().lines().map(String::from).collect();
        let mut theirs: Vec<String> = distcc("--show-hosts", text)
            .stdout
            .lines()
            .map(String::from)
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{text:?}");
    }
}

#[test]
fn rejected_lists_match_distcc() {
    if !have_distcc() {
        return;
    }
    for text in REJECTED {
        let j = distcc("-j", text);
        assert!(
            j.failed() && j.stdout.is_empty(),
            "distcc took {text:?}: {:?}",
            j.stdout
        );
        let err = hosts::parse(text).expect_err(text);
        assert_eq!(err.exit_code().code(), 106, "{text:?}: {err}");
    }
}

#[test]
fn lists_without_hosts() {
    if !have_distcc() {
        return;
    }
    // distcc: "contained no hosts; can't distribute work". parse gives an empty list and
    // leaves the message to its caller.
    for text in [
        "",
        " \n\t",
        "# only a comment",
        "--randomize --localslots=4",
    ] {
        let j = distcc("-j", text);
        assert!(
            j.failed() && j.stderr.contains("contained no hosts"),
            "{text:?}"
        );
        let list = hosts::parse(text).unwrap();
        assert!(list.hosts.is_empty(), "{text:?}");
    }
}

/// Where sshcc knowingly refuses what distcc takes: values it cannot represent. If this
/// starts failing, distcc changed and the module docs need a look.
#[test]
fn known_divergences() {
    if !have_distcc() {
        return;
    }
    for (text, distcc_j) in [
        ("h:", "4\n"),
        ("h:-1", "4\n"),
        ("h:99999", "4\n"),
        ("h/-3", "-3\n"),
        ("h/99999999999", "1215752191\n"),
    ] {
        assert_eq!(distcc("-j", text).stdout, distcc_j, "{text:?}");
        let err = hosts::parse(text).expect_err(text);
        assert!(
            matches!(
                err,
                HostsError::PortOutOfRange { .. } | HostsError::SlotsOutOfRange { .. }
            ),
            "{text:?}: {err:?}"
        );
    }
}
