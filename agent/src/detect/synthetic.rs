//! Synthetic snapshots for the detectors' tests: a few lines describe a
//! service (an accept loop, a pool, a leak) in deep or lean form.

use crate::snapshot::{self, Site, Snapshot, State, Task};

#[derive(Debug)]
pub(super) struct Builder {
    deep: bool,
    snapshot: Snapshot,
    next_id: u64,
}

impl Builder {
    /// Deep mode: tasks carry their wait reason, wakers and wake state.
    pub(super) fn deep() -> Self {
        Builder::new(true)
    }

    /// Lean mode: the same calls, but the deep fields stay `None`.
    pub(super) fn lean() -> Self {
        Builder::new(false)
    }

    fn new(deep: bool) -> Self {
        let mut snapshot = snapshot::fixture();
        snapshot.tasks.clear();
        snapshot.sites.clear();
        snapshot.agent.features.deep = deep;
        let mut b = Builder { deep, snapshot, next_id: 1 };
        b.site("<other>");
        b
    }

    /// Adds a spawn site with no tasks and no history yet.
    pub(super) fn site(&mut self, location: &str) -> u32 {
        let id = self.snapshot.sites.len() as u32;
        self.snapshot.sites.push(Site {
            id,
            location: location.to_string(),
            live: 0,
            running: 0,
            idle: 0,
            spawned: 0,
            completed: 0,
            peak_live: 0,
            history: Vec::new(),
        });
        id
    }

    /// Sets a site's sampled live counts, oldest first.
    pub(super) fn history(&mut self, site: u32, history: &[u64]) {
        self.snapshot.sites[site as usize].history = history.to_vec();
    }

    fn push(&mut self, site: u32, state: State, state_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.snapshot.tasks.push(Task {
            id,
            state,
            site,
            polls: 3,
            busy_ms: 1,
            age_ms: state_ms + 10,
            idle_ms: if state == State::Idle { state_ms } else { 0 },
            running_ms: if state == State::Running { state_ms } else { 0 },
            wait: None,
            parked_at: None,
            parked_stale: false,
            wakers: None,
            woken: None,
            wakes: None,
            self_wakes: None,
            name: None,
        });
        id
    }

    /// An idle task parked on `wait`, holding one live waker (deep mode).
    pub(super) fn idle(&mut self, site: u32, idle_ms: u64, wait: &'static str) -> u64 {
        let id = self.push(site, State::Idle, idle_ms);
        if self.deep {
            let t = self.task(id);
            t.wait = Some(wait);
            t.wakers = Some(1);
            t.woken = Some(false);
        }
        id
    }

    /// An idle task that no one can wake: no live waker, not scheduled.
    pub(super) fn lost(&mut self, site: u32, idle_ms: u64) -> u64 {
        let id = self.idle(site, idle_ms, "chan receive");
        if self.deep {
            self.task(id).wakers = Some(0);
        }
        id
    }

    /// A task inside a poll that started `running_ms` ago.
    pub(super) fn running(&mut self, site: u32, running_ms: u64) -> u64 {
        self.push(site, State::Running, running_ms)
    }

    /// A worker of a busy pool: polled a moment ago, or being polled briefly.
    pub(super) fn busy(&mut self, site: u32, running_ms: u64) -> u64 {
        let id = self.running(site, running_ms);
        self.task(id).polls = 10_000;
        id
    }

    /// `n` short-lived request tasks, some running, some briefly waiting.
    pub(super) fn churn(&mut self, site: u32, n: u64) {
        for i in 0..n {
            if i % 3 == 0 {
                self.running(site, 2);
            } else {
                self.idle(site, 15, if i % 2 == 0 { "io wait" } else { "chan receive" });
            }
        }
        let s = &mut self.snapshot.sites[site as usize];
        s.completed += 10_000;
    }

    pub(super) fn task(&mut self, id: u64) -> &mut Task {
        self.snapshot.tasks.iter_mut().find(|t| t.id == id).expect("a task of this builder")
    }

    /// The snapshot, with each site's counts derived from its tasks.
    pub(super) fn build(mut self) -> Snapshot {
        for site in &mut self.snapshot.sites {
            let tasks = self.snapshot.tasks.iter().filter(|t| t.site == site.id);
            site.running = tasks.clone().filter(|t| t.state == State::Running).count() as u64;
            site.live = tasks.count() as u64;
            site.idle = site.live - site.running;
            site.spawned = site.live + site.completed;
            site.peak_live = site.history.iter().copied().chain([site.live]).max().unwrap_or(0);
        }
        self.snapshot.tasks_total = self.snapshot.tasks.len();
        self.snapshot
    }
}
