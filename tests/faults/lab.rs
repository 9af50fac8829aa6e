//! What the fault-injection tests share: a generated C and C++ project and its objects
//! compiled locally, boxes whose allowlisted compilers wait at a gate the test opens,
//! a client environment with a private daemon, builds that cannot hang the suite, small
//! tmpfs mounts, and the checks every run ends with (every object byte-identical to the
//! local build, or absent; no temporary files).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sshcc::throwaway_box::ThrowawayBox;

use crate::common::{client_command, run, sshcc, stderr, write_script};

/// How long any build may take before the test calls it hung. Far above what a build
/// needs on a slow, shared machine, far below "forever".
pub const BUILD_LIMIT: Duration = Duration::from_secs(240);
/// How long to wait for something the test set in motion (a job reaching the box, the
/// box cleaning up).
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);

const C_UNITS: usize = 10;
const CXX_UNITS: usize = 6;
const CFLAGS: &str = "-O2 -Wall";
const CXXFLAGS: &str = "-O2 -Wall -std=c++17";

/// The generated project's sources, by file name.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for index in 0..C_UNITS {
        files.push((
            format!("c{index}.c"),
            format!(
                "#include <stdio.h>\n#include <string.h>\n\n\
                 static int table{index}[64];\n\n\
                 int unit_c{index}(const char *text) {{\n\
                 \x20   int sum = {index};\n\
                 \x20   for (size_t i = 0; i < strlen(text); i++)\n\
                 \x20       sum = sum * 31 + text[i] + table{index}[i % 64]++;\n\
                 \x20   if (sum == {index} * 7)\n\
                 \x20       printf(\"unit {index}: %d\\n\", sum);\n\
                 \x20   return sum;\n}}\n"
            ),
        ));
    }
    for index in 0..CXX_UNITS {
        files.push((
            format!("x{index}.cpp"),
            format!(
                "#include <algorithm>\n#include <numeric>\n#include <vector>\n\n\
                 namespace unit{index} {{\n\
                 template <typename T> T weigh(const std::vector<T> &items) {{\n\
                 \x20   std::vector<T> sorted(items);\n\
                 \x20   std::sort(sorted.begin(), sorted.end());\n\
                 \x20   return std::accumulate(sorted.begin(), sorted.end(), T({index}));\n}}\n\
                 }}\n\n\
                 long unit_x{index}(int n) {{\n\
                 \x20   std::vector<long> items(n);\n\
                 \x20   std::iota(items.begin(), items.end(), {index});\n\
                 \x20   return unit{index}::weigh(items) + unit{index}::weigh(std::vector<double>(n, 0.5));\n}}\n"
            ),
        ));
    }
    files
}

/// The object names a full build produces.
pub fn object_names() -> Vec<String> {
    sources()
        .iter()
        .map(|(name, _)| format!("{}.o", name.rsplit_once('.').unwrap().0))
        .collect()
}

/// Writes the project into `dir`: sources and a Makefile that puts the objects in
/// `$(OUT)` (default `obj`).
pub fn write_project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in sources() {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let objects: Vec<String> = object_names()
        .iter()
        .map(|name| format!("$(OUT)/{name}"))
        .collect();
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "OUT ?= obj\nCFLAGS = {CFLAGS}\nCXXFLAGS = {CXXFLAGS}\n\
             $(shell mkdir -p $(OUT))\n\
             all: {}\n\
             $(OUT)/%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n\
             $(OUT)/%.o: %.cpp\n\t$(CXX) $(CXXFLAGS) -c $< -o $@\n",
            objects.join(" ")
        ),
    )
    .unwrap();
}

/// Every object compiled here with the plain local compilers, by name (computed once).
fn reference() -> &'static BTreeMap<String, Vec<u8>> {
    static REFERENCE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path());
        let output = run(Command::new("make")
            .current_dir(dir.path())
            .args(["-j2", "CC=gcc", "CXX=g++"]));
        assert!(output.status.success(), "local build: {}", stderr(&output));
        object_names()
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(dir.path().join("obj").join(&name)).unwrap();
                (name, bytes)
            })
            .collect()
    })
}

