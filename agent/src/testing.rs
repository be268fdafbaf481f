//! Tests that leak: Go's `goleak`, for tokio. A test that leaves tasks
//! behind (stuck on a channel no one will send on, or just never awaited)
//! fails with a report that names where each task was spawned, and, in deep
//! mode, where it is parked.
//!
//! The simplest way is `#[taskscope::test]`, a drop-in for `#[tokio::test]`
//! that runs the test on an instrumented runtime and then checks it:
//!
//! ```
//! #[taskscope::test]
//! async fn handles_a_request() {
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     tokio::spawn(async move { tx.send(42).unwrap() });
//!     assert_eq!(rx.await.unwrap(), 42);
//! } // fails here if a task spawned by the test is still alive
//! # fn main() {}
//! ```
//!
//! A test that builds its own runtime uses a [`LeakGuard`]: create it before
//! the code under test spawns anything, check it at the end.
//!
//! ```
//! use taskscope::testing::{LeakGuard, Options};
//!
//! let mut builder = tokio::runtime::Builder::new_current_thread();
//! taskscope::instrument(builder.enable_all());
//! let runtime = builder.build().unwrap();
//! runtime.block_on(async {
//!     let guard = LeakGuard::new();
//!     let task = tokio::spawn(async { 1 + 1 });
//!     assert_eq!(task.await.unwrap(), 2);
//!     guard.assert_no_leaks_async().await;
//! });
//! ```
//!
//! # How a guard tells its tasks from others
//!
//! The registry of tasks is process-wide, and `cargo test` runs tests in
//! parallel threads of one process, so other tests' tasks are in it too.
//!
//! - tokio numbers tasks in spawn order across the whole process, so the
//!   guard only looks at tasks spawned after it was created.
//! - A guard created inside a runtime (and `#[taskscope::test]`) also reads
//!   that runtime's own count of live tasks. When the runtime has no live
//!   task left, or no more than it had when the guard was created plus the
//!   tasks the [`Options`] exclude, the test passes whatever other tests are
//!   doing.
//! - When it does fail, the report lists every task spawned since the guard
//!   was created, and can then include tasks of tests that run at the same
//!   time. [`Options::only_spawned_in`] keeps to the spawns of given files,
//!   e.g. `file!()`.
//!
//! Only tasks of instrumented runtimes are tracked ([`instrument`](crate::instrument),
//! `#[taskscope::main]`, `#[taskscope::test]`), and tokio's hooks need
//! `--cfg tokio_unstable`; without them a check that finds live tasks says
//! so instead of passing. Tasks of a `LocalSet` are not tracked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::snapshot::{self, State};
use crate::tasks::SiteCounts;

/// How often a check looks again while it waits for tasks to finish.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// What a leak check counts, and how long it waits.
///
/// ```
/// use std::time::Duration;
/// use taskscope::testing::Options;
///
/// let options = Options::default()
///     .ignore("src/metrics.rs") // a reporter that runs for the whole process
///     .only_spawned_in(file!())
///     .grace(Duration::from_secs(5));
/// assert_eq!(options.ignore, ["src/metrics.rs"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Tasks whose spawn location (`file:line:col`) contains one of these
    /// strings are expected to outlive the test. Default: none.
    pub ignore: Vec<String>,
    /// When not empty, only tasks whose spawn location contains one of these
    /// strings count, e.g. `file!()` of the test. Default: empty, every task
    /// counts.
    pub only: Vec<String>,
    /// How long to wait for tasks that are still finishing: the check looks
    /// again every 10 ms until none is left or this much time has passed.
    /// Default 1 s.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { ignore: Vec::new(), only: Vec::new(), grace: Duration::from_secs(1) }
    }
}

impl Options {
    /// Ignores tasks spawned at a location containing `location`, such as
    /// `"src/pool.rs"` or `"src/pool.rs:42"`.
    pub fn ignore(mut self, location: impl Into<String>) -> Self {
        self.ignore.push(location.into());
        self
    }

    /// Counts only tasks spawned at a location containing `location`, such
    /// as `file!()`; may be given several times.
    pub fn only_spawned_in(mut self, location: impl Into<String>) -> Self {
        self.only.push(location.into());
        self
    }

    /// How long to wait for tasks that are still finishing. Default 1 s.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether a task spawned at `location` counts.
    fn counts(&self, location: &str) -> bool {
        !self.ignore.iter().any(|i| location.contains(i.as_str()))
            && (self.only.is_empty() || self.only.iter().any(|o| location.contains(o.as_str())))
    }
}

