//! `sshcc mon` on a real terminal: tmux runs it at 80×24 while compiles are in flight
//! on a throwaway box through the daemon, and the screen is read back with
//! `capture-pane`; keys go in with `send-keys`. Also the text snapshot when stdout is
//! a pipe.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, client_command, run, sshcc, stderr, write_script};
use sshcc::throwaway_box::ThrowawayBox;

/// How many compiles are held in flight while the monitor is watched.
const JOBS: usize = 3;
/// How long anything in these tests may take to show up (a loaded CI machine).
const DEADLINE: Duration = Duration::from_secs(90);

/// A box whose compiler waits until the test releases it, so jobs stay in flight as
/// long as the test needs; a private daemon; scratch space. Stops the held compiles
/// and its tmux server when dropped, then (the scratch) the daemon.
struct Lab {
    build_box: ThrowawayBox,
    scratch: Scratch,
    hosts: String,
    wrappers: Vec<Child>,
}

impl Lab {
    fn new() -> Self {
        let scratch = Scratch::new();
        let release = scratch.join("release");
        // Debian's gcc is asked for as x86_64-linux-gnu-gcc; either name runs the gate.
        let mut list = String::new();
        for name in ["x86_64-linux-gnu-gcc", "gcc"] {
            let gate = scratch.path().join("box-bin").join(name);
            write_script(
                &gate,
                &format!(
                    "i=0\nwhile [ ! -e '{}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
                     exec /usr/bin/gcc \"$@\"",
                    release.display()
                ),
            );
            list.push_str(&format!("{}\n", gate.display()));
        }
        let allowlist = scratch.path().join("DISTCC_CMDLIST");
        std::fs::write(&allowlist, list).unwrap();
        let build_box = ThrowawayBox::builder()
            .env("DISTCC_CMDLIST", allowlist.to_str().unwrap())
            .start()
            .expect("box");
        let hosts = format!("@{}/8:{}", build_box.host_alias(), sshcc().display());
        Lab {
            build_box,
            scratch,
            hosts,
            wrappers: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `program` with the client environment: this lab's host, a private daemon, no
    /// local fallback (a job in flight is on the box), and no toolchain comparison
    /// (the box's compiler is the gate script).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = client_command(
            program,
            &self.hosts,
            self.build_box.ssh_config(),
            self.scratch.path(),
        );
        command
            .env("SSHCC_TOOLCHAIN_CHECK", "off")
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL");
        command
    }

