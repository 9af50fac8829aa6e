//! Debian's real `distcc` client → OpenSSH → `sshcc --inetd`: the drop-in replacement of
//! `distccd --inetd` on a build box.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{compile_locally, private_command, project_copy, run, sshcc, stderr, write_script};
use sshcc::throwaway_box::ThrowawayBox;

/// The names Debian's distcc client sends for `gcc`/`g++` (it rewrites them to the
/// target-prefixed names) and the compilers they stand for on the box.
const BOX_COMPILERS: &str = "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n";

struct Setup {
    build_box: ThrowawayBox,
    scratch: tempfile::TempDir,
}

impl Setup {
    /// A box whose sessions get `env`, and a scratch dir for lists and the client's
    /// private directories (DISTCC_DIR).
    fn new(env: &[(&str, &str)]) -> Self {
        let scratch = tempfile::tempdir().expect("scratch");
        let mut builder = ThrowawayBox::builder();
        for (key, value) in env {
            builder = builder.env(*key, *value);
        }
        let build_box = builder.start().expect("start the throwaway box");
        Setup { build_box, scratch }
    }

    /// A box whose `DISTCC_CMDLIST` is a file with `list`.
    fn with_list(list: &str, numwords: &str) -> Self {
        let scratch = tempfile::tempdir().expect("scratch");
        let list_path = scratch.path().join("DISTCC_CMDLIST");
        std::fs::write(&list_path, list).expect("write list");
        let build_box = ThrowawayBox::builder()
            .env("DISTCC_CMDLIST", list_path.to_str().unwrap())
            .env("DISTCC_CMDLIST_NUMWORDS", numwords)
            .start()
            .expect("start the throwaway box");
        Setup { build_box, scratch }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `distcc COMPILER ARGS` in `dir` against this box only, with no local fallback, so
    /// success proves the job ran on the box.
    fn distcc(&self, dir: &Path, host_options: &str, command: &[&str]) -> Output {
        let hosts = format!(
            "@{}/8:{}{host_options}",
            self.build_box.host_alias(),
            sshcc().display()
        );
        run(private_command("distcc", self.scratch.path())
            .current_dir(dir)
            .args(command)
            .env("DISTCC_HOSTS", hosts)
            .env("DISTCC_SSH", self.build_box.ssh_command())
            .env("DISTCC_FALLBACK", "0")
            .env("DISTCC_SKIP_LOCAL_RETRY", "1")
            .env_remove("DISTCC_VERBOSE"))
    }
}

#[test]
fn project_objects_are_identical_to_local_builds_in_both_protocol_versions() {
    let setup = Setup::with_list(BOX_COMPILERS, "1");
    let project = project_copy();
    let dir = project.path();
    let jobs = [
        ("gcc", &["-O2", "-Wall"][..], "geometry.c"),
        ("gcc", &["-O2", "-Wall"], "checksum.c"),
        ("gcc", &["-O0"], "main.c"),
        ("g++", &["-O2", "-Wall", "-std=c++17"], "shapes.cpp"),
        ("g++", &["-O1", "-std=c++17"], "report.cc"),
    ];
    for host_options in ["", ",lzo"] {
        for (compiler, flags, source) in jobs {
            let remote_object = format!("{source}.remote{host_options}.o");
            let local_object = format!("{source}.local.o");
            let mut command = vec![compiler];
            command.extend_from_slice(flags);
            command.extend(["-c", source, "-o", &remote_object]);
            let output = setup.distcc(dir, host_options, &command);
            assert!(
                output.status.success(),
                "distcc {command:?} ({host_options}) failed: {}\nsshd log: {}",
                stderr(&output),
                setup.build_box.log()
            );
            compile_locally(dir, compiler, flags, source, &local_object);
            let remote = std::fs::read(dir.join(&remote_object)).unwrap();
            let local = std::fs::read(dir.join(&local_object)).unwrap();
            assert!(
                remote == local,
                "{remote_object} differs from a local compile"
            );
        }
    }
}

#[test]
fn warnings_reach_the_user_and_errors_keep_the_compilers_status_and_message() {
    let setup = Setup::with_list(BOX_COMPILERS, "1");
    let project = project_copy();
    let dir = project.path();

    let output = setup.distcc(
        dir,
        ",lzo",
        &["gcc", "-Wall", "-c", "warns.c", "-o", "warns.o"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("warns.c") && text.contains("unused variable"),
        "{text}"
    );
    assert!(dir.join("warns.o").exists());

    let output = setup.distcc(dir, "", &["gcc", "-c", "broken.c", "-o", "broken.o"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("broken.c") && text.contains("undeclared_identifier"),
        "the compiler's own message must reach the user: {text}"
    );
    assert!(
        !dir.join("broken.o").exists(),
        "a failed compile leaves no object"
    );
}

/// A compiler wrapper on the box that says on stderr (which distcc relays) that it ran,
/// then runs the real compiler. It cannot keep a log: the box's sandbox lets a compiler
/// write only inside its job.
fn recording_compiler(path: &Path, real: &str) {
    write_script(path, &format!("echo \"ran as $0\" >&2\nexec {real} \"$@\""));
}

#[test]
fn allowlist_remaps_to_the_listed_full_path_with_numwords_one_and_two() {
    let scratch = tempfile::tempdir().unwrap();
    let box_compiler = scratch.path().join("box/bin/x86_64-linux-gnu-gcc");
    recording_compiler(&box_compiler, "/usr/bin/x86_64-linux-gnu-gcc");
    // The client names compilers by absolute paths of its own (ccache's CCACHE_PREFIX
    // style); distcc sends those verbatim.
    let client_bin = scratch.path().join("client/bin/x86_64-linux-gnu-gcc");
    let client_tools = scratch.path().join("client/tools/x86_64-linux-gnu-gcc");
    for link in [&client_bin, &client_tools] {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/usr/bin/x86_64-linux-gnu-gcc", link).unwrap();
    }
    let list = format!("{}\n", box_compiler.display());
    let project = project_copy();
    let dir = project.path();

    for (numwords, client_compiler, accepted) in [
        ("1", &client_bin, true),
        ("1", &client_tools, true),
        ("2", &client_bin, true),
        ("2", &client_tools, false),
    ] {
        let setup = Setup::with_list(&list, numwords);
        let compiler = client_compiler.to_str().unwrap();
        let output = setup.distcc(dir, ",lzo", &[compiler, "-c", "geometry.c", "-o", "g.o"]);
        let text = stderr(&output);
        if accepted {
            assert!(
                output.status.success(),
                "NUMWORDS {numwords}, {compiler}: {text}"
            );
            assert!(
                text.contains(&format!("ran as {}", box_compiler.display())),
                "NUMWORDS {numwords}: {compiler} must run as the listed {}",
                box_compiler.display()
            );
        } else {
            assert_eq!(
                output.status.code(),
                Some(110),
                "NUMWORDS {numwords}, {compiler}: {text}"
            );
            assert!(
                text.contains("tools/x86_64-linux-gnu-gcc")
                    && text.contains("not in the allowlist"),
                "{text}"
            );
            assert!(!text.contains("ran as"), "a refused compiler must not run");
        }
    }
}

/// Environment variables a box's sessions get.
type BoxEnv<'a> = &'a [(&'a str, &'a str)];

#[test]
fn missing_unreadable_or_unmatched_allowlists_refuse_with_a_visible_reason() {
    let empty_home = tempfile::tempdir().unwrap();
    let home = empty_home.path().to_str().unwrap();
    let list_dir = tempfile::tempdir().unwrap();
    let not_a_file = list_dir.path().to_str().unwrap();
    let project = project_copy();
    let dir = project.path();

    let cases: [(BoxEnv, &str, &[&str]); 4] = [
        (
            &[("HOME", home)],
            "gcc",
            &["no compiler allowlist", ".distcc/DISTCC_CMDLIST"],
        ),
        (
            &[("DISTCC_CMDLIST", "/nonexistent/DISTCC_CMDLIST")],
            "gcc",
            &[
                "cannot read the compiler allowlist",
                "/nonexistent/DISTCC_CMDLIST",
            ],
        ),
        (
            &[("DISTCC_CMDLIST", not_a_file)],
            "gcc",
            &["cannot read the compiler allowlist", not_a_file],
        ),
        (&[("HOME", home)], "g++", &["no compiler allowlist"]),
    ];
    for (env, compiler, expected) in cases {
        let setup = Setup::new(env);
        let source = if compiler == "g++" {
            "shapes.cpp"
        } else {
            "geometry.c"
        };
        let output = setup.distcc(dir, ",lzo", &[compiler, "-c", source, "-o", "refused.o"]);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(110), "{env:?}: {text}");
        for needle in expected {
            assert!(
                text.contains(needle),
                "{env:?}: expected {needle:?} in {text}"
            );
        }
        assert!(!dir.join("refused.o").exists());
    }

    let setup = Setup::with_list("/usr/bin/x86_64-linux-gnu-g++\n", "1");
    let output = setup.distcc(dir, "", &["gcc", "-c", "geometry.c", "-o", "refused.o"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(110), "{text}");
    assert!(
        text.contains("\"x86_64-linux-gnu-gcc\" is not in the allowlist"),
        "{text}"
    );
    assert!(
        text.contains(setup.path("DISTCC_CMDLIST").to_str().unwrap()),
        "{text}"
    );
}

#[test]
fn a_distccd_symlink_on_the_box_path_replaces_distccd_unchanged() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(sshcc(), bin.join("distccd")).unwrap();
    let list = scratch.path().join("DISTCC_CMDLIST");
    std::fs::write(&list, BOX_COMPILERS).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let setup = Setup::new(&[("PATH", &path), ("DISTCC_CMDLIST", list.to_str().unwrap())]);
    let project = project_copy();
    let dir = project.path();
    // Exactly the host string a distcc user already has: no command, so distcc runs
    // `distccd --inetd --enable-tcp-insecure` from the box's PATH.
    let output = run(private_command("distcc", setup.scratch.path())
        .current_dir(dir)
        .args([
            "g++",
            "-O2",
            "-std=c++17",
            "-c",
            "shapes.cpp",
            "-o",
            "shapes.o",
        ])
        .env(
            "DISTCC_HOSTS",
            format!("@{}/8,lzo", setup.build_box.host_alias()),
        )
        .env("DISTCC_SSH", setup.build_box.ssh_command())
        .env("DISTCC_FALLBACK", "0"));
    assert!(output.status.success(), "{}", stderr(&output));
    compile_locally(dir, "g++", &["-O2", "-std=c++17"], "shapes.cpp", "local.o");
    assert_eq!(
        std::fs::read(dir.join("shapes.o")).unwrap(),
        std::fs::read(dir.join("local.o")).unwrap()
    );
}
