//! `taskscope top`: a live TUI in the spirit of tokio-console. [`state`] is
//! the model, [`keys`] what keys do to it, [`view`] and [`detail`] draw it, [`fetch`]
//! polls the agent on its own thread; this file owns the terminal (raw mode,
//! alternate screen, restored on every exit path, panics included) and the
//! event loop that ties them together.

pub mod detail;
pub mod fetch;
pub mod keys;
pub mod state;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;

use crate::client::Client;
use crate::model::check::exit;
use fetch::Update;
use state::State;

/// How often the screen redraws without input (the "ago" counters move).
const FRAME: Duration = Duration::from_millis(250);

pub fn run(client: Client, interval: Duration, limit: usize) -> Result<u8> {
    if !std::io::stdout().is_terminal() {
        bail!("top needs a terminal; in scripts use `taskscope findings`, `check` or `dump`");
    }
    let mut state = State::new(client.url().to_string(), limit);
    let fetcher = fetch::spawn(client, state.query.to_params(), interval);

    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen).context("cannot switch to the alternate screen")?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("cannot open the terminal")?;
    terminal.clear()?;

    while !state.quit {
        for update in fetcher.updates.try_iter() {
            apply(&mut state, update);
        }
        terminal.draw(|frame| view::draw(frame, &state, Instant::now()))?;
        if event::poll(FRAME)? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Release {
                    for request in state.on_key(key) {
                        let _ = fetcher.requests.send(request);
                    }
                }
            }
        }
    }
    Ok(exit::CLEAN)
}

/// Folds a fetcher update into the state.
pub fn apply(state: &mut State, update: Update) {
    match update {
        Update::Snapshot(s) => state.on_snapshot(*s),
        Update::Error(e) => state.on_error(e, Instant::now()),
        Update::Backtrace(id, bt) => {
            state.backtraces.insert(id, bt);
        }
    }
}

/// Leaves raw mode and the alternate screen when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
}
