//! What the client tests share: a box with the allowlist and a client environment
//! with a private daemon ([`Lab`]), `make`, and comparing objects with a local build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Scratch, client_command, project, run, sshcc, stderr};
use sshcc::throwaway_box::ThrowawayBox;

/// The compilers a box allows (Debian's triple-prefixed names are what sshcc sends for
/// gcc/g++, as distcc does).
const ALLOWLIST: &str =
    "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/x86_64-linux-gnu-g++\n/usr/bin/gcc\n/usr/bin/g++\n";

/// A box, a client environment and scratch space (which stops the daemon when dropped).
pub struct Lab {
    pub build_box: ThrowawayBox,
    pub scratch: Scratch,
    pub hosts: String,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_box(ThrowawayBox::builder(), "")
    }

    /// A box built by `builder` (plus the allowlist), used as `@box/8:<sshcc><options>`.
    pub fn with_box(builder: sshcc::throwaway_box::BoxBuilder, host_options: &str) -> Self {
        let scratch = Scratch::new();
        let list = scratch.join("DISTCC_CMDLIST");
        std::fs::write(&list, ALLOWLIST).unwrap();
        let build_box = builder
            .env("DISTCC_CMDLIST", list.to_str().unwrap())
            .start()
            .expect("box");
        let hosts = format!(
            "@{}/8:{}{host_options}",
            build_box.host_alias(),
            sshcc().display()
        );
        Lab {
            build_box,
            scratch,
            hosts,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `program` with the client environment: this lab's hosts, ssh config, a private
    /// daemon, and no local fallback unless a test turns it back on.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        client_command(
            program,
            &self.hosts,
            self.build_box.ssh_config(),
            self.scratch.path(),
        )
    }

    pub fn project(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(project()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    }
}

pub fn make(dir: &Path, command: &mut Command, args: &[&str]) -> Output {
    let output = run(command.current_dir(dir).arg("-j8").args(args));
    assert!(
        output.status.success(),
        "make in {} failed: {}",
        dir.display(),
        stderr(&output)
    );
    output
}

pub fn objects(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".o"))
        .collect();
    names.sort();
    names
}

pub fn assert_same_objects(remote: &Path, local: &Path) {
    let names = objects(local);
    assert!(!names.is_empty());
    assert_eq!(objects(remote), names);
    for name in names {
        let (a, b) = (
            std::fs::read(remote.join(&name)).unwrap(),
            std::fs::read(local.join(&name)).unwrap(),
        );
        assert!(a == b, "{name} differs from the local build");
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A directory of `count` small C files and a Makefile building them.
pub fn many_sources(lab: &Lab, name: &str, count: usize) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut objects = Vec::new();
    for index in 0..count {
        std::fs::write(
            dir.join(format!("unit{index}.c")),
            format!(
                "int unit{index}(int x) {{ return x * {index} + {}; }}\n",
                index * 7
            ),
        )
        .unwrap();
        objects.push(format!("unit{index}.o"));
    }
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "all: {}\n%.o: %.c\n\t$(CC) -O2 -c $< -o $@\n",
            objects.join(" ")
        ),
    )
    .unwrap();
    dir
}

pub fn check_many_sources(dir: &Path, count: usize) {
    for index in 0..count {
        let source = format!("unit{index}.c");
        let local = dir.join(format!("local{index}.o"));
        let output = run(Command::new("gcc")
            .current_dir(dir)
            .args(["-O2", "-c", &source, "-o"])
            .arg(&local));
        assert!(output.status.success());
        assert_eq!(
            std::fs::read(dir.join(format!("unit{index}.o"))).unwrap(),
            std::fs::read(&local).unwrap(),
            "{source}"
        );
    }
}
