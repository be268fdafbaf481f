//! The TUI drawn on ratatui's `TestBackend` from recorded snapshots: no
//! terminal, no agent. `TASKSCOPE_PRINT_FRAMES=1` prints the frames.

use std::time::Instant;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use super::state::{Backtrace, Pane, State};
use super::view;
use crate::model::fixtures::{snapshot, HEALTHY, LEAKY};

const WIDTH: u16 = 140;
const HEIGHT: u16 = 40;

fn render(state: &State) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
    terminal.draw(|f| view::draw(f, state, Instant::now())).unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer's text, one line per row, trailing spaces trimmed.
fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width).map(|x| buffer[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if std::env::var_os("TASKSCOPE_PRINT_FRAMES").is_some() {
        println!("{out}");
    }
    out
}

fn row_of(buffer: &Buffer, needle: &str) -> u16 {
    let screen = text(buffer);
    screen
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}")) as u16
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn leaky() -> State {
    let mut state = State::new("http://127.0.0.1:6060".into(), 500);
    state.on_snapshot(snapshot(LEAKY));
    state
}

#[test]
fn a_stuck_row_is_red_and_labelled() {
    let state = leaky();
    let buffer = render(&state);
    let screen = text(&buffer);
    // The task stuck on a channel receive at `fn stuck` (main.rs:39:5).
    let stuck = state.tasks().iter().find(|t| t.spawned_at.ends_with("main.rs:39:5")).unwrap();
    let y = (0..HEIGHT)
        .find(|&y| {
            let line: String = (0..WIDTH).map(|x| buffer[(x, y)].symbol().to_string()).collect();
            line.contains(&format!(" {} ", stuck.id)) && line.contains("main.rs:39:5")
        })
        .unwrap_or_else(|| panic!("task {} not on screen:\n{screen}", stuck.id));
    let line: String = (0..WIDTH).map(|x| buffer[(x, y)].symbol().to_string()).collect();
    assert!(line.contains("STUCK") && line.contains("chan receive"), "{line}");
    let x = line.find("STUCK").unwrap() as u16;
    assert_eq!(buffer[(x, y)].fg, Color::Red, "stuck rows are red");
    assert!(buffer[(x, y)].modifier.contains(Modifier::BOLD));
    // And a healthy row is not: the hour-long sleeper at main.rs:132:5.
    let y = row_of(&buffer, "main.rs:132:5");
    assert_eq!(buffer[(12, y)].fg, Color::Reset, "{screen}");
}

#[test]
fn lost_wakers_and_leaks_are_labelled_too() {
    let screen = text(&render(&leaky()));
    let lost = screen.lines().find(|l| l.contains("main.rs:89:5")).unwrap();
    assert!(lost.contains("NO WAKER") && lost.contains("no waker"), "{lost}");
    assert!(screen.lines().any(|l| l.contains("STUCK") && l.contains("main.rs:48:5")), "{screen}");
}

#[test]
fn the_findings_pane_lists_the_findings() {
    let state = leaky();
    let screen = text(&render(&state));
    assert!(screen.contains("Findings: 7"), "{screen}");
    for kind in ["CRIT lost_waker", "WARN stuck_task", "WARN leaking_spawn_site"] {
        assert!(screen.contains(kind), "{kind} missing:\n{screen}");
    }
    assert!(screen.contains("findings: 1 critical, 6 warning"), "the status line counts them:\n{screen}");
}

#[test]
fn the_sites_pane_counts_live_tasks_with_a_trend() {
    let screen = text(&render(&leaky()));
    let leak = screen
        .lines()
        .find(|l| l.contains("main.rs:48:5") && l.contains('█'))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(leak.contains("121"), "{leak}");
}

#[test]
fn the_detail_view_shows_the_backtrace() {
    let mut state = leaky();
    let i = state.tasks().iter().position(|t| t.spawned_at.ends_with("main.rs:39:5")).unwrap();
    state.selected[0] = i;
    state.on_key(key(KeyCode::Enter));
    let screen = text(&render(&state));
    assert!(screen.contains("STUCK"), "{screen}");
    assert!(screen.contains("async backtrace"), "{screen}");
    let leaf = screen.find("tokio::sync::mpsc::bounded::Receiver<T>::recv::{{closure}}").expect(&screen);
    let user = screen.find("leaky_server::stuck::{{closure}}").expect(&screen);
    assert!(leaf < user, "leaf first:\n{screen}");
    assert!(
        screen.contains("tokio-1.54.1/src/sync/mpsc/bounded.rs:245"),
        "registry paths are shortened:\n{screen}"
    );
}

#[test]
fn a_fetched_backtrace_shows_in_the_detail_view() {
    let mut state = leaky();
    let i = state.tasks().iter().position(|t| t.spawned_at.ends_with("main.rs:126:5")).unwrap();
    state.selected[0] = i;
    state.on_key(key(KeyCode::Enter));
    assert!(text(&render(&state)).contains("loading from the agent's task dump"));
    let id = state.tasks()[i].id;
    let bt = super::fetch::backtrace_from_dump(crate::model::fixtures::LEAKY_DEBUG2, id);
    super::apply(&mut state, super::fetch::Update::Backtrace(id, bt));
    let screen = text(&render(&state));
    assert!(screen.contains("tokio::time::interval::Interval::tick"), "{screen}");
    assert!(screen.contains("frames of tokio, std and taskscope folded"), "{screen}");
}

#[test]
fn a_lost_agent_is_shown_and_the_last_data_kept() {
    let mut state = leaky();
    super::apply(
        &mut state,
        super::fetch::Update::Error("cannot reach the agent: connection refused".into()),
    );
    let screen = text(&render(&state));
    let status = screen.lines().next().unwrap();
    assert!(
        status.contains("disconnected")
            && status.contains("connection refused")
            && status.contains("retrying"),
        "{status}"
    );
    assert!(screen.contains("STUCK"), "rows stay:\n{screen}");
    assert!(matches!(state.backtrace(&state.tasks()[0]), Backtrace::Lines(_) | Backtrace::Loading));
}

#[test]
fn a_healthy_app_shows_no_flags() {
    let mut state = State::new("http://127.0.0.1:6060".into(), 500);
    state.on_snapshot(snapshot(HEALTHY));
    let screen = text(&render(&state));
    assert!(screen.contains("no findings"), "{screen}");
    for label in ["STUCK", "LEAKING", "NO WAKER", "BLOCKING"] {
        assert!(!screen.contains(label), "{label}:\n{screen}");
    }
}

#[test]
fn the_help_bar_and_the_sort_column_show() {
    let mut state = leaky();
    let screen = text(&render(&state));
    assert!(screen.lines().last().unwrap().contains("q quit"), "{screen}");
    assert!(screen.contains("Idle▼"), "{screen}");
    state.on_key(key(KeyCode::Char('s')));
    state.on_key(key(KeyCode::Char('r')));
    state.focus = Pane::Tasks;
    assert!(text(&render(&state)).contains("Polls▲"));
}

#[test]
fn a_named_task_shows_its_name_before_its_spawn_site() {
    let mut s = snapshot(LEAKY);
    // The task that lost its waker, on the first row.
    let t = s.tasks.iter_mut().find(|t| t.spawned_at.ends_with("main.rs:89:5")).unwrap();
    t.name = Some("flusher".into());
    let id = t.id;
    let mut state = State::new("http://127.0.0.1:6060".into(), 500);
    state.on_snapshot(s);
    let screen = text(&render(&state));
    let line = screen
        .lines()
        .find(|l| l.contains(&format!(" {id} ")) && l.contains("flusher "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(line.contains("main.rs:"), "{line}");
}
