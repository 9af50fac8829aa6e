//! A job for remote preprocessing: the compile command exactly as the user gave it,
//! with what the daemon needs to find its inputs and the box to run it as if here, and
//! its results written back like a local compile's.

use std::path::Path;

use super::invocation::{self, Invocation};
use super::output::write_atomically;
use super::preprocess;
use crate::compiler::args::Distributable;
use crate::daemon::ipc::RemoteRequest;
use crate::digest::Digest;
use crate::protocol::JobContext;
use crate::protocol::mux::remote::{RemoteCompile, RemoteJob};

/// Environment variables that change which files the preprocessor reads or what it
/// writes; the daemon declines remote preprocessing when any is set.
const PREPROCESSOR_ENVIRONMENT: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
    "SOURCE_DATE_EPOCH",
];

/// The request for `invocation`, run on the box as `remote_compiler`, or why the job
/// must be preprocessed here.
pub(super) fn request(
    invocation: &Invocation,
    scan: &Distributable,
    remote_compiler: &str,
) -> Result<RemoteRequest, String> {
    if let Some(option) = invocation.argv.iter().find(|arg| arg.starts_with("-Wp,")) {
        // The preprocessor's own options (`-Wp,-MD,file`) write files the box would
        // have to name and send back; the local path handles them as it always has.
        return Err(format!("{option} is an option for the preprocessor here"));
    }
    if Path::new(&invocation.argv[scan.input]).is_absolute() && debug_info(&invocation.argv) {
        // The assembler's DWARF 3 line tables (arm-none-eabi's gas) would list the
        // source twice: once under the name gcc remapped, once under the path the box
        // compiled. Relative source paths are remapped nowhere and come out exact.
        return Err("the source is named by an absolute path and -g is on".to_string());
    }
    let path = invocation.path.clone().or_else(|| std::env::var_os("PATH"));
    let local_compiler = invocation::find_on_path(&invocation.argv[0], path.as_ref())
        .and_then(|found| crate::toolchain::real_compiler(&found, path.as_deref()).ok())
        .ok_or_else(|| format!("{} is not found on PATH", invocation.argv[0]))?;
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.to_str().map(str::to_string))
        .ok_or("the working directory has no UTF-8 name")?;
    // The compiler records $PWD as the compilation directory when it names the
    // working directory (a symlinked path); so must the box.
    let pwd = std::env::var("PWD")
        .ok()
        .filter(|pwd| *pwd != cwd && Path::new(pwd).is_absolute() && same_directory(pwd, &cwd));
    let mut outputs = vec![scan.output.clone()];
    outputs.extend(dependency_output(&invocation.argv, scan));
    Ok(RemoteRequest {
        job: RemoteJob {
            compiler: remote_compiler.to_string(),
            args: invocation.argv[1..].to_vec(),
            cwd,
            pwd,
            locale: JobContext::with_local_locale().env,
            root: Digest::EMPTY,
            outputs,
        },
        local_compiler: local_compiler.display().to_string(),
        env: PREPROCESSOR_ENVIRONMENT
            .iter()
            .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
            .collect(),
    })
}

/// Whether the command asks for debug information (the last `-g…` option is not `-g0`).
fn debug_info(argv: &[String]) -> bool {
    argv.iter()
        .rev()
        .find(|arg| arg.starts_with("-g") && !arg.starts_with("-gno-") && !arg.starts_with("-gz"))
        .is_some_and(|arg| arg != "-g0")
}

fn same_directory(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The dependency file `-MD`/`-MMD` makes the compile write: `-MF`'s, else the output
/// with its suffix replaced, as gcc names it.
fn dependency_output(argv: &[String], scan: &Distributable) -> Option<String> {
    if !argv.iter().any(|arg| arg == "-MD" || arg == "-MMD") {
        return None;
    }
    let mut words = argv.iter();
    let mut named = None;
    while let Some(word) = words.next() {
        if word == "-MF" {
            named = words.next().cloned();
        } else if let Some(joined) = word.strip_prefix("-MF") {
            named = Some(joined.to_string());
        }
    }
    Some(named.unwrap_or_else(|| preprocess::dependency_file(&scan.output)))
}

/// Prints what the compiler printed on the box.
pub(super) fn report(compile: &RemoteCompile) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(&compile.stdout);
    let _ = std::io::stderr().write_all(&compile.stderr);
}

/// Prints what the compiler printed on the box and writes the outputs it produced,
/// each complete or not at all; returns the exit status to report.
pub(super) fn deliver(compile: &RemoteCompile) -> u8 {
    report(compile);
    for (path, content) in &compile.outputs {
        if let Err(err) = write_atomically(Path::new(path), content) {
            eprintln!("sshcc: cannot write {path}: {err}");
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::args;

    fn outputs(line: &str) -> Option<String> {
        let argv: Vec<String> = line.split(' ').map(String::from).collect();
        let scan = args::scan(&argv).expect("distributable");
        dependency_output(&argv, &scan)
    }

    #[test]
    fn dependency_files_are_named_as_gcc_names_them() {
        assert_eq!(outputs("gcc -c x.c -o b/x.o"), None);
        assert_eq!(outputs("gcc -c x.c -o b/x.o -MD").as_deref(), Some("b/x.d"));
        assert_eq!(outputs("gcc -c x.c -MMD").as_deref(), Some("x.d"));
        assert_eq!(
            outputs("gcc -c x.c -MD -MF deps/x.dep").as_deref(),
            Some("deps/x.dep")
        );
        assert_eq!(outputs("gcc -c x.c -MD -MFx.dep").as_deref(), Some("x.dep"));
    }

    #[test]
    fn debug_info_is_the_last_g_option() {
        let argv = |line: &str| -> Vec<String> { line.split(' ').map(String::from).collect() };
        assert!(debug_info(&argv("gcc -g -c x.c")));
        assert!(debug_info(&argv("gcc -ggdb3 -gz -c x.c")));
        assert!(!debug_info(&argv("gcc -g -g0 -c x.c")));
        assert!(!debug_info(&argv(
            "gcc -O2 -gno-record-gcc-switches -c x.c"
        )));
    }
}
