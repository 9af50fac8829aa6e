//! Splitting a compile into the local preprocessing run and the remote command
//! (distcc.md §5.3), with sshcc's two improvements:
//!
//! - towards an sshcc box, GCC preprocesses with `-fdirectives-only` and the box
//!   compiles with `-fpreprocessed -fdirectives-only`, so macro-expansion notes and
//!   column numbers in diagnostics and `-g` line tables match a local build;
//! - `-MD`/`-MMD` dependency files name the real output (`-o`) as their target, as a
//!   local compile does, instead of distcc's `source.o`.

use crate::compiler::args::{Distributable, OutputArg};
use crate::compiler::source;
use crate::protocol::SideFile;
use crate::protocol::job::{MAX_SIDE_FILE_BYTES, MAX_SIDE_FILE_NAME, MAX_SIDE_FILES};

/// How the preprocessed source is made, which depends on what the box runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Classic `-E`: what a stock distccd box expects.
    Classic,
    /// `-E -fdirectives-only` (GCC only).
    DirectivesOnly,
}

impl Mode {
    /// The mode for a compiler talking to an sshcc box. clang's equivalent
    /// (`-frewrite-includes`) needs the box to compile the text as unpreprocessed source,
    /// which the protocol cannot express yet, so clang keeps the classic mode.
    pub fn for_sshcc_box(compiler: &str) -> Self {
        let name = compiler.rsplit('/').next().unwrap_or(compiler);
        if name.contains("clang") {
            Mode::Classic
        } else {
            Mode::DirectivesOnly
        }
    }
}

/// Options (with a separate value) that only the preprocessor uses; the remote command
/// drops them (`dcc_strip_local_args`).
const LOCAL_WITH_VALUE: &[&str] = &[
    "-D",
    "-I",
    "-U",
    "-L",
    "-l",
    "-MF",
    "-MT",
    "-MQ",
    "-include",
    "-imacros",
    "-iprefix",
    "-iwithprefix",
    "-isystem",
    "-iwithprefixbefore",
    "-idirafter",
    "-iquote",
    "-isysroot",
    "-Xpreprocessor",
];
/// Prefixes of joined local-only options.
const LOCAL_PREFIXES: &[&str] = &[
    "-Wp,",
    "-Wl,",
    "-D",
    "-U",
    "-I",
    "-l",
    "-L",
    "-MF",
    "-MT",
    "-MQ",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-stdlib",
];
const LOCAL_EXACT: &[&str] = &[
    "-undef",
    "-nostdinc",
    "-nostdinc++",
    "-MD",
    "-MMD",
    "-MG",
    "-MP",
];

/// The local preprocessor command: the compile command with `-o` removed, `-c`/`-S`
/// replaced by `-E`, and the dependency file's name and target pinned to what the
/// compile would have used.
pub fn preprocessor_command(argv: &[String], scan: &Distributable, mode: Mode) -> Vec<String> {
    let mut command = Vec::with_capacity(argv.len() + 6);
    let mut index = 0;
    while index < argv.len() {
        let arg = argv[index].as_str();
        let is_output = match scan.output_arg {
            OutputArg::Separate(at) => arg == "-o" && at == index + 1,
            OutputArg::Joined(at) => at == index,
            OutputArg::Implicit => false,
        };
        if is_output {
            index += if arg == "-o" { 2 } else { 1 };
            continue;
        }
        command.push(if arg == "-c" || arg == "-S" {
            "-E".to_string()
        } else {
            arg.to_string()
        });
        index += 1;
    }
    if mode == Mode::DirectivesOnly {
        command.push("-fdirectives-only".to_string());
    }
    let any = |test: &dyn Fn(&str) -> bool| argv.iter().any(|arg| test(arg));
    if any(&|arg| arg == "-MD" || arg == "-MMD") {
        // gcc derives both from -o when compiling; without -o (as here) it would name
        // them after the source, in the working directory.
        if !any(&|arg| arg.starts_with("-MF")) {
            command.extend(["-MF".to_string(), dependency_file(&scan.output)]);
        }
        if !any(&|arg| arg.starts_with("-MT") || arg.starts_with("-MQ")) {
            command.extend(["-MQ".to_string(), scan.output.clone()]);
        }
    }
    command
}

/// gcc's default `.d` name for `-MD` with `-o OUTPUT`: OUTPUT with its suffix replaced.
pub(super) fn dependency_file(output: &str) -> String {
    let name_start = output.rfind('/').map_or(0, |slash| slash + 1);
    let stem_end = output[name_start..]
        .rfind('.')
        .map_or(output.len(), |dot| name_start + dot);
    format!("{}.d", &output[..stem_end])
}

