//! distcc's verdict on a compiler command line (`dcc_scan_args`, distcc.md §5.2): can it
//! be compiled remotely, and if so which words are the source and the output.
//!
//! The wrapper uses it to decide where a job runs; the box runs it again on what it
//! receives, because a request may come from any client.

use std::fmt;

use super::source;

/// What the compiler is asked to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `-c`: an object file.
    Compile,
    /// `-S`: assembly.
    Assemble,
}

impl Action {
    /// Extension of the default output name.
    pub fn output_extension(self) -> &'static str {
        match self {
            Action::Compile => "o",
            Action::Assemble => "s",
        }
    }
}

/// Where the output name sits in argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputArg {
    /// `-o NAME`: the index of NAME.
    Separate(usize),
    /// `-oNAME`: the index of the whole word.
    Joined(usize),
    /// No `-o`: the compiler would write the default name into the working directory.
    Implicit,
}

/// A command line that may be compiled remotely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distributable {
    pub action: Action,
    /// Index of the source file word.
    pub input: usize,
    pub output_arg: OutputArg,
    /// The output path as the local compiler would write it.
    pub output: String,
}

/// Why a command must run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MustRunLocally {
    PreprocessOnly,
    DependenciesOnly(String),
    NativeTuning(String),
    AssemblerListing(String),
    Profiling(String),
    UnsupportedLanguage(String),
    RtlDump(String),
    LinkTimeOptimisation,
    SeveralOutputs,
    SeveralInputs,
    MissingOptionValue(String),
    NotCompiling,
    NoSourceFile,
    Autoconf(String),
    OutputToStdout,
}

impl fmt::Display for MustRunLocally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PreprocessOnly => write!(f, "-E only preprocesses"),
            Self::DependenciesOnly(arg) => write!(f, "{arg} only generates dependencies"),
            Self::NativeTuning(arg) => write!(f, "{arg} depends on this machine's CPU"),
            Self::AssemblerListing(arg) => write!(f, "{arg} writes an assembler side file"),
            Self::Profiling(arg) => write!(f, "{arg} needs profile files on this machine"),
            Self::UnsupportedLanguage(arg) => write!(f, "language {arg} is not distributable"),
            Self::RtlDump(arg) => write!(f, "{arg} writes RTL dump files"),
            Self::LinkTimeOptimisation => write!(f, "-flto objects are not distributed"),
            Self::SeveralOutputs => write!(f, "more than one output (linking?)"),
            Self::SeveralInputs => write!(f, "more than one source file"),
            Self::MissingOptionValue(arg) => write!(f, "{arg} lacks its value"),
            Self::NotCompiling => write!(f, "neither -c nor -S (linking?)"),
            Self::NoSourceFile => write!(f, "no distributable source file"),
            Self::Autoconf(name) => write!(f, "{name} is an autoconf test"),
            Self::OutputToStdout => write!(f, "output goes to stdout"),
        }
    }
}

const PROFILING_PREFIXES: &[&str] = &[
    "-fprofile-arcs",
    "-ftest-coverage",
    "--coverage",
    "-fprofile-generate",
    "-fprofile-use",
    "-fauto-profile",
    "-fprofile-correction",
];

const DISTRIBUTABLE_LANGUAGES: &[&str] = &["c", "c++", "objective-c", "objective-c++", "go"];

