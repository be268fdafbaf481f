//! Deep mode: tokio's own instrumentation (spawn spans, poll enter/exit,
//! waker events) tells where each task is parked, whether it holds a live
//! waker, and whether it has been woken.
//!
//! Two readers feed one [`DeepTable`]: the lean [`subscriber`], which
//! taskscope installs as the global default at the first task spawn unless
//! the app has installed a subscriber by then, and the [`layer`](crate::layer)
//! that an app with its own `tracing_subscriber` setup adds to it. Waiting for
//! the first spawn (rather than installing when the runtime is built) lets
//! an app call `tracing_subscriber::fmt().init()` at the top of `main`
//! without a panic: then taskscope steps aside and says so in
//! `agent.deep_problem`.

mod deferred;
#[cfg(feature = "deep")]
mod events;
mod keys;
#[cfg(feature = "deep")]
mod layer;
mod names;
#[cfg(feature = "deep")]
mod resource_events;
pub(crate) mod resources;
#[cfg(feature = "deep")]
mod subscriber;
mod table;

pub(crate) use table::{DeepTable, DeepView};

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::OnceLock;

use crate::config::DeepMode;

/// Alone in its cache lines: the subscriber reads it on every event.
#[repr(align(128))]
struct Alone(OnceLock<DeepTable>);

static TABLE: Alone = Alone(OnceLock::new());

/// The deep table once made, whether or not a reader feeds it yet.
#[cfg(feature = "deep")]
#[inline(always)]
fn made() -> Option<&'static DeepTable> {
    TABLE.0.get()
}
/// taskscope's global subscriber feeds the table. (A layer in the app's
/// subscriber feeds it once a spawn span has reached it.)
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// A global install waits for the first task spawn.
static ARMED: AtomicBool = AtomicBool::new(false);
/// taskscope's own subscriber is the global default.
static OWNS_GLOBAL: AtomicBool = AtomicBool::new(false);
/// The app asked for [`crate::layer`]; taskscope installs nothing global.
static LAYER_BUILT: AtomicBool = AtomicBool::new(false);

/// The deep table, if a reader feeds it.
pub(crate) fn table() -> Option<&'static DeepTable> {
    if fed() {
        TABLE.0.get()
    } else {
        None
    }
}

fn fed() -> bool {
    ACTIVE.load(Relaxed) || (LAYER_BUILT.load(Relaxed) && spawn_seen())
}

#[cfg(feature = "deep")]
fn spawn_seen() -> bool {
    events::spawn_seen()
}

#[cfg(not(feature = "deep"))]
fn spawn_seen() -> bool {
    false
}

#[cfg(feature = "deep")]
fn table_or_init(capacity: u32) -> &'static DeepTable {
    TABLE.0.get_or_init(|| DeepTable::new(capacity))
}

/// True when taskscope's own subscriber is the global default, so that the
/// agent's own `tracing` events would reach no one (see
/// [`crate::watch::app_listens`]).
pub(crate) fn owns_global() -> bool {
    OWNS_GLOBAL.load(Relaxed)
}

/// Spawns not tracked in deep mode (the deep table was full) and parked-at
/// stacks not kept (the stack table was full).
pub(crate) fn dropped() -> (u64, u64) {
    TABLE.0.get().map_or((0, 0), |t| (t.dropped.load(Relaxed), t.stacks.dropped.load(Relaxed)))
}

/// Why deep mode is off although it is compiled in, and what to do; `None`
/// when it is on, not yet started (no task spawned), or when the app chose
/// lean mode (`default-features = false` or `TASKSCOPE_DEEP=off`).
pub(crate) fn problem() -> Option<&'static str> {
    if !cfg!(feature = "deep") || crate::config::deep_mode() == DeepMode::Off {
        return None;
    }
    let spawned = crate::tasks::registry().is_some_and(|r| r.sites().iter().any(|s| s.spawned > 0));
    if LAYER_BUILT.load(Relaxed) {
        (spawned && !spawn_seen()).then_some(
            "deep mode is off: no tokio spawn span reached taskscope::layer(). Install the \
             subscriber that holds it (.init() or .try_init()) before spawning tasks, and do not \
             filter tokio's TRACE-level instrumentation out for the whole subscriber: give the \
             app's other layers their own filters (.with_filter) instead of .with(filter), and \
             avoid tracing's static max_level_* features",
        )
    } else if !crate::health::instrumented() || fed() || ARMED.load(Relaxed) {
        None
    } else if crate::config::deep_mode() == DeepMode::Layer {
        Some(
            "deep mode is off: TASKSCOPE_DEEP=layer, so taskscope installs no subscriber, but \
             taskscope::layer() was not added to the app's subscriber",
        )
    } else {
        Some(
            "deep mode is off: the app installed its own global tracing subscriber before the first \
             task was spawned; add taskscope::layer() to it \
             (tracing_subscriber::registry().with(..).with(taskscope::layer())) for wait reasons and \
             parked-at stacks",
        )
    }
}

