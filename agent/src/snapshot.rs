//! A snapshot: a plain copy of the registry and the runtime's workers, taken
//! off the hot path. Everything downstream (detect, render, http) reads
//! snapshots only.

use serde::Serialize;

use crate::clock;
use crate::tasks::{self, Registry, TaskRecord};

/// Whether a task is inside a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Running,
    Idle,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) state: State,
    /// Index into [`Snapshot::sites`]; [`Snapshot::location`] names it.
    pub(crate) site: u32,
    pub(crate) polls: u64,
    pub(crate) busy_ms: u64,
    pub(crate) age_ms: u64,
    /// Time since the last poll ended; 0 while running.
    pub(crate) idle_ms: u64,
    /// Time since the current poll started; 0 while idle.
    pub(crate) running_ms: u64,
    /// Deep mode: what the task waits on (`chan receive`, `sleep`, ...), from
    /// the leaf of its parked-at stack; `no waker` if it parked without
    /// registering one. `None` when unknown (lean mode).
    pub(crate) wait: Option<&'static str>,
    /// Deep mode: index into [`Snapshot::stacks`] of where it parked.
    pub(crate) parked_at: Option<u32>,
    /// Deep mode: the task parked again within the millisecond after
    /// `parked_at` was taken (stacks are taken at most once a millisecond
    /// per task), so it is probably, not certainly, where it waits now.
    pub(crate) parked_stale: bool,
    /// Deep mode: live clones of the task's waker (clones − drops − wakes).
    pub(crate) wakers: Option<i64>,
    /// Deep mode: woken since its last poll, so it is scheduled to run.
    pub(crate) woken: Option<bool>,
    /// Deep mode: times its waker was woken, and how many of those wakes
    /// the task made itself: inside its own poll, or handed to the
    /// scheduler's defer list by its own poll (`yield_now`).
    pub(crate) wakes: Option<u64>,
    pub(crate) self_wakes: Option<u64>,
    /// Deep mode: the name given with `tokio::task::Builder::name`.
    #[serde(serialize_with = "name_str")]
    pub(crate) name: Option<std::sync::Arc<str>>,
}

fn name_str<S: serde::Serializer>(name: &Option<std::sync::Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    name.as_deref().serialize(s)
}

