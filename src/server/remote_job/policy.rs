//! The remote-mode argument policy: the user's own compile command, checked as every box
//! job's is, then moved into the job's tree.
//!
//! The box runs the command the client would have run, on the client's files laid out
//! under `<root>` at their client paths. Every path an argument makes the compiler open
//! is prefixed with `<root>` when it is absolute (relative ones resolve from the working
//! directory, `<root><cwd>`), and `-ffile-prefix-map=<root>=` takes `<root>` back out of
//! what the object records (`DW_AT_comp_dir`, the line table, `__FILE__`). Dependency
//! targets (`-MT`/`-MQ`) are text, not paths, and stay as they are.
//!
//! The argv is hostile (anyone with the build key sends it): the checks are
//! [`argument_policy::check_option`]'s, the ones every box job gets, with `-include` and
//! `-imacros` allowed because here they read the job's own tree.

use std::path::{Component, Path};

use crate::compiler::args::{self, OutputArg};
use crate::server::argument_policy::{Refusal, TAKES_VALUE, check_option};

/// Options whose value is a path the compiler opens, given as the next word.
const SEPARATE_PATHS: &[&str] = &[
    "-o",
    "-MF",
    "-I",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-include",
    "-imacros",
    "-iprefix",
    "-isysroot",
    "--sysroot",
    "-F",
];

/// The same options with the value joined (`-I/usr/include`, `--sysroot=/x`). No entry
/// is a prefix of a later one, so the first match is the option.
const JOINED_PATHS: &[&str] = &[
    "--sysroot=",
    "-isysroot",
    "-isystem",
    "-idirafter",
    "-iquote",
    "-include",
    "-imacros",
    "-iprefix",
    "-MF",
    "-I",
    "-F",
];

/// Include directories gcc reads relative to the sysroot when they start with `=` or
/// `$SYSROOT`: the client's sysroot is not the box's, so those are refused.
const SYSROOT_RELATIVE: &[&str] = &["-I", "-iquote", "-isystem", "-idirafter"];

/// `-iwithprefix DIR` is glued to the last `-iprefix` (or, without one, to the compiler's
/// own directory, which the box cannot reproduce); its value is not a path of its own.
const WITH_PREFIX: &[&str] = &["-iwithprefixbefore", "-iwithprefix"];

/// Options mapping recorded paths, `-fdebug-prefix-map=OLD=NEW`: OLD is a path (split at
/// the last `=`, as gcc does), NEW is text the object records.
const PREFIX_MAPS: &[&str] = &[
    "-fdebug-prefix-map=",
    "-fmacro-prefix-map=",
    "-ffile-prefix-map=",
    "-fprofile-prefix-map=",
];

const OUTSIDE: &str = "a path climbing above the root directory";
const SYSROOT: &str =
    "a sysroot-relative include directory (the box's sysroot is not the client's)";
const NO_PREFIX: &str = "-iwithprefix without -iprefix names the compiler's own directory";

/// Where the job lives on the box, as the rewrite needs it.
pub struct Layout<'a> {
    /// The tree's root on the box (absolute, no trailing `/`).
    pub root: &'a str,
    /// The client's working directory (absolute).
    pub cwd: &'a str,
    /// Where the box writes the dependency file when the user asked for none.
    pub own_dep_file: &'a str,
}

/// The command the box runs, and what it says about the job's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The arguments after the compiler.
    pub args: Vec<String>,
    /// The client path (as the user spelled it) of the dependency file the user asked
    /// for with `-MD`/`-MMD`; `None` when the box added its own.
    pub user_dep_file: Option<String>,
    /// The names given to `-specs=`, which must not be files of the tree.
    pub specs: Vec<String>,
}

