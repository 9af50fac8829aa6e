//! Remote preprocessing end to end: the real wrapper and daemon send unpreprocessed
//! jobs and their inputs to a real sshd box running `sshcc --mux`, and every object and
//! dependency file must equal a local build's, byte for byte, whatever happens to the
//! sources between and during builds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Scratch, client_command, run, sshcc, stderr};
use sshcc::throwaway_box::ThrowawayBox;

const ALLOWLIST: &str = "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n\
/usr/bin/gcc\n/usr/bin/g++\n/usr/bin/arm-none-eabi-gcc\n/usr/bin/arm-none-eabi-g++\n";

/// What the wrapper logs (at info) for a job the box preprocessed.
const PREPROCESSED_THERE: &str = "preprocessed there";

/// A box with a content store of its own, and a client environment.
struct Lab {
    build_box: ThrowawayBox,
    scratch: Scratch,
    hosts: String,
}

impl Lab {
    fn new() -> Self {
        Self::with_box(|builder| builder)
    }

    fn with_box(
        configure: impl FnOnce(sshcc::throwaway_box::BoxBuilder) -> sshcc::throwaway_box::BoxBuilder,
    ) -> Self {
        let scratch = Scratch::new();
        let list = scratch.join("DISTCC_CMDLIST");
        std::fs::write(&list, ALLOWLIST).unwrap();
        let builder = ThrowawayBox::builder()
            .env("DISTCC_CMDLIST", list.to_str().unwrap())
            .env(
                "XDG_CACHE_HOME",
                scratch.join("box-cache").to_str().unwrap(),
            );
        let build_box = configure(builder).start().expect("box");
        let hosts = format!("@{}/8:{}", build_box.host_alias(), sshcc().display());
        Lab {
            build_box,
            scratch,
            hosts,
        }
    }

    /// The box's content store.
    fn store(&self) -> PathBuf {
        self.scratch.join("box-cache/sshcc/store")
    }

    /// `program` as a build runs it: this lab's box, remote preprocessing asked for,
    /// no local fallback (a success means the box compiled), logging where jobs ran.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = client_command(
            program,
            &self.hosts,
            self.build_box.ssh_config(),
            self.scratch.path(),
        );
        command
            .env("SSHCC_PREPROCESS", "remote")
            .env("SSHCC_LOG", "info");
        command
    }

    /// A copy of the remote-preprocessing fixture project.
    fn project(&self, name: &str) -> PathBuf {
        let dir = self.scratch.join(name);
        copy_tree(&fixture(), &dir);
        dir
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/remote")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn make(dir: &Path, command: &mut Command, args: &[&str]) -> Output {
    let output = run(command.current_dir(dir).arg("-j8").args(args));
    assert!(
        output.status.success(),
        "make in {} failed: {}",
        dir.display(),
        stderr(&output)
    );
    output
}