impl Task {
    /// How long the task has been in its current state.
    pub(crate) fn state_ms(&self) -> u64 {
        self.idle_ms.max(self.running_ms)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Site {
    pub(crate) id: u32,
    /// `file:line:col`, or `<other>` for spawns past the site table's cap.
    pub(crate) location: String,
    pub(crate) live: u64,
    pub(crate) running: u64,
    pub(crate) idle: u64,
    pub(crate) spawned: u64,
    pub(crate) completed: u64,
    pub(crate) peak_live: u64,
    /// Live count sampled once a second, oldest first.
    pub(crate) history: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompletedTask {
    pub(crate) id: u64,
    pub(crate) spawned_at: String,
    pub(crate) polls: u64,
    pub(crate) busy_ms: u64,
    pub(crate) lived_ms: u64,
    pub(crate) ended_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) polls: Option<u64>,
    pub(crate) parks: u64,
    pub(crate) busy_ms: u64,
    pub(crate) steals: Option<u64>,
    pub(crate) local_queue: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Features {
    pub(crate) tokio_unstable: bool,
    pub(crate) task_tracking: bool,
    pub(crate) deep: bool,
    pub(crate) cpu: bool,
    pub(crate) heap: bool,
}

/// Every table of the agent has a cap; what did not fit is counted here.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Dropped {
    /// Spawns not tracked because the task table was full.
    pub(crate) tasks: u64,
    /// Spawns counted under `<other>` because the site table was full.
    pub(crate) sites_overflowed: u64,
    /// Deep mode: spawns without a wait reason because its task table was full.
    pub(crate) deep_tasks: u64,
    /// Deep mode: parked-at stacks not kept because the stack table was full.
    pub(crate) deep_stacks: u64,
    /// Deep mode: task names not kept because the name table (1024
    /// distinct names) was full; those tasks show no name.
    pub(crate) task_names: u64,
    /// Heap samples not taken: the live-sample table was full.
    pub(crate) heap_live_samples: u64,
    /// Heap samples kept under `<table full>`: the stack table was full.
    pub(crate) heap_stacks: u64,
    /// Completed tasks pushed out of the ring of `completed_kept`, at least
    /// (the ring is sharded, so a busy shard may push out a few more).
    pub(crate) completed_evicted: u64,
    /// Deep mode: tokio resources not tracked because the resource table
    /// (`TASKSCOPE_MAX_RESOURCES`) was full.
    pub(crate) resources: u64,
    /// Deep mode: waits on a resource not recorded because the wait table
    /// was full.
    pub(crate) resource_waits: u64,
    /// Deep mode: readers of a `RwLock` or permit holders of a `Semaphore`
    /// counted without their task id (beyond the few kept per resource).
    pub(crate) resource_holders: u64,
    /// Deep mode: resources whose creation file shows as `<other>` (the
    /// table of distinct files was full).
    pub(crate) resource_files: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgentInfo {
    pub(crate) version: &'static str,
    pub(crate) features: Features,
    /// Why task tracking is off and how to turn it on; absent when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) problem: Option<&'static str>,
    /// Why deep mode (wait reasons, parked-at stacks) is off; absent when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deep_problem: Option<&'static str>,
    pub(crate) dropped: Dropped,
    /// Panics caught in the agent's own code (handlers, renderers, its
    /// background threads); each was reported when caught.
    pub(crate) panics: u64,
    /// Requests and connections the endpoint turned away.
    pub(crate) http: crate::health::HttpCounters,
    pub(crate) uptime_ms: u64,
    pub(crate) snapshot_ms: u64,
    pub(crate) max_tasks: u32,
    pub(crate) max_sites: u32,
    pub(crate) completed_kept: usize,
    /// Address space reserved by the registry (pages are touched as used).
    pub(crate) reserved_bytes: usize,
    pub(crate) bytes_per_task: usize,
}

pub(crate) use crate::detect::Finding;

/// One frame of a symbolized stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Frame {
    pub(crate) function: String,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    /// False for frames of std, tokio, tracing and taskscope itself.
    pub(crate) user: bool,
}

/// A parked-at stack (deep mode), leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Stack {
    pub(crate) id: u32,
    /// The wait reason these frames imply.
    pub(crate) reason: &'static str,
    pub(crate) frames: Vec<Frame>,
}

impl Stack {
    /// The frames worth showing: the library call the app made, then the
    /// app's own frames; with how many frames were folded away.
    pub(crate) fn trimmed(&self) -> (Vec<&Frame>, usize) {
        let frames = &self.frames;
        let shown: Vec<&Frame> = match frames.iter().position(|f| f.user) {
            Some(first) => {
                // The app's frames end where tokio's task harness begins.
                let end = frames[first..].iter().position(is_harness).map_or(frames.len(), |i| first + i);
                let last = frames[..end].iter().rposition(|f| f.user).unwrap_or(first);
                frames[first.saturating_sub(1)..=last].iter().collect()
            }
            // No frame of the app (a bare `tokio::spawn(sleep(..))`): the
            // future the task was spawned with, the last library frame
            // before tokio's task harness polls it (or before the walk
            // stopped). The frames between it and the waker registration
            // (a timer entry, an `AtomicWaker`, `catch_unwind`) say nothing
            // the wait reason does not.
            None => frames
                .iter()
                .skip_while(|f| is_instrumentation(f))
                .take_while(|f| !is_harness(f))
                .filter(|f| !is_instrumentation(f))
                .last()
                .into_iter()
                .collect(),
        };
        let folded = frames.len() - shown.len();
        (shown, folded)
    }
}

/// A frame of the machinery that reported the waker: taskscope's subscriber,
/// tracing's dispatch, tokio's waker vtable, `Waker::clone`.
fn is_instrumentation(frame: &Frame) -> bool {
    let f = frame.function.trim_start_matches('<');
    let file = frame.file.as_deref().unwrap_or("");
    f.starts_with("taskscope::")
        || f.starts_with("tracing_core::")
        || f.starts_with("tracing::")
        || file.contains("/tracing-core-")
        || file.contains("/src/runtime/task/waker.rs")
        || f.starts_with("core::task::wake::")
        || file.ends_with("/core/src/task/wake.rs")
}

/// A frame of tokio's task harness, which polls the task's future (not its
/// waker vtable, which is instrumentation).
fn is_harness(frame: &Frame) -> bool {
    let file = frame.file.as_deref().unwrap_or("");
    let in_task = frame.function.starts_with("tokio::runtime::task::")
        || (file.contains("/tokio-") && file.contains("/src/runtime/task/"));
    in_task
        && !frame.function.starts_with("tokio::runtime::task::waker::")
        && !file.ends_with("/src/runtime/task/waker.rs")
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) tasks: Vec<Task>,
    /// Live tasks in all, before any paging of `tasks`.
    pub(crate) tasks_total: usize,
    pub(crate) sites: Vec<Site>,
    pub(crate) completed: Vec<CompletedTask>,
    pub(crate) workers: Vec<Worker>,
    /// Deep mode: the parked-at stacks that tasks refer to.
    pub(crate) stacks: Vec<Stack>,
    /// Deep mode: tokio resources that are held or waited on, and which
    /// resource each idle task waits on.
    pub(crate) resources: crate::deep::resources::Resources,
    /// The heap: exact totals, in-use estimates per spawn site, task and
    /// allocation site, growing sites; empty (saying how to enable it)
    /// without taskscope's allocator.
    pub(crate) heap: crate::heap::HeapSummary,
    pub(crate) findings: Vec<Finding>,
    pub(crate) agent: AgentInfo,
}