/// Checks `argv` (`argv[0]` is the compiler, as the client named it) and rewrites it to
/// run in `layout`.
pub fn rewrite(argv: &[String], layout: &Layout<'_>) -> Result<Rewritten, Refusal> {
    let scan = args::scan(argv).map_err(Refusal::NotDistributable)?;
    // `value` of `arg` moved into the tree; `shown` is how a refusal quotes it.
    let place = |value: &str, shown: &str| -> Result<String, Refusal> {
        if climbs_above_root(layout.cwd, value) {
            return Err(forbidden(shown, None, OUTSIDE));
        }
        Ok(match value.starts_with('/') {
            true => format!("{}{value}", layout.root),
            false => value.to_string(),
        })
    };
    // Ours first: among several prefix maps the last one given that matches wins (gcc 12,
    // checked), so the user's own maps, rewritten, still apply where they match.
    let mut out = vec![format!("-ffile-prefix-map={}=", layout.root)];
    let (mut placed_input, mut seen_iprefix, mut wants_deps) = (false, false, false);
    let (mut dep_file, mut specs) = (None, Vec::new());
    let mut index = 1;
    while index < argv.len() {
        let at = index;
        let arg = argv[at].as_str();
        let separate = TAKES_VALUE.contains(&arg);
        let value = argv.get(at + 1).map(String::as_str).filter(|_| separate);
        index += 1 + usize::from(separate);
        if at == scan.input {
            if arg.starts_with('-') {
                return Err(forbidden(
                    arg,
                    None,
                    "a source name that looks like an option",
                ));
            }
            out.push(place(arg, arg)?);
            placed_input = true;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            return Err(forbidden(
                arg,
                None,
                "an extra operand would be read as another input file",
            ));
        }
        check_option(arg, value)?;
        if separate && value.is_none() {
            return Err(forbidden(arg, None, "an option missing its value"));
        }
        if arg == "-o" && scan.output_arg != OutputArg::Separate(at + 1) {
            return Err(ambiguous(argv, &scan));
        }
        if let Some(value) = value {
            if SYSROOT_RELATIVE.contains(&arg) && is_sysroot_relative(value) {
                return Err(forbidden(arg, Some(value), SYSROOT));
            }
            match arg {
                "-MF" => dep_file = Some(value.to_string()),
                "-iprefix" => seen_iprefix = true,
                _ if WITH_PREFIX.contains(&arg) && !seen_iprefix => {
                    return Err(forbidden(arg, Some(value), NO_PREFIX));
                }
                _ => {}
            }
            out.push(arg.to_string());
            out.push(match SEPARATE_PATHS.contains(&arg) {
                true => place(value, &format!("{arg} {value}"))?,
                false => value.to_string(),
            });
            continue;
        }
        if matches!(arg, "-MD" | "-MMD") {
            wants_deps = true;
        }
        if let Some(name) = arg
            .strip_prefix("-specs=")
            .or_else(|| arg.strip_prefix("--specs="))
        {
            specs.push(name.to_string());
        }
        if scan.output_arg == OutputArg::Joined(at) {
            out.push(format!("-o{}", place(&arg[2..], arg)?));
            continue;
        }
        if WITH_PREFIX.iter().any(|option| arg.starts_with(option)) {
            if !seen_iprefix {
                return Err(forbidden(arg, None, NO_PREFIX));
            }
            out.push(arg.to_string());
            continue;
        }
        if let Some(&option) = JOINED_PATHS.iter().find(|option| arg.starts_with(**option)) {
            let joined = &arg[option.len()..];
            if SYSROOT_RELATIVE.contains(&option) && is_sysroot_relative(joined) {
                return Err(forbidden(arg, None, SYSROOT));
            }
            match option {
                "-MF" => dep_file = Some(joined.to_string()),
                "-iprefix" => seen_iprefix = true,
                _ => {}
            }
            out.push(format!("{option}{}", place(joined, arg)?));
            continue;
        }
        if let Some(&option) = PREFIX_MAPS.iter().find(|option| arg.starts_with(**option)) {
            let map = &arg[option.len()..];
            out.push(match map.rfind('=') {
                Some(equals) => {
                    format!("{option}{}{}", place(&map[..equals], arg)?, &map[equals..])
                }
                // gcc refuses it; let it say so.
                None => arg.to_string(),
            });
            continue;
        }
        out.push(arg.to_string());
    }
    if !placed_input {
        return Err(ambiguous(argv, &scan));
    }
    let user_dep_file = match wants_deps {
        // gcc's own default: the output's name with its suffix replaced by `.d` (the
        // default output's, without `-o`: the source's base name).
        true => Some(dep_file.unwrap_or_else(|| with_suffix_d(&scan.output))),
        false => {
            out.extend(["-MD", "-MF", layout.own_dep_file].map(String::from));
            None
        }
    };
    Ok(Rewritten {
        args: out,
        user_dep_file,
        specs,
    })
}

