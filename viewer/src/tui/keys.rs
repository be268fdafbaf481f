//! What each key does in `taskscope top`: moving through a pane, switching
//! panes, sorting (by asking the agent again), filtering by spawn site or
//! state, opening a task's detail. Keys change the [`State`] and return the
//! requests for the fetcher, so all of it is tested without a terminal.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::{Backtrace, Pane, Request, State};

/// Past this many tasks, the detail view does not download the agent's
/// whole `debug=2` dump for one task's backtrace.
const MAX_DUMP_TASKS: usize = 20_000;

impl State {
    /// Applies a key; returns what to ask the agent for.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Request> {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Vec::new();
        }
        if self.detail.is_some() {
            if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Left) {
                self.detail = None;
            } else if key.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return Vec::new();
        }
        let pane = self.focus as usize;
        let rows = self.rows(self.focus);
        let before = self.query.clone();
        let mut requests = Vec::new();
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Up | KeyCode::Char('k') => self.selected[pane] = self.selected[pane].saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected[pane] = (self.selected[pane] + 1).min(rows.saturating_sub(1))
            }
            KeyCode::PageUp => self.selected[pane] = self.selected[pane].saturating_sub(10),
            KeyCode::PageDown => self.selected[pane] = (self.selected[pane] + 10).min(rows.saturating_sub(1)),
            KeyCode::Home | KeyCode::Char('g') => self.selected[pane] = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected[pane] = rows.saturating_sub(1),
            KeyCode::Tab => self.focus = next_pane(self.focus, true),
            KeyCode::BackTab => self.focus = next_pane(self.focus, false),
            KeyCode::Right | KeyCode::Char('s') => self.query.sort = self.query.sort.step(true),
            KeyCode::Left | KeyCode::Char('S') => self.query.sort = self.query.sort.step(false),
            KeyCode::Char('r') => self.query.descending = !self.query.descending,
            KeyCode::Char('f') => {
                self.query.state = match self.query.state {
                    None => Some("idle"),
                    Some("idle") => Some("running"),
                    _ => None,
                }
            }
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                requests.push(Request::Pause(self.paused));
            }
            KeyCode::Esc => self.query.site = None,
            KeyCode::Enter => requests.extend(self.enter()),
            _ => {}
        }
        if self.query != before {
            self.selected[0] = 0;
            requests.push(Request::Fetch(self.query.to_params()));
        }
        requests
    }

    /// Enter: a task opens its detail view; a site or a finding filters the
    /// tasks to its spawn site.
    fn enter(&mut self) -> Option<Request> {
        match self.focus {
            Pane::Tasks => {
                let task = self.selected_task()?.clone();
                self.detail = Some(task.id);
                if self.backtrace(&task) != Backtrace::Loading {
                    return None;
                }
                let total = self.snapshot.as_ref().map_or(0, |s| s.tasks_total);
                if total > MAX_DUMP_TASKS {
                    let why = format!(
                        "not in the snapshot, and the agent's dump of {total} tasks is too large to fetch for one task (try: taskscope dump URL | grep -A12 'task {} [')",
                        task.id
                    );
                    self.backtraces.insert(task.id, Backtrace::Unavailable(why));
                    return None;
                }
                self.backtraces.insert(task.id, Backtrace::Loading);
                Some(Request::Backtrace(task.id))
            }
            Pane::Sites => {
                let id = self.sites().get(self.selected[2])?.id;
                self.query.site = Some(id);
                self.focus = Pane::Tasks;
                None
            }
            Pane::Findings => {
                let s = self.snapshot.as_ref()?;
                let location = &s.findings.get(self.selected[1])?.location;
                let id = s.site_at(location)?.id;
                self.query.site = Some(id);
                self.focus = Pane::Tasks;
                None
            }
        }
    }
}

fn next_pane(pane: Pane, forward: bool) -> Pane {
    match (pane, forward) {
        (Pane::Tasks, true) | (Pane::Sites, false) => Pane::Findings,
        (Pane::Findings, true) | (Pane::Tasks, false) => Pane::Sites,
        (Pane::Sites, true) | (Pane::Findings, false) => Pane::Tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, LEAKY};
    use crate::model::flags::Flag;
    use ratatui::crossterm::event::KeyModifiers;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn state() -> State {
        let mut s = State::new("http://127.0.0.1:6060".into(), 500);
        s.on_snapshot(snapshot(LEAKY));
        s
    }

    #[test]
    fn sorting_keys_ask_the_agent_again() {
        let mut s = state();
        assert_eq!(s.query.to_params(), "sort=idle&order=desc&limit=500");
        assert_eq!(
            s.on_key(key(KeyCode::Char('s'))),
            [Request::Fetch("sort=polls&order=desc&limit=500".into())]
        );
        assert_eq!(
            s.on_key(key(KeyCode::Char('r'))),
            [Request::Fetch("sort=polls&order=asc&limit=500".into())]
        );
        assert_eq!(
            s.on_key(key(KeyCode::Char('f'))),
            [Request::Fetch("sort=polls&order=asc&limit=500&state=idle".into())]
        );
        assert!(s.on_key(key(KeyCode::Down)).is_empty(), "moving needs no request");
    }

    #[test]
    fn enter_on_a_site_filters_tasks_to_it_and_esc_clears() {
        let mut s = state();
        s.on_key(key(KeyCode::Tab));
        s.on_key(key(KeyCode::Tab));
        assert_eq!(s.focus, Pane::Sites);
        let top = s.sites()[0].id;
        let r = s.on_key(key(KeyCode::Enter));
        assert_eq!(r, [Request::Fetch(format!("sort=idle&order=desc&limit=500&site={top}"))]);
        assert_eq!(s.focus, Pane::Tasks);
        assert_eq!(s.on_key(key(KeyCode::Esc)), [Request::Fetch("sort=idle&order=desc&limit=500".into())]);
    }

    #[test]
    fn a_flagged_task_has_its_backtrace_at_once_and_others_ask_for_it() {
        let mut s = state();
        let stuck =
            s.tasks().iter().position(|t| s.flags.of(t).is_some_and(|f| f.flag == Flag::Stuck)).unwrap();
        s.selected[0] = stuck;
        assert!(s.on_key(key(KeyCode::Enter)).is_empty());
        assert!(matches!(s.backtrace(s.selected_task().unwrap()), Backtrace::Lines(l) if !l.is_empty()));
        s.on_key(key(KeyCode::Esc));
        assert_eq!(s.detail, None);
        let fine = s.tasks().iter().position(|t| s.flags.of(t).is_none()).unwrap();
        s.selected[0] = fine;
        let id = s.tasks()[fine].id;
        assert_eq!(s.on_key(key(KeyCode::Enter)), [Request::Backtrace(id)]);
        assert_eq!(s.detail, Some(id));
    }
}