impl Snapshot {
    /// Where tasks of `site` were spawned.
    pub(crate) fn location(&self, site: u32) -> &str {
        self.sites.get(site as usize).map_or("<unknown>", |s| s.location.as_str())
    }
}

fn location_of(sites: &[tasks::SiteCounts], site: u32) -> String {
    match sites.get(site as usize).and_then(|s| s.location) {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "<other>".to_string(),
    }
}

/// `(id, index)` of each of `tasks`, by id: the order to visit tasks in
/// without moving them (a million 144-byte tasks cost more to sort than
/// their keys). A stable sort, which finds runs: the registry hands out
/// tasks in a few runs of ascending ids (its window, then its slab in
/// spawn order), so this takes a few ms for a million.
pub(crate) fn by_id(tasks: &[Task]) -> Vec<(u64, u32)> {
    let mut order: Vec<(u64, u32)> = tasks.iter().enumerate().map(|(i, t)| (t.id, i as u32)).collect();
    order.sort();
    order
}

/// Takes a snapshot of `registry` (if any) and of the runtime's workers.
pub(crate) fn take(registry: Option<&Registry>, runtime: Option<&tokio::runtime::Handle>) -> Snapshot {
    let started = std::time::Instant::now();
    let now = clock::precise_ms();
    // Running tasks per site; grown as tasks name sites.
    let mut running: Vec<u64> = Vec::new();
    // Straight from the registry's slots into the tasks: with a million of
    // them, every intermediate copy costs tens of ms in page faults alone.
    let mut tasks: Vec<Task> = Vec::with_capacity(registry.map_or(0, Registry::tasks_bound));
    if let Some(registry) = registry {
        registry.for_each_task(|r: TaskRecord| {
            let since = now.saturating_sub(r.last_ms);
            if r.running {
                let site = r.site as usize;
                if site >= running.len() {
                    running.resize(site + 1, 0);
                }
                running[site] += 1;
            }
            tasks.push(Task {
                id: r.id,
                state: if r.running { State::Running } else { State::Idle },
                site: r.site,
                polls: r.polls,
                busy_ms: r.busy_ms,
                age_ms: now.saturating_sub(r.spawned_ms),
                idle_ms: if r.running { 0 } else { since },
                running_ms: if r.running { since } else { 0 },
                wait: None,
                parked_at: None,
                parked_stale: false,
                wakers: None,
                woken: None,
                wakes: None,
                self_wakes: None,
                name: None,
            });
        });
    }
    let stacks = crate::deep::fill(&mut tasks);
    let resources = crate::deep::resources_of(&mut tasks);

    // The sites after the tasks: the registry only ever adds sites, so every
    // site a task names is in the list. (Read before, a task spawned at a
    // new site meanwhile named a site past its end.)
    let (site_counts, completed) = match registry {
        Some(r) => (r.sites(), r.completed()),
        None => (Vec::new(), Vec::new()),
    };
    let locations: Vec<String> =
        (0..site_counts.len() as u32).map(|s| location_of(&site_counts, s)).collect();
    running.resize(site_counts.len(), 0);

    let sites = site_counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let live = c.spawned.saturating_sub(c.completed);
            Site {
                id: i as u32,
                location: locations[i].clone(),
                live,
                running: running[i],
                idle: live.saturating_sub(running[i]),
                spawned: c.spawned,
                completed: c.completed,
                peak_live: c.peak,
                history: c.history.clone(),
            }
        })
        .collect();

    let completed = completed
        .iter()
        .map(|c| {
            let spawned_ms = c.spawned_ms();
            CompletedTask {
                id: c.id,
                spawned_at: locations.get(c.site()).cloned().unwrap_or_default(),
                polls: c.polls,
                busy_ms: c.busy_ms,
                lived_ms: c.ended_ms.saturating_sub(spawned_ms),
                ended_ms_ago: now.saturating_sub(c.ended_ms),
            }
        })
        .collect();

    let heap = crate::heap::summary();
    let problem = crate::health::tracking_problem();
    let agent = AgentInfo {
        version: env!("CARGO_PKG_VERSION"),
        features: Features {
            tokio_unstable: cfg!(tokio_unstable),
            task_tracking: problem.is_none(),
            deep: crate::deep::table().is_some(),
            cpu: crate::cpu::SUPPORTED,
            heap: crate::heap::installed(),
        },
        problem,
        deep_problem: crate::deep::problem(),
        dropped: dropped(registry, &site_counts, &heap),
        panics: crate::health::panics(),
        http: crate::health::http_counters(),
        uptime_ms: now,
        snapshot_ms: 0,
        max_tasks: registry.map_or(0, |r| r.capacity.tasks),
        max_sites: registry.map_or(0, |r| r.capacity.sites),
        completed_kept: registry.map_or(0, |r| r.capacity.completed),
        reserved_bytes: registry.map_or(0, |r| r.reserved_bytes()),
        bytes_per_task: registry.map_or(0, |r| r.bytes_per_task()),
    };

    let mut snapshot = Snapshot {
        tasks_total: tasks.len(),
        tasks,
        sites,
        completed,
        workers: runtime.map(workers).unwrap_or_default(),
        stacks,
        resources,
        heap,
        findings: Vec::new(),
        agent,
    };
    snapshot.agent.snapshot_ms = started.elapsed().as_millis() as u64;
    snapshot
}

