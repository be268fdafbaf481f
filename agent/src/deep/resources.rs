//! Deep mode: tokio's resources (`Mutex`, `RwLock`, `Semaphore`, `Barrier`)
//! as its `tracing` instrumentation describes them: each resource's type and
//! creation site, the tasks holding it (with their permits, for a
//! semaphore), and the tasks waiting on it.
//!
//! tokio (with `--cfg tokio_unstable` and its `tracing` feature) gives every
//! resource made with `new` a `runtime.resource` span (fields
//! `concrete_type`, `loc.file`, `loc.line`, `loc.col`), entered around each
//! operation on it; wraps each `lock()`, `read()`, `write()`, `acquire()` and
//! `wait()` in a `runtime.resource.async_op` span whose poll emits a
//! `runtime::resource::poll_op` event (`is_ready`); and reports state changes
//! as `runtime::resource::state_update` events (`locked`, `write_locked`,
//! `current_readers`). [`super::resource_events`] reads those into this
//! table:
//!
//! - the holder of a `Mutex` (or the writer of a `RwLock`) is the task being
//!   polled when `locked = true` is emitted, until `locked = false`;
//! - a `Semaphore`'s holders are the tasks whose acquire became ready, each
//!   with the permits it asked for, less the permits each gives back (read
//!   from the semaphore's inner semaphore, see [`super::resource_events`]);
//! - a task waits on a resource from a `poll_op` that was not ready until one
//!   that is, or until its async op is dropped (a cancelled `lock()`).
//!
//! A guard or permit moved to another task (an `OwnedMutexGuard` or
//! `OwnedSemaphorePermit` sent away) still names the task that took it
//! until it is dropped: tokio's events do not see the move. Its drop in the
//! other task clears it all the same: a `Mutex` or `RwLock` writer by its
//! `locked = false`; a reader or permits given back by a task that holds
//! none come off another holder (the unlisted ones first), so the counts
//! stay right. Permits taken with `try_acquire` emit no event and are not
//! seen; nor are resources made by taskscope's own code.
//!
//! Everything is bounded: a fixed table of resources (overflow counted), a
//! fixed open-addressing table of waiting tasks (overflow counted), at most
//! [`READERS`] reader tasks per `RwLock` or permit holders per `Semaphore`
//! (the rest counted, their permits summed), [`FILES`] distinct creation
//! files (the rest `<other>`, counted). Creating and dropping a resource
//! takes a short lock (the free list, the file names); holding, waiting and
//! releasing are atomic operations on the resource's slot. Tasks that use
//! no resource pay nothing: none of this is reached from a poll that does
//! not touch one.
//!
//! `oneshot` channels, `Sleep` and `Interval` have resource spans too, but
//! are not tracked: a task awaiting one gets its wait reason (`chan
//! receive`, `sleep`) and await line from its parked-at stack, and timers
//! come and go far too often to take a slot each under a lock.
//!
//! `TASKSCOPE_RESOURCES=off` turns it off: the resource callsites are then
//! never enabled, so tokio's instrumentation of them costs what it costs
//! without a subscriber.
// Lean builds (no `deep` feature) keep the types but never fill them.
#![cfg_attr(not(feature = "deep"), allow(dead_code))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::tasks::zeroed;

/// `TASKSCOPE_RESOURCES`: `off` turns resource tracking off.
pub(crate) const ENV: &str = "TASKSCOPE_RESOURCES";
/// `TASKSCOPE_MAX_RESOURCES`: live resources tracked at once.
pub(crate) const ENV_MAX: &str = "TASKSCOPE_MAX_RESOURCES";
/// Default of [`ENV_MAX`].
pub(crate) const DEFAULT_CAPACITY: u32 = 4096;
/// The most resources a table can hold (16 bits of slot in a key).
pub(crate) const MAX_CAPACITY: u32 = 60_000;
/// Waiting tasks tracked at once.
pub(crate) const WAITS: usize = 32_768;
/// Reader tasks of a `RwLock` (tasks holding permits of a `Semaphore`) kept
/// by id; more are counted.
pub(crate) const READERS: usize = 4;
/// Distinct creation files kept; more show as `<other>`.
const FILES: usize = 1024;
/// Resources listed in a snapshot (held or waited on); more are counted.
pub(crate) const LISTED: usize = 1000;

/// A holder that is no task (`try_lock` from a thread outside the runtime).
pub(crate) const OUTSIDE: u64 = u64::MAX;

/// True unless `TASKSCOPE_RESOURCES` is `off` (or `0`, `false`, `no`).
pub(crate) fn enabled_by_env() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var(ENV).as_deref().map(str::trim) {
        Err(_) | Ok("" | "on" | "1" | "true" | "yes") => true,
        Ok("off" | "0" | "false" | "no") => false,
        Ok(other) => {
            crate::watch::warn(format_args!(
                "{ENV}={other} is not one of on, off; resource tracking stays on"
            ));
            true
        }
    })
}

fn capacity_from_env() -> u32 {
    match std::env::var(ENV_MAX).ok().map(|v| v.trim().parse::<u32>()) {
        None => DEFAULT_CAPACITY,
        Some(Ok(n)) if (1..=MAX_CAPACITY).contains(&n) => n,
        Some(_) => {
            crate::watch::warn(format_args!(
                "{ENV_MAX} must be a whole number from 1 to {MAX_CAPACITY}; using {DEFAULT_CAPACITY}"
            ));
            DEFAULT_CAPACITY
        }
    }
}

