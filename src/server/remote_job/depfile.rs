//! The compile's dependency file, moved back to client paths: `<root>` stripped from
//! every name, the lines broken again exactly where gcc would have broken them for the
//! shorter names, and the prerequisites read out for the client's check.
//!
//! gcc 12 (libcpp/mkdeps.cc) writes one rule, `TARGETS: DEPS`, each name preceded by a
//! space except the first, and breaks the line with ` \` before a name when the column
//! (every byte written on the line so far, names in their quoted form) plus the name's
//! length exceeds 72; the space before the name is not counted, so a line may reach 73
//! bytes (checked against gcc 12.2's own output). `-MP` adds `NAME:` lines, unbroken,
//! for every prerequisite but the first. Names are quoted for make: a space or tab after 2N backslashes becomes
//! 2N+1 backslashes and the space, `$` becomes `$$`, `#` becomes `\#`.

/// Where gcc breaks dependency lines (`deps_write (…, 72)` in c-opts.cc).
const COLUMN_LIMIT: usize = 72;

/// A dependency file as the client would have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDeps {
    /// The file's text with client paths, wrapped as gcc wraps it.
    pub text: String,
    /// The prerequisites of the rule (the source first), unquoted.
    pub deps: Vec<String>,
}

/// The dependency file `text` the box's compile wrote, with `root` (no trailing `/`)
/// taken out of every name that starts with it.
///
/// `root` must need no make quoting (the caller makes sure), so that stripping it from a
/// quoted name gives the quoted client name.
pub fn to_client(text: &str, root: &str) -> ClientDeps {
    let (rule, rest) = split_rule(text);
    let Some(colon) = rule.find(": ") else {
        // No rule (gcc writes none without prerequisites): nothing to re-wrap.
        return ClientDeps {
            text: text.replace(root, ""),
            deps: Vec::new(),
        };
    };
    let (targets, prerequisites) = (&rule[..colon], &rule[colon + 1..]);
    let mut out = String::with_capacity(text.len());
    let mut column = if targets.contains(root) {
        // The default target (the output named with an absolute `-o`): one name.
        let names: Vec<String> = words(targets).map(|w| strip(&w, root)).collect();
        write_names(&mut out, &names, 0)
    } else {
        // `-MT` targets are written as given, spaces and all, so their words are not
        // the names gcc wrapped; unchanged, they keep gcc's own line breaks.
        out.push_str(targets);
        targets.len() - targets.rfind('\n').map_or(0, |newline| newline + 1)
    };
    out.push(':');
    column += 1;
    let names: Vec<String> = words(prerequisites).map(|w| strip(&w, root)).collect();
    write_names(&mut out, &names, column);
    out.push('\n');
    // `-MP` targets and C++ module rules: unbroken lines.
    out.push_str(&rest.replace(root, ""));
    ClientDeps {
        text: out,
        deps: names.iter().map(|name| unquote(name)).collect(),
    }
}

/// The first rule (up to the newline that is not a continuation) and what follows it.
fn split_rule(text: &str) -> (&str, &str) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(offset) = text[at..].find('\n') {
        let newline = at + offset;
        if newline == 0 || bytes[newline - 1] != b'\\' {
            return (&text[..newline], &text[newline + 1..]);
        }
        at = newline + 1;
    }
    (text, "")
}

/// The quoted names in `text`: separated by unquoted blanks and ` \` line breaks.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        let mut word = Vec::new();
        while at < bytes.len() {
            match bytes[at] {
                b'\\' => {
                    let run = bytes[at..].iter().take_while(|&&b| b == b'\\').count();
                    match bytes.get(at + run) {
                        // A line break: the name (if any) ends here.
                        Some(b'\n') if run == 1 => {
                            at += 2;
                            if !word.is_empty() {
                                break;
                            }
                        }
                        // 2N+1 backslashes quote the blank: part of the name.
                        Some(b' ' | b'\t') if run % 2 == 1 => {
                            word.extend_from_slice(&bytes[at..=at + run]);
                            at += run + 1;
                        }
                        _ => {
                            word.extend_from_slice(&bytes[at..at + run]);
                            at += run;
                        }
                    }
                }
                b' ' | b'\t' | b'\n' => {
                    at += 1;
                    if !word.is_empty() {
                        break;
                    }
                }
                byte => {
                    word.push(byte);
                    at += 1;
                }
            }
        }
        // Only whole bytes of `text` were copied, so the word is valid UTF-8.
        (!word.is_empty()).then(|| String::from_utf8_lossy(&word).into_owned())
    })
}

