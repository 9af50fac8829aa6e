//! How the wrapper was called, and which compiler command that means (distcc.md §5.1):
//! explicit `sshcc gcc -c x.c`, implicit `sshcc -c x.c` (the compiler is `cc`), or
//! masquerade (a symlink named `gcc` to sshcc, placed early on PATH).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::compiler::source;

/// Set in the environment of every compiler sshcc runs, so that an sshcc reached again
/// through PATH (a masquerade directory, ccache's prefix) runs the compiler instead of
/// dispatching the job a second time.
pub const SAFEGUARD: &str = "_SSHCC_SAFEGUARD";

/// The compiler command to run, and the PATH to run it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The compiler (as the user named it) and its arguments.
    pub argv: Vec<String>,
    /// For masquerade: PATH without the directories up to and including the one holding
    /// the masquerade link, so the real compiler is found.
    pub path: Option<OsString>,
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("no compiler command given (usage: sshcc COMPILER ARGS...)")]
    Empty,
    #[error("argument {0} is not valid UTF-8")]
    NotUtf8(usize),
}

/// Works out the compiler command from sshcc's own argv and PATH.
pub fn resolve(args: &[OsString], path: Option<&OsString>) -> Result<Invocation, InvocationError> {
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(index, arg)| {
            arg.to_str()
                .map(String::from)
                .ok_or(InvocationError::NotUtf8(index))
        })
        .collect::<Result<_, _>>()?;
    let arg0 = args.first().ok_or(InvocationError::Empty)?;
    let name = Path::new(arg0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if !name.contains("sshcc") {
        let mut argv = vec![name.clone()];
        argv.extend_from_slice(&args[1..]);
        return Ok(Invocation {
            argv,
            path: path.map(|path| trim_masquerade_path(arg0, &name, path)),
        });
    }
    let first = args.get(1).ok_or(InvocationError::Empty)?;
    let implicit = first.starts_with('-') || source::is_source(first) || source::is_object(first);
    let argv = if implicit {
        std::iter::once("cc".to_string())
            .chain(args[1..].iter().cloned())
            .collect()
    } else {
        args[1..].to_vec()
    };
    Ok(Invocation { argv, path: None })
}

/// Drops PATH entries up to and including the masquerade directory: the directory of
/// `arg0` when it has one, else the first PATH entry holding an executable `name`.
fn trim_masquerade_path(arg0: &str, name: &str, path: &OsString) -> OsString {
    let entries: Vec<PathBuf> = std::env::split_paths(path).collect();
    let masquerade_dir = match Path::new(arg0)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(dir) => std::fs::canonicalize(dir).ok(),
        None => entries
            .iter()
            .find(|dir| is_executable(&dir.join(name)))
            .and_then(|d| std::fs::canonicalize(d).ok()),
    };
    let Some(masquerade_dir) = masquerade_dir else {
        return path.clone();
    };
    let position = entries
        .iter()
        .position(|dir| std::fs::canonicalize(dir).ok().as_ref() == Some(&masquerade_dir));
    match position {
        Some(index) => std::env::join_paths(&entries[index + 1..]).unwrap_or_else(|_| path.clone()),
        None => path.clone(),
    }
}

/// Finds `program` on `path` like execvp, returning the file it would run.
pub fn find_on_path(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| is_executable(p));
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The target triple distcc's client prefixes to `gcc`/`g++` so a box of another
/// architecture runs its cross compiler for ours.
fn native_triple() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "x86" => Some("i686-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        "riscv64" => Some("riscv64-linux-gnu"),
        "powerpc64" => Some("powerpc64le-linux-gnu"),
        _ => None,
    }
}

