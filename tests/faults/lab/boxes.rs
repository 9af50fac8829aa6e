//! The boxes: allowlisted compilers that wait at a gate the test opens (so a fault
//! provably hits jobs in flight), a box's job directories, starting a box, and the
//! `ssh_config` stanza that reaches it.

use std::path::{Path, PathBuf};

use sshcc::throwaway_box::ThrowawayBox;

use crate::common::write_script;

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
