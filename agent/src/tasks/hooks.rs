//! tokio's runtime hooks, wired to the process-wide registry.
//!
//! Each hook reads one thread-local and one coarse-clock word. A poll's
//! start writes only the thread-local, which the thread publishes to the
//! agent (see [`super::polls`]); its end writes the thread's tally (see
//! [`super::tally`]). The thread-local also tells the heap and CPU samplers
//! which task is being polled.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::OnceLock;

use super::polls::{self, Current, OFF};
use super::registry::Registry;
use super::sites::{SHARDS, SHARED};
use super::slab::Cache;

/// The registry sits alone in its cache lines: the hooks read it on every
/// call and nothing writes near it.
#[repr(align(128))]
struct Alone(OnceLock<Registry>);

static REGISTRY: Alone = Alone(OnceLock::new());

/// The process-wide registry, if a runtime has been instrumented.
#[inline(always)]
pub(crate) fn registry() -> Option<&'static Registry> {
    REGISTRY.0.get()
}

fn init_registry() -> &'static Registry {
    REGISTRY.0.get_or_init(|| {
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

/// The poll a thread is in. A `const` thread-local with no destructor, so
/// that it can be read from anywhere, the allocator and signal handlers
/// included.
struct Polling {
    /// The thread's outermost poll, published to the agent at the thread's
    /// first poll if it owns a shard; [`OFF`] until then, and for good on a
    /// thread without a shard of its own.
    current: Current,
    /// A poll that is not published (the thread has no shard of its own,
    /// or the poll is nested in another): task id and start.
    inner: Cell<(u64, u64)>,
    /// A task whose published poll is ending with the task: tokio ran its
    /// terminate hook inside the poll, and the poll's end has nothing left
    /// to update.
    ended: Cell<u64>,
    /// The shard the thread owns while it publishes its polls: whose tally
    /// counts them. A copy of `Local::shard`, which the poll's end cannot
    /// read as cheaply (that thread-local has a destructor).
    shard: Cell<usize>,
}

thread_local! {
    static POLLING: Polling =
        const {
        Polling { current: Current::off(), inner: Cell::new((0, 0)), ended: Cell::new(0), shard: Cell::new(SHARED) }
    };
}

/// The id and spawn-site index of the task being polled on this thread.
/// Never allocates nor locks: safe to call from a global allocator or a
/// signal handler.
#[allow(dead_code)] // read by the heap sampler
pub(crate) fn polling() -> Option<(u64, u32)> {
    let id = POLLING
        .try_with(|p| match p.inner.get().0 {
            0 => p.current.id.load(Relaxed),
            inner => inner,
        })
        .ok()
        .filter(|&id| id != 0 && id != OFF)?;
    let r = registry()?;
    Some((id, r.site_of(r.lookup(id)?)))
}

/// Whether this thread is in a published poll of task `id`.
fn in_published_poll(id: u64) -> bool {
    POLLING.try_with(|p| p.current.id.load(Relaxed) == id).unwrap_or(false)
}

/// Task `id`, whose published poll this thread is in, has terminated: the
/// thread is polling no live task any more, and the poll's end need not
/// look for the task's slot (it is gone).
fn end_published_poll(id: u64) {
    let _ = POLLING.try_with(|p| {
        p.ended.set(id);
        p.current.id.store(0, Release);
    });
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(r) = registry() {
            let mut cache = self.cache.take();
            r.flush(&mut cache);
        }
        if self.shard < SHARED {
            // Polls from here on (other thread-locals' destructors may poll)
            // go to the slots; then no reader may look at this thread's
            // poll any more, and the shard can go to another thread.
            let _ = POLLING.try_with(|p| p.current.id.store(OFF, Release));
            polls::unpublish(self.shard);
            if let Some(r) = registry() {
                r.flush_tally(self.shard);
            }
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
        let polling = in_published_poll(id);
        with_cache(r, |cache, shard| r.terminate(cache, shard, id, now, polling));
        if polling {
            end_published_poll(id);
        }
    }

    #[inline]
    pub(super) fn on_poll_start(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        let _ = POLLING.try_with(|p| {
            if p.current.id.load(Relaxed) == 0 {
                p.current.start.store(now, Relaxed);
                p.current.id.store(id, Release);
            } else {
                start_elsewhere(r, p, id, now);
            }
        });
    }

    /// The start of a poll that the thread-local does not publish yet or
    /// at all: the thread's first poll, a thread without a shard, a nested
    /// poll.
    #[cold]
    fn start_elsewhere(r: &'static Registry, p: &Polling, id: u64, now: u64) {
        if p.current.id.load(Relaxed) == OFF {
            // Fails once the thread-local is gone (the thread is exiting):
            // no shard then.
            let shard = LOCAL.try_with(|l| l.shard).unwrap_or(SHARED);
            if shard < SHARED {
                p.shard.set(shard);
                polls::publish(shard, &p.current);
                p.current.start.store(now, Relaxed);
                p.current.id.store(id, Release);
                return;
            }
        }
        p.inner.set((id, now));
        if let Some(slot) = r.lookup(id) {
            r.poll_start_in_slot(slot, now);
        }
    }

    #[inline]
    pub(super) fn on_poll_end(r: &'static Registry, meta: &TaskMeta<'_>) {
        let id = id_of(meta.id());
        let now = coarse_ms();
        let _ = POLLING.try_with(|p| {
            if p.current.id.load(Relaxed) == id {
                r.poll_end_tallied(p.shard.get(), id, p.current.start.load(Relaxed), now);
                // After the tally's idle-since time: a reader never sees the
                // task neither running nor idle since this poll.
                p.current.id.store(0, Release);
            } else {
                end_elsewhere(r, p, id, now);
            }
        });
    }

    /// The end of a poll that [`start_elsewhere`] started.
    #[cold]
    fn end_elsewhere(r: &'static Registry, p: &Polling, id: u64, now: u64) {
        if p.ended.get() == id {
            p.ended.set(0);
            return;
        }
        let (inner, start) = p.inner.get();
        // Nested deeper than one level, the outer polls' starts are lost:
        // their ends are recorded, without busy time.
        let started = (inner == id).then_some(start);
        p.inner.set((0, 0));
        r.poll_end(id, started, now, false);
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
        #[cfg(not(feature = "deep"))]
        let _ = r;
        // The hooks capture nothing and find the registry in its static:
        // loading a captured reference from the closure, which tokio keeps
        // on the heap next to who knows what, missed the cache often enough
        // to show in spawn-heavy profiles.
        builder
            .on_task_spawn(|meta| {
                if let Some(r) = registry() {
                    installed::on_spawn(r, meta);
                }
                // Deep mode installs its subscriber at the first spawn.
                #[cfg(feature = "deep")]
                crate::deep::on_spawn();
            })
            .on_task_terminate(|meta| {
                if let Some(r) = registry() {
                    installed::on_terminate(r, meta);
                }
            })
            .on_before_task_poll(|meta| {
                if let Some(r) = registry() {
                    installed::on_poll_start(r, meta);
                }
            })
            .on_after_task_poll(|meta| {
                if let Some(r) = registry() {
                    installed::on_poll_end(r, meta);
                }
            });
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

    fn record(id: tokio::task::Id) -> Option<super::super::TaskRecord> {
        registry()?.tasks().into_iter().find(|t| t.id == id_of(id))
    }

    /// The polls of a completed task. tokio wakes the task's `JoinHandle`
    /// before it runs the terminate hook: wait for the record.
    fn completed_polls(id: tokio::task::Id) -> Option<u64> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let done = registry()?.completed();
            if let Some(c) = done.iter().find(|c| c.id == id_of(id)) {
                return Some(c.polls);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// An instrumented multi-thread runtime.
    fn runtime(workers: usize) -> tokio::runtime::Runtime {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers).enable_all();
        instrument(&mut builder).build().unwrap()
    }

    #[test]
    fn polls_are_counted_and_a_running_poll_is_seen_from_another_thread() {
        let rt = runtime(2);
        let (entered, wait) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let task = rt.spawn(async move {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            entered.send(()).unwrap();
            // Blocks its worker in synchronous code, in its 11th poll.
            released.recv().unwrap();
        });
        let id = task.id();
        wait.recv().unwrap();
        let t = record(id).expect("the task is tracked");
        assert!(t.running, "{t:?}");
        assert_eq!(t.polls, 11, "{t:?}");
        release.send(()).unwrap();
        rt.block_on(task).unwrap();
        assert_eq!(completed_polls(id), Some(11));
    }

    #[test]
    fn a_poll_nested_in_another_leaves_the_outer_one_running() {
        let rt = runtime(1);
        let (inside, wait) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let outer = rt.spawn(async move {
            tokio::task::block_in_place(move || {
                let mut inner = tokio::runtime::Builder::new_current_thread();
                let inner = instrument(&mut inner).build().unwrap();
                inner.block_on(async move {
                    let task = tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        inside.send(tokio::task::id()).unwrap();
                        released.recv().unwrap();
                    });
                    task.await.unwrap();
                });
            });
        });
        let outer_id = outer.id();
        let inner_id = wait.recv().unwrap();
        let (o, i) = (record(outer_id).unwrap(), record(inner_id).unwrap());
        assert!(o.running && i.running, "{o:?} {i:?}");
        assert_eq!((o.polls, i.polls), (1, 2), "{o:?} {i:?}");
        release.send(()).unwrap();
        rt.block_on(outer).unwrap();
        assert_eq!((completed_polls(outer_id), completed_polls(inner_id)), (Some(1), Some(2)));
    }

    #[test]
    fn a_poll_that_ends_its_task_leaves_the_thread_ready_for_its_next_poll() {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        let rt = instrument(&mut builder).build().unwrap();
        let ids: Vec<_> = rt.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..3 {
                // Each task ends in its first poll, on this thread.
                let task = tokio::spawn(async {});
                ids.push(task.id());
                task.await.unwrap();
            }
            ids
        });
        let (current, ended) = POLLING.with(|p| (p.current.id.load(Relaxed), p.ended.get()));
        assert!(current == 0 || current == OFF, "a poll is still marked running: {current}");
        assert_eq!(ended, 0, "the ended task was not cleared by its poll's end");
        for id in ids {
            assert_eq!(completed_polls(id), Some(1), "task {id}");
        }
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
