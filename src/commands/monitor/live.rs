//! The live view's terminal: raw mode and the alternate screen for as long as it runs,
//! restored on every way out (a key, a signal, a panic, the terminal going away);
//! status read on a thread of its own so that a slow daemon never freezes the keys.
//!
//! Keys are read here rather than through crossterm's event reader, which spins
//! forever on a terminal that hung up (a closed tmux pane or ssh session) instead of
//! returning; here end of input ends the view. Resizes need no event: every frame
//! checks the terminal's size.

use std::fs::File;
use std::io::{IsTerminal, Stdout, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::view::{self, View};
use crate::status::Status;

/// Set by SIGINT, SIGTERM and SIGHUP: leave the loop and restore the terminal.
static STOP: AtomicBool = AtomicBool::new(false);

/// How often keys and signals are looked at while waiting for the next status.
const KEY_POLL: Duration = Duration::from_millis(50);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The terminal in raw mode on the alternate screen; dropping it restores both.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        let screen = Screen {
            // Built first so that a failure below still restores the terminal on drop.
            terminal: Terminal::new(CrosstermBackend::new(std::io::stdout()))?,
        };
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let mut screen = screen;
        screen.terminal.clear()?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode. Harmless when
/// already done.
fn restore() {
    let mut stdout = std::io::stdout();
    let _ = execute!(stdout, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let _ = stdout.flush();
}

/// A panic prints its message on the restored screen, not on the alternate one that is
/// about to vanish.
fn restore_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

fn handle_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// What the user asked for with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Quit,
    ToggleHelp,
}

/// The actions in what the terminal sent: `q`, Esc or Ctrl-C quit; `h`, `?` or F1
/// toggle the help. Other keys, escape sequences (arrows, function keys) and
/// Alt-combinations are ignored.
fn actions(input: &[u8]) -> Vec<Action> {
    const ESC: u8 = 0x1b;
    const CTRL_C: u8 = 0x03;
    let mut found = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'q' | b'Q' | CTRL_C => found.push(Action::Quit),
            b'h' | b'H' | b'?' => found.push(Action::ToggleHelp),
            ESC => match input.get(i + 1) {
                // Esc alone: a sequence arrives in one read.
                None | Some(&ESC) => found.push(Action::Quit),
                // SS3: F1 is ESC O P.
                Some(b'O') => {
                    if input.get(i + 2) == Some(&b'P') {
                        found.push(Action::ToggleHelp);
                    }
                    i += 2;
                }
                // CSI: parameters up to a final byte; F1 is also ESC [ 1 1 ~.
                Some(b'[') => {
                    let rest = &input[i + 2..];
                    let length = rest
                        .iter()
                        .position(|byte| (0x40..=0x7e).contains(byte))
                        .map_or(rest.len(), |end| end + 1);
                    if &rest[..length] == b"11~" {
                        found.push(Action::ToggleHelp);
                    }
                    i += 1 + length;
                }
                // Alt+key.
                Some(_) => i += 1,
            },
            _ => {}
        }
        i += 1;
    }
    found
}

/// The terminal's input: stdin, or `/dev/tty` when stdin is redirected.
struct Keys {
    fd: RawFd,
    _tty: Option<File>,
}

/// What waiting for input gave.
enum Input {
    Bytes(Vec<u8>),
    Nothing,
    /// End of input, a hang-up or an error: nobody can press a key any more.
    Gone,
}

impl Keys {
    fn open() -> std::io::Result<Self> {
        if std::io::stdin().is_terminal() {
            return Ok(Keys {
                fd: libc::STDIN_FILENO,
                _tty: None,
            });
        }
        let tty = File::open("/dev/tty")?;
        Ok(Keys {
            fd: tty.as_raw_fd(),
            _tty: Some(tty),
        })
    }