/// Remembers which tasks were alive when it was created; [`check`](Self::check)
/// or [`assert_no_leaks`](Self::assert_no_leaks) then fails if tasks spawned
/// since are still alive.
///
/// Inside an async test, use the `_async` forms: they let the runtime run
/// the tasks that are finishing while they wait. The blocking forms suit a
/// test that drives its own runtime (a current-thread runtime cannot run
/// anything while its thread is blocked in a check).
///
/// ```
/// use std::time::Duration;
/// use taskscope::testing::{LeakGuard, Options};
///
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// taskscope::instrument(builder.enable_all());
/// let runtime = builder.build().unwrap();
///
/// let guard = LeakGuard::with_options(Options::default().grace(Duration::from_millis(100)));
/// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
/// runtime.spawn(async move { let _ = rx.await; });
/// let report = guard.check().unwrap_err();
/// assert!(report.to_string().contains(file!()), "{report}");
/// drop(tx);
/// ```
#[derive(Debug)]
#[must_use = "a LeakGuard checks nothing until `check` or `assert_no_leaks` is called"]
pub struct LeakGuard {
    /// Tasks with a larger id were spawned after the guard was created.
    after_id: u64,
    options: Options,
    runtime: Option<Handle>,
    alive_at_start: usize,
}

impl Default for LeakGuard {
    fn default() -> Self {
        LeakGuard::new()
    }
}

impl LeakGuard {
    /// A guard with the default [`Options`].
    pub fn new() -> Self {
        LeakGuard::with_options(Options::default())
    }

    /// A guard that counts and waits as `options` say.
    pub fn with_options(options: Options) -> Self {
        LeakGuard::on(Handle::try_current().ok(), options)
    }

    /// A guard for the tasks of `runtime` (`None`: of the whole process).
    pub(crate) fn on(runtime: Option<Handle>, options: Options) -> Self {
        let after_id =
            crate::tasks::registry().map(|r| r.tasks().iter().map(|t| t.id).max().unwrap_or(0)).unwrap_or(0);
        let alive_at_start = runtime.as_ref().map_or(0, |h| h.metrics().num_alive_tasks());
        LeakGuard { after_id, options, runtime, alive_at_start }
    }

    /// Waits up to the grace period for the tasks spawned since the guard
    /// was created to finish, blocking the thread; the report names those
    /// still alive.
    pub fn check(self) -> Result<(), Report> {
        let deadline = Instant::now() + self.options.grace;
        loop {
            let last = Instant::now() >= deadline;
            let verdict = self.look(last);
            if verdict.is_ok() || last {
                return verdict.map_err(|mut report| {
                    if blocks_its_runtime() {
                        report.notes.push(
                            "the check blocked the thread of a current-thread runtime, so its tasks \
                             could not finish meanwhile: use check_async().await"
                                .to_string(),
                        );
                    }
                    report
                });
            }
            std::thread::sleep(LOOK_EVERY);
        }
    }

