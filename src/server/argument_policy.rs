//! Turns a received command line into the one the box runs, refusing options that would
//! reach outside the job.
//!
//! A request may come from anyone holding the build key, so the argv is treated as
//! hostile: the source and output words are replaced by files in the job's private
//! directory, dependency and include-path options (meaningless for preprocessed input)
//! are dropped, and anything that loads code, reads or writes files elsewhere, or whose
//! side files would be lost is refused with the reason. docs/security.md has the table.

use std::fmt;

use crate::compiler::args::{self, Distributable, MustRunLocally, OutputArg};

/// Why a command line is not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// distcc's own rules say the command must run on the client.
    NotDistributable(MustRunLocally),
    /// An option the box will not run, and why.
    Forbidden { arg: String, reason: &'static str },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotDistributable(why) => write!(f, "not a remote compile: {why}"),
            Refusal::Forbidden { arg, reason } => write!(f, "refused argument {arg:?}: {reason}"),
        }
    }
}

/// The command the box will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCommand {
    /// Arguments after the compiler, with input and output inside the job directory.
    pub args: Vec<String>,
    /// What the job produces (`-c` or `-S`).
    pub scan: Distributable,
}

const LOADS_CODE: &str = "loads code or runs programs chosen by the client";
const READS_FILES: &str = "reads a file outside the job";
const WRITES_FILES: &str = "writes files outside the job or files that would be lost";
const LINKER: &str = "linker options have no place in a remote compile";
const LONG_OPTION: &str = "long option forms are not accepted remotely; use the short form";

/// Options whose value is the next word: every one gcc 12's driver reads that way
/// (found by probing `gcc -### -c t.c OPTION -DPROBE` for each option name), plus
/// clang's `-target`. Missing one would let its value slip past the checks as an
/// option of its own.
pub(crate) const TAKES_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-e",
    "-h",
    "-F",
    "-J",
    "-R",
    "-Hd",
    "-Hf",
    "-Tbss",
    "-Tdata",
    "-Ttext",
    "-Xf",
    "-gnatO",
    "-fintrinsic-modules-path",
    "-specs",
    "-MF",
    "-MT",
    "-MQ",
    "-D",
    "-U",
    "-I",
    "-isystem",
    "-idirafter",
    "-iquote",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-include",
    "-imacros",
    "-Xassembler",
    "-Xpreprocessor",
    "-Xlinker",
    "-aux-info",
    "-dumpdir",
    "-dumpbase",
    "-dumpbase-ext",
    "--param",
    "-wrapper",
    "-L",
    "-l",
    "-T",
    "-u",
    "-z",
    "-A",
    "-B",
    "--sysroot",
    "-imultilib",
    "-target",
    "--target",
];

/// Options dropped because they only matter when preprocessing, which happened on the
/// client; each opens a path on the box or writes a dependency file.
const DROPPED_WITH_VALUE: &[&str] = &[
    "-MF",
    "-MT",
    "-MQ",
    "-I",
    "-isystem",
    "-idirafter",
    "-iquote",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "--sysroot",
    "-imultilib",
    "-F",
];
const DROPPED_EXACT: &[&str] = &["-MD", "-MMD", "-MG", "-MP"];

/// Forbidden option prefixes (joined or exact) and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("-fplugin", LOADS_CODE),
    ("-iplugindir", LOADS_CODE),
    ("-B", LOADS_CODE),
    ("-wrapper", LOADS_CODE),
    ("-fsanitize-blacklist", READS_FILES),
    ("-fsanitize-ignorelist", READS_FILES),
    ("-fprofile-list", READS_FILES),
    ("-fxray-always-instrument", READS_FILES),
    ("-fxray-never-instrument", READS_FILES),
    ("-fxray-attr-list", READS_FILES),
    ("-fself-test", READS_FILES),
    ("-fmodule-mapper", LOADS_CODE),
    // clang: options straight to its compiler (`-Xclang -load -Xclang x.so`) and
    // pass plugins.
    ("-Xclang", LOADS_CODE),
    ("-fpass-plugin", LOADS_CODE),
    ("-fauto-profile=", READS_FILES),
    ("-fprofile-use=", READS_FILES),
    ("-fprofile-dir=", READS_FILES),
    ("-save-temps", WRITES_FILES),
    ("-fdump-", WRITES_FILES),
    ("-dumpdir", WRITES_FILES),
    ("-dumpbase", WRITES_FILES),
    ("-aux-info", WRITES_FILES),
    ("-gsplit-dwarf", WRITES_FILES),
    ("-fcompare-debug", WRITES_FILES),
    ("-fdiagnostics-add-output", WRITES_FILES),
    ("-fdiagnostics-set-output", WRITES_FILES),
    ("-Wp,", WRITES_FILES),
    ("-Xpreprocessor", WRITES_FILES),
    ("-Wl,", LINKER),
    ("-Xlinker", LINKER),
    ("-e", LINKER),
    ("-h", LINKER),
    ("-R", LINKER),
    ("-Tbss", LINKER),
    ("-Tdata", LINKER),
    ("-Ttext", LINKER),
    ("-J", WRITES_FILES),
    ("-Hd", WRITES_FILES),
    ("-Hf", WRITES_FILES),
    ("-gnatO", WRITES_FILES),
    ("-Xf", WRITES_FILES),
    ("-fintrinsic-modules-path", READS_FILES),
    ("-L", LINKER),
    ("-l", LINKER),
    ("-T", LINKER),
];