/// The compiler name to send to the box: like distcc (unless `DISTCC_NO_REWRITE_CROSS`
/// is set) `gcc`, `g++`, `gcc-N`, `g++-N`, `cc` and `c++` become `<triple>-<name>` when
/// that compiler exists here, so the box cannot silently use a compiler for another
/// target. `cc`/`c++` are first resolved to the compiler they link to (`gcc`, `g++`,
/// `clang`, `clang++`), as distcc does.
pub fn remote_compiler_name(compiler: &str, path: Option<&OsString>, no_rewrite: bool) -> String {
    if no_rewrite {
        return compiler.to_string();
    }
    let resolved;
    let gcc_name = match compiler {
        "cc" | "c++" => {
            resolved = generic_compiler_target(compiler, path);
            resolved.as_str()
        }
        other => other,
    };
    let rewritable = ["gcc", "g++"].iter().any(|base| {
        gcc_name == *base
            || gcc_name
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('-'))
    });
    if !rewritable {
        return gcc_name.to_string();
    }
    match native_triple().map(|triple| format!("{triple}-{gcc_name}")) {
        Some(prefixed) if find_on_path(&prefixed, path).is_some() => prefixed,
        _ => compiler.to_string(),
    }
}

/// What `cc`/`c++` really are: the link target's family name, or the name unchanged.
fn generic_compiler_target(compiler: &str, path: Option<&OsString>) -> String {
    let target = find_on_path(compiler, path)
        .and_then(|found| std::fs::canonicalize(found).ok())
        .and_then(|real| real.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let family = ["clang++", "clang", "g++", "gcc"]
        .into_iter()
        .find(|family| target.contains(family));
    family.unwrap_or(compiler).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn explicit_implicit_and_masquerade_forms() {
        let explicit = resolve(&os(&["sshcc", "gcc", "-c", "x.c"]), None).unwrap();
        assert_eq!(explicit.argv, ["gcc", "-c", "x.c"]);
        let implicit = resolve(&os(&["/usr/bin/sshcc", "-c", "x.c"]), None).unwrap();
        assert_eq!(implicit.argv, ["cc", "-c", "x.c"]);
        let implicit_source = resolve(&os(&["sshcc", "x.c", "-c"]), None).unwrap();
        assert_eq!(implicit_source.argv, ["cc", "x.c", "-c"]);
        let masquerade = resolve(
            &os(&["/nonexistent/dir/arm-none-eabi-g++", "-c", "x.cpp"]),
            None,
        )
        .unwrap();
        assert_eq!(masquerade.argv, ["arm-none-eabi-g++", "-c", "x.cpp"]);
        assert!(matches!(
            resolve(&os(&["sshcc"]), None),
            Err(InvocationError::Empty)
        ));
    }

    #[test]
    fn masquerade_path_is_cut_after_the_masquerade_directory() {
        let dir = tempfile::tempdir().unwrap();
        let masq = dir.path().join("masq");
        std::fs::create_dir(&masq).unwrap();
        std::os::unix::fs::symlink("/bin/true", masq.join("gcc")).unwrap();
        let path = std::env::join_paths([
            Path::new("/first"),
            &masq,
            Path::new("/usr/bin"),
            Path::new("/bin"),
        ])
        .unwrap();
        let by_name = resolve(&os(&["gcc", "-c", "x.c"]), Some(&path)).unwrap();
        assert_eq!(by_name.path.unwrap(), OsString::from("/usr/bin:/bin"));
        let by_path = resolve(
            &os(&[masq.join("gcc").to_str().unwrap(), "-c", "x.c"]),
            Some(&path),
        )
        .unwrap();
        assert_eq!(by_path.path.unwrap(), OsString::from("/usr/bin:/bin"));
    }

    #[test]
    fn gcc_names_get_the_native_triple_when_it_exists() {
        let path = OsString::from("/usr/bin:/bin");
        if find_on_path("x86_64-linux-gnu-gcc", Some(&path)).is_some()
            && native_triple() == Some("x86_64-linux-gnu")
        {
            assert_eq!(
                remote_compiler_name("gcc", Some(&path), false),
                "x86_64-linux-gnu-gcc"
            );
            assert_eq!(
                remote_compiler_name("cc", Some(&path), false),
                "x86_64-linux-gnu-gcc"
            );
            assert_eq!(
                remote_compiler_name("c++", Some(&path), false),
                "x86_64-linux-gnu-g++"
            );
        }
        assert_eq!(remote_compiler_name("gcc", Some(&path), true), "gcc");
        assert_eq!(
            remote_compiler_name("/usr/bin/gcc", Some(&path), false),
            "/usr/bin/gcc"
        );
        assert_eq!(remote_compiler_name("clang", Some(&path), false), "clang");
        assert_eq!(remote_compiler_name("gccgo", Some(&path), false), "gccgo");
    }
}
