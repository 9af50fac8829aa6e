use super::*;

fn includes(text: &str) -> Vec<(bool, Operand)> {
    let found = Directives::scan(text.as_bytes());
    assert!(found.doubts.is_empty(), "{:?}", found.doubts);
    found
        .includes
        .into_iter()
        .map(|include| (include.next, include.operand))
        .collect()
}

fn quote(name: &str) -> Operand {
    Operand::Name(HeaderName::Quote(name.into()))
}

fn angle(name: &str) -> Operand {
    Operand::Name(HeaderName::Angle(name.into()))
}

#[test]
fn every_include_form_is_found_in_every_branch() {
    let text = "#include \"a.h\"\n  #  include <b/c.h> // trailing\n#if 0\n#include_next <d.h>\n#else\n#import \"e.h\"\n#endif\n/* lead */ # include\t<f.h>\n%:include \"g.h\"\n??=include \"h.h\"\n#include<i.h>\n#include MACRO /* why */\n";
    assert_eq!(
        includes(text),
        vec![
            (false, quote("a.h")),
            (false, angle("b/c.h")),
            (true, angle("d.h")),
            (false, quote("e.h")),
            (false, angle("f.h")),
            (false, quote("g.h")),
            (false, quote("h.h")),
            (false, angle("i.h")),
            (false, Operand::Macro("MACRO".into())),
        ]
    );
}

#[test]
fn comments_and_literals_hide_directives_but_never_the_next_line() {
    let text = r##"/* #include "no1.h"
#include "no2.h" */
// #include "no3.h" \
#include "no4.h"
const char *s = "#include \"no5.h\" /*";
#include "yes1.h"
char c = '"'; int n = 1'000'000; char d = L'/';
#include "yes2.h"
auto r = R"x(
#include "no6.h"
)" still raw )x";
#include "yes3.h"
#error don't stop here
#include "yes4.h"
#define X 1 /* a comment
#include "no7.h" spanning */
#include "yes5.h"
"##;
    assert_eq!(
        includes(text),
        ["yes1.h", "yes2.h", "yes3.h", "yes4.h", "yes5.h"]
            .map(|name| (false, quote(name)))
            .to_vec()
    );
}

#[test]
fn splices_join_lines_also_with_trailing_blanks_and_crlf() {
    let text = "#inc\\\nlude \"a.h\"\r\n#include \\  \r\n <b.h>\r\n#define Q \\\n \"q.h\"\n";
    let found = Directives::scan(text.as_bytes());
    assert_eq!(
        found
            .includes
            .iter()
            .map(|i| i.operand.clone())
            .collect::<Vec<_>>(),
        vec![quote("a.h"), angle("b.h")]
    );
    assert_eq!(
        found.defines,
        vec![Define {
            name: "Q".into(),
            value: MacroValue::Header(HeaderName::Quote("q.h".into()))
        }]
    );
}

#[test]
fn defines_say_which_names_are_header_names() {
    let text = "#define A \"a.h\"\n#define B <b/b.h>\n#define C A\n#define D 1\n#define E(x) <x>\n#define F <f.h> + 1\n#define G\n";
    let found = Directives::scan(text.as_bytes());
    let values: Vec<(&str, &MacroValue)> = found
        .defines
        .iter()
        .map(|define| (define.name.as_str(), &define.value))
        .collect();
    assert_eq!(
        values,
        vec![
            ("A", &MacroValue::Header(HeaderName::Quote("a.h".into()))),
            ("B", &MacroValue::Header(HeaderName::Angle("b/b.h".into()))),
            ("C", &MacroValue::Alias("A".into())),
            ("D", &MacroValue::Other),
            ("E", &MacroValue::Other),
            ("F", &MacroValue::Other),
            ("G", &MacroValue::Other),
        ]
    );
}

#[test]
fn has_include_is_found_in_conditions_and_macro_bodies() {
    let text = "#if defined __has_include\n#if __has_include(<x.h>) && __has_include_next ( \"y.h\" )\n#endif\n#endif\n#ifndef __has_include\n#define __has_include(x) 0\n#endif\n#define HAVE_Z __has_include(\"z.h\")\n#if __has_include(NAME)\n#endif\n#if __has_include__(<old.h>)\n#endif\n";
    let found = Directives::scan(text.as_bytes());
    assert!(found.doubts.is_empty(), "{:?}", found.doubts);
    let probes: Vec<(bool, Operand, bool)> = found
        .has_includes
        .into_iter()
        .map(|probe| (probe.next, probe.operand, probe.in_define))
        .collect();
    assert_eq!(
        probes,
        vec![
            (false, angle("x.h"), false),
            (true, quote("y.h"), false),
            (false, quote("z.h"), true),
            (false, Operand::Macro("NAME".into()), false),
            (false, angle("old.h"), false),
        ]
    );
}

#[test]
fn what_cannot_be_followed_is_a_doubt() {
    for (text, doubt) in [
        ("#include FOO(bar)\n", "computed #include FOO(bar)"),
        ("#include A B\n", "computed #include A B"),
        ("#embed \"data.bin\"\n", "#embed reads a file"),
        (
            "asm(\".incbin \\\"blob\\\"\");\n",
            ".incbin reads a file from assembly",
        ),
        (
            "#pragma GCC dependency \"parse.y\"\n",
            "#pragma GCC dependency",
        ),
        (
            "_Pragma(\"GCC dependency \\\"x\\\"\")\n",
            "_Pragma(\"GCC dependency\")",
        ),
        (
            "#if __has_include(A B)\n#endif\n",
            "__has_include with a computed argument",
        ),
    ] {
        assert_eq!(
            Directives::scan(text.as_bytes()).doubts,
            vec![doubt.to_string()],
            "{text}"
        );
    }
}

#[test]
fn pragmas_and_other_directives_do_not_swallow_the_next_line() {
    let text = "#pragma\n#include \"a.h\"\n#pragma once\n#include \"b.h\"\n#\n#include \"c.h\"\n#line 5 \"x.c\"\n#include \"d.h\"\n";
    assert_eq!(
        includes(text),
        ["a.h", "b.h", "c.h", "d.h"]
            .map(|name| (false, quote(name)))
            .to_vec()
    );
}

#[test]
fn a_file_naming_the_clock_is_marked() {
    for text in [
        "const char *d = __DATE__;\n",
        "#define BUILT_AT __TIME__\n",
        "/* __DATE__ */\n",
    ] {
        assert!(Directives::scan(text.as_bytes()).names_the_clock, "{text}");
    }
    // __TIMESTAMP__ is the file's mtime, which the input tree carries.
    for text in ["const char *s = __TIMESTAMP__;\n", "int __DATE_ = 1;\n", ""] {
        assert!(!Directives::scan(text.as_bytes()).names_the_clock, "{text}");
    }
}