/// Applies distcc's rules to `argv` (`argv[0]` is the compiler).
pub fn scan(argv: &[String]) -> Result<Distributable, MustRunLocally> {
    let mut action = None;
    let mut input = None;
    let mut output: Option<(OutputArg, String)> = None;
    let mut index = 1;
    while index < argv.len() {
        let arg = argv[index].as_str();
        let next = argv.get(index + 1);
        let value_of_next =
            || next.ok_or_else(|| MustRunLocally::MissingOptionValue(arg.to_string()));
        if arg.starts_with('-') {
            match arg {
                "-E" => return Err(MustRunLocally::PreprocessOnly),
                "-MD" | "-MMD" | "-MG" | "-MP" => {}
                "-MF" | "-MT" | "-MQ" => {
                    value_of_next()?;
                    index += 1;
                }
                _ if arg.starts_with("-MF") || arg.starts_with("-MT") || arg.starts_with("-MQ") => {
                }
                _ if arg.starts_with("-M") => {
                    return Err(MustRunLocally::DependenciesOnly(arg.to_string()));
                }
                "-march=native" | "-mtune=native" => {
                    return Err(MustRunLocally::NativeTuning(arg.to_string()));
                }
                _ if arg.starts_with("-Wa,") && (arg.contains(",-a") || arg.contains("--MD")) => {
                    return Err(MustRunLocally::AssemblerListing(arg.to_string()));
                }
                "-S" => action = Some(action.unwrap_or(Action::Assemble)),
                "-c" => action = Some(Action::Compile),
                _ if PROFILING_PREFIXES.iter().any(|p| arg.starts_with(p)) || arg == "-frepo" => {
                    return Err(MustRunLocally::Profiling(arg.to_string()));
                }
                // distcc inspects the following word even for a joined `-xLANG` (a quirk);
                // we check the language actually given.
                _ if arg.starts_with("-x") => {
                    let language = if arg == "-x" {
                        index += 1;
                        value_of_next()?.as_str()
                    } else {
                        &arg[2..]
                    };
                    if !DISTRIBUTABLE_LANGUAGES
                        .iter()
                        .any(|l| language.starts_with(l))
                    {
                        return Err(MustRunLocally::UnsupportedLanguage(language.to_string()));
                    }
                }
                _ if arg.starts_with("-dr") => {
                    return Err(MustRunLocally::RtlDump(arg.to_string()));
                }
                _ if arg.starts_with("-flto") && arg != "-flto=none" => {
                    return Err(MustRunLocally::LinkTimeOptimisation);
                }
                "-o" => {
                    let name = value_of_next()?;
                    set_output(&mut output, OutputArg::Separate(index + 1), name)?;
                    index += 1;
                }
                _ if arg.starts_with("-o") => {
                    set_output(&mut output, OutputArg::Joined(index), &arg[2..])?;
                }
                _ => {}
            }
        } else if source::is_source(arg) {
            if input.is_some() {
                return Err(MustRunLocally::SeveralInputs);
            }
            input = Some(index);
        } else if source::is_object(arg) {
            set_output(&mut output, OutputArg::Separate(index), arg)?;
        }
        index += 1;
    }

    let action = action.ok_or(MustRunLocally::NotCompiling)?;
    let input = input.ok_or(MustRunLocally::NoSourceFile)?;
    let source_name = argv[input].rsplit('/').next().unwrap_or_default();
    if source_name.starts_with("conftest.") || source_name.starts_with("tmp.conftest.") {
        return Err(MustRunLocally::Autoconf(source_name.to_string()));
    }
    let (output_arg, output) = match output {
        Some((_, name)) if name == "-" => return Err(MustRunLocally::OutputToStdout),
        Some(found) => found,
        None => (OutputArg::Implicit, default_output(source_name, action)),
    };
    Ok(Distributable {
        action,
        input,
        output_arg,
        output,
    })
}

fn set_output(
    output: &mut Option<(OutputArg, String)>,
    arg: OutputArg,
    name: &str,
) -> Result<(), MustRunLocally> {
    if output.is_some() {
        return Err(MustRunLocally::SeveralOutputs);
    }
    *output = Some((arg, name.to_string()));
    Ok(())
}

/// gcc's default output: the source's base name with the extension replaced, in the
/// working directory.
fn default_output(source_name: &str, action: Action) -> String {
    let stem = source_name
        .rfind('.')
        .map_or(source_name, |dot| &source_name[..dot]);
    format!("{stem}.{}", action.output_extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn distributable_commands_name_input_and_output() {
        let d = scan(&argv("gcc -c a.c")).unwrap();
        assert_eq!(
            (d.input, d.output_arg, d.output.as_str()),
            (2, OutputArg::Implicit, "a.o")
        );
        let d = scan(&argv("gcc -S src/a.c")).unwrap();
        assert_eq!((d.action, d.output.as_str()), (Action::Assemble, "a.s"));
        let d = scan(&argv("gcc -MD -MF a.d -c a.c -o out/a3.o")).unwrap();
        assert_eq!(
            (d.output_arg, d.output.as_str()),
            (OutputArg::Separate(7), "out/a3.o")
        );
        let d = scan(&argv("g++ -x c++ -c a.c -oa6.o")).unwrap();
        assert_eq!(
            (d.output_arg, d.output.as_str()),
            (OutputArg::Joined(5), "a6.o")
        );
        assert!(scan(&argv("gcc --specs=nano.specs -c a.c")).is_ok());
    }

    #[test]
    fn local_only_commands_say_why() {
        for (line, expected) in [
            ("gcc -E a.c", MustRunLocally::PreprocessOnly),
            ("gcc -M a.c", MustRunLocally::DependenciesOnly("-M".into())),
            ("gcc -c a.c b.c", MustRunLocally::SeveralInputs),
            (
                "gcc -x assembler -c s.s",
                MustRunLocally::UnsupportedLanguage("assembler".into()),
            ),
            ("gcc -c s.s", MustRunLocally::NoSourceFile),
            ("gcc -c h.h", MustRunLocally::NoSourceFile),
            (
                "gcc -c conftest.c",
                MustRunLocally::Autoconf("conftest.c".into()),
            ),
            ("gcc -c a.c -o -", MustRunLocally::OutputToStdout),
            ("gcc a.c -o a", MustRunLocally::NotCompiling),
            (
                "gcc -march=native -c a.c",
                MustRunLocally::NativeTuning("-march=native".into()),
            ),
            (
                "gcc --coverage -c a.c",
                MustRunLocally::Profiling("--coverage".into()),
            ),
            ("gcc -c a.c -o a.o -o b.o", MustRunLocally::SeveralOutputs),
            (
                "gcc -c a.c -o",
                MustRunLocally::MissingOptionValue("-o".into()),
            ),
            (
                "gcc -Wa,-adhln -c a.c",
                MustRunLocally::AssemblerListing("-Wa,-adhln".into()),
            ),
        ] {
            assert_eq!(scan(&argv(line)), Err(expected), "{line}");
        }
    }
}