fn dropped(
    registry: Option<&Registry>,
    sites: &[tasks::SiteCounts],
    heap: &crate::heap::HeapSummary,
) -> Dropped {
    use std::sync::atomic::Ordering::Relaxed;
    let (deep_tasks, deep_stacks) = crate::deep::dropped();
    let completed: u64 = sites.iter().map(|s| s.completed).sum();
    let res = crate::deep::resources::existing();
    let res = |f: fn(&crate::deep::resources::ResourceTable) -> &std::sync::atomic::AtomicU64| {
        res.map_or(0, |t| f(t).load(Relaxed))
    };
    Dropped {
        tasks: registry.map_or(0, |r| r.dropped_tasks.load(Relaxed)),
        sites_overflowed: registry.map_or(0, |r| r.sites.overflowed.load(Relaxed)),
        deep_tasks,
        deep_stacks,
        task_names: crate::deep::dropped_names(),
        heap_live_samples: heap.sampler.dropped_live_table_full,
        heap_stacks: heap.sampler.dropped_stack_table_full,
        completed_evicted: registry.map_or(0, |r| completed.saturating_sub(r.capacity.completed as u64)),
        resources: res(|t| &t.dropped),
        resource_waits: res(|t| &t.waits_dropped),
        resource_holders: res(|t| &t.holders_dropped),
        resource_files: res(|t| &t.files_dropped),
    }
}

fn workers(handle: &tokio::runtime::Handle) -> Vec<Worker> {
    let m = handle.metrics();
    (0..m.num_workers())
        .map(|i| Worker {
            index: i,
            #[cfg(tokio_unstable)]
            polls: Some(m.worker_poll_count(i)),
            #[cfg(not(tokio_unstable))]
            polls: None,
            parks: m.worker_park_count(i),
            busy_ms: m.worker_total_busy_duration(i).as_millis() as u64,
            #[cfg(tokio_unstable)]
            steals: Some(m.worker_steal_count(i)),
            #[cfg(not(tokio_unstable))]
            steals: None,
            #[cfg(tokio_unstable)]
            local_queue: Some(m.worker_local_queue_depth(i)),
            #[cfg(not(tokio_unstable))]
            local_queue: None,
        })
        .collect()
}

