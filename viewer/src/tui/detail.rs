//! The detail view of one task: its numbers, the findings that flag it, and
//! its async backtrace (where it is parked, leaf first), each frame's
//! function over its shortened `file:line`.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::state::{Backtrace, State};
use crate::model::format::{compact, short_path};
use crate::model::Task;

pub fn draw(frame: &mut Frame, area: Rect, state: &State, task: &Task) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let flag = state.flags.of(task);
    let mut title = format!(" Task {} ", task.id);
    if let Some(name) = &task.name {
        title.push_str(&format!("{name:?} "));
    }
    if let Some(f) = flag {
        title.push_str(&format!("· {} ", f.label()));
    }
    let time = if task.is_running() { task.running_ms } else { task.idle_ms };
    let wait = state.flags.wait_of(task).map(|w| format!(", {w}")).unwrap_or_default();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("state       ", bold),
            Span::raw(format!("{}{wait}, for {}", task.state, compact(time))),
        ]),
        Line::from(vec![Span::styled("spawned at  ", bold), Span::raw(task.spawned_at.clone())]),
        Line::from(vec![
            Span::styled("polls       ", bold),
            Span::raw(format!(
                "{}   busy {}   age {}",
                task.polls,
                compact(task.busy_ms),
                compact(task.age_ms)
            )),
        ]),
        Line::raw(""),
    ];
    if let Some(r) = &task.resource {
        // Deep mode: the lock it waits on and who holds it.
        lines.insert(2, Line::from(vec![Span::styled("waiting on  ", bold), Span::raw(r.describe())]));
    }
    if let Some(s) = &state.snapshot {
        for i in state.flags.findings_about(task) {
            let f = &s.findings[i];
            let style = match flag {
                Some(flag) => super::view::flag_style(&flag),
                None => Style::new(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{} {} ", f.severity.as_str(), f.kind), style),
                Span::raw(f.message.clone()),
            ]));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("async backtrace (where it is parked, leaf first)", bold));
    match state.backtrace(task) {
        Backtrace::Lines(frames) => {
            for frame in frames {
                lines.extend(frame_lines(&frame));
            }
        }
        Backtrace::Loading => lines
            .push(Line::styled("  loading from the agent's task dump…", Style::new().fg(Color::DarkGray))),
        Backtrace::Unavailable(why) => {
            lines.push(Line::styled(format!("  {why}"), Style::new().fg(Color::DarkGray)))
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("esc back", Style::new().fg(Color::DarkGray)));
    let block = Block::new().borders(Borders::ALL).border_style(Style::new().fg(Color::Cyan)).title(title);
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

/// `function at file:line` as two lines; a dump line (`\tfile:line`, or a
/// note) as one.
fn frame_lines(frame: &str) -> Vec<Line<'static>> {
    let user = !frame.starts_with("tokio::")
        && !frame.starts_with("<tokio::")
        && !frame.starts_with("std::")
        && !frame.starts_with("core::");
    let function_style =
        if user { Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { Style::new() };
    match frame.rsplit_once(" at ") {
        Some((function, at)) => vec![
            Line::styled(format!("  {function}"), function_style),
            Line::styled(format!("      {}", short_path(at)), Style::new().fg(Color::DarkGray)),
        ],
        None => match frame.strip_prefix('\t') {
            Some(at) => {
                vec![Line::styled(format!("      {}", short_path(at)), Style::new().fg(Color::DarkGray))]
            }
            None => vec![Line::styled(format!("  {frame}"), function_style)],
        },
    }
}
