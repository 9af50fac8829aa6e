//! A build account restricted with `command="sshcc --inetd",restrict` in authorized_keys:
//! it serves sshcc's daemon, `sshcc check` and stock distcc, refuses every other command,
//! and no hostile argument list or source file sent through it reads or writes anything
//! outside its job.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    compile_locally, compile_via, distcc_over_ssh, project_copy, run, sshcc, stderr, write_script,
};
use sshcc::protocol::Response;
use sshcc::throwaway_box::ThrowawayBox;

/// What a secret on the box looks like; it must never come back in any response.
const SECRET: &str = "TOP-SECRET-CANARY-7f3a";

/// A restricted box whose account's files all live in `root`: a home directory holding a
/// secret, the box's TMPDIR, and a trap directory with programs that leave a mark if
/// anything runs them.
struct RestrictedBox {
    build_box: ThrowawayBox,
    root: tempfile::TempDir,
}

impl RestrictedBox {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let path = root.path();
        let home = path.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), SECRET).unwrap();
        std::fs::create_dir_all(path.join("tmp")).unwrap();
        std::fs::write(
            path.join("cmdlist"),
            "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n/usr/bin/gcc\n/usr/bin/g++\n",
        )
        .unwrap();
        let trap = path.join("trap");
        for program in ["cc1", "as", "sh", "evil"] {
            write_script(
                &trap.join(program),
                &format!("touch {}/RAN-{program}\nexit 1", trap.display()),
            );
        }
        std::fs::write(trap.join("evil.specs"), "*cc1:\n-fplugin=/nonexistent\n").unwrap();
        let build_box = ThrowawayBox::builder()
            .env("HOME", home.to_str().unwrap())
            .env("TMPDIR", path.join("tmp").to_str().unwrap())
            .env("DISTCC_CMDLIST", path.join("cmdlist").to_str().unwrap())
            .env("SSHCC_SANDBOX", "required")
            // Variables a careless environment could hand the compiler: sshcc must not
            // pass them on.
            .env("COMPILER_PATH", trap.to_str().unwrap())
            .env("GCC_EXEC_PREFIX", format!("{}/", trap.display()))
            .env("DEPENDENCIES_OUTPUT", trap.join("deps.d").to_str().unwrap())
            .forced_command(format!("{} --inetd", sshcc().display()))
            .start()
            .expect("start the restricted box");
        RestrictedBox { build_box, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Every file under the account's directories with its size and modification time,
    /// minus sshd's own (host keys, log).
    fn snapshot(&self) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
        fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, (u64, std::time::SystemTime)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    // Jobs come and go in TMPDIR: a directory counts by its contents.
                    walk(&path, into);
                    into.insert(path, (0, std::time::SystemTime::UNIX_EPOCH));
                } else {
                    into.insert(path, (meta.len(), meta.modified().unwrap()));
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(self.root.path(), &mut files);
        files
    }

    /// Sends one distcc request through the restricted account, as stock distcc does.
    fn send(&self, argv: &[&str], source: &str) -> Response {
        let remote = ["distccd", "--inetd"];
        distcc_over_ssh(self.build_box.ssh(), &remote, argv, source.as_bytes())
    }
}

