//! The TUI's widgets: a status line, the tasks table (flagged rows coloured
//! and labelled), the findings and spawn-sites panes, the detail view with
//! the async backtrace, and the key help bar. Drawing only reads the
//! [`State`]; the tests render it on ratatui's `TestBackend`.

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::state::{Connection, Pane, SortKey, State};
use crate::model::check::counts;
use crate::model::flags::{Flag, TaskFlag};
use crate::model::format::{compact, short_path};
use crate::model::Severity;

const HELP: &str =
    " q quit  ↑↓ move  tab pane  enter details/filter  esc back  s/S sort  r reverse  f idle/running  p pause";

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &State, now: Instant) {
    let [status, body, help] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(5), Constraint::Length(1)])
            .areas(frame.area());
    frame.render_widget(Paragraph::new(status_line(state, now)), status);
    frame.render_widget(Paragraph::new(HELP).style(Style::new().add_modifier(Modifier::REVERSED)), help);
    if let Some(task) = state.detail.and_then(|id| state.tasks().iter().find(|t| t.id == id)) {
        super::detail::draw(frame, body, state, task);
        return;
    }
    let [tasks, panes] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
    let [findings, sites] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(panes);
    tasks_table(frame, tasks, state);
    findings_pane(frame, findings, state);
    sites_pane(frame, sites, state);
}

fn status_line(state: &State, now: Instant) -> Line<'static> {
    let mut spans = vec![
        Span::styled("taskscope ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(state.url.clone()),
    ];
    let (text, style) = match &state.connection {
        Connection::Connecting => ("  connecting…".to_string(), Style::new().fg(Color::Yellow)),
        Connection::Live if state.paused => ("  paused".to_string(), Style::new().fg(Color::Yellow)),
        Connection::Live => ("  live".to_string(), Style::new().fg(Color::Green)),
        Connection::Lost { error, since } => (
            format!(
                "  disconnected {} ago: {error}; retrying",
                compact(now.duration_since(*since).as_millis() as u64)
            ),
            Style::new().fg(Color::White).bg(Color::Red),
        ),
    };
    spans.push(Span::styled(text, style));
    if let Some(s) = &state.snapshot {
        spans.push(Span::raw(format!(
            "  {} tasks · findings: {} · agent {}",
            s.tasks_total,
            counts(s.findings.iter()),
            s.agent.version
        )));
    }
    Line::from(spans)
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused { Style::new().fg(Color::Cyan) } else { Style::new() };
    Block::new().borders(Borders::ALL).border_style(style).title(title)
}