/// Refused only when the box compiles preprocessed text, where they would read the box's
/// files; a remote-preprocessed job (`server::remote_job`) reads them from its own tree.
const FORBIDDEN_WITH_PREPROCESSED_INPUT: &[(&str, &str)] =
    &[("-include", READS_FILES), ("-imacros", READS_FILES)];

/// Checks `argv` (`argv[0]` is the compiler) and rewrites it to compile `input_file` into
/// `output_file`, both relative to the job directory.
pub fn prepare(
    argv: &[String],
    input_file: &str,
    output_file: &str,
) -> Result<PreparedCommand, Refusal> {
    let scan = args::scan(argv).map_err(Refusal::NotDistributable)?;
    let mut out = Vec::with_capacity(argv.len() + 2);
    let (mut placed_input, mut placed_output) = (false, scan.output_arg == OutputArg::Implicit);
    let mut index = 1;
    while index < argv.len() {
        let at = index;
        let arg = argv[at].as_str();
        let separate_value = TAKES_VALUE.contains(&arg);
        let value = argv
            .get(at + 1)
            .map(String::as_str)
            .filter(|_| separate_value);
        index += 1 + usize::from(separate_value);
        if at == scan.input {
            out.push(input_file.to_string());
            placed_input = true;
            continue;
        }
        let is_output = match scan.output_arg {
            OutputArg::Separate(name_at) => arg == "-o" && name_at == at + 1,
            OutputArg::Joined(word_at) => word_at == at,
            OutputArg::Implicit => false,
        };
        if is_output {
            out.extend(["-o".to_string(), output_file.to_string()]);
            placed_output = true;
            continue;
        }
        check(arg, value)?;
        if separate_value && value.is_none() {
            // gcc would take the next word we add (`-o`) as its value.
            return Err(Refusal::Forbidden {
                arg: arg.to_string(),
                reason: "an option missing its value",
            });
        }
        let dropped = if separate_value {
            DROPPED_WITH_VALUE.contains(&arg)
        } else {
            DROPPED_EXACT.contains(&arg) || is_joined_dropped(arg)
        };
        if dropped {
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            return Err(Refusal::Forbidden {
                arg: arg.to_string(),
                reason: "an extra operand would be read as another input file",
            });
        }
        out.push(arg.to_string());
        out.extend(value.map(String::from));
    }
    if !(placed_input && placed_output) {
        // The scanner and this loop disagree about which word is which (say `-D x.c`):
        // never guess which file the compiler would read or write.
        return Err(Refusal::Forbidden {
            arg: argv[scan.input].clone(),
            reason: "ambiguous command line: cannot tell the source and output apart",
        });
    }
    if scan.output_arg == OutputArg::Implicit {
        out.extend(["-o".to_string(), output_file.to_string()]);
    }
    Ok(PreparedCommand { args: out, scan })
}

/// The `-specs=` file a prepared command would read from the job directory, if any.
///
/// A bare specs name is looked up in the compiler's own directories and then, as a
/// plain relative path, in the working directory, where the client's side files are: a
/// specs file the client sent could make the compiler run anything.
pub fn specs_from_job(args: &[String], work_dir: &std::path::Path) -> Option<String> {
    args.iter()
        .filter_map(|arg| {
            arg.strip_prefix("-specs=")
                .or_else(|| arg.strip_prefix("--specs="))
        })
        .find(|name| work_dir.join(name).exists())
        .map(|name| format!("-specs={name}"))
}