    /// [`check`](Self::check) for async code: yields to the runtime while it
    /// waits, so that tasks on the same thread can finish.
    pub async fn check_async(self) -> Result<(), Report> {
        let deadline = Instant::now() + self.options.grace;
        loop {
            let last = Instant::now() >= deadline;
            let verdict = self.look(last);
            if verdict.is_ok() || last {
                return verdict;
            }
            // Yielding rather than sleeping on tokio's timer: the runtime
            // may have been built without one.
            let next = Instant::now() + LOOK_EVERY;
            while Instant::now() < next {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Panics with the [`Report`] if tasks spawned since the guard was created
    /// are still alive after the grace period.
    #[track_caller]
    pub fn assert_no_leaks(self) {
        if let Err(report) = self.check() {
            panic!("{report}");
        }
    }

    /// [`assert_no_leaks`](Self::assert_no_leaks) for async code.
    pub async fn assert_no_leaks_async(self) {
        if let Err(report) = self.check_async().await {
            panic!("{report}");
        }
    }

    /// One look at the runtime and the registry. A `detailed` one, for the
    /// report, adds deep mode's wait reasons and parked-at stacks, which cost
    /// a full snapshot; the quick ones in between read the registry only,
    /// so that a current-thread runtime is not held up while its tasks finish.
    fn look(&self, detailed: bool) -> Result<(), Report> {
        let alive = self.runtime.as_ref().map(|h| h.metrics().num_alive_tasks());
        // A clean test usually ends here, without reading the registry.
        if alive.is_some_and(|alive| alive <= self.alive_at_start) {
            return Ok(());
        }
        let mut look =
            Look { leaked: Vec::new(), excluded: 0, tracked_any: false, alive, problem: tracking_problem() };
        let add = |look: &mut Look, task: LeakedTask| {
            look.tracked_any = true;
            if self.options.counts(&task.spawned_at) {
                look.leaked.push(task);
            } else {
                look.excluded += 1;
            }
        };
        if detailed {
            let snapshot = snapshot::take(crate::tasks::registry(), None);
            for t in snapshot.tasks.iter().filter(|t| t.id > self.after_id) {
                let task = LeakedTask {
                    id: t.id,
                    spawned_at: snapshot.location(t.site).to_string(),
                    running: t.state == State::Running,
                    since: Duration::from_millis(t.state_ms()),
                    polls: t.polls,
                    wait: t.wait.map(str::to_string),
                    parked_at: crate::detect::parked_at(&snapshot, t).unwrap_or_default(),
                };
                add(&mut look, task);
            }
        } else if let Some(registry) = crate::tasks::registry() {
            let sites = registry.sites();
            let now = crate::clock::precise_ms();
            for t in registry.tasks().into_iter().filter(|t| t.id > self.after_id) {
                let task = LeakedTask {
                    id: t.id,
                    spawned_at: location(&sites, t.site),
                    running: t.running,
                    since: Duration::from_millis(now.saturating_sub(t.last_ms)),
                    polls: t.polls,
                    wait: None,
                    parked_at: Vec::new(),
                };
                add(&mut look, task);
            }
        }
        judge(look, self.alive_at_start)
    }
}

/// `file:line:col` of a spawn site, as snapshots spell it.
fn location(sites: &[SiteCounts], site: u32) -> String {
    match sites.get(site as usize).and_then(|s| s.location) {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "<other>".to_string(),
    }
}

/// Checks that no tracked task is alive: on the current runtime when called
/// inside one, else in the whole process. Unlike a [`LeakGuard`], it counts
/// tasks spawned before the call too, so it suits a test binary with a single
/// test, or the end of a program.
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// taskscope::instrument(builder.enable_all());
/// builder.build().unwrap().block_on(async {
///     tokio::spawn(async {}).await.unwrap();
/// });
/// taskscope::testing::check_no_leaked_tasks(&Default::default()).unwrap();
/// ```
pub fn check_no_leaked_tasks(options: &Options) -> Result<(), Report> {
    let mut guard = LeakGuard::with_options(options.clone());
    guard.after_id = 0;
    guard.alive_at_start = 0;
    guard.check()
}

/// Panics with the [`Report`] of [`check_no_leaked_tasks`] with the default
/// options.
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// taskscope::instrument(builder.enable_all());
/// let runtime = builder.build().unwrap();
/// runtime.block_on(async {
///     tokio::spawn(async {}).await.unwrap();
/// });
/// drop(runtime); // cancels whatever it still runs
/// taskscope::testing::assert_no_leaked_tasks();
/// ```
#[track_caller]
pub fn assert_no_leaked_tasks() {
    if let Err(report) = check_no_leaked_tasks(&Options::default()) {
        panic!("{report}");
    }
}

/// A task found alive at the end of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakedTask {
    /// tokio's task id.
    pub id: u64,
    /// `file:line:col` of the spawn.
    pub spawned_at: String,
    /// Inside a poll, rather than waiting.
    pub running: bool,
    /// How long it has been running or waiting.
    pub since: Duration,
    /// How many times it was polled.
    pub polls: u64,
    /// What it waits on (`chan receive`, `sleep`, ...), in deep mode.
    pub wait: Option<String>,
    /// Where it is parked, as `function at file:line`, in deep mode.
    pub parked_at: Vec<String>,
}

/// Why a leak check failed: the tasks still alive, grouped by spawn site in
/// its `Display`.
///
/// ```
/// # let mut builder = tokio::runtime::Builder::new_multi_thread();
/// # taskscope::instrument(builder.enable_all());
/// # let runtime = builder.build().unwrap();
/// use std::time::Duration;
/// use taskscope::testing::{LeakGuard, Options};
///
/// let guard = LeakGuard::with_options(Options::default().grace(Duration::from_millis(100)));
/// runtime.spawn(std::future::pending::<()>());
/// let report = guard.check().unwrap_err();
/// for task in &report.leaked {
///     println!("task {} spawned at {}", task.id, task.spawned_at);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The tasks spawned since the guard was created that are still alive.
    pub leaked: Vec<LeakedTask>,
    /// Live tasks on the guard's runtime, when it was created in one.
    pub alive_on_runtime: Option<usize>,
    /// Why taskscope could not see the tasks, when it could not.
    pub problem: Option<String>,
    notes: Vec<String>,
}

impl std::error::Error for Report {}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.leaked.len();
        if let Some(problem) = &self.problem {
            match self.alive_on_runtime {
                Some(alive) => writeln!(
                    f,
                    "taskscope: {alive} {} still alive on the test's runtime, but taskscope cannot see them: \
                     {problem}",
                    tasks(alive)
                )?,
                None => writeln!(f, "taskscope cannot check for leaked tasks: {problem}")?,
            }
        } else {
            writeln!(
                f,
                "taskscope: {n} {} leaked: still alive after the test, spawned since it began",
                tasks(n)
            )?;
        }
        let mut sites: BTreeMap<&str, Vec<&LeakedTask>> = BTreeMap::new();
        for t in &self.leaked {
            sites.entry(&t.spawned_at).or_default().push(t);
        }
        let mut sites: Vec<_> = sites.into_iter().collect();
        // The largest group first, then in spawn order.
        sites.sort_by_key(|(_, group)| (std::cmp::Reverse(group.len()), group.iter().map(|t| t.id).min()));
        for (location, group) in sites {
            writeln!(f, "\n{} {} spawned at {location}", group.len(), tasks(group.len()))?;
            for t in group {
                let state = match (&t.wait, t.running) {
                    (_, true) => "running".to_string(),
                    (Some(wait), false) => format!("idle, {wait}"),
                    (None, false) => "idle".to_string(),
                };
                let since = crate::clock::human(t.since.as_millis() as u64);
                writeln!(f, "    task {} [{state}, {since}]: polls {}", t.id, t.polls)?;
                if !t.parked_at.is_empty() {
                    writeln!(f, "        parked at:")?;
                    for frame in &t.parked_at {
                        writeln!(f, "            {frame}")?;
                    }
                }
            }
        }
        if let Some(alive) = self.alive_on_runtime.filter(|&a| a < n) {
            writeln!(
                f,
                "\nThe test's runtime has {alive} live {}: the others are tasks of tests running at the \
                 same time; Options::only_spawned_in(file!()) keeps to this file's spawns.",
                tasks(alive)
            )?;
        }
        for note in &self.notes {
            writeln!(f, "\nNote: {note}")?;
        }
        if n > 0 {
            writeln!(f, "\nTo let a long-lived task outlive the test: Options::default().ignore(\"<spawn location>\").")?;
        }
        Ok(())
    }
}