fn strip(name: &str, root: &str) -> String {
    match name.strip_prefix(root) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => name.to_string(),
    }
}

/// mkdeps.cc's `make_write_name` over `names`, from `column`: the column after them.
fn write_names(out: &mut String, names: &[String], mut column: usize) -> usize {
    for name in names {
        if column > 0 {
            if column + name.len() > COLUMN_LIMIT {
                out.push_str(" \\\n");
                column = 0;
            }
            column += 1;
            out.push(' ');
        }
        column += name.len();
        out.push_str(name);
    }
    column
}

/// A name as make quotes it (gcc's `munge`) back to the file name.
fn unquote(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => {
                let run = bytes[at..].iter().take_while(|&&b| b == b'\\').count();
                match bytes.get(at + run) {
                    // 2N+1 backslashes and a blank: N backslashes and the blank.
                    Some(&blank @ (b' ' | b'\t')) => {
                        out.extend(std::iter::repeat_n(b'\\', run / 2));
                        out.push(blank);
                        at += run + 1;
                    }
                    // `#` gets one backslash; those before it are the name's.
                    Some(b'#') => {
                        out.extend(std::iter::repeat_n(b'\\', run - 1));
                        out.push(b'#');
                        at += run + 1;
                    }
                    _ => {
                        out.extend(std::iter::repeat_n(b'\\', run));
                        at += run;
                    }
                }
            }
            b'$' if bytes.get(at + 1) == Some(&b'$') => {
                out.push(b'$');
                at += 2;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_where_gcc_breaks_them_for_the_client_names() {
        let root = "/tmp/sshcc-job-XyZ/root";
        let boxed = format!(
            "{root}/home/a/p/x.o: {root}/home/a/p/x.c \\\n {root}/usr/include/stdio.h \\\n \
             inc/a.h {root}/home/a/p/inc/b\\ c.h\n{root}/usr/include/stdio.h:\ninc/a.h:\n"
        );
        let client = to_client(&boxed, root);
        assert_eq!(
            client.text,
            "/home/a/p/x.o: /home/a/p/x.c /usr/include/stdio.h inc/a.h \\\n \
             /home/a/p/inc/b\\ c.h\n/usr/include/stdio.h:\ninc/a.h:\n"
        );
        assert_eq!(
            client.deps,
            [
                "/home/a/p/x.c",
                "/usr/include/stdio.h",
                "inc/a.h",
                "/home/a/p/inc/b c.h"
            ]
        );
    }

    #[test]
    fn given_targets_keep_their_text() {
        // What gcc 12 wrote for `-MT 'tgt1 tgt2' -MT tgt…3 -MQ 'q$#'` (nothing under the
        // root, so the whole file must come back unchanged).
        let gcc = concat!(
            "tgt1 tgt2 \\\n",
            " tgtttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt3 \\\n",
            " q$$\\#: y.c /usr/include/stdc-predef.h inc/a.h inc/bb.h inc/ccc.h \\\n",
            " inc/d1234567890123456789012345678901234567.h \\\n",
            " inc/e123456789012345678901234567890123456789.h \\\n",
            " inc/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/z.h \\\n",
            " inc/sp\\ ace/s.h inc/do$$llar\\#h.h\n",
            "/usr/include/stdc-predef.h:\n",
            "inc/a.h:\n",
            "inc/bb.h:\n",
            "inc/ccc.h:\n",
            "inc/d1234567890123456789012345678901234567.h:\n",
            "inc/e123456789012345678901234567890123456789.h:\n",
            "inc/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/z.h:\n",
            "inc/sp\\ ace/s.h:\n",
            "inc/do$$llar\\#h.h:\n",
        );
        let client = to_client(gcc, "/r");
        assert_eq!(client.text, gcc);
        assert_eq!(client.deps[8], "inc/sp ace/s.h");
        assert_eq!(client.deps[9], "inc/do$llar#h.h");
    }

    #[test]
    fn quoting_is_undone() {
        assert_eq!(unquote("a\\ b"), "a b");
        assert_eq!(unquote("a\\\\\\ b"), "a\\ b");
        assert_eq!(unquote("a\\b"), "a\\b");
        assert_eq!(unquote("a\\#b$$c"), "a#b$c");
        assert_eq!(unquote("a\\\\#b"), "a\\#b");
    }

    #[test]
    fn a_file_without_a_rule_only_loses_the_root() {
        let client = to_client("", "/r");
        assert_eq!((client.text.as_str(), client.deps.len()), ("", 0));
    }
}
