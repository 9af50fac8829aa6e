//! What a compile command says about its inputs: the source and its language, the
//! `-include`/`-imacros` roots, the `-D` values a computed include may use, the options
//! that decide the include search (for the probe), and the options that make remote
//! preprocessing unsafe.
//!
//! Options are matched by an explicit table (distcc issue #76's lesson): one with a
//! separate value must skip that value, or the value would be taken for a file.

use crate::compiler::args;
use crate::compiler::args::OutputArg;

use super::directives::Define;
use super::directives::HeaderName;
use super::directives::MacroValue;
use super::walk::textual_dir;

/// A source language whose preprocessing is modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    C,
    Cxx,
    ObjC,
    ObjCxx,
}

impl Language {
    /// The name `-x` takes.
    pub fn gcc_name(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::Cxx => "c++",
            Language::ObjC => "objective-c",
            Language::ObjCxx => "objective-c++",
        }
    }

    pub fn is_cxx(self) -> bool {
        matches!(self, Language::Cxx | Language::ObjCxx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Imacros,
    Include,
}

/// A file the command line makes the preprocessor read before the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub kind: RootKind,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The source file as written.
    pub source: String,
    pub language: Language,
    /// The options that may change the include search, in order.
    pub search_args: Vec<String>,
    /// `search_args` without the user's own include directories: what gives the
    /// compiler's builtin ones.
    pub builtin_args: Vec<String>,
    /// `-imacros` files first, then `-include` files, each in command-line order (GCC
    /// reads them in that order, whatever their positions).
    pub roots: Vec<Root>,
    /// `-D` definitions.
    pub defines: Vec<Define>,
    /// Directories that outputs (`-o`, `-MF`) are written into.
    pub output_dirs: Vec<String>,
}

/// Options whose value is the next word.
const SEPARATE_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-D",
    "-U",
    "-I",
    "-include",
    "-imacros",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-imultilib",
    "-imultiarch",
    "-MF",
    "-MT",
    "-MQ",
    "-Xpreprocessor",
    "-Xassembler",
    "-Xlinker",
    "-L",
    "-l",
    "-T",
    "-u",
    "-z",
    "-A",
    "-B",
    "-specs",
    "--sysroot",
    "--param",
    "-aux-info",
    "-dumpbase",
    "-dumpbase-ext",
    "-dumpdir",
    "-wrapper",
];

/// The user's include-directory options (separate or joined value).
const INCLUDE_DIR_OPTIONS: &[&str] = &[
    "-I",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-iprefix",
    "-iwithprefixbefore",
    "-iwithprefix",
];

/// Long options known not to touch preprocessing.
const HARMLESS_LONG: &[&str] = &["--specs=", "--sysroot=", "--sysroot", "--param", "--param="];