fn tasks(n: usize) -> &'static str {
    if n == 1 {
        "task"
    } else {
        "tasks"
    }
}

/// What one look found.
#[derive(Debug)]
struct Look {
    /// Tasks spawned since the guard was created that the options count.
    leaked: Vec<LeakedTask>,
    /// Tasks spawned since that the options exclude.
    excluded: usize,
    /// Whether any task spawned since is tracked at all.
    tracked_any: bool,
    /// Live tasks on the guard's runtime.
    alive: Option<usize>,
    /// Why tasks are not tracked, if they are not.
    problem: Option<String>,
}

/// The verdict on one look; see the module's docs for the reasoning.
fn judge(look: Look, alive_at_start: usize) -> Result<(), Report> {
    let explained = alive_at_start + look.excluded;
    match look.alive {
        // Nothing of the guard's runtime is left, whatever other runtimes hold.
        Some(0) => return Ok(()),
        Some(alive) if alive <= explained => return Ok(()),
        _ => {}
    }
    let report = |leaked, problem, notes| Report { leaked, alive_on_runtime: look.alive, problem, notes };
    if !look.leaked.is_empty() {
        return Err(report(look.leaked, None, Vec::new()));
    }
    match (look.alive, look.problem) {
        (_, Some(problem)) => Err(report(Vec::new(), Some(problem), Vec::new())),
        // More tasks than at the start, none of them tracked: the runtime
        // was built without taskscope's hooks.
        (Some(_), None) if !look.tracked_any => Err(report(
            Vec::new(),
            Some(
                "the runtime is not instrumented: build it with taskscope::instrument(&mut builder), \
                 or use #[taskscope::test]"
                    .to_string(),
            ),
            Vec::new(),
        )),
        _ => Ok(()),
    }
}