/// The build's products (objects and dependency files), by path under `dir`.
fn products(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "o" || ext == "d" || ext == "dep")
            {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// Builds `dir` locally, then cleans and builds it through sshcc, and checks the second
/// build's products equal the first's and that every job was preprocessed on the box.
fn build_both_ways(lab: &Lab, dir: &Path, make_args: &[&str]) -> String {
    // The fixture's rules do not name every header, so each build starts clean.
    make(dir, &mut Command::new("make"), &["clean"]);
    make(dir, &mut Command::new("make"), make_args);
    let local = products(dir);
    assert!(local.len() >= 3, "{local:?}");
    make(dir, &mut Command::new("make"), &["clean"]);
    let remote = make(
        dir,
        lab.command("make")
            .arg(format!("CC={} gcc", sshcc().display()))
            .arg(format!("CXX={} g++", sshcc().display())),
        make_args,
    );
    let log = stderr(&remote);
    assert_same_products(&products(dir), &local, &log);
    log
}

fn assert_same_products(remote: &[(String, Vec<u8>)], local: &[(String, Vec<u8>)], log: &str) {
    let names = |products: &[(String, Vec<u8>)]| -> Vec<String> {
        products.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(names(remote), names(local), "{log}");
    for ((name, a), (_, b)) in remote.iter().zip(local) {
        if name.ends_with(".o") {
            assert!(a == b, "{name} differs from the local build\n{log}");
        } else {
            assert_eq!(
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b),
                "{name} differs from the local build\n{log}"
            );
        }
    }
}

fn remote_jobs(log: &str) -> usize {
    log.matches(PREPROCESSED_THERE).count()
}

#[test]
fn objects_and_dependency_files_equal_a_local_build() {
    let lab = Lab::new();
    let dir = lab.project("p");
    let log = build_both_ways(&lab, &dir, &[]);
    assert_eq!(remote_jobs(&log), 3, "{log}");
    // The box kept what it was sent.
    eprintln!("the store holds {} bytes", store_bytes(&lab.store()));
    assert!(lab.store().join("sha256").is_dir());
}

#[test]
fn headers_that_appear_or_vanish_between_builds_are_seen() {
    let lab = Lab::new();
    let dir = lab.project("p");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    // Quiet for longer than the daemon's racy window, the project's directories are
    // listed once and their absent names answered from memory (`inputs::listing`): the
    // headers created below must still be found.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    build_both_ways(&lab, &dir, &[]);
    // A header earlier in the search path now shadows b/shadow.h, one that
    // `__has_include` looked for appears, and the generated header changes.
    std::fs::write(dir.join("a/shadow.h"), "#define SHADOW_SOURCE \"a\"\n").unwrap();
    std::fs::write(dir.join("include/feature.h"), "#define FEATURE 7\n").unwrap();
    std::fs::write(
        dir.join("hwdef.dat"),
        "BOARD_NAME \"orange\"\nBOARD_LEDS 8\n",
    )
    .unwrap();
    let log = build_both_ways(&lab, &dir, &[]);
    assert_eq!(remote_jobs(&log), 3, "{log}");
    let main = std::fs::read_to_string(dir.join("src/main.d")).unwrap();
    assert!(
        main.contains("a/shadow.h") && main.contains("feature.h"),
        "{main}"
    );
    // And they vanish again. The box keeps a finished job's tree for the next job of
    // the link (`remote_job::warm`), which must not find them there.
    std::fs::remove_file(dir.join("a/shadow.h")).unwrap();
    std::fs::remove_file(dir.join("include/feature.h")).unwrap();
    let log = build_both_ways(&lab, &dir, &[]);
    assert_eq!(remote_jobs(&log), 3, "{log}");
    let main = std::fs::read_to_string(dir.join("src/main.d")).unwrap();
    assert!(
        !main.contains("a/shadow.h") && !main.contains("feature.h"),
        "{main}"
    );
}

#[test]
fn a_second_build_sends_only_what_changed() {
    let lab = Lab::new();
    let dir = lab.project("p");
    build_both_ways(&lab, &dir, &[]);
    let first = status_of(&lab);
    std::fs::write(
        dir.join("include/computed.h"),
        "static inline int computed(int x) { return x + PROJECT_VERSION; }\n",
    )
    .unwrap();
    build_both_ways(&lab, &dir, &[]);
    let second = status_of(&lab);
    let sent =
        second["blob_bytes_sent"].as_u64().unwrap() - first["blob_bytes_sent"].as_u64().unwrap();
    // The changed header, the directory above it and the tree's root; no system header.
    assert!(sent < 16 * 1024, "{sent} bytes sent for one changed header");
    assert_eq!(second["preprocessing"], "remote");
}

/// The box row of `sshcc status --json`.
fn status_of(lab: &Lab) -> serde_json::Value {
    let output = run(lab.command(sshcc()).args(["status", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["kind"] == "ssh")
        .cloned()
        .unwrap_or_else(|| panic!("no box row in {status}"))
}

#[test]
fn a_full_store_evicts_and_builds_stay_correct() {
    // The three jobs run at once, and their trees need about 7 MiB of store together
    // (blobs take whole 4 KiB blocks): the C++ ones over 4 MiB each, the C one under
    // half a MiB. Evicting each other's inputs, they take turns, so the C job always
    // gets its turn with the store to itself and is preprocessed on the box; a job
    // larger than the store is preprocessed here and says why. Without -g (whose
    // DW_AT_producer would record -fdirectives-only of a job preprocessed here) every
    // object must equal the local one either way.
    const BOUND: u64 = 4 << 20;
    let lab = Lab::with_box(|builder| builder.env("SSHCC_CACHE_SIZE", BOUND.to_string()));
    let dir = lab.project("p");
    let flags = ["CFLAGS=-O2 -Wall", "CXXFLAGS=-O2 -Wall -std=c++17"];
    for round in 0..2 {
        let log = build_both_ways(&lab, &dir, &flags);
        assert!(store_bytes(&lab.store()) <= BOUND, "round {round}\n{log}");
        assert!(
            log.lines()
                .any(|line| line.contains("src/main.c →") && line.contains(PREPROCESSED_THERE)),
            "round {round}: the C job was not preprocessed on the box\n{log}"
        );
        let too_big = log.matches("is too small for this job's inputs (--cache-size)");
        assert_eq!(
            too_big.count(),
            3 - remote_jobs(&log),
            "round {round}\n{log}"
        );
        // A new daemon each round, so a new link and a box process that kept no job
        // trees: what the second round sends, the store had evicted.
        let sent = status_of(&lab)["blob_bytes_sent"].as_u64().unwrap();
        assert!(
            round == 0 || sent > 0,
            "round {round}: nothing was evicted\n{log}"
        );
        common::stop_daemon(lab.scratch.path());
    }
}

fn store_bytes(store: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![store.join("sha256")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                total += entry.metadata().unwrap().len();
            }
        }
    }
    total
}

#[test]
fn two_daemons_fill_one_store_at_once() {
    let lab = Lab::new();
    let (one, two) = (lab.project("one"), lab.project("two"));
    for dir in [&one, &two] {
        make(dir, &mut Command::new("make"), &[]);
    }
    let expected = [products(&one), products(&two)];
    for dir in [&one, &two] {
        make(dir, &mut Command::new("make"), &["clean"]);
    }
    let builds: Vec<_> = [(&one, "runtime-one"), (&two, "runtime-two")]
        .into_iter()
        .map(|(dir, runtime)| {
            lab.command("make")
                .current_dir(dir)
                .env("SSHCC_RUNTIME_DIR", lab.scratch.join(runtime))
                .arg("-j8")
                .arg(format!("CC={} gcc", sshcc().display()))
                .arg(format!("CXX={} g++", sshcc().display()))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (build, (dir, expected)) in builds
        .into_iter()
        .zip([(&one, &expected[0]), (&two, &expected[1])])
    {
        let output = build.wait_with_output().unwrap();
        let log = stderr(&output);
        assert!(output.status.success(), "{log}");
        assert_eq!(remote_jobs(&log), 3, "{log}");
        assert_same_products(&products(dir), expected, &log);
    }
    for runtime in ["runtime-one", "runtime-two"] {
        let _ = lab
            .command(sshcc())
            .env("SSHCC_RUNTIME_DIR", lab.scratch.join(runtime))
            .arg("--stop")
            .output();
    }
}

#[test]
fn a_corrupt_blob_in_the_store_is_detected_and_sent_again() {
    let lab = Lab::new();
    let dir = lab.project("p");
    build_both_ways(&lab, &dir, &[]);
    // Corrupt every blob holding util.h, keeping its size.
    let util = std::fs::read(dir.join("include/util.h")).unwrap();
    let mut corrupted = 0;
    for blob in blobs(&lab.store()) {
        if std::fs::read(&blob).unwrap() == util {
            let mut bytes = util.clone();
            bytes[0] ^= 0x20;
            let mut perms = std::fs::metadata(&blob).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&blob, perms).unwrap();
            std::fs::write(&blob, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1);
    // The same daemon believes the box has it; the box finds it corrupt and asks again.
    let log = build_both_ways(&lab, &dir, &[]);
    assert_eq!(remote_jobs(&log), 3, "{log}");
}

fn blobs(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![store.join("sha256")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn a_blob_whose_content_does_not_match_its_digest_is_refused() {
    use sshcc::digest::Digest;
    use sshcc::mux::client::MuxClient;
    let lab = Lab::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut child = tokio::process::Command::from(lab.build_box.ssh())
            .arg(format!("{} --mux", sshcc().display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let client = MuxClient::handshake(
            child.stdout.take().unwrap(),
            child.stdin.take().unwrap(),
            std::time::Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert!(
            client.hello().remote_preprocessing(),
            "{:?}",
            client.hello()
        );
        let honest = Digest::of(b"int x;\n");
        let forged = (honest, b"int x = system(\"rm -rf ~\");\n".to_vec());
        let refused = client.put_blobs(&[forged]).await.unwrap().unwrap_err();
        assert!(refused.contains(&honest.to_string()), "{refused}");
        assert_eq!(client.find_missing(&[honest]).await.unwrap(), vec![honest]);
        // The honest blob goes in and is then held.
        client
            .put_blobs(&[(honest, b"int x;\n".to_vec())])
            .await
            .unwrap()
            .unwrap();
        assert!(client.find_missing(&[honest]).await.unwrap().is_empty());
    });
    for blob in blobs(&lab.store()) {
        assert!(!std::fs::read(blob).unwrap().starts_with(b"int x = system"));
    }
}

#[test]
fn a_header_changed_while_its_job_runs_is_compiled_from_the_new_text() {
    // The box's gcc waits at a gate, so the header surely changes while the job is out.
    let marks = Scratch::new();
    let gated = marks.join("x86_64-linux-gnu-gcc");
    common::write_script(
        &gated,
        &format!(
            "touch {m}/started\nwhile [ ! -e {m}/gate ]; do sleep 0.05; done\n\
             exec /usr/bin/x86_64-linux-gnu-gcc \"$@\"",
            m = marks.path().display()
        ),
    );
    let lab = Lab::with_box(|builder| {
        builder
            .env("DISTCC_CMDLIST_NUMWORDS", "1")
            .env("SSHCC_SANDBOX_WRITE", marks.path().to_str().unwrap())
    });
    std::fs::write(
        lab.scratch.join("DISTCC_CMDLIST"),
        format!("{}\n", gated.display()),
    )
    .unwrap();
    let dir = lab.scratch.join("inflight");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("value.h"), "#define VALUE 1\n").unwrap();
    std::fs::write(
        dir.join("x.c"),
        "#include \"value.h\"\nint value(void) { return VALUE; }\n",
    )
    .unwrap();
    let job = lab
        .command(sshcc())
        .current_dir(&dir)
        .env("SSHCC_TOOLCHAIN_CHECK", "off")
        .args(["gcc", "-O2", "-c", "x.c", "-o", "x.o"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marks.join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never reached the box"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(dir.join("value.h"), "#define VALUE 2\n").unwrap();
    std::fs::write(marks.join("gate"), "").unwrap();
    let output = job.wait_with_output().unwrap();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("value.h") && log.contains("preprocessed here"),
        "{log}"
    );
    common::compile_locally(&dir, "gcc", &["-O2"], "x.c", "y.o");
    assert!(
        std::fs::read(dir.join("x.o")).unwrap() == std::fs::read(dir.join("y.o")).unwrap(),
        "the object is not the new text's\n{log}"
    );
}

#[test]
fn ccache_in_depend_mode_runs_no_preprocessor_here() {
    let lab = Lab::new();
    let dir = lab.project("p");
    // Every run of the local gcc is logged; a preprocessor run names a source file.
    let shims = lab.scratch.join("shims");
    let log = lab.scratch.join("gcc-runs.log");
    for name in ["gcc", "g++"] {
        common::write_script(
            &shims.join(name),
            &format!(
                "echo \"$@\" >> {}\nexec /usr/bin/{name} \"$@\"",
                log.display()
            ),
        );
    }
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let build = make(
        &dir,
        lab.command("make")
            .env("PATH", &path)
            // The logging shims are not the box's gcc.
            .env("SSHCC_TOOLCHAIN_CHECK", "off")
            .env("CCACHE_PREFIX", sshcc())
            .env("CCACHE_DEPEND", "1")
            .env("CCACHE_DIRECT", "1")
            .arg("CC=ccache gcc")
            .arg("CXX=ccache g++"),
        &[],
    );
    let build_log = stderr(&build);
    assert_eq!(remote_jobs(&build_log), 3, "{build_log}");
    let runs = std::fs::read_to_string(&log).unwrap_or_default();
    // ccache's depend mode needs the compile's own -MD/-MMD; the fixture compiles
    // shapes.cc without, so ccache preprocesses that one itself, as documented.
    for line in runs.lines().filter(|line| !line.contains("shapes.cc")) {
        let preprocesses_a_source =
            line.split(' ').any(|word| word == "-E") && !line.contains("/dev/null");
        assert!(
            !preprocesses_a_source,
            "the laptop preprocessed: {line}\n{runs}"
        );
    }
}

#[test]
fn cross_compiles_with_nano_specs_equal_local_ones() {
    if Command::new("arm-none-eabi-gcc")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: arm-none-eabi-gcc is not installed (scripts/install-deps.sh installs it)"
        );
        return;
    }
    let lab = Lab::new();
    let dir = lab.project("arm");
    let flags = "-O2 -g -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16 --specs=nano.specs";
    make(
        &dir,
        &mut Command::new("make"),
        &[
            "CC=arm-none-eabi-gcc",
            "CXX=arm-none-eabi-g++",
            &format!("CFLAGS={flags}"),
            &format!("CXXFLAGS={flags} -std=c++17 -fno-exceptions"),
        ],
    );
    let local = products(&dir);
    make(&dir, &mut Command::new("make"), &["clean"]);
    let remote = make(
        &dir,
        lab.command("make")
            .arg(format!("CC={} arm-none-eabi-gcc", sshcc().display()))
            .arg(format!("CXX={} arm-none-eabi-g++", sshcc().display())),
        &[
            &format!("CFLAGS={flags}"),
            &format!("CXXFLAGS={flags} -std=c++17 -fno-exceptions"),
        ],
    );
    let log = stderr(&remote);
    assert_eq!(remote_jobs(&log), 3, "{log}");
    assert_same_products(&products(&dir), &local, &log);
}

#[test]
fn directives_only_mode_keeps_preprocessing_here() {
    let lab = Lab::new();
    let dir = lab.project("p");
    // Without -g: a directives-only compile records -fdirectives-only in
    // DW_AT_producer, the one difference from a local -g build.
    let flags = ["CFLAGS=-O2 -Wall", "CXXFLAGS=-O2 -Wall -std=c++17"];
    make(&dir, &mut Command::new("make"), &flags);
    let local = products(&dir);
    make(&dir, &mut Command::new("make"), &["clean"]);
    let build = make(
        &dir,
        lab.command("make")
            .env("SSHCC_PREPROCESS", "directives-only")
            .arg(format!("CC={} gcc", sshcc().display()))
            .arg(format!("CXX={} g++", sshcc().display())),
        &flags,
    );
    let log = stderr(&build);
    assert_eq!(remote_jobs(&log), 0, "{log}");
    assert_eq!(log.matches(" → @").count(), 3, "{log}");
    assert_same_products(&products(&dir), &local, &log);
}
