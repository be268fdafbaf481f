//! tokio's runtime hooks, wired to the process-wide registry.
//!
//! Each hook reads one thread-local, one coarse-clock word, and the slot of
//! the task at hand. The thread-local also remembers the task being polled,
//! for later consumers such as the heap sampler.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::OnceLock;

use super::registry::Registry;
use super::sites::{SHARDS, SHARED};
use super::slab::Cache;

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The process-wide registry, if a runtime has been instrumented.
pub(crate) fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

fn init_registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let capacity = crate::config::capacity_from_env();
        crate::clock::start_ticker(|| {
            if let Some(r) = registry() {
                r.sites.sample();
            }
        });
        Registry::new(capacity)
    })
}

/// Per-thread state of the hooks that needs a destructor.
struct Local {
    cache: Cell<Cache>,
    /// A counter shard this thread owns, or [`SHARED`].
    shard: usize,
}

/// Which of the ownable shards a thread holds.
static OWNED: [AtomicBool; SHARED] = [const { AtomicBool::new(false) }; SHARED];

/// Takes a free shard for this thread, or the shared one.
fn claim_shard() -> usize {
    (0..SHARED).find(|&i| OWNED[i].compare_exchange(false, true, Acquire, Relaxed).is_ok()).unwrap_or(SHARED)
}

const _: () = assert!(SHARED == SHARDS - 1);

/// The task being polled on a thread. Kept in a `const` thread-local with no
/// destructor, so that it can be read from anywhere, the allocator included.
#[derive(Debug, Clone, Copy)]
struct Polling {
    id: u64,
    site: u32,
    /// Slot + 1; 0 when no tracked task is being polled.
    slot: u32,
    start: u64,
}

thread_local! {
    static POLLING: Cell<Polling> = const { Cell::new(Polling { id: 0, site: 0, slot: 0, start: 0 }) };
}

/// The id and spawn-site index of the task being polled on this thread.
/// Never allocates: safe to call from a global allocator.
#[allow(dead_code)] // read by the heap sampler
pub(crate) fn polling() -> Option<(u64, u32)> {
    POLLING.try_with(|p| p.get()).ok().filter(|p| p.slot != 0).map(|p| (p.id, p.site))
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(r) = registry() {
            let mut cache = self.cache.take();
            r.flush(&mut cache);
        }
        if self.shard < SHARED {
            OWNED[self.shard].store(false, Release);
        }
    }
}

thread_local! {
    static LOCAL: Local = Local { cache: Cell::new(Cache::default()), shard: claim_shard() };
}

/// Runs `f` with this thread's cache; falls back to a temporary cache (and
/// flushes it) while the thread-local is being torn down.
#[inline]
fn with_cache<R>(r: &Registry, f: impl FnOnce(&mut Cache, usize) -> R) -> R {
    let mut f = Some(f);
    let out = LOCAL.try_with(|local| {
        let mut cache = local.cache.take();
        let out = (f.take().expect("called once"))(&mut cache, local.shard);
        local.cache.set(cache);
        out
    });
    match out {
        Ok(out) => out,
        Err(_) => {
            let mut cache = Cache::default();
            let out = (f.take().expect("not called yet"))(&mut cache, SHARED);
            r.flush(&mut cache);
            out
        }
    }
}

/// tokio's `task::Id` has no public integer accessor; its `Hash` writes the
/// id as one `u64`, which this hasher keeps.
#[inline(always)]
pub(crate) fn id_of(id: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    #[derive(Default)]
    struct Keep(u64);
    impl Hasher for Keep {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 << 8) | b as u64;
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Keep::default();
    id.hash(&mut h);
    h.finish()
}

#[cfg(tokio_unstable)]
mod installed {
    use super::*;
    use crate::clock::coarse_ms;
    use tokio::runtime::TaskMeta;

    pub(super) fn on_spawn(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        with_cache(r, |cache, shard| {
            r.spawn(cache, shard, id, meta.spawned_at(), now);
        });
    }

    pub(super) fn on_terminate(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        with_cache(r, |cache, shard| r.terminate(cache, shard, id, now));
    }

    #[inline]
    pub(super) fn on_poll_start(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        let polling = match r.lookup(id) {
            Some(slot) => Polling { id, site: r.poll_start(slot, now), slot: slot + 1, start: now },
            None => Polling { id, site: 0, slot: 0, start: now },
        };
        let _ = POLLING.try_with(|p| p.set(polling));
    }

    #[inline]
    pub(super) fn on_poll_end(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        let current = POLLING
            .try_with(|p| {
                let polling = p.get();
                p.set(Polling { slot: 0, ..polling });
                (polling.slot != 0 && polling.id == id).then(|| (polling.slot - 1, polling.start))
            })
            .ok()
            .flatten();
        match current {
            Some((slot, started)) => r.poll_end(slot, id, Some(started), now),
            // Nested polls (a LocalSet inside a task) lose the start time of
            // the outer poll; its end is still recorded.
            None => {
                if let Some(slot) = r.lookup(id) {
                    r.poll_end(slot, id, None, now);
                }
            }
        }
    }
}

/// Installs taskscope's hooks on a runtime builder that the app configures
/// itself. `#[taskscope::main]` does this for you.
///
/// With `TASKSCOPE_DISABLE=1`, or when built without `--cfg tokio_unstable`
/// (tokio's hooks need it), the builder is returned unchanged.
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// builder.enable_all();
/// taskscope::instrument(&mut builder);
/// let runtime = builder.build().unwrap();
/// runtime.block_on(async {
///     tokio::spawn(async {}).await.unwrap();
/// });
/// ```
pub fn instrument(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    if crate::config::disabled() {
        return builder;
    }
    #[cfg(tokio_unstable)]
    {
        let r = init_registry();
        builder
            .on_task_spawn(move |meta| {
                installed::on_spawn(r, meta);
                // Deep mode installs its subscriber at the first spawn.
                #[cfg(feature = "deep")]
                crate::deep::on_spawn();
            })
            .on_task_terminate(move |meta| installed::on_terminate(r, meta))
            .on_before_task_poll(move |meta| installed::on_poll_start(r, meta))
            .on_after_task_poll(move |meta| installed::on_poll_end(r, meta));
        crate::health::note_instrumented();
        #[cfg(feature = "deep")]
        crate::deep::arm(r.capacity.tasks);
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = init_registry;
    }
    builder
}

#[cfg(all(test, tokio_unstable))]
mod tests {
    use super::*;

    #[test]
    fn threads_alive_at_once_never_own_the_same_shard() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let shard = LOCAL.with(|l| l.shard);
                    barrier.wait();
                    shard
                })
            })
            .collect();
        let shards: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let owned: Vec<usize> = shards.iter().copied().filter(|&s| s != SHARED).collect();
        let distinct: std::collections::BTreeSet<usize> = owned.iter().copied().collect();
        assert_eq!(owned.len(), distinct.len(), "{shards:?}");
        // Their shards were given back when they exited.
        let again = std::thread::spawn(|| LOCAL.with(|l| l.shard)).join().unwrap();
        assert!(again < SHARED, "a free shard was not reused");
    }

    #[test]
    fn the_id_hasher_recovers_tokio_ids() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let handle = rt.spawn(async { tokio::task::id() });
        let id = handle.id();
        let inside = rt.block_on(handle).unwrap();
        assert_eq!(id, inside);
        assert_eq!(id_of(id).to_string(), id.to_string());
    }
}