/// A small, fixed snapshot for the renderers' tests.
#[cfg(test)]
pub(crate) fn fixture() -> Snapshot {
    let task = |id, state, site, polls, busy_ms, age_ms, state_ms| Task {
        id,
        state,
        site,
        polls,
        busy_ms,
        age_ms,
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
    };
    let site = |id, location: &str, live, running, spawned, peak_live| Site {
        id,
        location: location.to_string(),
        live,
        running,
        idle: live - running,
        spawned,
        completed: spawned - live,
        peak_live,
        history: vec![live; 3],
    };
    let tasks = vec![
        task(42, State::Idle, 1, 3, 1, 300_000, 300_000),
        task(7, State::Running, 2, 120, 2_500, 3_000, 2_500),
        task(43, State::Idle, 1, 1, 0, 299_000, 298_000),
        task(9, State::Idle, 2, 15, 40, 3_000, 12),
    ];
    Snapshot {
        tasks_total: tasks.len(),
        tasks,
        sites: vec![
            site(0, "<other>", 0, 0, 0, 0),
            site(1, "src/handlers.rs:12:5", 2, 0, 1_000, 2),
            site(2, "src/main.rs:40:9", 2, 1, 2, 2),
        ],
        completed: Vec::new(),
        workers: Vec::new(),
        stacks: Vec::new(),
        resources: Default::default(),
        heap: crate::heap::HeapSummary::default(),
        findings: Vec::new(),
        agent: AgentInfo {
            version: "0.0.0",
            features: Features {
                tokio_unstable: true,
                task_tracking: true,
                deep: crate::deep::table().is_some(),
                cpu: false,
                heap: false,
            },
            problem: None,
            deep_problem: None,
            dropped: Dropped::default(),
            panics: 0,
            http: crate::health::HttpCounters::default(),
            uptime_ms: 400_000,
            snapshot_ms: 1,
            max_tasks: 1 << 20,
            max_sites: 4096,
            completed_kept: 4096,
            reserved_bytes: 0,
            bytes_per_task: 56,
        },
    }
}

