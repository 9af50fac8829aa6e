//! The live view's screen: a header line, the hosts table with slot bars, the jobs in
//! flight, a footer with totals and keys, and the help overlay. Drawn from one
//! [`Status`] at a time; ratatui compares each frame with the last and writes only the
//! cells that changed, so refreshing several times a second does not flicker.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::format::{self, HOST_COLUMNS, Health, JOB_COLUMNS};
use crate::status::{HostStatus, Phase, Status};

/// What one frame shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub status: &'a Status,
    /// Why the last refresh failed (the status shown is then the last one read).
    pub error: Option<&'a str>,
    pub help: bool,
    pub interval_ms: u64,
}

const SEPARATOR: &str = " · ";
const KEYS: &str = "h help · q quit";
const COLUMN_SPACING: u16 = 1;
/// The jobs table's fixed columns: host, phase, elapsed, in phase.
const JOB_HOST_WIDTH: usize = 16;
const JOB_FIXED_WIDTHS: [u16; 3] = [10, 7, 8];

/// Draws `view` over the whole frame.
pub fn render(frame: &mut Frame, view: &View) {
    let area = frame.area();
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, header, view);
    render_footer(frame, footer, view.status);
    if view.status.daemon_pid.is_some() {
        render_body(frame, body, view.status);
    } else {
        let text = Text::from(vec![
            Line::from(""),
            Line::from("No sshcc daemon is running for this user."),
            Line::from("It starts with the first compile through sshcc;"),
            Line::from("this view picks it up then."),
        ]);
        frame.render_widget(
            Paragraph::new(text)
                .alignment(Alignment::Center)
                .block(Block::bordered().title(" sshcc mon ")),
            body,
        );
    }
    if view.help {
        render_help(frame, area, view.interval_ms);
    }
}

fn render_header(frame: &mut Frame, area: Rect, view: &View) {
    let line = match view.error {
        Some(error) => Line::from(vec![
            Span::from("sshcc mon: ").bold(),
            Span::from(format!("cannot read the daemon's status: {error}")).red(),
        ]),
        None => Line::from(vec![
            Span::from("sshcc mon").bold(),
            Span::from(SEPARATOR),
            Span::from(format::summary(view.status, SEPARATOR)),
        ]),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_footer(frame: &mut Frame, area: Rect, status: &Status) {
    let keys_width = KEYS.chars().count() as u16;
    let [totals, keys] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(keys_width)]).areas(area);
    if status.daemon_pid.is_some() {
        let text =
            format::truncate_right(&format::totals(status, SEPARATOR), totals.width as usize);
        frame.render_widget(Paragraph::new(text).dim(), totals);
    }
    frame.render_widget(Paragraph::new(KEYS).dim(), keys);
}

/// The body's hosts block on top (as tall as its rows, at most what leaves the jobs
/// block room for a few rows), the jobs block below.
fn render_body(frame: &mut Frame, area: Rect, status: &Status) {
    let hosts = format::hosts_with_local_row(status);
    let errors: Vec<Line> = hosts
        .iter()
        .filter_map(|host| {
            let error = host.last_error.as_ref()?;
            let text = format!("{}: {error}", host.host);
            Some(
                Line::from(format::truncate_right(
                    &text,
                    area.width.saturating_sub(2) as usize,
                ))
                .red(),
            )
        })
        .collect();
    // Borders and the title row, then one row per host and per error.
    const JOBS_MINIMUM: u16 = 5;
    let room = area.height.saturating_sub(JOBS_MINIMUM).max(4);
    let wanted = 3 + hosts.len() as u16 + errors.len() as u16;
    let [hosts_area, jobs_area] =
        Layout::vertical([Constraint::Length(wanted.min(room)), Constraint::Fill(1)]).areas(area);
    render_hosts(frame, hosts_area, &hosts, errors);
    render_jobs(frame, jobs_area, status);
}