/// What kind of resource, from the span's `concrete_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Kind {
    Mutex = 1,
    RwLock = 2,
    Semaphore = 3,
    Barrier = 4,
}

impl Kind {
    pub(crate) fn from_concrete(name: &str) -> Option<Kind> {
        Some(match name {
            "Mutex" => Kind::Mutex,
            "RwLock" => Kind::RwLock,
            "Semaphore" => Kind::Semaphore,
            "Barrier" => Kind::Barrier,
            _ => return None,
        })
    }

    fn from_u8(n: u8) -> Option<Kind> {
        Some(match n {
            1 => Kind::Mutex,
            2 => Kind::RwLock,
            3 => Kind::Semaphore,
            4 => Kind::Barrier,
            _ => return None,
        })
    }

    /// `Mutex`
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Mutex => "Mutex",
            Kind::RwLock => "RwLock",
            Kind::Semaphore => "Semaphore",
            Kind::Barrier => "Barrier",
        }
    }

    /// `tokio::sync::Mutex`
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::Mutex => "tokio::sync::Mutex",
            Kind::RwLock => "tokio::sync::RwLock",
            Kind::Semaphore => "tokio::sync::Semaphore",
            Kind::Barrier => "tokio::sync::Barrier",
        }
    }

    /// The wait reason of a task waiting on it, as its parked-at stack
    /// would name it; `None` for a barrier (the stack's reason stays).
    pub(crate) fn wait_reason(self) -> Option<&'static str> {
        match self {
            Kind::Mutex => Some("mutex lock"),
            Kind::RwLock => Some("rwlock"),
            Kind::Semaphore => Some("semaphore acquire"),
            Kind::Barrier => None,
        }
    }

    /// Whether tokio's events tell who holds it: a `Mutex`'s `locked`, a
    /// `RwLock`'s `write_locked` and `current_readers`, a `Semaphore`'s
    /// acquires and the permits its inner semaphore takes back (see
    /// [`super::resource_events`]). A `Barrier` has no holder.
    pub(crate) fn holders_known(self) -> bool {
        matches!(self, Kind::Mutex | Kind::RwLock | Kind::Semaphore)
    }
}

/// One live resource.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Its key (see [`key`]); 0 while free.
    key: AtomicU64,
    /// Bumped on every reuse; part of the key.
    generation: AtomicU64,
    /// References to its span and the spans of its async ops (the lean
    /// subscriber's clone/close counting).
    pub(crate) refs: AtomicU64,
    /// `kind | file << 8 | line << 32`.
    desc: AtomicU64,
    col: AtomicU64,
    /// The task holding a `Mutex` or writing a `RwLock`; 0 if none,
    /// [`OUTSIDE`] if no task.
    holder: AtomicU64,
    /// Reader tasks of a `RwLock`, or the tasks holding permits of a
    /// `Semaphore`; 0 for an empty entry.
    readers: [AtomicU64; READERS],
    /// A `Semaphore`: the permits each task of `readers` holds.
    permits: [AtomicU64; READERS],
    /// Readers beyond [`READERS`]; for a `Semaphore`, the permits held by
    /// tasks beyond [`READERS`].
    readers_more: AtomicU64,
}

/// A key: `generation << 16 | slot + 1`, at most 30 bits, never 0.
pub(crate) fn key(slot: u32, generation: u64) -> u64 {
    ((generation & 0x3fff) << 16) | (slot as u64 + 1)
}

/// Takes up to `want` permits from a holder's entry; clears the entry once
/// it holds none. How many it took.
fn take(task: &AtomicU64, permits: &AtomicU64, want: u64) -> u64 {
    let Ok(had) = permits.fetch_update(AcqRel, Acquire, |p| (p > 0).then(|| p - p.min(want))) else {
        return 0;
    };
    if had <= want {
        let t = task.load(Relaxed);
        if t != 0 {
            let _ = task.compare_exchange(t, 0, AcqRel, Relaxed);
        }
    }
    had.min(want)
}

/// Whether a resource was made by taskscope's own code (its HTTP server's
/// semaphores): not the app's, so not tracked. `file!()` names this file
/// the way `Location::caller()` names the others of the crate.
fn is_own(file: &str) -> bool {
    let here = file!();
    let src = here.strip_suffix("deep/resources.rs").unwrap_or(here);
    file.starts_with(src)
}

/// The slot index of a key.
pub(crate) fn slot_of(key: u64) -> Option<u32> {
    ((key & 0xffff) as u32).checked_sub(1)
}

/// Where a resource was made, before it is interned.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NewResource<'a> {
    pub(crate) kind: Option<Kind>,
    pub(crate) file: Option<&'a str>,
    pub(crate) line: u32,
    pub(crate) col: u32,
}

/// Open addressing over (task id, resource key) pairs: which resource each
/// waiting task waits on (the key word also carries, above bit 32, the
/// permits a semaphore wait asks for). Only the thread polling (or dropping) a task
/// writes its entry, so an entry's two words need no lock: the task word is
/// claimed by compare-and-swap, the key word is then stored.
#[derive(Debug)]
struct Waits {
    tasks: Box<[AtomicU64]>,
    keys: Box<[AtomicU64]>,
    mask: usize,
    /// Entries in use, so that a ready poll or a dropped op can skip the
    /// table when no task waits at all (written only when a wait starts or
    /// ends).
    live: AtomicU64,
}

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
/// The bits of a wait's key word that hold the key (at most 30 bits).
const KEY_BITS: u64 = 0xffff_ffff;
const PROBES: usize = 64;