/// Whether `path`, read from `cwd` as the kernel would but without symlinks, climbs
/// above `/`: there the client stays at `/` and the box would leave the tree.
fn climbs_above_root(cwd: &str, path: &str) -> bool {
    let mut depth = match path.starts_with('/') {
        true => 0,
        false => Path::new(cwd).components().count().saturating_sub(1),
    };
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    false
}

fn is_sysroot_relative(dir: &str) -> bool {
    dir.starts_with('=') || dir.starts_with("$SYSROOT")
}

/// `out/x.o` → `out/x.d`, `out/x` → `out/x.d`: the last `.` of the base name starts the
/// suffix.
fn with_suffix_d(output: &str) -> String {
    let base = output.rfind('/').map_or(0, |slash| slash + 1);
    let stem = match output[base..].rfind('.') {
        Some(dot) => &output[..base + dot],
        None => output,
    };
    format!("{stem}.d")
}

fn forbidden(arg: &str, value: Option<&str>, reason: &'static str) -> Refusal {
    Refusal::Forbidden {
        arg: value.map_or_else(|| arg.to_string(), |value| format!("{arg} {value}")),
        reason,
    }
}

/// The scanner and this loop disagree about which word is which (say `-D x.c`): never
/// guess which file the compiler would read or write.
fn ambiguous(argv: &[String], scan: &args::Distributable) -> Refusal {
    forbidden(
        &argv[scan.input],
        None,
        "ambiguous command line: cannot tell the source and output apart",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout<'static> = Layout {
        root: "/J/root",
        cwd: "/home/a/p",
        own_dep_file: "/J/deps.d",
    };

    fn rewritten(line: &str) -> Result<Rewritten, Refusal> {
        let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
        rewrite(&argv, &LAYOUT)
    }

    fn args(line: &str) -> String {
        rewritten(line).unwrap().args.join(" ")
    }

    fn refused(line: &str) -> String {
        match rewritten(line) {
            Err(Refusal::Forbidden { arg, .. }) => arg,
            other => panic!("{line}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn absolute_paths_move_into_the_tree_and_targets_stay() {
        assert_eq!(
            args("gcc -c /home/a/p/x.c -o /home/a/p/b/x.o -MD -MF /home/a/p/b/x.d -MT /t -MQ /q"),
            "-ffile-prefix-map=/J/root= -c /J/root/home/a/p/x.c -o /J/root/home/a/p/b/x.o \
             -MD -MF /J/root/home/a/p/b/x.d -MT /t -MQ /q"
        );
        assert_eq!(
            args(
                "g++ -I/i -I /j -Irel -iquote /q -iquote/q2 -isystem /s -isystem/s2 -idirafter /d \
                 -idirafter/d2 -include /h.h -include/h2.h -imacros /m.h -imacros/m2.h -c x.cc \
                 -o/o/x.o --sysroot=/sr --sysroot /sr2 -isysroot /is -isysroot/is2 -MF/x.d"
            ),
            "-ffile-prefix-map=/J/root= -I/J/root/i -I /J/root/j -Irel -iquote /J/root/q \
             -iquote/J/root/q2 -isystem /J/root/s -isystem/J/root/s2 -idirafter /J/root/d \
             -idirafter/J/root/d2 -include /J/root/h.h -include/J/root/h2.h \
             -imacros /J/root/m.h -imacros/J/root/m2.h -c x.cc -o/J/root/o/x.o \
             --sysroot=/J/root/sr --sysroot /J/root/sr2 -isysroot /J/root/is \
             -isysroot/J/root/is2 -MF/J/root/x.d -MD -MF /J/deps.d"
        );
        assert_eq!(
            args(
                "gcc -c x.c -fdebug-prefix-map=/home/a=/src -fmacro-prefix-map=/a=b=c \
                 -ffile-prefix-map=rel=x -iprefix /p/ -iwithprefix inc -iwithprefixbeforeinc2"
            ),
            "-ffile-prefix-map=/J/root= -c x.c -fdebug-prefix-map=/J/root/home/a=/src \
             -fmacro-prefix-map=/J/root/a=b=c -ffile-prefix-map=rel=x -iprefix /J/root/p/ \
             -iwithprefix inc -iwithprefixbeforeinc2 -MD -MF /J/deps.d"
        );
    }

    #[test]
    fn the_dependency_file_is_the_users_or_ours() {
        let deps = |line: &str| rewritten(line).unwrap().user_dep_file;
        assert_eq!(deps("gcc -c x.c"), None);
        assert_eq!(deps("gcc -c src/x.c -MD").as_deref(), Some("x.d"));
        assert_eq!(
            deps("gcc -c x.c -MMD -o out/x.o").as_deref(),
            Some("out/x.d")
        );
        assert_eq!(
            deps("gcc -c x.c -MD -o out/xobj").as_deref(),
            Some("out/xobj.d")
        );
        assert_eq!(
            deps("gcc -c x.c -MD -o o.d/x.t.o").as_deref(),
            Some("o.d/x.t.d")
        );
        assert_eq!(
            deps("gcc -c x.c -MD -MF a.d -MFb.d -o x.o").as_deref(),
            Some("b.d")
        );
        // -MF alone writes nothing: the box's own file comes last and wins.
        assert!(args("gcc -c x.c -MF a.d").ends_with("-MF a.d -MD -MF /J/deps.d"));
        assert_eq!(
            rewritten("gcc --specs=nano.specs -c x.c").unwrap().specs,
            ["nano.specs"]
        );
    }

    #[test]
    fn hostile_options_are_refused_as_for_every_job() {
        assert_eq!(refused("gcc -fplugin=/x.so -c x.c"), "-fplugin=/x.so");
        assert_eq!(refused("gcc -B /tmp -c x.c"), "-B /tmp");
        assert_eq!(refused("gcc @/etc/args -c x.c"), "@/etc/args");
        assert_eq!(refused("gcc -Wl,-T,/x -c x.c"), "-Wl,-T,/x");
        assert_eq!(refused("gcc -Wp,-MD,/x.d -c x.c"), "-Wp,-MD,/x.d");
        assert_eq!(refused("gcc -specs=/x.specs -c x.c"), "-specs=/x.specs");
        assert_eq!(refused("gcc -save-temps -c x.c"), "-save-temps");
        assert_eq!(refused("gcc -c x.c /etc/passwd"), "/etc/passwd");
        assert_eq!(refused("gcc -c x.c -I"), "-I");
        assert_eq!(refused("gcc -c x.c -D -fplugin=/x.so"), "-D -fplugin=/x.so");
        assert_eq!(
            refused("gcc --include=/etc/shadow -c x.c"),
            "--include=/etc/shadow"
        );
        assert!(matches!(
            rewritten("gcc -E x.c"),
            Err(Refusal::NotDistributable(_))
        ));
    }

    #[test]
    fn paths_leaving_the_tree_are_refused() {
        assert_eq!(refused("gcc -I/../etc -c x.c"), "-I/../etc");
        assert_eq!(refused("gcc -I ../../../.. -c x.c"), "-I ../../../..");
        assert_eq!(refused("gcc -c ../../../../x.c"), "../../../../x.c");
        assert_eq!(refused("gcc -c x.c -o /a/../../x.o"), "-o /a/../../x.o");
        assert_eq!(
            refused("gcc -c x.c -ffile-prefix-map=/..=/"),
            "-ffile-prefix-map=/..=/"
        );
        // Down and back up stays inside.
        assert!(rewritten("gcc -I ../../.. -I/a/../b -c ../x.c").is_ok());
        assert_eq!(refused("gcc -I=/usr/include -c x.c"), "-I=/usr/include");
        assert_eq!(
            refused("gcc -isystem $SYSROOT/inc -c x.c"),
            "-isystem $SYSROOT/inc"
        );
        assert_eq!(refused("gcc -iwithprefix inc -c x.c"), "-iwithprefix inc");
        assert_eq!(
            refused("gcc -iwithprefixbeforeinc -c x.c"),
            "-iwithprefixbeforeinc"
        );
    }

    #[test]
    fn suffix_d_follows_gcc() {
        assert_eq!(with_suffix_d("x.o"), "x.d");
        assert_eq!(with_suffix_d("out/.o"), "out/.d");
        assert_eq!(with_suffix_d("out.d/x"), "out.d/x.d");
    }
}