/// Why taskscope cannot track tasks here, if it cannot.
fn tracking_problem() -> Option<String> {
    if crate::config::disabled() {
        return Some("TASKSCOPE_DISABLE is set, so no task is tracked".to_string());
    }
    crate::health::tracking_problem().map(str::to_string)
}

/// True on the thread of a current-thread runtime, which cannot run its
/// tasks while a check blocks it.
fn blocks_its_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, at: &str) -> LeakedTask {
        LeakedTask {
            id,
            spawned_at: at.to_string(),
            running: false,
            since: Duration::from_millis(1_500),
            polls: 1,
            wait: None,
            parked_at: Vec::new(),
        }
    }

    fn look(leaked: Vec<LeakedTask>, excluded: usize, alive: Option<usize>) -> Look {
        let tracked_any = !leaked.is_empty() || excluded > 0;
        Look { leaked, excluded, tracked_any, alive, problem: None }
    }

    #[test]
    fn a_runtime_with_no_live_task_passes_whatever_other_tests_leave() {
        let others = vec![task(9, "tests/other.rs:1:1")];
        assert!(judge(look(others.clone(), 0, Some(0)), 0).is_ok());
        let report = judge(look(others, 0, Some(1)), 0).unwrap_err();
        assert_eq!(report.leaked.len(), 1);
    }

    #[test]
    fn tasks_alive_at_the_start_and_excluded_ones_are_explained() {
        let others = vec![task(9, "tests/other.rs:1:1")];
        assert!(judge(look(others.clone(), 1, Some(3)), 2).is_ok());
        assert!(judge(look(others, 1, Some(4)), 2).is_err());
    }

    #[test]
    fn without_a_runtime_every_counted_task_is_a_leak() {
        assert!(judge(look(Vec::new(), 3, None), 0).is_ok());
        let report = judge(look(vec![task(9, "a.rs:1:1")], 0, None), 0).unwrap_err();
        assert_eq!(report.alive_on_runtime, None);
    }

    #[test]
    fn live_tasks_taskscope_cannot_see_fail_loudly() {
        let mut blind = look(Vec::new(), 0, Some(2));
        let report = judge(blind, 0).unwrap_err();
        assert!(report.to_string().contains("the runtime is not instrumented"), "{report}");
        blind = look(Vec::new(), 0, None);
        blind.problem = Some("needs --cfg tokio_unstable".to_string());
        let report = judge(blind, 0).unwrap_err();
        assert!(
            report.to_string().contains("cannot check for leaked tasks: needs --cfg tokio_unstable"),
            "{report}"
        );
    }

    #[test]
    fn the_report_groups_tasks_by_spawn_site() {
        let mut parked = task(3, "tests/a.rs:10:5");
        parked.wait = Some("chan receive".to_string());
        parked.parked_at = vec!["a::consumer::{{closure}} at tests/a.rs:12".to_string()];
        let leaked = vec![task(7, "tests/b.rs:20:9"), parked, task(4, "tests/a.rs:10:5")];
        let report = judge(look(leaked, 0, Some(3)), 0).unwrap_err();
        let text = report.to_string();
        assert!(text.starts_with("taskscope: 3 tasks leaked"), "{text}");
        let a = text.find("2 tasks spawned at tests/a.rs:10:5").expect(&text);
        let b = text.find("1 task spawned at tests/b.rs:20:9").expect(&text);
        assert!(a < b, "the larger group first: {text}");
        assert!(text.contains("task 3 [idle, chan receive, 1 second]: polls 1"), "{text}");
        assert!(text.contains("parked at:\n            a::consumer::{{closure}} at tests/a.rs:12"), "{text}");
        assert!(!text.contains("running at the same time"), "{text}");
    }

    #[test]
    fn the_report_says_when_other_tests_tasks_may_be_listed() {
        let leaked = vec![task(7, "tests/b.rs:20:9"), task(8, "tests/c.rs:1:1")];
        let text = judge(look(leaked, 0, Some(1)), 0).unwrap_err().to_string();
        assert!(text.contains("The test's runtime has 1 live task"), "{text}");
    }

    #[test]
    fn options_ignore_and_restrict_by_location() {
        let o = Options::default().ignore("src/pool.rs");
        assert!(!o.counts("src/pool.rs:4:9"));
        assert!(o.counts("src/main.rs:4:9"));
        let o = o.only_spawned_in("src/");
        assert!(o.counts("src/main.rs:4:9"));
        assert!(!o.counts("tests/it.rs:4:9"));
    }
}
