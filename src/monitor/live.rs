//! The live view's terminal: raw mode and the alternate screen for as long as it runs,
//! restored on every way out (a key, a signal, a panic); status read on a thread of its
//! own so that a slow daemon never freezes the keys.

use std::io::{Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
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
enum Action {
    Quit,
    ToggleHelp,
    Redraw,
    Nothing,
}

fn action(event: Event) -> Action {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('h') | KeyCode::Char('H') | KeyCode::Char('?') | KeyCode::F(1) => {
                Action::ToggleHelp
            }
            _ => Action::Nothing,
        },
        Event::Resize(..) => Action::Redraw,
        _ => Action::Nothing,
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
    match show(&mut screen, interval, &updates) {
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
        if event::poll(KEY_POLL)? {
            match action(event::read()?) {
                Action::Quit => break,
                Action::ToggleHelp => {
                    help = !help;
                    dirty = true;
                }
                Action::Redraw => {
                    screen.terminal.autoresize()?;
                    dirty = true;
                }
                Action::Nothing => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyEvent, KeyEventState};

    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers, kind: KeyEventKind) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers,
            kind,
            state: KeyEventState::NONE,
        })
    }

    fn press(code: KeyCode) -> Event {
        key(code, KeyModifiers::NONE, KeyEventKind::Press)
    }

    #[test]
    fn keys_quit_toggle_help_or_do_nothing() {
        for quit in [
            press(KeyCode::Char('q')),
            press(KeyCode::Esc),
            key(
                KeyCode::Char('c'),
                KeyModifiers::CONTROL,
                KeyEventKind::Press,
            ),
        ] {
            assert!(matches!(action(quit), Action::Quit));
        }
        for help in [press(KeyCode::Char('h')), press(KeyCode::Char('?'))] {
            assert!(matches!(action(help), Action::ToggleHelp));
        }
        assert!(matches!(action(press(KeyCode::Char('c'))), Action::Nothing));
        // A key's release (reported by some terminals) does not act twice.
        let release = key(
            KeyCode::Char('h'),
            KeyModifiers::NONE,
            KeyEventKind::Release,
        );
        assert!(matches!(action(release), Action::Nothing));
        assert!(matches!(action(Event::Resize(80, 24)), Action::Redraw));
    }
}