/// Reads `args` (the words after the compiler).
pub fn read(compiler: &str, args: &[String]) -> Result<Command, String> {
    let argv: Vec<String> = std::iter::once(compiler.to_string())
        .chain(args.iter().cloned())
        .collect();
    let scanned = args::scan(&argv).map_err(|why| why.to_string())?;
    let mut search_args = Vec::new();
    let mut builtin_args = Vec::new();
    let mut imacros = Vec::new();
    let mut includes = Vec::new();
    let mut defines = Vec::new();
    let mut output_dirs = vec![textual_dir(&scanned.output).to_string()];
    let mut language_option: Option<String> = None;
    let mut language_of_source = None;
    let mut index = 1;
    while index < argv.len() {
        let arg = argv[index].as_str();
        let next = argv.get(index + 1).map(String::as_str);
        let is_output = match scanned.output_arg {
            OutputArg::Separate(at) => at == index || (arg == "-o" && at == index + 1),
            OutputArg::Joined(at) => at == index,
            OutputArg::Implicit => false,
        };
        if index == scanned.input {
            language_of_source = Some(language_option.clone());
            index += 1;
            continue;
        }
        if is_output {
            index += if arg == "-o" { 2 } else { 1 };
            continue;
        }
        let takes_next = SEPARATE_VALUE.contains(&arg);
        let value = if takes_next { next.unwrap_or("") } else { "" };
        let width = if takes_next { 2 } else { 1 };
        index += width;
        let words = &argv[index - width..index];
        if arg.starts_with('@') {
            return Err(format!("response file {arg} is not read"));
        }
        if !arg.starts_with('-') {
            // A linker input or similar: not for the preprocessor.
            continue;
        }
        if let Some(why) = doubt(arg, value) {
            return Err(why);
        }
        match arg {
            "-c" | "-S" | "-w" | "-v" | "-H" | "-pipe" | "-MD" | "-MMD" | "-MP" | "-MG" => {}
            "-MF" | "-MT" | "-MQ" | "-U" => {
                if arg == "-MF" {
                    output_dirs.push(textual_dir(value).to_string());
                }
            }
            _ if arg.starts_with("-MF") => output_dirs.push(textual_dir(&arg[3..]).to_string()),
            _ if arg.starts_with("-MT") || arg.starts_with("-MQ") || arg.starts_with("-U") => {}
            "-D" => defines.push(define(value)),
            _ if arg.starts_with("-D") => defines.push(define(&arg[2..])),
            "-x" => language_option = Some(value.to_string()),
            _ if arg.starts_with("-x") => language_option = Some(arg[2..].to_string()),
            "-include" => includes.push(value.to_string()),
            "-imacros" => imacros.push(value.to_string()),
            _ if arg.starts_with("-include") => includes.push(arg["-include".len()..].into()),
            _ if arg.starts_with("-imacros") => imacros.push(arg["-imacros".len()..].into()),
            _ if arg.starts_with("-Wp,") => {
                let mut parts = arg.split(',').skip(1);
                while let Some(part) = parts.next() {
                    match part {
                        "-MD" | "-MMD" | "-MF" => {
                            if let Some(file) = parts.next() {
                                output_dirs.push(textual_dir(file).to_string());
                            }
                        }
                        "-MT" | "-MQ" => {
                            parts.next();
                        }
                        "-MP" => {}
                        _ if part.starts_with("-D") => defines.push(define(&part[2..])),
                        _ if part.starts_with("-U") => {}
                        _ => return Err(format!("{arg} passes options to the preprocessor")),
                    }
                }
            }
            _ if arg.starts_with("-W") || arg.starts_with("-O") || arg.starts_with("-g") => {}
            _ => {
                search_args.extend_from_slice(words);
                let include_dir = INCLUDE_DIR_OPTIONS
                    .iter()
                    .any(|option| arg.starts_with(option));
                if !include_dir {
                    builtin_args.extend_from_slice(words);
                }
            }
        }
    }
    let source = argv[scanned.input].clone();
    let language = language(&source, language_of_source.flatten().as_deref())?;
    for name in imacros.iter().chain(&includes) {
        if name.ends_with(".gch") {
            return Err(format!("-include {name} is a precompiled header"));
        }
    }
    let roots = imacros
        .into_iter()
        .map(|name| Root {
            kind: RootKind::Imacros,
            name,
        })
        .chain(includes.into_iter().map(|name| Root {
            kind: RootKind::Include,
            name,
        }))
        .collect();
    output_dirs.retain(|dir| !dir.is_empty());
    output_dirs.dedup();
    Ok(Command {
        source,
        language,
        search_args,
        builtin_args,
        roots,
        defines,
        output_dirs,
    })
}

/// Why `arg` (with `value` if it takes one) rules remote preprocessing out.
fn doubt(arg: &str, value: &str) -> Option<String> {
    let why = match arg {
        "-I-" | "--include-barrier" => "-I- changes how quoted includes are searched",
        "-Xpreprocessor" => {
            return Some(format!(
                "-Xpreprocessor {value} passes options to the preprocessor"
            ));
        }
        "-fpreprocessed" => "-fpreprocessed: the source is taken as preprocessed",
        "-traditional-cpp" | "-traditional" => "traditional preprocessing is not modelled",
        "-remap" => "-remap reads header.gcc name maps",
        "--coverage" | "-ftest-coverage" | "-fprofile-arcs" | "-fbranch-probabilities" => {
            return Some(format!("{arg} records paths in profile files"));
        }
        _ if arg.starts_with("-fprofile-") || arg.starts_with("-fauto-profile") => {
            return Some(format!("{arg} records or reads profile files by path"));
        }
        _ if arg.starts_with("--")
            && !HARMLESS_LONG
                .iter()
                .any(|long| arg == *long || (long.ends_with('=') && arg.starts_with(long))) =>
        {
            return Some(format!("long option {arg} is not modelled"));
        }
        _ => return None,
    };
    Some(why.to_string())
}