/// Task names not kept because the name table was full.
pub(crate) fn dropped_names() -> u64 {
    names::dropped()
}

/// Fills the deep-mode fields of `tasks` and returns the stacks they refer
/// to, symbolized. Does nothing in lean mode.
pub(crate) fn fill(tasks: &mut [crate::snapshot::Task]) -> Vec<crate::snapshot::Stack> {
    use std::collections::HashMap;
    let Some(table) = table() else { return Vec::new() };
    // A merge of two lists sorted by task id: much cheaper than a hash map
    // of a million views. The tasks stay where they are; their indices are
    // sorted instead (see `snapshot::by_id`). The views come in a few runs
    // of ascending ids too, which a stable sort finds.
    let mut views: Vec<(u64, DeepView)> = table.read();
    views.sort_by_key(|&(id, _)| id);
    let order = crate::snapshot::by_id(tasks);
    let mut next = 0;
    let mut stacks: HashMap<u32, crate::snapshot::Stack> = HashMap::new();
    // Each name once per snapshot, shared by its tasks.
    let mut named: HashMap<u64, Option<std::sync::Arc<str>>> = HashMap::new();
    for &(_, index) in &order {
        let task = &mut tasks[index as usize];
        while views.get(next).is_some_and(|&(id, _)| id < task.id) {
            next += 1;
        }
        let Some((_, view)) = views.get(next).filter(|&&(id, _)| id == task.id) else { continue };
        task.wakers = Some(view.wakers);
        task.woken = Some(view.woken);
        task.wakes = Some(view.wakes);
        if view.name != 0 {
            task.name =
                named.entry(view.name).or_insert_with(|| names::get(view.name).map(Into::into)).clone();
        }
        task.self_wakes = Some(view.self_wakes.min(view.wakes));
        if let Some(id) = view.parked {
            if let std::collections::hash_map::Entry::Vacant(entry) = stacks.entry(id) {
                if let Some(addrs) = table.stacks.get(id) {
                    let frames: Vec<_> = addrs.iter().flat_map(|&a| crate::stacks::symbolize(a)).collect();
                    let reason = crate::stacks::wait_reason(&frames);
                    // From now on, the scheduler's wakes of tasks parked
                    // here count as self-wakes (see deferred.rs).
                    if deferred::defers(&frames) {
                        deferred::mark(id);
                    }
                    entry.insert(crate::snapshot::Stack { id, reason, frames });
                }
            }
            task.parked_at = stacks.contains_key(&id).then_some(id);
            task.parked_stale = view.parked_stale && task.parked_at.is_some();
        }
        if task.state == crate::snapshot::State::Idle {
            task.wait = Some(if view.wakers <= 0 && !view.woken {
                "no waker"
            } else {
                task.parked_at.and_then(|id| stacks.get(&id)).map_or("idle", |s| s.reason)
            });
        }
    }
    let mut stacks: Vec<_> = stacks.into_values().collect();
    stacks.sort_by_key(|s| s.id);
    stacks
}

/// The resources part of a snapshot of `tasks` (after [`fill`]): the
/// tokio resources that are held or waited on. A task counts as waiting only
/// while it is idle: one that was woken and is running again has moved on.
///
/// An idle task waiting on a lock gets that lock's wait reason (`mutex
/// lock`, `rwlock`, `semaphore acquire`): its last `poll_op` says so for
/// certain, where its parked-at stack may be an earlier one (stacks are
/// taken at most once a millisecond), unless it has no live waker.
pub(crate) fn resources_of(tasks: &mut [crate::snapshot::Task]) -> resources::Resources {
    let tracked = table().is_some() && resources::enabled_by_env();
    let Some(resource_table) = resources::existing().filter(|_| tracked) else {
        return resources::Resources { tracked, ..Default::default() };
    };
    let mut view = resource_table.read();
    if view.waits.is_empty() {
        return view;
    }
    // Only idle tasks wait: one woken and running again has moved on. The
    // waits are few; the tasks may be a million.
    let waiting: std::collections::HashMap<u64, u64> = view.waits.iter().copied().collect();
    let mut idle = std::collections::HashSet::with_capacity(waiting.len());
    for task in tasks.iter_mut() {
        let Some(&key) = waiting.get(&task.id) else { continue };
        if task.state != crate::snapshot::State::Idle {
            continue;
        }
        idle.insert(task.id);
        let reason = view.get(key).and_then(|r| r.kind.wait_reason());
        if let (Some(reason), true) = (reason, task.wait != Some("no waker")) {
            task.wait = Some(reason);
        }
    }
    view.waits.retain(|(task, _)| idle.contains(task));
    for r in &mut view.list {
        r.waiters.retain(|t| idle.contains(t));
    }
    view.list.retain(|r| {
        !r.held_by.is_empty()
            || r.held_outside
            || r.more_holders > 0
            || r.more_permits > 0
            || !r.waiters.is_empty()
    });
    view
}