fn mix(id: u64) -> usize {
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x ^ (x >> 29)) as usize
}

impl Waits {
    fn new(len: usize) -> Self {
        let len = len.next_power_of_two();
        Waits { tasks: zeroed(len), keys: zeroed(len), mask: len - 1, live: AtomicU64::new(0) }
    }

    fn find(&self, task: u64) -> Option<usize> {
        let mut i = mix(task) & self.mask;
        for _ in 0..PROBES {
            match self.tasks[i].load(Acquire) {
                EMPTY => return None,
                t if t == task => return Some(i),
                _ => {}
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// `task` waits on `key` (with `extra` above bit 32); false if the
    /// table had no room.
    fn set(&self, task: u64, key: u64) -> bool {
        if let Some(i) = self.find(task) {
            self.keys[i].store(key, Release);
            return true;
        }
        let mut i = mix(task) & self.mask;
        for _ in 0..PROBES {
            let e = &self.tasks[i];
            let current = e.load(Relaxed);
            if (current == EMPTY || current == TOMBSTONE)
                && e.compare_exchange(current, task, AcqRel, Relaxed).is_ok()
            {
                self.keys[i].store(key, Release);
                self.live.fetch_add(1, Relaxed);
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// `task` no longer waits on `key` (on anything, if `key` is `None`).
    fn clear(&self, task: u64, key: Option<u64>) {
        if let Some(i) = self.find(task) {
            if key.is_none_or(|k| self.keys[i].load(Relaxed) & KEY_BITS == k) {
                self.keys[i].store(0, Relaxed);
                self.tasks[i].store(TOMBSTONE, Release);
                self.live.fetch_sub(1, Relaxed);
            }
        }
    }

    /// The key `task` waits on.
    fn get(&self, task: u64) -> Option<u64> {
        self.get_word(task).map(|w| w & KEY_BITS)
    }

    /// The key word of `task`: its key, and what sits above bit 32.
    fn get_word(&self, task: u64) -> Option<u64> {
        self.find(task).map(|i| self.keys[i].load(Acquire)).filter(|&k| k != 0)
    }

    fn read(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (t, k) in self.tasks.iter().zip(self.keys.iter()) {
            let task = t.load(Acquire);
            if task == EMPTY || task == TOMBSTONE {
                continue;
            }
            let key = k.load(Acquire) & KEY_BITS;
            if key != 0 {
                out.push((task, key));
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Shared {
    free: Vec<u32>,
    /// Slots `fresh..` have never been used.
    fresh: u32,
    files: Vec<Box<str>>,
    file_index: HashMap<Box<str>, u32>,
}

/// The resources of the process.
#[derive(Debug)]
pub(crate) struct ResourceTable {
    slots: Box<[Slot]>,
    shared: Mutex<Shared>,
    waits: Waits,
    /// Resources not tracked because the table was full.
    pub(crate) dropped: AtomicU64,
    /// Waits not recorded because the wait table was full.
    pub(crate) waits_dropped: AtomicU64,
    /// Readers of a `RwLock` or permit holders of a `Semaphore` counted
    /// without their task id (beyond [`READERS`] on one resource).
    pub(crate) holders_dropped: AtomicU64,
    /// Resources whose creation file shows as `<other>` (beyond [`FILES`]
    /// distinct files).
    pub(crate) files_dropped: AtomicU64,
    /// Resources tracked since the start.
    pub(crate) created: AtomicU64,
}

impl ResourceTable {
    pub(crate) fn new(capacity: u32, waits: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        ResourceTable {
            slots: zeroed(capacity as usize),
            shared: Mutex::new(Shared::default()),
            waits: Waits::new(waits),
            dropped: AtomicU64::new(0),
            waits_dropped: AtomicU64::new(0),
            holders_dropped: AtomicU64::new(0),
            files_dropped: AtomicU64::new(0),
            created: AtomicU64::new(0),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks a new resource with one reference; its key, or `None` when
    /// the table is full (counted) or the resource is of no known kind.
    pub(crate) fn open(&self, new: &NewResource<'_>) -> Option<u64> {
        let kind = new.kind?;
        if new.file.is_some_and(is_own) {
            return None;
        }
        let (index, file) = {
            let mut shared = self.shared();
            let index = match shared.free.pop() {
                Some(i) => i,
                None if (shared.fresh as usize) < self.slots.len() => {
                    shared.fresh += 1;
                    shared.fresh - 1
                }
                None => {
                    drop(shared);
                    self.dropped.fetch_add(1, Relaxed);
                    return None;
                }
            };
            let file = match new.file {
                Some(f) => match shared.file_index.get(f) {
                    Some(&i) => i + 1,
                    None if shared.files.len() < FILES => {
                        shared.files.push(f.into());
                        let i = shared.files.len() as u32 - 1;
                        shared.file_index.insert(f.into(), i);
                        i + 1
                    }
                    None => {
                        self.files_dropped.fetch_add(1, Relaxed);
                        // Past the known files: shows as `<other>`.
                        FILES as u32 + 1
                    }
                },
                None => 0,
            };
            (index, file)
        };
        let slot = &self.slots[index as usize];
        let generation = slot.generation.load(Relaxed).wrapping_add(1);
        slot.generation.store(generation, Relaxed);
        slot.desc.store(kind as u64 | (file as u64) << 8 | (new.line as u64) << 32, Relaxed);
        slot.col.store(new.col as u64, Relaxed);
        slot.holder.store(0, Relaxed);
        for r in slot.readers.iter().chain(&slot.permits) {
            r.store(0, Relaxed);
        }
        slot.readers_more.store(0, Relaxed);
        slot.refs.store(1, Relaxed);
        let key = key(index, generation);
        slot.key.store(key, Release);
        self.created.fetch_add(1, Relaxed);
        Some(key)
    }

    /// The live slot of `key`.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Slot> {
        let slot = self.slots.get(slot_of(key)? as usize)?;
        (slot.key.load(Acquire) == key).then_some(slot)
    }

    /// Stops tracking the resource of `key`.
    pub(crate) fn close(&self, key: u64) {
        let Some(index) = slot_of(key) else { return };
        let Some(slot) = self.get(key) else { return };
        if slot.key.compare_exchange(key, 0, AcqRel, Relaxed).is_ok() {
            self.shared().free.push(index);
        }
    }

    /// One more reference to the resource of `key` (a clone of its span, or
    /// the span of one of its async ops).
    #[inline]
    pub(crate) fn retain(&self, key: u64) {
        if let Some(slot) = self.get(key) {
            slot.refs.fetch_add(1, Relaxed);
        }
    }

    /// Drops a reference; closes the resource on the last one. True if it
    /// was the last.
    #[inline]
    pub(crate) fn release(&self, key: u64) -> bool {
        let Some(slot) = self.get(key) else { return false };
        if slot.refs.fetch_sub(1, AcqRel) != 1 {
            return false;
        }
        self.close(key);
        true
    }

    /// `locked = true` (Mutex) or `write_locked = true` (RwLock): `task`
    /// holds it; `locked = false`: no one does.
    pub(crate) fn set_locked(&self, key: u64, task: Option<u64>, locked: bool) {
        if let Some(slot) = self.get(key) {
            let holder = if locked { task.unwrap_or(OUTSIDE) } else { 0 };
            slot.holder.store(holder, Release);
        }
    }

    /// A `RwLock` read guard was taken (`add`) or dropped in `task`.
    pub(crate) fn reader(&self, key: u64, task: Option<u64>, add: bool) {
        let Some(slot) = self.get(key) else { return };
        let task = task.unwrap_or(OUTSIDE);
        if add {
            for r in &slot.readers {
                if r.compare_exchange(0, task, AcqRel, Relaxed).is_ok() {
                    return;
                }
            }
            slot.readers_more.fetch_add(1, Relaxed);
            self.holders_dropped.fetch_add(1, Relaxed);
            return;
        }
        // The guard is usually dropped by the task that took it; if not,
        // some reader left, and the counted ones go first.
        for r in &slot.readers {
            if r.compare_exchange(task, 0, AcqRel, Relaxed).is_ok() {
                return;
            }
        }
        if slot.readers_more.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
            return;
        }
        for r in &slot.readers {
            let current = r.load(Relaxed);
            if current != 0 && r.compare_exchange(current, 0, AcqRel, Relaxed).is_ok() {
                return;
            }
        }
    }

    /// A `poll_op` of `task` on the resource of `key`: not ready means the
    /// task waits on it (for `requested` permits of a semaphore, 0 if not
    /// known); ready means it no longer does.
    pub(crate) fn polled(&self, key: u64, task: u64, ready: bool, requested: u32) {
        if ready {
            self.waits.clear(task, Some(key));
            return;
        }
        let word = key | (requested as u64) << 32;
        match self.waits.get_word(task) {
            // Already known; keep what the first poll learnt of the request.
            Some(w) if w == word || (requested == 0 && w & KEY_BITS == key) => {}
            _ if self.waits.set(task, word) => {}
            _ => {
                self.waits_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// The permits `task` asked for when it started waiting on `key`, if it
    /// waits on it and they were known.
    pub(crate) fn requested(&self, key: u64, task: u64) -> Option<u32> {
        let w = self.waits.get_word(task)?;
        (w & KEY_BITS == key).then_some((w >> 32) as u32).filter(|&n| n != 0)
    }

    /// Whether `task` waits on `key`.
    pub(crate) fn waits_on(&self, task: u64, key: u64) -> bool {
        self.anyone_waits() && self.waits.get(task) == Some(key)
    }

    /// The kind of the live resource of `key`.
    #[inline]
    pub(crate) fn kind_of(&self, key: u64) -> Option<Kind> {
        Kind::from_u8(self.get(key)?.desc.load(Relaxed) as u8)
    }

    /// `task` (`None`: code outside any task) acquired `n` permits of the
    /// semaphore of `key`.
    pub(crate) fn permits_acquired(&self, key: u64, task: Option<u64>, n: u64) {
        let Some(slot) = self.get(key) else { return };
        if n == 0 {
            return;
        }
        let task = task.unwrap_or(OUTSIDE);
        // Its own entry: only the thread polling a task adds to it.
        for (r, p) in slot.readers.iter().zip(&slot.permits) {
            if r.load(Acquire) == task {
                p.fetch_add(n, AcqRel);
                return;
            }
        }
        for (r, p) in slot.readers.iter().zip(&slot.permits) {
            if r.compare_exchange(0, task, AcqRel, Relaxed).is_ok() {
                p.store(n, Release);
                return;
            }
        }
        slot.readers_more.fetch_add(n, Relaxed);
        self.holders_dropped.fetch_add(1, Relaxed);
    }

    /// `task` gave `n` permits of the semaphore of `key` back (it dropped a
    /// permit, or they went straight to a waiter).
    ///
    /// - A task that still waits on the semaphore is giving back what a
    ///   cancelled acquire had been assigned (tokio does so before it closes
    ///   the acquire's span): no holder had them.
    /// - Otherwise the task's own permits go first. Permits given back by a
    ///   task that holds none were moved to it (an `OwnedSemaphorePermit`
    ///   sent to another task): those of unlisted holders go first, then a
    ///   listed holder's, so the total stays right while the attribution is
    ///   a guess.
    pub(crate) fn permits_released(&self, key: u64, task: Option<u64>, n: u64) {
        let Some(slot) = self.get(key) else { return };
        if task.is_some_and(|t| self.waits_on(t, key)) {
            return;
        }
        let task = task.unwrap_or(OUTSIDE);
        let mut left = n;
        let entries = || slot.readers.iter().zip(&slot.permits);
        for (r, p) in entries() {
            if left > 0 && r.load(Acquire) == task {
                left -= take(r, p, left);
            }
        }
        if left > 0 {
            if let Ok(had) = slot.readers_more.fetch_update(Relaxed, Relaxed, |m| m.checked_sub(m.min(left)))
            {
                left -= had.min(left);
            }
        }
        for (r, p) in entries() {
            if left == 0 {
                break;
            }
            if r.load(Acquire) != 0 {
                left -= take(r, p, left);
            }
        }
    }

    /// True if some task may be waiting on some resource.
    #[inline]
    pub(crate) fn anyone_waits(&self) -> bool {
        self.waits.live.load(Relaxed) != 0
    }

    /// An async op on the resource of `key` was dropped in `task`
    /// (completed or cancelled): the task no longer waits on it.
    pub(crate) fn op_dropped(&self, key: u64, task: u64) {
        self.waits.clear(task, Some(key));
    }

    /// What `task` waits on, if anything (the key may be of a resource
    /// since dropped).
    #[cfg(test)]
    pub(crate) fn wait_of(&self, task: u64) -> Option<u64> {
        self.waits.get(task)
    }

    fn file(&self, index: u32) -> String {
        match index.checked_sub(1) {
            Some(i) => {
                self.shared().files.get(i as usize).map_or_else(|| "<other>".into(), |f| f.to_string())
            }
            None => "<unknown>".into(),
        }
    }

    /// A copy for a snapshot: the resources that are held or waited on (at
    /// most [`LISTED`]), and what each waiting task waits on.
    pub(crate) fn read(&self) -> Resources {
        // The wait table is scanned only when some task waits.
        let waits = if self.anyone_waits() { self.waits.read() } else { Vec::new() };
        let mut waiters: HashMap<u64, Vec<u64>> = HashMap::new();
        for &(task, key) in &waits {
            waiters.entry(key).or_default().push(task);
        }
        let high = self.shared().fresh as usize;
        let mut live = 0u64;
        let mut list = Vec::new();
        let mut unlisted = 0u64;
        for slot in &self.slots[..high.min(self.slots.len())] {
            let key = slot.key.load(Acquire);
            if key == 0 {
                continue;
            }
            live += 1;
            let desc = slot.desc.load(Relaxed);
            let Some(kind) = Kind::from_u8(desc as u8) else { continue };
            let mut held_by = Vec::new();
            let mut held_permits = Vec::new();
            let (mut more_holders, mut more_permits) = (0, 0);
            let mut held_outside = false;
            if kind == Kind::Semaphore {
                for (r, p) in slot.readers.iter().zip(&slot.permits) {
                    let (task, n) = (r.load(Acquire), p.load(Acquire));
                    match (task, n) {
                        (0, _) | (_, 0) => {}
                        (OUTSIDE, _) => held_outside = true,
                        _ => {
                            held_by.push(task);
                            held_permits.push(n);
                        }
                    }
                }
                more_permits = slot.readers_more.load(Relaxed);
            } else {
                let holder = slot.holder.load(Acquire);
                if holder != 0 {
                    held_by.push(holder);
                }
                held_by.extend(slot.readers.iter().map(|r| r.load(Acquire)).filter(|&r| r != 0));
                held_outside = held_by.contains(&OUTSIDE);
                held_by.retain(|&t| t != OUTSIDE);
                more_holders = slot.readers_more.load(Relaxed);
            }
            let mut waiting = waiters.remove(&key).unwrap_or_default();
            if held_by.is_empty()
                && !held_outside
                && waiting.is_empty()
                && more_holders == 0
                && more_permits == 0
            {
                continue;
            }
            if slot.key.load(Acquire) != key {
                continue;
            }
            if list.len() >= LISTED {
                unlisted += 1;
                continue;
            }
            waiting.sort_unstable();
            let file = self.file(((desc >> 8) & 0xff_ffff) as u32);
            list.push(Resource {
                id: key,
                kind,
                created_at: format!("{file}:{}:{}", desc >> 32, slot.col.load(Relaxed)),
                held_by,
                held_permits,
                held_outside,
                more_holders,
                more_permits,
                waiters: waiting,
            });
        }
        list.sort_by_key(|r| r.id);
        let listed: std::collections::HashSet<u64> = list.iter().map(|r| r.id).collect();
        let waits = waits.into_iter().filter(|(_, key)| listed.contains(key)).collect();
        Resources {
            tracked: true,
            live,
            unlisted,
            dropped: self.dropped.load(Relaxed),
            waits_dropped: self.waits_dropped.load(Relaxed),
            holders_dropped: self.holders_dropped.load(Relaxed),
            files_dropped: self.files_dropped.load(Relaxed),
            list,
            waits,
        }
    }
}

/// A resource in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Resource {
    /// Stable while the resource lives.
    pub(crate) id: u64,
    /// `tokio::sync::Mutex`, ...
    #[serde(rename = "type", serialize_with = "type_str")]
    pub(crate) kind: Kind,
    /// `file:line:col` of the `new` that made it.
    pub(crate) created_at: String,
    /// Tasks holding it: the `Mutex`'s holder, the `RwLock`'s writer or
    /// readers, the tasks holding permits of a `Semaphore` (at most
    /// [`READERS`]). Always empty for kinds whose holders tokio does not
    /// report ([`Kind::holders_known`]).
    pub(crate) held_by: Vec<u64>,
    /// A `Semaphore`: the permits each task of `held_by` holds, in the same
    /// order; empty for the other kinds.
    pub(crate) held_permits: Vec<u64>,
    /// Held by code outside any task (`try_lock` on a thread of its own, a
    /// semaphore acquired in `block_on`).
    pub(crate) held_outside: bool,
    /// Readers beyond those listed.
    pub(crate) more_holders: u64,
    /// A `Semaphore`: permits held by tasks beyond those listed.
    pub(crate) more_permits: u64,
    /// Tasks waiting on it, by id.
    pub(crate) waiters: Vec<u64>,
}

fn type_str<S: serde::Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.type_name())
}

/// A resource as a waiting task's JSON names it: without its list of
/// waiters, which a semaphore with thousands of them would repeat on each.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResourceRef<'a> {
    pub(crate) id: u64,
    #[serde(rename = "type")]
    pub(crate) type_name: &'static str,
    pub(crate) created_at: &'a str,
    pub(crate) held_by: &'a [u64],
    pub(crate) held_permits: &'a [u64],
    pub(crate) held_outside: bool,
    pub(crate) more_holders: u64,
    pub(crate) more_permits: u64,
    /// How many tasks wait on it, this one included.
    pub(crate) waiting: usize,
}

impl Resource {
    /// What a waiting task's JSON says of it.
    pub(crate) fn as_ref(&self) -> ResourceRef<'_> {
        ResourceRef {
            id: self.id,
            type_name: self.kind.type_name(),
            created_at: &self.created_at,
            held_by: &self.held_by,
            held_permits: &self.held_permits,
            held_outside: self.held_outside,
            more_holders: self.more_holders,
            more_permits: self.more_permits,
            waiting: self.waiters.len(),
        }
    }

    /// `tokio::sync::Mutex created at src/main.rs:40:17`
    pub(crate) fn describe(&self) -> String {
        format!("{} created at {}", self.kind.type_name(), self.created_at)
    }

    /// `task 12`, `tasks 3, 4`, `a thread outside the runtime`, or `None`
    /// when no holder is known; a semaphore's holders with their permits:
    /// `task 12 (2 permits)`.
    pub(crate) fn holders_text(&self) -> Option<String> {
        let mut names: Vec<String> = Vec::new();
        let permits = |n: u64| if n == 1 { "1 permit".to_string() } else { format!("{n} permits") };
        let tasks: Vec<String> = match self.kind {
            Kind::Semaphore => self
                .held_by
                .iter()
                .zip(&self.held_permits)
                .map(|(t, &n)| format!("{t} ({})", permits(n)))
                .collect(),
            _ => self.held_by.iter().map(|t| t.to_string()).collect(),
        };
        match tasks.len() {
            0 => {}
            1 => names.push(format!("task {}", tasks[0])),
            _ => names.push(format!("tasks {}", tasks.join(", "))),
        }
        if self.held_outside {
            names.push("code outside any task".into());
        }
        if self.more_holders > 0 {
            names.push(format!("{} more readers", self.more_holders));
        }
        if self.more_permits > 0 {
            names.push(format!("other tasks ({})", permits(self.more_permits)));
        }
        (!names.is_empty()).then(|| names.join(" and "))
    }
}

/// The resources part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Resources {
    /// Resource tracking is on (deep mode, and not `TASKSCOPE_RESOURCES=off`).
    pub(crate) tracked: bool,
    /// Live resources tracked.
    pub(crate) live: u64,
    /// Held or waited-on resources left out of `list` (it keeps [`LISTED`]).
    pub(crate) unlisted: u64,
    /// Resources not tracked because the table was full.
    pub(crate) dropped: u64,
    /// Waits not recorded because the wait table was full.
    pub(crate) waits_dropped: u64,
    /// Readers or permit holders counted without their task id (beyond the
    /// few kept per resource).
    pub(crate) holders_dropped: u64,
    /// Resources whose creation file shows as `<other>` (the table of
    /// distinct files was full).
    pub(crate) files_dropped: u64,
    /// The resources that are held or waited on, by id.
    pub(crate) list: Vec<Resource>,
    /// (task id, resource id): what each waiting task waits on.
    #[serde(skip)]
    pub(crate) waits: Vec<(u64, u64)>,
}

impl Resources {
    pub(crate) fn get(&self, id: u64) -> Option<&Resource> {
        self.list.binary_search_by_key(&id, |r| r.id).ok().map(|i| &self.list[i])
    }

    /// The resource `task` waits on.
    #[cfg(test)]
    pub(crate) fn waited_by(&self, task: u64) -> Option<&Resource> {
        let key = self.waits.iter().find(|(t, _)| *t == task)?.1;
        self.get(key)
    }

    /// An index from task id to the resource it waits on.
    pub(crate) fn wait_index(&self) -> HashMap<u64, &Resource> {
        self.waits.iter().filter_map(|&(t, k)| Some((t, self.get(k)?))).collect()
    }

    /// An index from task id to the resources it holds.
    pub(crate) fn hold_index(&self) -> HashMap<u64, Vec<&Resource>> {
        let mut holds: HashMap<u64, Vec<&Resource>> = HashMap::new();
        for r in &self.list {
            for &task in &r.held_by {
                holds.entry(task).or_default().push(r);
            }
        }
        holds
    }
}

static TABLE: OnceLock<ResourceTable> = OnceLock::new();

/// The process's resource table, made on first use; `None` when resource
/// tracking is off.
pub(crate) fn table() -> Option<&'static ResourceTable> {
    if !enabled_by_env() {
        return None;
    }
    Some(TABLE.get_or_init(|| ResourceTable::new(capacity_from_env(), WAITS)))
}

/// The table, if it has been made (when deep mode was armed, its layer made,
/// or a resource seen).
pub(crate) fn existing() -> Option<&'static ResourceTable> {
    TABLE.get()
}

/// tokio's id of the task being polled (or dropped) on this thread.
#[inline]
pub(crate) fn current_task() -> Option<u64> {
    tokio::task::try_id().map(crate::tasks::id_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutex(t: &ResourceTable, line: u32) -> u64 {
        t.open(&NewResource { kind: Some(Kind::Mutex), file: Some("src/main.rs"), line, col: 17 }).unwrap()
    }

    #[test]
    fn a_mutex_shows_its_holder_and_waiters_with_its_creation_site() {
        let t = ResourceTable::new(8, 64);
        let m = mutex(&t, 40);
        let idle = mutex(&t, 41);
        t.set_locked(m, Some(12), true);
        t.polled(m, 13, false, 0);
        t.polled(m, 14, false, 0);
        t.polled(m, 14, false, 0);
        let r = t.read();
        assert_eq!(r.live, 2);
        assert_eq!(r.list.len(), 1, "an idle resource is not listed: {r:?}");
        let res = &r.list[0];
        assert_eq!(res.id, m);
        assert_eq!(res.describe(), "tokio::sync::Mutex created at src/main.rs:40:17");
        assert_eq!(res.held_by, [12]);
        assert_eq!(res.waiters, [13, 14]);
        assert_eq!(res.holders_text().as_deref(), Some("task 12"));
        assert_eq!(r.waited_by(13).map(|r| r.id), Some(m));
        assert!(r.get(idle).is_none());
        // 13 gets it: its wait ends, and it holds the lock.
        t.polled(m, 13, true, 0);
        t.set_locked(m, Some(12), false);
        t.set_locked(m, Some(13), true);
        let r = t.read();
        assert_eq!((r.list[0].held_by.as_slice(), r.list[0].waiters.as_slice()), (&[13][..], &[14][..]));
        assert!(r.waited_by(13).is_none());
    }

    #[test]
    fn a_cancelled_wait_ends_when_its_async_op_is_dropped() {
        let t = ResourceTable::new(8, 64);
        let a = mutex(&t, 1);
        let b = mutex(&t, 2);
        t.polled(a, 5, false, 0);
        // Dropping an op on another resource leaves the wait alone.
        t.op_dropped(b, 5);
        assert_eq!(t.wait_of(5), Some(a));
        t.op_dropped(a, 5);
        assert_eq!(t.wait_of(5), None);
    }

    #[test]
    fn slots_are_reused_and_stale_keys_find_nothing() {
        let t = ResourceTable::new(2, 64);
        let a = mutex(&t, 1);
        let b = mutex(&t, 2);
        assert!(t.open(&NewResource { kind: Some(Kind::Mutex), ..Default::default() }).is_none());
        assert_eq!(t.dropped.load(Relaxed), 1);
        t.retain(a);
        assert!(!t.release(a));
        t.polled(a, 9, false, 0);
        assert!(t.release(a));
        assert!(t.get(a).is_none());
        let c = mutex(&t, 3);
        assert_eq!(slot_of(a), slot_of(c));
        assert_ne!(a, c);
        assert!(t.get(a).is_none());
        t.set_locked(a, Some(1), true);
        assert_eq!(t.get(c).unwrap().holder.load(Relaxed), 0, "a stale key must not reach the new resource");
        // Task 9's wait names the dropped resource: no longer listed.
        assert!(t.read().waited_by(9).is_none());
        assert!(t.get(b).is_some());
    }

    #[test]
    fn rwlock_readers_are_kept_then_counted() {
        let t = ResourceTable::new(4, 64);
        let l = t
            .open(&NewResource { kind: Some(Kind::RwLock), file: Some("src/db.rs"), line: 3, col: 9 })
            .unwrap();
        for task in 1..=6 {
            t.reader(l, Some(task), true);
        }
        let r = t.read();
        assert_eq!(r.list[0].held_by, [1, 2, 3, 4]);
        assert_eq!(r.list[0].more_holders, 2);
        assert_eq!(r.list[0].holders_text().as_deref(), Some("tasks 1, 2, 3, 4 and 2 more readers"));
        t.reader(l, Some(2), false);
        t.reader(l, Some(6), false);
        t.reader(l, Some(5), false);
        let r = t.read();
        assert_eq!((r.list[0].held_by.as_slice(), r.list[0].more_holders), (&[1, 3, 4][..], 0));
        // A guard dropped by another task: some reader left.
        t.reader(l, Some(99), false);
        assert_eq!(t.read().list[0].held_by.len(), 2);
        t.set_locked(l, None, true);
        assert_eq!(t.read().list[0].holders_text().as_deref(), Some("tasks 3, 4 and code outside any task"));
    }

    #[test]
    fn semaphore_permits_are_kept_per_task_then_counted() {
        let t = ResourceTable::new(4, 64);
        let s = t
            .open(&NewResource { kind: Some(Kind::Semaphore), file: Some("src/pool.rs"), line: 8, col: 5 })
            .unwrap();
        t.permits_acquired(s, Some(1), 2);
        t.permits_acquired(s, Some(1), 1);
        for task in 2..=5 {
            t.permits_acquired(s, Some(task), 1);
        }
        let r = t.read();
        let res = &r.list[0];
        assert_eq!(
            (res.held_by.as_slice(), res.held_permits.as_slice()),
            (&[1, 2, 3, 4][..], &[3, 1, 1, 1][..])
        );
        assert_eq!((res.more_permits, res.more_holders), (1, 0));
        assert_eq!(r.holders_dropped, 1);
        assert_eq!(
            res.holders_text().as_deref(),
            Some("tasks 1 (3 permits), 2 (1 permit), 3 (1 permit), 4 (1 permit) and other tasks (1 permit)")
        );
        // Task 1 gives two back, then the last; task 5 (unlisted) its own.
        t.permits_released(s, Some(1), 2);
        assert_eq!(t.read().list[0].held_permits[0], 1);
        t.permits_released(s, Some(1), 1);
        t.permits_released(s, Some(5), 1);
        let r = t.read();
        assert_eq!((r.list[0].held_by.as_slice(), r.list[0].more_permits), (&[2, 3, 4][..], 0));
        // A task that waits on it gives back what its cancelled acquire had
        // been assigned: no holder loses anything.
        t.polled(s, 9, false, 2);
        assert_eq!(t.requested(s, 9), Some(2));
        t.permits_released(s, Some(9), 1);
        assert_eq!(t.read().list[0].held_by, [2, 3, 4]);
        t.op_dropped(s, 9);
        // A permit moved to task 7 and dropped there: some holder left.
        t.permits_released(s, Some(7), 1);
        assert_eq!(t.read().list[0].held_by.len(), 2);
        // A freed entry is taken by the next holder.
        t.permits_acquired(s, Some(8), 4);
        let r = t.read();
        assert!(r.list[0].held_by.contains(&8) && r.list[0].held_permits.contains(&4), "{:?}", r.list[0]);
        // More given back than is known to be held: nothing goes negative.
        t.permits_released(s, Some(8), 100);
        let left: u64 = t.read().list.iter().flat_map(|r| r.held_permits.clone()).sum();
        assert_eq!(left, 0);
    }

    #[test]
    fn the_wait_table_is_bounded_and_counts_overflow() {
        let t = ResourceTable::new(4, 64);
        let m = mutex(&t, 1);
        for task in 1..=200 {
            t.polled(m, task, false, 0);
        }
        let r = t.read();
        let recorded = r.list[0].waiters.len() as u64;
        assert!((32..=64).contains(&recorded), "{recorded}");
        assert_eq!(recorded + t.waits_dropped.load(Relaxed), 200);
        for task in 1..=200 {
            t.polled(m, task, true, 0);
        }
        assert!(t.read().list.is_empty());
        // Tombstones are reused.
        for task in 300..=330 {
            t.polled(m, task, false, 0);
        }
        assert_eq!(t.read().list[0].waiters.len(), 31);
    }

    #[test]
    fn files_past_the_table_show_as_other_and_are_counted() {
        let t = ResourceTable::new(4, 64);
        let names: Vec<String> = (0..=FILES).map(|i| format!("src/f{i}.rs")).collect();
        let mut last = 0;
        for f in &names {
            let key =
                t.open(&NewResource { kind: Some(Kind::Mutex), file: Some(f), line: 1, col: 1 }).unwrap();
            last = key;
            t.close(key);
        }
        assert_eq!(t.files_dropped.load(Relaxed), 1);
        let key = t
            .open(&NewResource { kind: Some(Kind::Mutex), file: Some(&names[FILES]), line: 2, col: 3 })
            .unwrap();
        assert_ne!(key, last);
        t.set_locked(key, Some(1), true);
        assert_eq!(t.read().list[0].created_at, "<other>:2:3");
        assert_eq!(t.read().files_dropped, 2);
    }

    #[test]
    fn the_agents_own_resources_are_not_tracked() {
        let t = ResourceTable::new(4, 64);
        let own = NewResource { kind: Some(Kind::Semaphore), file: Some(file!()), line: 1, col: 1 };
        assert!(t.open(&own).is_none());
        assert_eq!(t.dropped.load(Relaxed), 0);
        let theirs = NewResource { file: Some("tests/app.rs"), ..own };
        assert!(t.open(&theirs).is_some());
    }

    #[test]
    fn task_ids_come_from_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (inside, expected) = rt.block_on(async {
            let h = tokio::spawn(async { (current_task(), tokio::task::id().to_string()) });
            h.await.unwrap()
        });
        assert_eq!(inside.map(|id| id.to_string()), Some(expected));
        assert_eq!(current_task(), None);
    }
}