/// The command sent to the box: local-only options removed, the compiler renamed, and
/// for directives-only input the flags that make the compiler accept it.
pub fn remote_command(argv: &[String], remote_compiler: &str, mode: Mode) -> Vec<String> {
    let mut command = vec![remote_compiler.to_string()];
    let mut index = 1;
    while index < argv.len() {
        let arg = argv[index].as_str();
        index += 1;
        if LOCAL_WITH_VALUE.contains(&arg) {
            index += 1;
            continue;
        }
        if LOCAL_EXACT.contains(&arg) || LOCAL_PREFIXES.iter().any(|prefix| arg.starts_with(prefix))
        {
            continue;
        }
        command.push(arg.to_string());
    }
    if mode == Mode::DirectivesOnly {
        command.extend([
            "-fpreprocessed".to_string(),
            "-fdirectives-only".to_string(),
        ]);
    }
    command
}

/// Whether `argv`'s source needs no preprocessing (`.i`, `.ii`, …).
pub fn already_preprocessed(argv: &[String], scan: &Distributable) -> bool {
    source::is_preprocessed(&argv[scan.input])
}

/// The project's own files named in the preprocessed output's line markers
/// (`# 12 "src/a.c" 2`): relative paths only, since absolute ones (system headers) exist
/// on the box already or cannot be placed there. Files that cannot be read are skipped.
pub fn side_files(preprocessed: &[u8]) -> Vec<SideFile> {
    let mut names: Vec<String> = Vec::new();
    for line in preprocessed.split(|&byte| byte == b'\n') {
        if let Some(name) = line_marker_file(line)
            && !name.starts_with('/')
            && !name.starts_with('<')
            && name.len() <= MAX_SIDE_FILE_NAME as usize
            && names.len() < MAX_SIDE_FILES as usize
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    let mut total = 0;
    let mut files = Vec::new();
    for path in names {
        let Ok(contents) = std::fs::read(&path) else {
            continue;
        };
        total += contents.len();
        if total > MAX_SIDE_FILE_BYTES {
            break;
        }
        files.push(SideFile { path, contents });
    }
    files
}

/// The file name of a line marker `# <line> "<name>" [flags]`, unescaped.
fn line_marker_file(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"# ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let quoted = rest[digits..].strip_prefix(b" \"")?;
    let mut name = Vec::new();
    let mut bytes = quoted.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' => return (digits > 0).then(|| String::from_utf8(name).ok()).flatten(),
            b'\\' => name.push(*bytes.next()?),
            other => name.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::args::scan;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn preprocessor_drops_output_and_pins_dependency_names() {
        let cmd = argv("gcc -MD -DX=1 -Iinc -c src/a.c -o out/a3.o");
        let scanned = scan(&cmd).unwrap();
        assert_eq!(
            preprocessor_command(&cmd, &scanned, Mode::DirectivesOnly).join(" "),
            "gcc -MD -DX=1 -Iinc -E src/a.c -fdirectives-only -MF out/a3.d -MQ out/a3.o"
        );
        let cmd = argv("gcc -MMD -MF deps/a.d -MT tgt -c a.c -oa.o");
        let scanned = scan(&cmd).unwrap();
        assert_eq!(
            preprocessor_command(&cmd, &scanned, Mode::Classic).join(" "),
            "gcc -MMD -MF deps/a.d -MT tgt -E a.c"
        );
        let cmd = argv("gcc -Wp,-MD,x.d -c a.c -o a.o");
        let scanned = scan(&cmd).unwrap();
        assert_eq!(
            preprocessor_command(&cmd, &scanned, Mode::Classic).join(" "),
            "gcc -Wp,-MD,x.d -E a.c"
        );
        assert_eq!(dependency_file("dir.v2/a"), "dir.v2/a.d");
    }

    #[test]
    fn side_files_are_the_relative_files_of_line_markers() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("inc");
        std::fs::create_dir(&inc).unwrap();
        std::fs::write(inc.join("v \"q\".h"), "#define V 1\n").unwrap();
        let text = format!(
            "# 0 \"a.c\"\n# 0 \"<built-in>\"\n# 1 \"/usr/include/stdio.h\" 1 3 4\n# 3 \"{}/v \\\"q\\\".h\" 1\nint v;\n",
            inc.display()
        );
        assert_eq!(
            line_marker_file(b"# 3 \"inc/v \\\"q\\\".h\" 1"),
            Some("inc/v \"q\".h".into())
        );
        assert_eq!(line_marker_file(b"#pragma once"), None);
        // Only relative names are kept, and only if they can be read.
        let files = side_files(text.as_bytes());
        assert!(files.iter().all(|f| !f.path.starts_with('/')));
    }

    #[test]
    fn remote_command_keeps_only_compile_options() {
        let cmd = argv(
            "gcc -MD -MF a.d -DX=1 -I inc -include cfg.h -isystem /x -O2 -g -Wall -c a.c -o a9.o",
        );
        assert_eq!(
            remote_command(&cmd, "x86_64-linux-gnu-gcc", Mode::Classic).join(" "),
            "x86_64-linux-gnu-gcc -O2 -g -Wall -c a.c -o a9.o"
        );
        assert_eq!(
            remote_command(
                &argv("g++ -std=c++17 -c a.cpp"),
                "g++",
                Mode::DirectivesOnly
            )
            .join(" "),
            "g++ -std=c++17 -c a.cpp -fpreprocessed -fdirectives-only"
        );
    }
}
