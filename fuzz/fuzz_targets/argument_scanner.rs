//! Compiler command lines (NUL-separated words, `argv[0]` first) through distcc's
//! distributability scanner and the box's argument policy.
//!
//! Whenever the policy accepts a command line, what the box would run must read, the way
//! gcc's driver reads it, as: exactly one operand, `input.i` (`-`, standard input, is an
//! operand too); exactly one output, `-o output.o`; no option that loads code or reads a
//! file the job did not bring; and no word at all starting with `@`, since gcc expands
//! response files wherever they appear, even as another option's value
//! (`-D @/etc/passwd` reads the file).
//!
//! fuzz/regressions/argument_scanner/ holds the violations found so far.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshcc::compiler::args::{self, OutputArg};
use sshcc::server::argument_policy;

const INPUT: &str = "input.i";
const OUTPUT: &str = "output.o";

/// Options gcc's driver (gcc 12) gives the next word as their value, found by probing
/// `gcc -### -c t.c OPTION -DPROBE` for every option name in the driver; plus clang's
/// `-target`, which gcc rejects as unknown (so nothing runs either way).
const GCC_SEPARATE: &[&str] = &[
    "-A",
    "-B",
    "-D",
    "-F",
    "-Hd",
    "-Hf",
    "-I",
    "-J",
    "-L",
    "-MF",
    "-MQ",
    "-MT",
    "-R",
    "-T",
    "-Tbss",
    "-Tdata",
    "-Ttext",
    "-U",
    "-Xassembler",
    "-Xf",
    "-Xlinker",
    "-Xpreprocessor",
    "-aux-info",
    "-dumpbase",
    "-dumpbase-ext",
    "-dumpdir",
    "-e",
    "-fintrinsic-modules-path",
    "-gnatO",
    "-h",
    "-idirafter",
    "-imacros",
    "-imultilib",
    "-include",
    "-iprefix",
    "-iquote",
    "-isysroot",
    "-isystem",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-l",
    "-o",
    "-specs",
    "-u",
    "-wrapper",
    "-x",
    "-z",
    "--param",
    "--sysroot",
    "-target",
];

/// Option prefixes that must never reach the compiler: they load code or read files.
const NEVER: &[&str] = &[
    "-fplugin",
    "-iplugindir",
    "-B",
    "-wrapper",
    "-include",
    "-imacros",
];

fuzz_target!(|data: &[u8]| {
    let argv: Vec<String> = data
        .split(|&b| b == 0)
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    check_scan(&argv);
    if let Ok(prepared) = argument_policy::prepare(&argv, INPUT, OUTPUT)
        && let Err(why) = check_prepared(&prepared.args)
    {
        panic!(
            "argument policy accepted {argv:?} and would run {:?}: {why}",
            prepared.args
        );
    }
});

fn check_scan(argv: &[String]) {
    let Ok(scan) = args::scan(argv) else {
        return;
    };
    assert!(scan.input >= 1 && scan.input < argv.len(), "{scan:?}");
    match scan.output_arg {
        OutputArg::Separate(at) => {
            assert!(at >= 1 && at < argv.len() && at != scan.input, "{scan:?}");
            assert_eq!(argv[at], scan.output, "{scan:?}");
        }
        OutputArg::Joined(at) => {
            assert!(at >= 1 && at < argv.len(), "{scan:?}");
            assert_eq!(argv[at].strip_prefix("-o"), Some(scan.output.as_str()));
        }
        OutputArg::Implicit => {}
    }
}

/// Reads `args` as gcc's driver does and says what is wrong with it, if anything.
fn check_prepared(args: &[String]) -> Result<(), String> {
    if let Some(word) = args.iter().find(|word| word.starts_with('@')) {
        return Err(format!("{word:?} would be expanded as a response file"));
    }
    let (mut operands, mut outputs) = (Vec::new(), Vec::new());
    let mut index = 0;
    while index < args.len() {
        let word = args[index].as_str();
        index += 1;
        if !word.starts_with('-') || word == "-" {
            operands.push(word);
            continue;
        }
        let value = if GCC_SEPARATE.contains(&word) {
            index += 1;
            Some(args.get(index - 1).map_or("", String::as_str))
        } else {
            None
        };
        if let Some(prefix) = NEVER.iter().find(|prefix| word.starts_with(*prefix)) {
            return Err(format!("option {word:?} ({prefix}) reaches the compiler"));
        }
        let specs = match word {
            "-specs" => value,
            _ => word
                .strip_prefix("-specs=")
                .or_else(|| word.strip_prefix("--specs=")),
        };
        if specs.is_some_and(|file| file.contains('/')) {
            return Err(format!("{word:?} {value:?} reads a specs file by path"));
        }
        if let Some(joined) = word.strip_prefix("-o") {
            outputs.push(value.unwrap_or(joined));
        }
    }
    if operands != [INPUT] {
        return Err(format!("operands {operands:?}, not just {INPUT:?}"));
    }
    if outputs != [OUTPUT] {
        return Err(format!("outputs {outputs:?}, not just {OUTPUT:?}"));
    }
    Ok(())
}