/// Checks what a build left in `out`: only object files of the project, each
/// byte-identical to the local build (no truncated or corrupt object, no temporary
/// file); all of them when `complete`. Returns how many there are.
pub fn check_objects(out: &Path, complete: bool) -> usize {
    let reference = reference();
    let mut present = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let expected = reference
            .get(&name)
            .unwrap_or_else(|| panic!("stray file {name} in {}", out.display()));
        let actual = std::fs::read(entry.path()).unwrap();
        assert!(
            actual == *expected,
            "{name} differs from the local build ({} bytes, local {} bytes)",
            actual.len(),
            expected.len()
        );
        present += 1;
    }
    if complete {
        assert_eq!(
            present,
            reference.len(),
            "objects missing in {}",
            out.display()
        );
    }
    present
}

/// No sshcc temporary file anywhere under `dir`.
pub fn assert_no_temporary_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".sshcc-") && !name.ends_with(".tmp"),
            "temporary file {} left behind",
            entry.path().display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_no_temporary_files(&entry.path());
        }
    }
}

/// Polls `done` until it holds, panicking with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A box's allowlisted gcc and g++: scripts that note their pid, wait until the test
/// opens the gate, then run the real compiler. While the gate is closed, every job that
/// reaches the box is provably in flight.
pub struct Compilers {
    dir: PathBuf,
}

impl Compilers {
    pub fn new(dir: &Path, gate_open: bool) -> Self {
        let marks = dir.join("marks");
        std::fs::create_dir_all(&marks).unwrap();
        for name in ["x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"] {
            write_script(
                &dir.join("bin").join(name),
                &format!(
                    "echo $$ > {marks}/started.$$\n\
                     while [ ! -e {marks}/gate ]; do sleep 0.1; done\n\
                     exec /usr/bin/{name} \"$@\"",
                    marks = marks.display()
                ),
            );
        }
        std::fs::write(
            dir.join("DISTCC_CMDLIST"),
            format!(
                "{0}/bin/x86_64-linux-gnu-gcc\n{0}/bin/x86_64-linux-gnu-g++\n",
                dir.display()
            ),
        )
        .unwrap();
        let compilers = Compilers {
            dir: dir.to_path_buf(),
        };
        if gate_open {
            compilers.open_gate();
        }
        compilers
    }

    pub fn list(&self) -> PathBuf {
        self.dir.join("DISTCC_CMDLIST")
    }

    /// Where the scripts note their pids: the box's sandbox must let them write there.
    pub fn marks(&self) -> PathBuf {
        self.dir.join("marks")
    }

    /// The box-wide slot lock directory for a box using these compilers: its own, so
    /// that no other box on this machine (other tests, other builds) shares its slots.
    pub fn lock_dir(&self) -> PathBuf {
        self.dir.join("slots")
    }

    pub fn open_gate(&self) {
        std::fs::write(self.dir.join("marks/gate"), "").unwrap();
    }

    /// The pids of the compiles that reached the box so far.
    pub fn started(&self) -> Vec<i32> {
        std::fs::read_dir(self.dir.join("marks"))
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_prefix("started.")?.parse().ok()
            })
            .collect()
    }

    /// Processes still running one of these compilers (waiting at the gate) or working in
    /// a job directory under `box_tmp`: what a cancelled job must not leave behind.
    pub fn running(&self, box_tmp: &Path) -> Vec<String> {
        let script_dir = self.dir.join("bin").display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Zombies have finished; their parent just has not reaped them yet.
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                .unwrap_or_default();
            let in_job_dir = std::fs::read_link(entry.path().join("cwd"))
                .is_ok_and(|cwd| cwd.starts_with(box_tmp));
            if cmdline.contains(&script_dir) || in_job_dir {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }
}