    /// Waits at most `timeout` for keys.
    fn wait(&self, timeout: Duration) -> Input {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
        if ready < 0 {
            return match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted => Input::Nothing,
                _ => Input::Gone,
            };
        }
        if ready == 0 {
            return Input::Nothing;
        }
        if poll.revents & libc::POLLIN == 0 {
            // POLLHUP, POLLERR or POLLNVAL without anything to read.
            return Input::Gone;
        }
        let mut buffer = [0u8; 256];
        // SAFETY: reads into a buffer we own, at most its length.
        let count = unsafe { libc::read(self.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        match count {
            0 => Input::Gone,
            n if n > 0 => Input::Bytes(buffer[..n as usize].to_vec()),
            _ => match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => Input::Nothing,
                _ => Input::Gone,
            },
        }
    }
}

/// Runs the live view until the user quits, reading the daemon's state with `fetch`
/// every `interval`.
pub fn run(interval: Duration, fetch: fn() -> anyhow::Result<Status>) -> std::process::ExitCode {
    let (sender, updates) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let started = Instant::now();
            let update = fetch().map_err(|err| format!("{err:#}"));
            if sender.send(update).is_err() {
                return;
            }
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    });

    handle_signals();
    restore_on_panic();
    let mut screen = match Screen::enter() {
        Ok(screen) => screen,
        Err(err) => {
            restore();
            eprintln!("sshcc mon: cannot use the terminal: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let keys = match Keys::open() {
        Ok(keys) => keys,
        Err(err) => {
            drop(screen);
            eprintln!("sshcc mon: cannot read keys from the terminal: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match show(&mut screen, &keys, interval, &updates) {
        Ok(()) => {
            drop(screen);
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            drop(screen);
            eprintln!("sshcc mon: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn show(
    screen: &mut Screen,
    keys: &Keys,
    interval: Duration,
    updates: &mpsc::Receiver<Result<Status, String>>,
) -> std::io::Result<()> {
    // The first status, so that the first frame does not claim there is no daemon
    // while one is about to answer.
    let mut status = Status::default();
    let mut error = None;
    match updates.recv_timeout(interval.max(Duration::from_millis(500))) {
        Ok(Ok(first)) => {
            status = first;
        }
        Ok(Err(why)) => error = Some(why),
        Err(_) => {}
    }
    let mut help = false;
    let mut dirty = true;
    let mut last_draw = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        loop {
            let update = match updates.try_recv() {
                Ok(update) => update,
                Err(mpsc::TryRecvError::Empty) => break,
                // Only a panic ends the reading thread; it has been reported.
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(std::io::Error::other("the status reader stopped"));
                }
            };
            match update {
                Ok(latest) => {
                    status = latest;
                    error = None;
                }
                Err(why) => error = Some(why),
            }
            dirty = true;
        }
        if dirty || last_draw.elapsed() >= interval {
            let view = View {
                status: &status,
                error: error.as_deref(),
                help,
                interval_ms: interval.as_millis() as u64,
            };
            screen.terminal.draw(|frame| view::render(frame, &view))?;
            dirty = false;
            last_draw = Instant::now();
        }
        match keys.wait(KEY_POLL) {
            Input::Bytes(bytes) => {
                for action in actions(&bytes) {
                    match action {
                        Action::Quit => return Ok(()),
                        Action::ToggleHelp => {
                            help = !help;
                            dirty = true;
                        }
                    }
                }
            }
            Input::Nothing => {}
            Input::Gone => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_quit_or_toggle_help_and_sequences_are_not_keys() {
        use Action::{Quit, ToggleHelp};
        for quit in [&b"q"[..], b"Q", b"\x03", b"\x1b", b"\x1b\x1b"] {
            assert_eq!(actions(quit).first(), Some(&Quit), "{quit:?}");
        }
        for help in [&b"h"[..], b"?", b"\x1bOP", b"\x1b[11~"] {
            assert_eq!(actions(help), [ToggleHelp], "{help:?}");
        }
        // Arrows, Page Down, Alt+q, mouse-free typing: nothing.
        for nothing in [&b"\x1b[A"[..], b"\x1b[6~", b"\x1bq", b"x", b"\x1b[1;5Q"] {
            assert_eq!(actions(nothing), [], "{nothing:?}");
        }
        assert_eq!(actions(b"hh\x1b[Bq"), [ToggleHelp, ToggleHelp, Quit]);
    }
}