/// [`fixture`] as deep mode sees it: wait reasons and parked-at stacks.
#[cfg(test)]
pub(crate) fn deep_fixture() -> Snapshot {
    let frame = |function: &str, file: &str, line, user| Frame {
        function: function.to_string(),
        file: Some(file.to_string()),
        line: Some(line),
        user,
    };
    let tokio = "/cargo/registry/src/index/tokio-1.54.1/src";
    let mut s = fixture();
    s.stacks = vec![
        Stack {
            id: 0,
            reason: "chan receive",
            frames: vec![
                frame(
                    "taskscope::deep::subscriber::DeepSubscriber::event",
                    "/taskscope/src/deep/subscriber.rs",
                    1,
                    false,
                ),
                frame(
                    "tokio::sync::mpsc::chan::Rx<T,S>::recv",
                    &format!("{tokio}/sync/mpsc/chan.rs"),
                    313,
                    false,
                ),
                frame(
                    "tokio::sync::mpsc::bounded::Receiver<T>::recv",
                    &format!("{tokio}/sync/mpsc/bounded.rs"),
                    245,
                    false,
                ),
                frame("app::handlers::handle_message::{{closure}}", "src/handlers.rs", 29, true),
                frame("app::handlers::consumer_loop::{{closure}}", "src/handlers.rs", 33, true),
                frame(
                    "tokio::runtime::task::core::Core<T,S>::poll",
                    &format!("{tokio}/runtime/task/core.rs"),
                    369,
                    false,
                ),
            ],
        },
        Stack {
            id: 1,
            reason: "sleep",
            frames: vec![
                frame(
                    "<tokio::time::sleep::Sleep as Future>::poll",
                    &format!("{tokio}/time/sleep.rs"),
                    457,
                    false,
                ),
                frame("app::ticker::{{closure}}", "src/main.rs", 41, true),
                frame(
                    "tokio::runtime::task::harness::poll_future",
                    &format!("{tokio}/runtime/task/harness.rs"),
                    537,
                    false,
                ),
            ],
        },
    ];
    for t in &mut s.tasks {
        let (wait, stack) = match t.id {
            42 | 43 => (Some("chan receive"), Some(0)),
            9 => (Some("sleep"), Some(1)),
            _ => (None, Some(1)),
        };
        t.wait = wait;
        t.parked_at = stack;
        t.wakers = Some(1);
        t.woken = Some(false);
        // Names from `tokio::task::Builder::name`, on some tasks only.
        t.name = match t.id {
            42 | 43 => Some("consumer".into()),
            9 => Some("ticker".into()),
            _ => None,
        };
    }
    s.agent.features.deep = true;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trimmed_stack_is_the_library_call_then_the_apps_frames() {
        let s = deep_fixture();
        let (shown, folded) = s.stacks[0].trimmed();
        let names: Vec<&str> = shown.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(
            names,
            [
                "tokio::sync::mpsc::bounded::Receiver<T>::recv",
                "app::handlers::handle_message::{{closure}}",
                "app::handlers::consumer_loop::{{closure}}"
            ]
        );
        assert_eq!(folded, 3);
    }

    /// A frame of a library (not the app's), at line 1 of `file`.
    fn at(function: &str, file: &str) -> Frame {
        Frame { function: function.into(), file: Some(file.into()), line: Some(1), user: false }
    }

    #[test]
    fn without_app_frames_only_the_future_the_task_was_spawned_with_is_shown() {
        // The stack of a release build's `tokio::spawn(sleep(one_hour))`,
        // leaf first, inlined frames resolved.
        let tokio = "/r/tokio-1.54.1/src";
        let std = "/rustc/x/library";
        let stack = Stack {
            id: 9,
            reason: "sleep",
            frames: vec![
                at("taskscope::deep::subscriber::DeepSubscriber::event", "/x/agent/src/deep/subscriber.rs"),
                at("tracing_core::event::Event::dispatch", "/r/tracing-core-0.1.36/src/event.rs"),
                at("tokio::runtime::task::waker::clone_waker", &format!("{tokio}/runtime/task/waker.rs")),
                at("<core::task::wake::Waker as Clone>::clone", &format!("{std}/core/src/task/wake.rs")),
                at(
                    "<&core::task::wake::Waker as tokio::sync::task::atomic_waker::WakerRef>::into_waker",
                    &format!("{tokio}/sync/task/atomic_waker.rs"),
                ),
                at("std::panicking::catch_unwind", &format!("{std}/std/src/panicking.rs")),
                at(
                    "tokio::sync::task::atomic_waker::AtomicWaker::register_by_ref",
                    &format!("{tokio}/sync/task/atomic_waker.rs"),
                ),
                at(
                    "tokio::runtime::time::entry::TimerEntry::poll_elapsed",
                    &format!("{tokio}/runtime/time/entry.rs"),
                ),
                at("tokio::time::sleep::Sleep::poll_elapsed", &format!("{tokio}/time/sleep.rs")),
                at(
                    "<tokio::time::sleep::Sleep as core::future::future::Future>::poll",
                    &format!("{tokio}/time/sleep.rs"),
                ),
                at(
                    "<tracing::instrument::Instrumented<T> as Future>::poll",
                    "/r/tracing-0.1.41/src/instrument.rs",
                ),
                at(
                    "tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
                    &format!("{tokio}/runtime/task/core.rs"),
                ),
                at(
                    "tokio::loom::std::unsafe_cell::UnsafeCell<T>::with_mut",
                    &format!("{tokio}/loom/std/unsafe_cell.rs"),
                ),
                at("tokio::runtime::task::core::Core<T,S>::poll", &format!("{tokio}/runtime/task/core.rs")),
                at(
                    "tokio::runtime::task::harness::Harness<T,S>::poll",
                    &format!("{tokio}/runtime/task/harness.rs"),
                ),
                at(
                    "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
                    &format!("{tokio}/runtime/scheduler/multi_thread/worker.rs"),
                ),
            ],
        };
        let (shown, folded) = stack.trimmed();
        let names: Vec<&str> = shown.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["<tokio::time::sleep::Sleep as core::future::future::Future>::poll"]);
        assert_eq!(folded, 15);

        // Cut short before the harness (the walk's depth limit): the
        // outermost library frame there is.
        let cut = Stack { frames: stack.frames[..9].to_vec(), ..stack };
        let (shown, folded) = cut.trimmed();
        let names: Vec<&str> = shown.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["tokio::time::sleep::Sleep::poll_elapsed"]);
        assert_eq!(folded, 8);
    }
}