/// The colour of a flagged row: stuck-like in red, leaks in yellow,
/// info-level findings (lean mode's long idleness) in blue.
pub fn flag_style(flag: &TaskFlag) -> Style {
    match (flag.severity, flag.flag) {
        (Severity::Info, _) => Style::new().fg(Color::Blue),
        (_, Flag::Leaking) => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn tasks_table(frame: &mut Frame, area: Rect, state: &State) {
    let q = &state.query;
    let arrow = if q.descending { "▼" } else { "▲" };
    let header_cell = |name: &str, key: Option<SortKey>| {
        if key == Some(q.sort) {
            Cell::from(format!("{name}{arrow}"))
                .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
        } else {
            Cell::from(name.to_string()).style(Style::new().add_modifier(Modifier::BOLD))
        }
    };
    let header = Row::new([
        header_cell("Flag", None),
        header_cell("ID", Some(SortKey::Id)),
        header_cell("State", None),
        header_cell("Wait", None),
        header_cell("Idle", Some(SortKey::Idle)),
        header_cell("Polls", Some(SortKey::Polls)),
        header_cell("Busy", Some(SortKey::Busy)),
        header_cell("Age", Some(SortKey::Age)),
        header_cell("Spawned at", None),
    ]);
    // Borders, the highlight symbol, the fixed columns and the gaps.
    let location_width = (area.width as usize).saturating_sub(2 + 2 + 9 + 8 + 8 + 13 + 8 + 8 + 7 + 7 + 8);
    let rows = state.tasks().iter().map(|t| {
        let flag = state.flags.of(t);
        let time = if t.is_running() { t.running_ms } else { t.idle_ms };
        let row = Row::new([
            flag.map_or(String::new(), |f| f.label().to_string()),
            t.id.to_string(),
            t.state.clone(),
            state.flags.wait_of(t).unwrap_or("-").to_string(),
            if t.is_running() { format!("({})", compact(time)) } else { compact(time) },
            t.polls.to_string(),
            compact(t.busy_ms),
            compact(t.age_ms),
            match &t.name {
                // The name first, then as much of the location as fits.
                Some(name) => {
                    let name = tail(name, location_width / 2);
                    format!(
                        "{name} {}",
                        tail(&t.spawned_at, location_width.saturating_sub(name.chars().count() + 1))
                    )
                }
                None => tail(&t.spawned_at, location_width),
            },
        ]);
        match flag {
            Some(f) => row.style(flag_style(&f)),
            None => row,
        }
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let total = state.snapshot.as_ref().map_or(0, |s| s.tasks_total);
    let mut title = format!(" Tasks: {} of {total}, by {} ", state.tasks().len(), q.sort.param());
    if let Some(site) = q.site {
        let location = state.snapshot.as_ref().and_then(|s| s.sites.iter().find(|x| x.id == site));
        title.push_str(&format!("· site {} (esc clears) ", location.map_or("?", |s| s.location.as_str())));
    }
    if let Some(only) = q.state {
        title.push_str(&format!("· {only} only "));
    }
    let table = Table::new(rows, widths)
        .header(header)
        .block(pane_block(title, state.focus == Pane::Tasks))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut selection = TableState::default().with_selected(Some(state.selected[0]));
    frame.render_stateful_widget(table, area, &mut selection);
}

fn findings_pane(frame: &mut Frame, area: Rect, state: &State) {
    let findings = state.snapshot.as_ref().map_or(&[][..], |s| &s.findings[..]);
    let lines: Vec<Line> = if findings.is_empty() {
        vec![Line::styled("no findings", Style::new().fg(Color::Green))]
    } else {
        findings
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let label = match f.severity {
                    Severity::Critical => "CRIT",
                    Severity::Warning => "WARN",
                    Severity::Info => "INFO",
                };
                let color = match f.severity {
                    Severity::Critical => Color::Red,
                    Severity::Warning => Color::Yellow,
                    Severity::Info => Color::Blue,
                };
                let mut line = Line::from(vec![
                    Span::styled(format!("{label} "), Style::new().fg(color).add_modifier(Modifier::BOLD)),
                    Span::styled(format!("{} ", f.kind), Style::new().fg(color)),
                    Span::raw(f.message.clone()),
                ]);
                if state.focus == Pane::Findings && i == state.selected[1] {
                    line = line.style(Style::new().add_modifier(Modifier::REVERSED));
                }
                line
            })
            .collect()
    };
    let scroll = if state.focus == Pane::Findings {
        state.selected[1].saturating_sub(area.height as usize / 3)
    } else {
        0
    };
    let title = format!(" Findings: {} ", findings.len());
    let pane = Paragraph::new(lines)
        .block(pane_block(title, state.focus == Pane::Findings))
        .wrap(Wrap { trim: true })
        .scroll((scroll as u16, 0));
    frame.render_widget(pane, area);
}

/// The end of `text` in at most `width` characters: a location's line and
/// file matter more than its first directories.
pub fn tail(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width || width == 0 {
        return text.to_string();
    }
    let skip = n - (width - 1);
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

/// The last `width` samples of `history` as block characters.
pub fn sparkline(history: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &history[history.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter().map(|&v| BARS[((v * 7) / max) as usize]).collect()
}

fn sites_pane(frame: &mut Frame, area: Rect, state: &State) {
    // Borders, the fixed columns and the gaps between columns.
    let location_width = (area.width as usize).saturating_sub(2 + 7 + 6 + 8 + 13 + 4);
    let header = Row::new(["Live", "Idle", "Spawned", "Trend", "Location"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = state.sites().into_iter().map(|s| {
        let row = Row::new([
            s.live.to_string(),
            s.idle.to_string(),
            s.spawned.to_string(),
            sparkline(&s.history, 12),
            tail(short_path(&s.location), location_width),
        ]);
        if state.flags.site_is_leaking(&s.location) {
            row.style(Style::new().fg(Color::Yellow))
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Fill(1),
    ];
    let title = format!(" Spawn sites: {} ", state.sites().len());
    let table = Table::new(rows, widths)
        .header(header)
        .block(pane_block(title, state.focus == Pane::Sites))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let selected = (state.focus == Pane::Sites).then_some(state.selected[2]);
    frame.render_stateful_widget(table, area, &mut TableState::default().with_selected(selected));
}