fn render_hosts(frame: &mut Frame, area: Rect, hosts: &[HostStatus], mut errors: Vec<Line>) {
    let block = Block::bordered().title(" Hosts ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Host rows first; the errors get what is left.
    let rows_room = inner.height.saturating_sub(1) as usize;
    let (shown, hidden) = if hosts.len() <= rows_room {
        (hosts.len(), 0)
    } else {
        let shown = rows_room.saturating_sub(1);
        (shown, hosts.len() - shown)
    };
    errors.truncate(rows_room.saturating_sub(shown + usize::from(hidden > 0)));

    let cells: Vec<[String; 9]> = hosts[..shown]
        .iter()
        .map(|host| {
            let mut cells = format::host_cells(host);
            cells[0] = format::short_host(&cells[0]).to_string();
            cells
        })
        .collect();
    let mut widths: Vec<u16> = (0..HOST_COLUMNS.len())
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].chars().count())
                .chain([HOST_COLUMNS[column].len()])
                .max()
                .unwrap_or(0) as u16
        })
        .collect();
    let fixed: u16 = widths[1..].iter().sum::<u16>() + COLUMN_SPACING * (widths.len() as u16 - 1);
    widths[0] = inner.width.saturating_sub(fixed).max(4);
    let host_width = widths[0] as usize;

    let header = Row::new(HOST_COLUMNS.iter().enumerate().map(|(column, title)| {
        aligned(title.to_string(), numeric_host_column(column)).style(Style::new().bold())
    }));
    let mut rows: Vec<Row> = hosts[..shown]
        .iter()
        .zip(cells)
        .map(|(host, cells)| {
            let health = format::host_health(host);
            Row::new(cells.into_iter().enumerate().map(|(column, text)| {
                let text = if column == 0 {
                    format::truncate_right(&text, host_width)
                } else {
                    text
                };
                let cell = aligned(text, numeric_host_column(column));
                match column {
                    1 => cell.style(bar_style(host)),
                    3 if host.jobs_failed > 0 => cell.red(),
                    8 => cell.style(health_style(health)),
                    _ => cell,
                }
            }))
        })
        .collect();
    if hidden > 0 {
        rows.push(Row::new([Cell::from(format!("… {hidden} more"))]).dim());
    }
    let error_rows = errors.len() as u16;
    let [table_area, errors_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(error_rows)]).areas(inner);
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(header)
        .column_spacing(COLUMN_SPACING);
    frame.render_widget(table, table_area);
    frame.render_widget(Paragraph::new(errors), errors_area);
}

fn numeric_host_column(column: usize) -> bool {
    (2..=7).contains(&column)
}

fn aligned(text: String, right: bool) -> Cell<'static> {
    let line = Line::from(text);
    Cell::from(if right { line.right_aligned() } else { line })
}

fn bar_style(host: &HostStatus) -> Style {
    if host.slots_total > 0 && host.slots_busy >= host.slots_total {
        Style::new().fg(Color::Yellow)
    } else if host.slots_busy > 0 {
        Style::new().fg(Color::Green)
    } else {
        Style::new()
    }
}