#[test]
fn restricted_account_serves_sshcc_and_distcc_and_nothing_else() {
    let restricted = RestrictedBox::start();
    let build_box = &restricted.build_box;

    // The daemon's `sshcc --mux`.
    let project = project_copy();
    let dir = project.path();
    // The client's own directories, apart from the account's.
    let client = common::Scratch::new();
    let output = compile_via(build_box.ssh_config(), "box", dir, client.path());
    assert!(output.status.success(), "{}", stderr(&output));
    compile_locally(dir, "gcc", &["-O2"], "geometry.c", "local.o");
    assert_eq!(
        std::fs::read(dir.join("g.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );

    // `sshcc check`'s `sshcc --box-info`, which also reports the sandbox.
    let info = run(build_box.ssh().args(["sshcc", "--box-info"]));
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("\"sandbox\": \"landlock"),
        "{text}{}",
        stderr(&info)
    );

    // Stock distcc, which runs `distccd --inetd`.
    let output = run(client
        .command("distcc")
        .current_dir(dir)
        .args(["gcc", "-O2", "-c", "geometry.c", "-o", "d.o"])
        .env("DISTCC_HOSTS", "@box/2")
        .env("DISTCC_SSH", build_box.ssh_command())
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_SKIP_LOCAL_RETRY", "1"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(dir.join("d.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );

    // Anything else: refused, with the reason, and nothing runs.
    let before = restricted.snapshot();
    for command in [
        vec!["cat", "~/.ssh/id_ed25519"],
        vec!["sh", "-c", "touch ~/pwned"],
        vec!["sshcc", "--mux", "--jobs", "1000"],
        vec!["sshcc", "--daemon"],
        vec!["sshcc", "gcc", "-c", "x.c"],
    ] {
        let output = run(build_box.ssh().args(&command));
        assert_eq!(output.status.code(), Some(113), "{command:?}");
        let text = stderr(&output);
        assert!(text.contains("only serves compile jobs"), "{text}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains(SECRET));
    }
    // No port forwarding either (`restrict`).
    let forward = run(build_box.ssh().args([
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        "0:127.0.0.1:22",
        "sshcc",
        "--box-info",
    ]));
    assert!(!forward.status.success(), "port forwarding was allowed");
    assert_eq!(
        before,
        restricted.snapshot(),
        "a refused command touched files"
    );
}

/// How the box must treat one hostile request.
enum Expect<'a> {
    /// Refused before the compiler runs, naming this argument.
    Refused(&'a str),
    /// The compiler runs but fails (the sandbox stops it).
    CompileFails,
    /// Harmless (the option is dropped or replaced): the job succeeds.
    Succeeds,
}

#[test]
fn hostile_arguments_and_sources_never_reach_outside_the_job() {
    let restricted = RestrictedBox::start();
    let trap = restricted.path("trap");
    let trap = trap.to_str().unwrap();
    let secret = restricted.path("home/.ssh/id_ed25519");
    let secret = secret.to_str().unwrap();
    let plain = "int f(void) { return 1; }\n";
    let incbin = format!("__asm__(\".incbin \\\"{secret}\\\"\");\n{plain}");
    let include = format!("__asm__(\".include \\\"{secret}\\\"\");\n{plain}");
    let specs = "*cc1_options:\n+ -fplugin=/nonexistent.so\n";
    let cases: Vec<(Vec<String>, &str, Expect<'_>)> = vec![
        (
            vec![format!("-fplugin={trap}/evil.so")],
            plain,
            Expect::Refused("-fplugin"),
        ),
        (vec![format!("-B{trap}/")], plain, Expect::Refused("-B")),
        (
            vec!["-B".into(), format!("{trap}/")],
            plain,
            Expect::Refused("-B"),
        ),
        (
            vec![format!("-specs={trap}/evil.specs")],
            plain,
            Expect::Refused("-specs"),
        ),
        // The source itself as a specs file, found in the job directory by name.
        (
            vec!["-specs=input.i".into()],
            specs,
            Expect::Refused("-specs=input.i"),
        ),
        (
            vec!["-wrapper".into(), format!("{trap}/sh,-c")],
            plain,
            Expect::Refused("-wrapper"),
        ),
        (vec![format!("@{secret}")], plain, Expect::Refused("@")),
        (
            vec!["-include".into(), secret.into()],
            plain,
            Expect::Refused("-include"),
        ),
        (
            vec!["-imacros".into(), secret.into()],
            plain,
            Expect::Refused("-imacros"),
        ),
        (
            vec![format!("-fprofile-use={secret}")],
            plain,
            Expect::Refused("-fprofile-use"),
        ),
        (
            vec![format!("-fauto-profile={secret}")],
            plain,
            Expect::Refused("-fauto-profile"),
        ),
        (
            vec![format!("-fmodule-mapper=|{trap}/evil")],
            plain,
            Expect::Refused("-fmodule-mapper"),
        ),
        (
            vec!["-dumpdir".into(), format!("{trap}/")],
            plain,
            Expect::Refused("-dumpdir"),
        ),
        (
            vec!["-fdump-tree-all".into()],
            plain,
            Expect::Refused("-fdump-tree-all"),
        ),
        (
            vec![format!("-fdump-rtl-expand={trap}/x")],
            plain,
            Expect::Refused("-fdump-rtl"),
        ),
        (
            vec!["-save-temps=obj".into()],
            plain,
            Expect::Refused("-save-temps"),
        ),
        (
            vec!["-aux-info".into(), format!("{trap}/aux")],
            plain,
            Expect::Refused("-aux-info"),
        ),
        (
            vec!["-Xlinker".into(), format!("--output={trap}/x")],
            plain,
            Expect::Refused("-Xlinker"),
        ),
        (
            vec![format!("-Wl,-o,{trap}/x")],
            plain,
            Expect::Refused("-Wl,"),
        ),
        (
            vec![format!("-Wa,-a={trap}/listing")],
            plain,
            Expect::Refused("-Wa,"),
        ),
        (
            vec!["-Xassembler".into(), format!("--MD={trap}/d")],
            plain,
            Expect::Refused("-Xassembler"),
        ),
        (
            vec![format!("-Wp,-MD,{trap}/d")],
            plain,
            Expect::Refused("-Wp,"),
        ),
        (
            vec![format!("--output={trap}/x.o")],
            plain,
            Expect::Refused("--output"),
        ),
        (vec![secret.into()], plain, Expect::Refused(secret)),
        // Found by fuzzing the argument policy: words gcc reads differently.
        (
            vec!["-e".into(), "-D".into(), format!("-fplugin={trap}/evil.so")],
            plain,
            Expect::Refused("-e"),
        ),
        (
            vec!["-D".into(), format!("@{secret}")],
            plain,
            Expect::Refused("-D @"),
        ),
        (
            vec!["-specs".into(), "nano.specs".into()],
            specs,
            Expect::Refused("-specs nano.specs"),
        ),
        // Dropped or replaced: they cannot reach the trap.
        (
            vec!["-MD".into(), "-MF".into(), format!("{trap}/deps.d")],
            plain,
            Expect::Succeeds,
        ),
        (vec![format!("--sysroot={trap}")], plain, Expect::Succeeds),
        (
            vec!["-isystem".into(), trap.into()],
            plain,
            Expect::Succeeds,
        ),
        // No argument at all: the assembler is asked to read the secret by the source.
        (vec![], &incbin, Expect::CompileFails),
        (vec![], &include, Expect::CompileFails),
    ];

    let tmp = restricted.path("tmp");
    let before = restricted.snapshot();
    for (extra, source, expect) in &cases {
        let mut argv = vec!["gcc", "-c", "x.c", "-o", "x.o"];
        if let Some(at) = extra.first().filter(|arg| arg.as_str() == secret) {
            // An extra operand: another "input file".
            argv.push(at);
        } else {
            argv.splice(1..1, extra.iter().map(String::as_str));
        }
        let response = restricted.send(&argv, source);
        let text = String::from_utf8_lossy(&response.stderr);
        let everything = [&response.stderr[..], &response.stdout, &response.object].concat();
        assert!(
            !String::from_utf8_lossy(&everything).contains(SECRET)
                && !everything
                    .windows(SECRET.len())
                    .any(|w| w == SECRET.as_bytes()),
            "{argv:?}: the secret came back"
        );
        match expect {
            Expect::Refused(named) => {
                assert_eq!(
                    response.status >> 8,
                    101,
                    "{argv:?} was not refused: {text}"
                );
                assert!(
                    (text.contains("refused argument") || text.contains("not a remote compile"))
                        && text.contains(named),
                    "{argv:?}: {text}"
                );
            }
            Expect::CompileFails => {
                assert_ne!(response.status, 0, "{argv:?} compiled: {text}");
                assert!(response.object.is_empty());
            }
            Expect::Succeeds => {
                assert_eq!(response.status, 0, "{argv:?}: {text}");
                assert!(!response.object.is_empty());
            }
        }
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(
            left.is_empty(),
            "{argv:?} left {left:?} in the box's TMPDIR"
        );
    }
    let after = restricted.snapshot();
    assert_eq!(
        before, after,
        "a hostile request touched the account's files"
    );
    let marks: Vec<_> = std::fs::read_dir(restricted.path("trap"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("RAN-") || name.ends_with(".d"))
        .collect();
    assert!(
        marks.is_empty(),
        "trap programs ran or files appeared: {marks:?}"
    );
}

#[test]
fn the_sandbox_lets_real_compiles_through() {
    // C and C++ with the options real builds use, under a required sandbox: it must
    // not get in the way of an honest job.
    let restricted = RestrictedBox::start();
    for (compiler, file, source) in [
        (
            "gcc",
            "x.c",
            "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }\n",
        ),
        (
            "g++",
            "x.cpp",
            "#include <vector>\n#include <string>\nstd::vector<std::string> v{\"a\"};\n",
        ),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(scratch.path().join(file), source).unwrap();
        let preprocessed = run(Command::new(compiler)
            .current_dir(scratch.path())
            .args(["-E", file]));
        let source = String::from_utf8(preprocessed.stdout).unwrap();
        let response = restricted.send(
            &[
                compiler,
                "-O2",
                "-g",
                "-Wall",
                "-fstack-usage",
                "-c",
                file,
                "-o",
                "x.o",
            ],
            &source,
        );
        assert_eq!(
            response.status,
            0,
            "{compiler}: {}",
            String::from_utf8_lossy(&response.stderr)
        );
        assert!(response.object.starts_with(b"\x7fELF"));
    }
}
