//! Deep mode: a lean `tracing` subscriber reads tokio's own instrumentation
//! (spawn spans, poll enter/exit, waker events) to learn where each task is
//! parked, whether it holds a live waker, and whether it has been woken.

#[cfg(feature = "deep")]
mod subscriber;
mod table;

pub(crate) use table::{DeepTable, DeepView};

use std::sync::OnceLock;

static TABLE: OnceLock<DeepTable> = OnceLock::new();

/// The deep table, if deep mode is on.
pub(crate) fn table() -> Option<&'static DeepTable> {
    TABLE.get()
}

/// Why deep mode is off although it is compiled in; `None` when it is on or
/// when the app chose lean mode (`default-features = false`).
pub(crate) fn problem() -> Option<&'static str> {
    if !cfg!(feature = "deep") || !crate::health::instrumented() || crate::config::deep_off() {
        None
    } else if TABLE.get().is_none() {
        Some(
            "deep mode is off: another global tracing subscriber was installed first; \
             wait reasons and parked-at stacks are unavailable",
        )
    } else {
        None
    }
}

/// Fills the deep-mode fields of `tasks` and returns the stacks they refer
/// to, symbolized. Does nothing in lean mode.
pub(crate) fn fill(tasks: &mut [crate::snapshot::Task]) -> Vec<crate::snapshot::Stack> {
    use std::collections::HashMap;
    let Some(table) = table() else { return Vec::new() };
    let views: HashMap<u64, DeepView> = table.read().into_iter().collect();
    let mut stacks: HashMap<u32, crate::snapshot::Stack> = HashMap::new();
    for task in tasks.iter_mut() {
        let Some(view) = views.get(&task.id) else { continue };
        task.wakers = Some(view.wakers);
        task.woken = Some(view.woken);
        if let Some(id) = view.parked {
            if let std::collections::hash_map::Entry::Vacant(entry) = stacks.entry(id) {
                if let Some(addrs) = table.stacks.get(id) {
                    let frames: Vec<_> = addrs.iter().flat_map(|&a| crate::stacks::symbolize(a)).collect();
                    let reason = crate::stacks::wait_reason(&frames);
                    entry.insert(crate::snapshot::Stack { id, reason, frames });
                }
            }
            task.parked_at = stacks.contains_key(&id).then_some(id);
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

/// Installs the deep subscriber as the global default, once. Returns false
/// if another global subscriber is already installed.
#[cfg(feature = "deep")]
pub(crate) fn install(capacity: u32) -> bool {
    if TABLE.get().is_some() {
        return true;
    }
    if crate::config::deep_off() || tracing_core::dispatcher::has_been_set() {
        return false;
    }
    let table = TABLE.get_or_init(|| DeepTable::new(capacity));
    let dispatch = tracing_core::Dispatch::new(subscriber::DeepSubscriber::new(table));
    tracing_core::dispatcher::set_global_default(dispatch).is_ok()
}