/// Called by `instrument`: prepares the table (off the spawn path) and arms
/// the global install for the first task spawn, unless the app reads deep
/// mode through a layer or turned it off.
#[cfg(feature = "deep")]
pub(crate) fn arm(capacity: u32) {
    if crate::config::deep_mode() != DeepMode::Auto || LAYER_BUILT.load(Relaxed) || fed() {
        return;
    }
    table_or_init(capacity);
    // Read `TASKSCOPE_RESOURCES` and `TASKSCOPE_MAX_RESOURCES` now (and
    // make the resource table, from zeroed memory): a bad value is reported
    // through `tracing`, which must not happen inside the subscriber's
    // callbacks.
    resources::table();
    ARMED.store(true, Release);
}

/// Called from the spawn hook: one relaxed load once the install is done.
#[cfg(feature = "deep")]
#[inline(always)]
pub(crate) fn on_spawn() {
    if ARMED.load(Relaxed) {
        install_global();
    }
}

/// Installs taskscope's subscriber as the global default, once, if the app
/// has not installed one (nor asked for the layer) by the first spawn.
#[cfg(feature = "deep")]
#[cold]
#[inline(never)]
fn install_global() {
    if !ARMED.swap(false, AcqRel) || LAYER_BUILT.load(Acquire) {
        return;
    }
    let Some(table) = TABLE.0.get() else { return };
    let (dispatch, _console) = global_dispatch(table);
    // The app may have installed its own subscriber: then this fails, and
    // `problem` says what to do. Only the winner starts the console server.
    if tracing_core::dispatcher::set_global_default(dispatch).is_ok() {
        OWNS_GLOBAL.store(true, Relaxed);
        ACTIVE.store(true, Release);
        #[cfg(feature = "console")]
        if let Some(console) = _console {
            crate::console::serve(console);
        }
    }
}

#[cfg(all(feature = "deep", not(feature = "console")))]
fn global_dispatch(_table: &'static DeepTable) -> (tracing_core::Dispatch, Option<()>) {
    (tracing_core::Dispatch::new(subscriber::DeepSubscriber::new()), None)
}

/// With the `console` feature: a `Registry` with console-subscriber's layer
/// and taskscope's, so that tokio-console and taskscope read the same app;
/// the lean subscriber if the console's address cannot be bound.
#[cfg(feature = "console")]
fn global_dispatch(table: &'static DeepTable) -> (tracing_core::Dispatch, Option<crate::console::Pending>) {
    use tracing_subscriber::layer::SubscriberExt;
    match crate::console::build() {
        Some((console, pending)) => (
            tracing_core::Dispatch::new(
                tracing_subscriber::registry().with(console).with(layer::filtered(table)),
            ),
            Some(pending),
        ),
        None => (tracing_core::Dispatch::new(subscriber::DeepSubscriber::new()), None),
    }
}

/// Deep mode for an app that sets up `tracing_subscriber` itself: a layer to
/// add to its subscriber, which gives wait reasons and parked-at stacks as
/// taskscope's own subscriber would. Creating it tells taskscope not to
/// install a global subscriber of its own. Give the app's other layers their
/// own filters (`.with_filter(...)`) rather than a global one, which would
/// also drop tokio's TRACE-level instrumentation that this layer reads.
///
/// With `TASKSCOPE_DEEP=off` or `TASKSCOPE_DISABLE=1` it is a layer that does
/// nothing.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tracing_subscriber::util::SubscriberInitExt;
///
/// tracing_subscriber::registry()
///     // .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
///     .with(taskscope::layer())
///     .init();
/// ```
#[cfg(feature = "deep")]
#[must_use = "the layer does nothing until it is added to a subscriber"]
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if crate::config::disabled() || crate::config::deep_mode() == DeepMode::Off {
        return None;
    }
    LAYER_BUILT.store(true, Release);
    // As in `arm`: a bad `TASKSCOPE_RESOURCES` or `TASKSCOPE_MAX_RESOURCES`
    // is reported here, not from inside the layer's callbacks.
    resources::table();
    let capacity = match crate::tasks::registry() {
        Some(r) => r.capacity.tasks,
        None => crate::config::capacity_from_env().tasks,
    };
    let table = table_or_init(capacity);
    // Made now rather than on the first span.
    table.keys();
    Some(layer::filtered(table))
}