fn is_joined_dropped(arg: &str) -> bool {
    DROPPED_WITH_VALUE
        .iter()
        .any(|option| arg.len() > option.len() && arg.starts_with(option))
}

/// Refuses `arg` (with its separate `value`, if it takes one) when it reaches outside the
/// job whose input is preprocessed text.
fn check(arg: &str, value: Option<&str>) -> Result<(), Refusal> {
    check_option(arg, value)?;
    match FORBIDDEN_WITH_PREPROCESSED_INPUT
        .iter()
        .find(|(prefix, _)| arg.starts_with(prefix))
    {
        Some(&(_, reason)) => Err(Refusal::Forbidden {
            arg: value.map_or_else(|| arg.to_string(), |v| format!("{arg} {v}")),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuses `arg` (with its separate `value`, if it takes one) when it loads code, reads
/// or writes files outside the job whatever its input, or is a linker option: the
/// checks every kind of job applies.
pub(crate) fn check_option(arg: &str, value: Option<&str>) -> Result<(), Refusal> {
    let refuse = |reason| {
        Err(Refusal::Forbidden {
            arg: value.map_or_else(|| arg.to_string(), |v| format!("{arg} {v}")),
            reason,
        })
    };
    // gcc expands response files wherever they appear, even as another option's value
    // (`-D @/etc/passwd`).
    if arg.starts_with('@') || value.is_some_and(|value| value.starts_with('@')) {
        return refuse(READS_FILES);
    }
    if arg == "-specs" || arg == "--specs" {
        // The separate form names its file by a word that may be the source, which the
        // box replaces with the client's own text.
        return refuse(LOADS_CODE);
    }
    // A value that looks like an option is where gcc and this parser could disagree
    // (an option gcc reads with a value that we do not know, `-e -D -fplugin=…`), so
    // only the assembler's pass-through may carry one; its items are checked below.
    if value.is_some_and(|value| value.starts_with('-')) && arg != "-Xassembler" {
        return refuse("an option's value that looks like an option is ambiguous");
    }
    if let Some(&(_, reason)) = FORBIDDEN.iter().find(|(prefix, _)| arg.starts_with(prefix)) {
        return refuse(reason);
    }
    if let Some(specs) = arg
        .strip_prefix("-specs=")
        .or_else(|| arg.strip_prefix("--specs="))
    {
        // A bare name is looked up in the job directory (which holds only our files) and
        // the compiler's own directories; a path could read anything.
        return if specs.contains('/') {
            refuse(READS_FILES)
        } else {
            Ok(())
        };
    }
    if arg.starts_with("--")
        && arg != "--param"
        && !arg.starts_with("--param=")
        && arg != "--sysroot"
        && !arg.starts_with("--sysroot=")
    {
        return refuse(LONG_OPTION);
    }
    let assembler_options = match arg {
        "-Xassembler" => value,
        _ => arg.strip_prefix("-Wa,"),
    };
    if let Some(options) = assembler_options {
        let reaches_files = options.split(',').any(|item| {
            item.contains('/')
                || item.starts_with('@')
                || ["-a", "--MD", "-o", "-I", "--listing"]
                    .iter()
                    .any(|p| item.starts_with(p))
        });
        if reaches_files {
            return refuse("makes the assembler read or write files");
        }
    }
    if arg.starts_with("-fopt-info") && arg.contains('=') {
        return refuse(WRITES_FILES);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(line: &str) -> Result<String, Refusal> {
        let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
        prepare(&argv, "input.i", "output.o").map(|p| p.args.join(" "))
    }

    fn refused(line: &str) -> String {
        match prepared(line) {
            Err(Refusal::Forbidden { arg, .. }) => arg,
            other => panic!("{line}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn input_and_output_are_replaced_and_preprocessing_options_dropped() {
        assert_eq!(
            prepared("gcc -c x.c -o x.o").unwrap(),
            "-c input.i -o output.o"
        );
        assert_eq!(
            prepared("gcc -O2 -c x.c").unwrap(),
            "-O2 -c input.i -o output.o"
        );
        assert_eq!(
            prepared("gcc -MD -MF /etc/x.d -iquote inc -Iinc -c x.c -o/tmp/x.o").unwrap(),
            "-c input.i -o output.o"
        );
        assert_eq!(
            prepared("arm-none-eabi-g++ --specs=nano.specs -x c++ -DX=1 -c x.cpp -o o/x.o")
                .unwrap(),
            "--specs=nano.specs -x c++ -DX=1 -c input.i -o output.o"
        );
        assert_eq!(
            prepared("gcc -Wa,-mimplicit-it=thumb --param max-inline-insns-single=5 -c x.c")
                .unwrap(),
            "-Wa,-mimplicit-it=thumb --param max-inline-insns-single=5 -c input.i -o output.o"
        );
    }

    #[test]
    fn options_reaching_outside_the_job_are_refused() {
        assert_eq!(
            refused("gcc -fplugin=/tmp/evil.so -c x.c"),
            "-fplugin=/tmp/evil.so"
        );
        assert_eq!(refused("gcc -B/tmp/evil -c x.c"), "-B/tmp/evil");
        assert_eq!(refused("gcc -B /tmp/evil -c x.c"), "-B /tmp/evil");
        assert_eq!(
            refused("gcc -wrapper /bin/sh,-c -c x.c"),
            "-wrapper /bin/sh,-c"
        );
        assert_eq!(refused("gcc @/etc/args -c x.c"), "@/etc/args");
        assert_eq!(
            refused("gcc -specs=/tmp/evil.specs -c x.c"),
            "-specs=/tmp/evil.specs"
        );
        assert_eq!(refused("gcc -save-temps=obj -c x.c"), "-save-temps=obj");
        assert_eq!(refused("gcc -fdump-tree-all -c x.c"), "-fdump-tree-all");
        assert_eq!(
            refused("gcc -include /etc/shadow -c x.c"),
            "-include /etc/shadow"
        );
        assert_eq!(refused("gcc -Wa,-mfoo=/tmp/l -c x.c"), "-Wa,-mfoo=/tmp/l");
        assert_eq!(
            refused("gcc -Xassembler --MD=/tmp/d -c x.c"),
            "-Xassembler --MD=/tmp/d"
        );
        assert_eq!(refused("gcc -dumpdir /tmp/ -c x.c"), "-dumpdir /tmp/");
        assert_eq!(refused("gcc -gsplit-dwarf -c x.c"), "-gsplit-dwarf");
        assert_eq!(refused("gcc --output=/tmp/x.o -c x.c"), "--output=/tmp/x.o");
        assert_eq!(refused("gcc -c x.c /etc/passwd"), "/etc/passwd");
        assert_eq!(refused("gcc -Wl,-T,/etc/x -c x.c"), "-Wl,-T,/etc/x");
    }

    #[test]
    fn words_gcc_would_read_differently_are_refused() {
        // Found by the argument_scanner fuzz target (fuzz/regressions/argument_scanner).
        // `-e` takes a value in gcc: `-D` would be it, and -fplugin an option.
        assert_eq!(refused("gcc -c x.c -e -D -fplugin=/tmp/evil.so"), "-e -D");
        assert_eq!(
            refused("gcc -c x.c -D -fplugin=/tmp/e.so"),
            "-D -fplugin=/tmp/e.so"
        );
        // gcc expands a response file even as another option's value.
        assert_eq!(refused("gcc -c x.c -D @/etc/passwd"), "-D @/etc/passwd");
        // The separate form of -specs would name the source, i.e. the client's text.
        assert_eq!(refused("gcc -specs x.c -c -x c -"), "-specs x.c");
        // `-` is standard input: another operand.
        assert_eq!(refused("gcc -c x.c -"), "-");
        // A trailing option would swallow the `-o` the box appends.
        assert_eq!(refused("gcc -c x.c -Xassembler"), "-Xassembler");
        assert_eq!(refused("clang -c x.c -Xclang -load"), "-Xclang");
        assert_eq!(
            refused("clang -c x.c -fpass-plugin=/tmp/p.so"),
            "-fpass-plugin=/tmp/p.so"
        );
        // The assembler's pass-through still carries its own options.
        assert_eq!(
            prepared("gcc -c x.c -Xassembler -mthumb").unwrap(),
            "-c input.i -Xassembler -mthumb -o output.o"
        );
        assert!(matches!(
            prepared("gcc -E x.c"),
            Err(Refusal::NotDistributable(_))
        ));
    }
}