/// A `-D` word (`NAME`, `NAME=VALUE`, `NAME(ARGS)=VALUE`) as a definition.
fn define(text: &str) -> Define {
    let (name, value) = text.split_once('=').unwrap_or((text, "1"));
    let value = if name.contains('(') {
        MacroValue::Other
    } else if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        MacroValue::Header(HeaderName::Quote(value[1..value.len() - 1].to_string()))
    } else if value.len() >= 2 && value.starts_with('<') && value.ends_with('>') {
        MacroValue::Header(HeaderName::Angle(value[1..value.len() - 1].to_string()))
    } else if !value.is_empty()
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        MacroValue::Alias(value.to_string())
    } else {
        MacroValue::Other
    };
    Define {
        name: name.split('(').next().unwrap_or(name).to_string(),
        value,
    }
}

/// The language of `source`: the `-x` in force before it, or its extension.
fn language(source: &str, option: Option<&str>) -> Result<Language, String> {
    let preprocessed = || Err(format!("{source} is already preprocessed"));
    match option {
        Some("c") => return Ok(Language::C),
        Some("c++") => return Ok(Language::Cxx),
        Some("objective-c") => return Ok(Language::ObjC),
        Some("objective-c++") => return Ok(Language::ObjCxx),
        Some("cpp-output" | "c++-cpp-output" | "objective-c-cpp-output") => return preprocessed(),
        Some("none") | None => {}
        Some(other) => return Err(format!("language {other} is not modelled")),
    }
    let extension = source
        .rsplit_once('.')
        .map_or("", |(_, extension)| extension);
    match extension {
        "c" => Ok(Language::C),
        "cc" | "cp" | "cxx" | "cpp" | "CPP" | "c++" | "C" => Ok(Language::Cxx),
        "m" => Ok(Language::ObjC),
        "mm" | "M" => Ok(Language::ObjCxx),
        "i" | "ii" | "mi" | "mii" => preprocessed(),
        "S" | "sx" => Err(format!(
            "{source}: assembler-with-cpp is not modelled (.incbin, # comments)"
        )),
        _ => Err(format!("{source}: language not known from its extension")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_search_options_roots_and_defines_are_separated() {
        let command = read(
            "gcc",
            &words(
                "-MD -MF deps/a.d -DCFG=\"cfg.h\" -D ANGLE=<x/y.h> -Iinc -I other -isystem sys -O2 -g -Wall \
                 -include pre.h -imacros mac.h -std=c11 --sysroot=/sr -c src/a.c -o out/a.o",
            ),
        )
        .unwrap();
        assert_eq!(command.source, "src/a.c");
        assert_eq!(command.language, Language::C);
        assert_eq!(
            command.search_args,
            words("-Iinc -I other -isystem sys -std=c11 --sysroot=/sr")
        );
        assert_eq!(command.builtin_args, words("-std=c11 --sysroot=/sr"));
        assert_eq!(
            command.roots,
            vec![
                Root {
                    kind: RootKind::Imacros,
                    name: "mac.h".into()
                },
                Root {
                    kind: RootKind::Include,
                    name: "pre.h".into()
                }
            ]
        );
        assert_eq!(
            command
                .defines
                .iter()
                .map(|d| (d.name.as_str(), d.value.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("CFG", MacroValue::Header(HeaderName::Quote("cfg.h".into()))),
                (
                    "ANGLE",
                    MacroValue::Header(HeaderName::Angle("x/y.h".into()))
                )
            ]
        );
        assert_eq!(command.output_dirs, vec!["out/", "deps/"]);
    }

    #[test]
    fn the_language_comes_from_x_before_the_source_or_the_extension() {
        let language = |line: &str| read("g++", &words(line)).map(|c| c.language);
        assert_eq!(language("-c a.cc"), Ok(Language::Cxx));
        assert_eq!(language("-x c++ -c a.c"), Ok(Language::Cxx));
        assert_eq!(language("-c a.c -x c++"), Ok(Language::C));
        assert_eq!(language("-c a.mm"), Ok(Language::ObjCxx));
        assert!(language("-c a.ii").unwrap_err().contains("preprocessed"));
    }

    #[test]
    fn unsafe_options_are_doubts() {
        for (line, why) in [
            ("-I- -c a.c", "-I-"),
            ("--coverage -c a.c", "--coverage"),
            ("-fprofile-update=atomic -c a.c", "-fprofile-update"),
            ("-Wp,-include,x.h -c a.c", "-Wp,"),
            ("-Xpreprocessor -dD -c a.c", "-Xpreprocessor"),
            ("-include x.h.gch -c a.c", "precompiled"),
            ("--include=x.h -c a.c", "long option"),
            ("-E a.c", "-E"),
            ("@opts -c a.c", "response file"),
        ] {
            let err = read("gcc", &words(line)).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
        assert!(read("gcc", &words("-Wp,-MD,out/a.d -c a.c")).is_ok());
    }
}