    /// Starts `JOBS` compiles of `held_N.c` through the daemon; their box compiler
    /// waits for [`release`](Self::release).
    fn start_build(&mut self) -> PathBuf {
        let dir = self.path("project");
        std::fs::create_dir_all(&dir).unwrap();
        for n in 0..JOBS {
            std::fs::write(
                dir.join(format!("held_{n}.c")),
                format!("int held_{n}(int x) {{ return x * {n}; }}\n"),
            )
            .unwrap();
            let child = self
                .command(sshcc())
                .current_dir(&dir)
                .args(["gcc", "-O2", "-c", &format!("held_{n}.c")])
                .args(["-o", &format!("held_{n}.o")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            self.wrappers.push(child);
        }
        dir
    }

    /// Lets the held compiles finish and checks that each one succeeded.
    fn release(&mut self, dir: &Path) {
        std::fs::write(self.path("release"), "").unwrap();
        for child in self.wrappers.drain(..) {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "compile: {}", stderr(&output));
        }
        for n in 0..JOBS {
            assert!(dir.join(format!("held_{n}.o")).exists());
        }
    }

    /// tmux on this lab's private server (its own socket, no user configuration), with
    /// the client environment, which the server hands to every pane.
    fn tmux(&self) -> Command {
        let mut command = self.command("tmux");
        command
            .arg("-S")
            .arg(self.path("tmux.sock"))
            .args(["-f", "/dev/null"]);
        command
    }

    fn tmux_ok(&self, args: &[&str]) -> String {
        let output = run(self.tmux().args(args));
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            stderr(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts a detached 80×24 session `name` running `script`.
    fn session(&self, name: &str, script: &Path) {
        self.tmux_ok(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            name,
            &script.display().to_string(),
        ]);
    }

    fn screen(&self, session: &str) -> String {
        self.tmux_ok(&["capture-pane", "-p", "-t", session])
    }

    /// Waits until the screen of `session` satisfies `ready`, returning it.
    fn wait_for_screen(&self, session: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen(session);
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never appeared; the screen:\n{screen}\ndaemon log:\n{}",
                std::fs::read_to_string(self.path("runtime/daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pane_format(&self, session: &str, format: &str) -> String {
        self.tmux_ok(&["display-message", "-p", "-t", session, format])
            .trim()
            .to_string()
    }

    /// A script for a pane: `sshcc mon`, then (so the test can look at the terminal it
    /// left behind) its exit status and the terminal's line discipline, then a wait.
    fn mon_script(&self) -> PathBuf {
        let script = self.path("mon.sh");
        write_script(
            &script,
            &format!(
                "'{}' mon\necho \"mon exited with $?\"\n\
                 stty -a | tr ' ;' '\\n\\n' | grep -x -e -icanon -e icanon -e -echo -e echo\n\
                 echo end-of-checks\nexec sleep 300",
                sshcc().display()
            ),
        );
        script
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path("release"), "");
        for child in &mut self.wrappers {
            let _ = child.wait();
        }
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// The pids of the processes whose parent is `parent` and whose command is `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces, so split after the ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<u32>().ok()));
        if ppid == Some(parent) && comm == name && state != Some("Z") {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn snapshot(lab: &Lab, args: &[&str]) -> (Output, String) {
    let output = run(lab.command(sshcc()).arg("mon").args(args));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, text)
}

#[test]
fn mon_shows_the_host_and_jobs_in_flight_and_q_restores_the_terminal() {
    let mut lab = Lab::new();

    // Before any compile there is no daemon, and the snapshot says so.
    let (output, text) = snapshot(&lab, &["--once"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(text.contains("no daemon running"), "{text}");

    let dir = lab.start_build();
    let script = lab.mon_script();
    lab.session("mon", &script);
    // Every held job reaches the box and shows there, in its compile phase.
    let screen = lab.wait_for_screen("mon", "the host and every held job compiling", |screen| {
        screen.contains("@box/8")
            && screen.contains(&format!("{JOBS} jobs in flight"))
            && (0..JOBS).all(|n| {
                screen
                    .lines()
                    .any(|line| line.contains(&format!("held_{n}.c")) && line.contains("compile"))
            })
    });
    // The host row carries its slot bar.
    let host_row = screen
        .lines()
        .find(|line| line.contains("@box/8") && line.contains('['))
        .unwrap_or_else(|| panic!("no host row:\n{screen}"));
    assert!(host_row.contains(&format!("] {JOBS}/8")), "{screen}");
    assert!(screen.contains("h help · q quit"), "{screen}");
    assert!(screen.lines().count() <= 24 && screen.lines().all(|line| line.chars().count() <= 80));
    assert_eq!(lab.pane_format("mon", "#{alternate_on}"), "1", "{screen}");

    // While the build runs, a pipe gets the same information as text.
    let (output, text) = snapshot(&lab, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(text.contains("HOST") && text.contains("@box/8"), "{text}");
    assert!(text.contains(&format!("] {JOBS}/8")), "{text}");
    for n in 0..JOBS {
        assert!(text.contains(&format!("held_{n}.c")), "{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in the text: {text:?}"
    );

    // h shows the help over the view and takes it away again.
    lab.tmux_ok(&["send-keys", "-t", "mon", "h"]);
    lab.wait_for_screen("mon", "the help", |screen| {
        screen.contains("Help (h closes)")
    });
    lab.tmux_ok(&["send-keys", "-t", "mon", "h"]);
    lab.wait_for_screen("mon", "the view without help", |screen| {
        !screen.contains("Help (h closes)") && screen.contains("held_0.c")
    });

    // The jobs finish and leave the view; the host counts them done.
    lab.release(&dir);
    lab.wait_for_screen("mon", "the finished build", |screen| {
        screen.contains("0 jobs in flight") && screen.contains("no jobs in flight")
    });

    // q: sshcc mon exits 0, leaves the alternate screen, shows the cursor and hands
    // back a terminal in its normal (canonical, echoing) mode; no process is left.
    let shell: u32 = lab.pane_format("mon", "#{pane_pid}").parse().unwrap();
    let mon = children_named(shell, "sshcc");
    assert_eq!(mon.len(), 1, "sshcc mon is not the pane's child");
    lab.tmux_ok(&["send-keys", "-t", "mon", "q"]);
    let screen = lab.wait_for_screen("mon", "the shell after mon", |screen| {
        screen.contains("end-of-checks")
    });
    assert!(screen.contains("mon exited with 0"), "{screen}");
    let modes: Vec<&str> = screen
        .lines()
        .map(str::trim)
        .filter(|line| ["icanon", "-icanon", "echo", "-echo"].contains(line))
        .collect();
    assert_eq!(modes, ["icanon", "echo"], "{screen}");
    assert!(
        !screen.contains("Hosts"),
        "the view stayed on screen:\n{screen}"
    );
    assert_eq!(lab.pane_format("mon", "#{alternate_on}"), "0");
    assert_eq!(lab.pane_format("mon", "#{cursor_flag}"), "1");
    wait_until("sshcc mon to be gone", || {
        !Path::new(&format!("/proc/{}", mon[0])).exists()
            || children_named(shell, "sshcc").is_empty()
    });
}

/// Whether process `pid` has exited (gone, or a zombie waiting for its parent).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|close| stat[close + 1..].trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn keys_signals_and_a_closed_terminal_each_end_mon() {
    let lab = Lab::new();
    let command = format!("'{}' mon --interval 100", sshcc().display());
    for (session, how) in [
        ("by-q", "q"),
        ("by-ctrl-c", "C-c"),
        ("by-escape", "Escape"),
        ("by-sigterm", "SIGTERM"),
        ("by-sigint", "SIGINT"),
        // The pane closes under it, as when an ssh session drops: the terminal hangs
        // up and mon must notice instead of lingering.
        ("by-hangup", "kill-session"),
        // The same without the SIGHUP (mon in a session of its own): the end of its
        // input alone must end it.
        ("by-hangup-alone", "kill-session"),
    ] {
        let script = lab.path(&format!("{session}.sh"));
        let detached = session == "by-hangup-alone";
        let prefix = if detached { "setsid -w " } else { "" };
        write_script(&script, &format!("exec {prefix}{command}"));
        lab.session(session, &script);
        lab.wait_for_screen(session, "the view", |screen| {
            screen.contains("no daemon running") && screen.contains("q quit")
        });
        let pane: u32 = lab.pane_format(session, "#{pane_pid}").parse().unwrap();
        let mon = if detached {
            let found = children_named(pane, "sshcc");
            assert_eq!(found.len(), 1, "setsid's sshcc mon");
            found[0]
        } else {
            pane
        };
        match how {
            "SIGTERM" | "SIGINT" => {
                let signal = format!("-{}", &how[3..]);
                let killed = run(Command::new("kill").args([&signal, &mon.to_string()]));
                assert!(killed.status.success());
            }
            "kill-session" => {
                lab.tmux_ok(&["kill-session", "-t", session]);
            }
            keys => {
                lab.tmux_ok(&["send-keys", "-t", session, keys]);
            }
        }
        // The pane's only process was mon: when it exits the session ends.
        wait_until(&format!("session {session} to end"), || {
            !lab.tmux()
                .args(["has-session", "-t", session])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        });
        wait_until(&format!("mon ({session}) to exit"), || exited(mon));
    }
}