/// The job directories (`sshcc-job-*`) in a box's TMPDIR.
pub fn job_dirs(box_tmp: &Path) -> Vec<String> {
    std::fs::read_dir(box_tmp)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("sshcc-job-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A throwaway box running `compilers`, with its TMPDIR at `tmp`, room for every job
/// of a `make -j8` at once, and slots of its own.
pub fn start_box(compilers: &Compilers, tmp: &Path) -> ThrowawayBox {
    std::fs::create_dir_all(tmp).unwrap();
    ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", compilers.list().to_str().unwrap())
        .env("TMPDIR", tmp.to_str().unwrap())
        .env("SSHCC_SANDBOX_WRITE", compilers.marks().to_str().unwrap())
        .env("SSHCC_LOCK_DIR", compilers.lock_dir().to_str().unwrap())
        .env("SSHCC_JOBS", "16")
        .start()
        .expect("box")
}

/// An ssh_config stanza reaching `build_box` as `alias`, through a proxy on
/// `proxy_port` when given (its known_hosts entry is then written for that port into
/// `scratch`), with `extra` options.
pub fn stanza(
    build_box: &ThrowawayBox,
    alias: &str,
    proxy_port: Option<u16>,
    extra: &str,
    scratch: &Path,
) -> String {
    let mut text = crate::common::ssh_stanza(build_box, alias, extra);
    if let Some(port) = proxy_port {
        let known = std::fs::read_to_string(build_box.known_hosts()).unwrap();
        let known = known.replace(
            &format!("[127.0.0.1]:{}", build_box.port()),
            &format!("[127.0.0.1]:{port}"),
        );
        let known_path = scratch.join(format!("known_hosts_{alias}"));
        std::fs::write(&known_path, known).unwrap();
        text = text
            .replace(
                &format!("Port {}\n", build_box.port()),
                &format!("Port {port}\n"),
            )
            .replace(
                &build_box.known_hosts().display().to_string(),
                &known_path.display().to_string(),
            );
    }
    text
}

/// The client side: an ssh_config, a host list and a private daemon (stopped when
/// dropped).
pub struct Client {
    dir: PathBuf,
    hosts: String,
}

impl Client {
    /// `hosts` are `(alias, slots)` pairs of the aliases `stanzas` define.
    pub fn new(dir: &Path, stanzas: &[String], hosts: &[(&str, u32)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ssh_config"), stanzas.join("\n")).unwrap();
        let hosts = hosts
            .iter()
            .map(|(alias, slots)| format!("@{alias}/{slots}:{}", sshcc().display()))
            .collect::<Vec<_>>()
            .join(" ");
        Client {
            dir: dir.to_path_buf(),
            hosts,
        }
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.join("runtime")
    }

    /// `program` in the client environment: this client's hosts, ssh config and daemon,
    /// no toolchain check (the boxes' compilers are scripts), per-job logging.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = client_command(
            program,
            &self.hosts,
            &self.dir.join("ssh_config"),
            &self.dir,
        );
        command
            .env("SSHCC_CONFIG", self.dir.join("no-config.toml"))
            .env("SSHCC_IDLE_TIMEOUT", "120")
            .env("SSHCC_TOOLCHAIN_CHECK", "off")
            .env("SSHCC_LOG", "info")
            .env("DISTCC_IO_TIMEOUT", "120")
            .env("DISTCC_BACKOFF_PERIOD", "1")
            .env("DISTCC_FALLBACK", "1");
        for name in [
            "DISTCC_SKIP_LOCAL_RETRY",
            "DISTCC_SSH",
            "DISTCC_VERBOSE",
            "SSHCC_PREPROCESS",
            "CCACHE_PREFIX",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Starts `make -j8` of the project in `project` in its own process group, with
    /// `env` on top of the client environment; output goes to a file.
    pub fn build(&self, project: &Path, env: &[(&str, &str)]) -> Build {
        self.build_with(project, env, &[])
    }

    /// [`build`](Self::build) with more arguments for make.
    pub fn build_with(&self, project: &Path, env: &[(&str, &str)], args: &[&str]) -> Build {
        let log = tempfile::NamedTempFile::new_in(&self.dir).unwrap();
        let mut command = self.command("make");
        command
            .current_dir(project)
            .arg("-j8")
            .arg(format!("CC={} gcc", sshcc().display()))
            .arg(format!("CXX={} g++", sshcc().display()))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .process_group(0);
        // A suite started in the background of a script (`cargo test &`) inherits
        // SIGINT ignored, and make would ignore the test's Ctrl-C too.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        Build {
            child: command.spawn().expect("make"),
            log,
            started: Instant::now(),
        }
    }

    /// The pids of this client's daemons.
    pub fn daemon_pids(&self) -> Vec<i32> {
        let wanted = format!("SSHCC_RUNTIME_DIR={}", self.runtime_dir().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let environ = std::fs::read(entry.path().join("environ")).ok()?;
                let is_daemon = cmdline.split(|b| *b == 0).any(|arg| arg == b"--daemon");
                let ours = environ
                    .split(|b| *b == 0)
                    .any(|var| var == wanted.as_bytes());
                (is_daemon && ours).then_some(pid)
            })
            .collect()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.runtime_dir().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.command(sshcc()).arg("--stop").output();
        for pid in self.daemon_pids() {
            // SAFETY: kill(2) on a daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A running `make`.
pub struct Build {
    child: Child,
    log: tempfile::NamedTempFile,
    started: Instant,
}

/// How a build ended.
pub struct Finished {
    pub status: ExitStatus,
    pub log: String,
}

impl Build {
    /// Sends `signal` to make and every compile it started (make's process group), as
    /// a terminal's Ctrl-C does.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the process group this test created for make.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// What make and the compiles printed so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until at least `count` compiles reached the box through `compilers`; the
    /// build must still be running then.
    pub fn wait_for_jobs(&mut self, compilers: &Compilers, count: usize) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while compilers.started().len() < count {
            assert!(
                self.is_running() && Instant::now() < deadline,
                "no {count} jobs reached the box; build log:\n{}",
                self.log_so_far()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the build to end; a build still running after [`BUILD_LIMIT`] hung,
    /// and is killed.
    pub fn finish(mut self) -> Finished {
        let deadline = self.started + BUILD_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "the build hung (still running after {BUILD_LIMIT:?}):\n{}",
                    std::fs::read_to_string(self.log.path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        // Shown with --nocapture, and with a failing test's output.
        eprintln!(
            "--- build ended ({status}) after {:?}:\n{log}",
            self.started.elapsed()
        );
        Finished { status, log }
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

impl Finished {
    /// Asserts a successful build.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "the build failed:\n{}", self.log);
        self
    }

    /// Jobs that ran on a box, by the wrapper's `→ host` lines.
    pub fn remote_jobs(&self) -> usize {
        self.log
            .lines()
            .filter(|line| line.contains(" → @"))
            .count()
    }

    /// Jobs the wrapper compiled here after a failure.
    pub fn local_fallbacks(&self) -> usize {
        self.log
            .lines()
            .filter(|line| line.contains("locally"))
            .count()
    }
}

/// A small tmpfs, unmounted when dropped.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Whether this process may mount (root); tests that need a small disk skip
    /// otherwise, as the bastion tests do without network namespaces.
    pub fn can_mount() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("skipped: mounting a small tmpfs needs root");
        }
        root
    }

    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let output = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        assert!(output.status.success(), "mount: {}", stderr(&output));
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills every free block with a file named `name`.
    pub fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.dir.join(name)).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling {}: {err}", self.dir.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a process still inside cannot make the unmount fail.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