fn health_style(health: Health) -> Style {
    match health {
        Health::Good => Style::new().fg(Color::Green),
        Health::Idle => Style::new().add_modifier(Modifier::DIM),
        Health::Bad => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn phase_style(phase: Phase) -> Style {
    Style::new().fg(match phase {
        Phase::Queue => Color::DarkGray,
        Phase::Preprocess => Color::Cyan,
        Phase::Send => Color::Blue,
        Phase::Compile => Color::Green,
        Phase::Receive => Color::Magenta,
        Phase::Local => Color::Yellow,
    })
}

fn render_jobs(frame: &mut Frame, area: Rect, status: &Status) {
    let jobs = format::jobs_by_elapsed(status);
    let block = Block::bordered().title(format!(" Jobs in flight ({}) ", jobs.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let host_width = jobs
        .iter()
        .map(|job| {
            format::short_host(&format::job_cells(job)[1])
                .chars()
                .count()
        })
        .chain([JOB_COLUMNS[1].len()])
        .max()
        .unwrap_or(0)
        .min(JOB_HOST_WIDTH) as u16;
    let fixed = host_width + JOB_FIXED_WIDTHS.iter().sum::<u16>() + 4 * COLUMN_SPACING;
    let file_width = inner.width.saturating_sub(fixed).max(8);
    let widths = [
        file_width,
        host_width,
        JOB_FIXED_WIDTHS[0],
        JOB_FIXED_WIDTHS[1],
        JOB_FIXED_WIDTHS[2],
    ];

    let rows_room = inner.height.saturating_sub(1) as usize;
    let (shown, hidden) = if jobs.len() <= rows_room {
        (jobs.len(), 0)
    } else {
        let shown = rows_room.saturating_sub(1);
        (shown, jobs.len() - shown)
    };
    let header =
        Row::new(JOB_COLUMNS.iter().enumerate().map(|(column, title)| {
            aligned(title.to_string(), column >= 3).style(Style::new().bold())
        }));
    let mut rows: Vec<Row> = jobs[..shown]
        .iter()
        .map(|job| {
            let [file, host, phase, elapsed, in_phase] = format::job_cells(job);
            let host = format::short_host(&host);
            Row::new([
                Cell::from(format::truncate_left(&file, file_width as usize)),
                Cell::from(format::truncate_right(host, host_width as usize)),
                Cell::from(phase).style(phase_style(job.phase)),
                aligned(elapsed, true),
                aligned(in_phase, true),
            ])
        })
        .collect();
    if hidden > 0 {
        rows.push(Row::new([Cell::from(format!("… {hidden} more"))]).dim());
    }
    if jobs.is_empty() {
        rows.push(Row::new([Cell::from("no jobs in flight")]).dim());
    }
    let table = Table::new(rows, widths.map(Constraint::Length))
        .header(header)
        .column_spacing(COLUMN_SPACING);
    frame.render_widget(table, inner);
}

fn help_text(interval_ms: u64) -> Vec<Line<'static>> {
    let key = |text: &'static str| Span::from(text).bold();
    vec![
        Line::from(format!(
            "This user's sshcc daemon, refreshed every {}.",
            format::duration(interval_ms)
        )),
        Line::from(""),
        Line::from("Hosts: one row per host entry, then the local row (compiled here)."),
        Line::from("  SLOTS  busy/total job slots     DONE   jobs finished there"),
        Line::from("  FAIL   host failures (not compile errors)"),
        Line::from("  RTT    round-trip time          SENT/RECV  bytes on the wire"),
        Line::from("  RATIO  payload bytes per byte on the wire (compression)"),
        Line::from("  STATE  connected, idle, tcp, local, or backoff N: not tried"),
        Line::from("         again for N; its last error is shown under the table."),
        Line::from("         pp there N%: connected, the box preprocesses, and its"),
        Line::from("         store already held N% of what jobs needed"),
        Line::from(""),
        Line::from("Jobs in flight, longest-running first. ELAPSED: since it asked"),
        Line::from("for a slot; IN PHASE: since its phase began. Phases: queue,"),
        Line::from("preprocess, send, compile (on the box), receive, local."),
        Line::from(""),
        Line::from(vec![
            key("  h"),
            Span::from(" this help    "),
            key("q"),
            Span::from(", "),
            key("Esc"),
            Span::from(", "),
            key("Ctrl-C"),
            Span::from(" quit"),
        ]),
        Line::from("  sshcc mon --once: one snapshot as text"),
    ]
}

fn render_help(frame: &mut Frame, area: Rect, interval_ms: u64) {
    let text = help_text(interval_ms);
    let width = (text.iter().map(Line::width).max().unwrap_or(0) as u16 + 4).min(area.width);
    let height = (text.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Help (h closes) ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::commands::monitor::sample;

    /// The screen `view` draws on a `width`×`height` terminal, one string per row.
    fn screen(
        status: &Status,
        help: bool,
        error: Option<&str>,
        width: u16,
        height: u16,
    ) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let view = View {
            status,
            error,
            help,
            interval_ms: 250,
        };
        terminal.draw(|frame| render(frame, &view)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    fn find<'a>(screen: &'a [String], needle: &str) -> Option<&'a String> {
        screen.iter().find(|row| row.contains(needle))
    }

    fn dump(screen: &[String]) -> String {
        screen.join("\n")
    }

    #[test]
    fn at_80x24_every_host_and_job_shows_whole() {
        let status = sample::status();
        let screen = screen(&status, false, None, 80, 24);
        let all = dump(&screen);
        assert!(
            screen[0].starts_with("sshcc mon · daemon 4242 · up 5m03s"),
            "{all}"
        );
        let boxed = find(&screen, "@box/8").unwrap_or_else(|| panic!("{all}"));
        for cell in [
            "[####    ] 4/8",
            "120",
            "1.23ms",
            "3.0M",
            "700K",
            "3.1x",
            "connected",
        ] {
            assert!(boxed.contains(cell), "{cell} missing from {boxed:?}\n{all}");
        }
        // Narrow columns name hosts without their remote command.
        assert!(!all.contains("/opt/sshcc"), "{all}");
        assert!(find(&screen, "@box/8 ").is_some(), "{all}");
        let flaky = find(&screen, "@flaky/4 ").unwrap_or_else(|| panic!("{all}"));
        assert!(
            flaky.contains("[        ] 0/4") && flaky.contains("backoff 42s"),
            "{all}"
        );
        assert!(
            find(&screen, "@flaky/4: connection refused").is_some(),
            "{all}"
        );
        let tcp = find(&screen, "buildbox:3632/2").unwrap_or_else(|| panic!("{all}"));
        assert!(tcp.contains("tcp"), "{all}");
        let local = find(&screen, "localhost/2 ").unwrap_or_else(|| panic!("{all}"));
        assert!(
            local.contains("[####    ] 1/2") && local.contains("local"),
            "{all}"
        );
        for job in &status.jobs {
            let row =
                find(&screen, &job.file).unwrap_or_else(|| panic!("{} missing\n{all}", job.file));
            assert!(row.contains(format::phase(job.phase)), "{row}");
            assert!(row.contains(&format::duration(job.elapsed_ms)), "{row}");
        }
        // Longest-running first.
        let position = |file: &str| screen.iter().position(|row| row.contains(file)).unwrap();
        assert!(position("src/oldest.c") < position("main.c"));
        assert!(position("main.c") < position("src/newest.c"));
        assert!(
            screen[23].contains("done 132") && screen[23].ends_with("h help · q quit"),
            "{all}"
        );
        // Every row of a bordered block closes inside the screen.
        for row in &screen[1..23] {
            assert!(
                row.ends_with('│') || row.ends_with('┐') || row.ends_with('┘'),
                "{all}"
            );
        }
    }

    #[test]
    fn too_many_jobs_end_with_how_many_more() {
        let status = sample::crowded(40);
        let screen = screen(&status, false, None, 80, 24);
        let all = dump(&screen);
        let more = find(&screen, "… ").unwrap_or_else(|| panic!("{all}"));
        let hidden: usize = more
            .split("… ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{more}"));
        let listed = screen
            .iter()
            .filter(|row| status.jobs.iter().any(|job| row.contains(&job.file)))
            .count();
        assert_eq!(listed + hidden, status.jobs.len(), "{all}");
        assert!(find(&screen, "src/oldest.c").is_some(), "{all}");
        assert!(find(&screen, "Jobs in flight (47)").is_some(), "{all}");
        assert!(screen[23].ends_with("h help · q quit"), "{all}");
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis_not_the_screen_edge() {
        let mut status = sample::status();
        status.hosts[0].host = "builder@a-very-long-build-machine-name.example.com/8".into();
        status.jobs[0].file = "third_party/some/deeply/nested/directory/tree/file_name.cc".into();
        status.jobs[0].host = Some(status.hosts[0].host.clone());
        let screen = screen(&status, false, None, 80, 24);
        let all = dump(&screen);
        let host = find(&screen, "builder@").unwrap_or_else(|| panic!("{all}"));
        assert!(
            host.contains('…') && host.contains("4/8") && host.contains("connected"),
            "{all}"
        );
        let job = find(&screen, "tree/file_name.cc").unwrap_or_else(|| panic!("{all}"));
        assert!(job.contains("…") && job.contains("compile"), "{all}");
    }

    #[test]
    fn help_overlays_the_view_and_fits() {
        let status = sample::status();
        let screen = screen(&status, true, None, 80, 24);
        let all = dump(&screen);
        assert!(find(&screen, "Help (h closes)").is_some(), "{all}");
        for line in help_text(250) {
            let text: String = line
                .spans
                .iter()
                .map(|span| span.content.as_ref())
                .collect();
            assert!(
                find(&screen, text.trim()).is_some(),
                "{text:?} not shown whole\n{all}"
            );
        }
        assert!(screen[0].starts_with("sshcc mon"), "{all}");
    }

    #[test]
    fn without_a_daemon_the_view_says_so() {
        let status = Status {
            sshcc_version: "0.1.0".into(),
            ..Status::default()
        };
        let screen = screen(&status, false, None, 80, 24);
        let all = dump(&screen);
        assert!(screen[0].contains("no daemon running"), "{all}");
        assert!(
            find(&screen, "No sshcc daemon is running for this user.").is_some(),
            "{all}"
        );
    }

    #[test]
    fn a_failed_refresh_shows_why_over_the_last_status() {
        let status = sample::status();
        let screen = screen(
            &status,
            false,
            Some("no answer from the sshcc daemon"),
            80,
            24,
        );
        let all = dump(&screen);
        assert!(
            screen[0].contains("no answer from the sshcc daemon"),
            "{all}"
        );
        assert!(find(&screen, "@box/8").is_some(), "{all}");
    }

    #[test]
    fn small_and_large_terminals_do_not_panic() {
        let status = sample::crowded(100);
        for (width, height) in [(1, 1), (20, 5), (40, 10), (80, 24), (200, 60)] {
            for help in [false, true] {
                screen(&status, help, None, width, height);
            }
        }
    }
}
