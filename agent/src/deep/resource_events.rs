//! What deep mode reads of tokio's resource instrumentation, for the lean
//! subscriber and for the layer; the table it fills is
//! [`super::resources`].
//!
//! How tokio 1.54 emits it (`sync/mutex.rs`, `sync/rwlock.rs`,
//! `sync/semaphore.rs`, `sync/barrier.rs`, `util/trace.rs`):
//!
//! - `Mutex::new` (and the others' `new`, but not `const_new`) makes a root
//!   `runtime.resource` span with `concrete_type`, `kind` and `loc.*`, and
//!   emits its initial state inside it;
//! - `lock()` (`read()`, `write()`, `acquire()`, `wait()`) makes, inside the
//!   resource span, a `runtime.resource.async_op` span and its
//!   `runtime.resource.async_op.poll` child; each poll enters the three and
//!   emits a `runtime::resource::poll_op` event with `is_ready`; dropping
//!   the future closes the async op span;
//! - `locked = true` is emitted in the resource span once the guard is
//!   made, in the task that locked; `locked = false` when the guard drops.
//!   `RwLock` emits `write_locked` and `current_readers` (`.op = add/sub`).
//!
//! A `Semaphore`'s permits (`sync/batch_semaphore.rs`): `Semaphore::new`
//! makes its inner semaphore's `runtime.resource` span (`is_internal`) with
//! the `Semaphore`'s span entered, and every acquire makes the inner
//! semaphore's own async op span inside it. Those spans are enabled only
//! then, so they name the `Semaphore`; the inner semaphore of a channel or a
//! `Mutex` is made outside any `Semaphore`'s span and stays disabled.
//!
//! - An acquire's first poll emits `permits_requested = n` (in the inner
//!   async op span), then the `Semaphore`'s async op `poll_op`: its ready
//!   poll makes the polling task a holder of those `n` permits (a pending
//!   one keeps `n` with the wait, for the ready poll to come).
//! - Permits come back through the inner semaphore, with no `Semaphore`
//!   span entered: `permits = n, permits.op = "add"` (in the inner
//!   resource span) when they go back to the semaphore, `permits_obtained =
//!   n, permits.op = "add"` (in a waiter's inner async op span) when they go
//!   straight to a waiter. Either, outside the `Semaphore`'s own poll span,
//!   is the current task giving `n` back; inside it, it is the polling
//!   task's own acquire being served.
//!
//! The events carry no resource id: their resource is the span entered
//! around them. The lean subscriber keeps a small per-thread stack of the
//! resource spans entered (its ids name the resource, see [`span_id`]); the
//! layer gives each such span the same id in its extensions and keeps the
//! same stack from its enter and exit callbacks, so both share this logic.
//!
//! Cost: the resource spans of the four kinds are always enabled (one table
//! slot each, taken under a short lock); async ops and the events are
//! enabled only while a tracked resource span is entered on the thread
//! (`Interest::sometimes`, one thread-local read), so the same callsites in
//! `Interval::tick` or `oneshot::Sender::closed` cost a call and a read. The
//! inner semaphore's callsites (module `batch_semaphore`) fire on every
//! bounded-channel send and `Mutex` lock: there they cost the same call and
//! read (plus a slot lookup under a `Mutex`'s span), and are enabled only
//! under a `Semaphore`'s.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata};

use super::resources::{self, current_task, Kind, NewResource, ResourceTable};

/// What a callsite is to resource tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A `runtime.resource` span of a tracked kind.
    Resource,
    /// A `runtime.resource.async_op` span (of `util::trace::async_op`).
    AsyncOp,
    /// Its `runtime.resource.async_op.poll` child.
    OpPoll,
    /// `runtime::resource::state_update` of a `Mutex` or `RwLock`.
    StateUpdate,
    /// `runtime::resource::poll_op` of an async op.
    PollOp,
    /// A span of a semaphore's inner semaphore (module `batch_semaphore`):
    /// its `runtime.resource` span and the `runtime.resource.async_op` span
    /// of each acquire. Enabled only inside a `Semaphore`'s span, so never
    /// for a channel's or a `Mutex`'s inner semaphore.
    Inner,
    /// The inner semaphore's `runtime::resource::state_update` (`permits`,
    /// `permits.op`): permits taken from or returned to it.
    PermitUpdate,
    /// The inner semaphore's `runtime::resource::async_op::state_update`
    /// (`permits_requested`, `permits_obtained`): an acquire's request, and
    /// permits assigned to a waiter.
    OpPermits,
    None,
}

const TRACKED: [&str; 4] =
    ["tokio::sync::mutex", "tokio::sync::rwlock", "tokio::sync::semaphore", "tokio::sync::barrier"];
const ASYNC_OPS: &str = "tokio::util::trace";
const INNER: &str = "tokio::sync::batch_semaphore";

/// Callsites classified at registration, by the address of their static
/// metadata, so that the per-call paths need no string compares: open
/// addressing over a fixed table (a full table falls back to [`classify`]).
const CLASSES: usize = 256;
static CLASS_KEYS: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];
static CLASS_VALUES: [AtomicU8; CLASSES] = [const { AtomicU8::new(0) }; CLASSES];

fn class_home(addr: usize) -> usize {
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 7) % CLASSES
}

fn class_to_u8(class: Class) -> u8 {
    match class {
        Class::Resource => 1,
        Class::AsyncOp => 2,
        Class::OpPoll => 3,
        Class::StateUpdate => 4,
        Class::PollOp => 5,
        Class::None => 6,
        Class::Inner => 7,
        Class::PermitUpdate => 8,
        Class::OpPermits => 9,
    }
}

fn class_from_u8(n: u8) -> Option<Class> {
    Some(match n {
        1 => Class::Resource,
        2 => Class::AsyncOp,
        3 => Class::OpPoll,
        4 => Class::StateUpdate,
        5 => Class::PollOp,
        6 => Class::None,
        7 => Class::Inner,
        8 => Class::PermitUpdate,
        9 => Class::OpPermits,
        _ => return None,
    })
}

/// Classifies a callsite once and remembers it.
fn register(meta: &Metadata<'_>) -> Class {
    let class = classify(meta);
    let addr = meta as *const Metadata<'_> as usize;
    let mut i = class_home(addr);
    for _ in 0..16 {
        let key = &CLASS_KEYS[i];
        match key.compare_exchange(0, addr, AcqRel, Acquire) {
            Ok(_) => {
                CLASS_VALUES[i].store(class_to_u8(class), Release);
                break;
            }
            Err(seen) if seen == addr => break,
            Err(_) => i = (i + 1) % CLASSES,
        }
    }
    class
}

/// The class of a callsite: remembered if it was registered, else computed.
#[inline]
pub(crate) fn class(meta: &Metadata<'_>) -> Class {
    let addr = meta as *const Metadata<'_> as usize;
    let mut i = class_home(addr);
    for _ in 0..16 {
        match CLASS_KEYS[i].load(Acquire) {
            0 => break,
            key if key == addr => {
                if let Some(class) = class_from_u8(CLASS_VALUES[i].load(Acquire)) {
                    return class;
                }
                break;
            }
            _ => i = (i + 1) % CLASSES,
        }
    }
    classify(meta)
}

/// Classifies a callsite (string compares: call it at registration, or on
/// the resource paths only).
pub(crate) fn classify(meta: &Metadata<'_>) -> Class {
    let target = meta.target();
    if meta.is_span() {
        match meta.name() {
            "runtime.resource"
                if TRACKED.contains(&target) && meta.fields().field("is_internal").is_none() =>
            {
                Class::Resource
            }
            "runtime.resource.async_op" if target == ASYNC_OPS => Class::AsyncOp,
            "runtime.resource.async_op.poll" if target == ASYNC_OPS => Class::OpPoll,
            "runtime.resource" | "runtime.resource.async_op" if target == INNER => Class::Inner,
            _ => Class::None,
        }
    } else {
        let module = meta.module_path().unwrap_or("");
        match target {
            "runtime::resource::state_update"
                if module.starts_with("tokio::sync::mutex") || module.starts_with("tokio::sync::rwlock") =>
            {
                Class::StateUpdate
            }
            "runtime::resource::poll_op" if module == ASYNC_OPS => Class::PollOp,
            "runtime::resource::state_update" if module == INNER => Class::PermitUpdate,
            "runtime::resource::async_op::state_update" if module == INNER => Class::OpPermits,
            _ => Class::None,
        }
    }
}

/// Whether resource tracking is on; it needs deep mode too.
pub(crate) fn on() -> bool {
    resources::enabled_by_env()
}

/// The lean subscriber's interest in a callsite, if it is a resource one.
pub(crate) fn interest(meta: &Metadata<'_>) -> Option<Interest> {
    if !on() {
        return None;
    }
    match register(meta) {
        Class::None => None,
        Class::Resource => Some(Interest::always()),
        _ => Some(Interest::sometimes()),
    }
}

/// The lean subscriber's `enabled` for a resource callsite (and the layer's
/// per-layer filter): async ops and events only inside a tracked resource
/// span, and the inner semaphore's spans and events only inside a
/// `Semaphore`'s.
#[inline]
pub(crate) fn enabled(meta: &Metadata<'_>) -> bool {
    match ENTERED.try_with(|e| e.len.get()).unwrap_or(0) {
        0 => on() && class(meta) == Class::Resource,
        _ => {
            on() && match class(meta) {
                Class::None => false,
                Class::Inner | Class::PermitUpdate | Class::OpPermits => in_semaphore(),
                _ => true,
            }
        }
    }
}

/// Whether the innermost resource span entered on this thread is a
/// tracked `Semaphore`'s.
fn in_semaphore() -> bool {
    let (Some(key), Some(table)) = (current_key(), resources::existing()) else { return false };
    table.kind_of(key) == Some(Kind::Semaphore)
}

// ---------------------------------------------------------------------------
// The lean subscriber's span ids.
//
// A task span's id has a slot + 1 in its low 32 bits, never 0; a resource
// span's id has 0 there: `role << 62 | key << 32`, the key being at most 30
// bits. `DUMMY` names an untracked resource (a full table).

const ROLE_RESOURCE: u64 = 0;
const ROLE_ASYNC_OP: u64 = 1;
const ROLE_OP_POLL: u64 = 2;
/// A span of a semaphore's inner semaphore: names the `Semaphore`, holds
/// nothing.
const ROLE_INNER: u64 = 3;
const DUMMY: u64 = 0xffff << 32;

/// The lean subscriber's id of a span of the resource of `key`.
fn span_id(role: u64, key: u64) -> u64 {
    (role << 62) | (key << 32)
}

/// True for an id the lean subscriber gave a resource-related span.
#[inline(always)]
pub(crate) fn is_id(id: u64) -> bool {
    id & 0xffff_ffff == 0
}

fn key_of(id: u64) -> Option<u64> {
    (id != DUMMY).then_some((id >> 32) & 0x3fff_ffff)
}

fn role_of(id: u64) -> u64 {
    id >> 62
}

/// The resource spans entered on this thread, innermost last. A semaphore's
/// acquire polls six deep: the `Semaphore`'s resource, async op and poll
/// spans, then its inner semaphore's. A cell per entry, so that entering and
/// exiting touch one word, not the whole stack.
struct Entered {
    ids: [Cell<u64>; 8],
    /// May exceed the array; the excess is not kept.
    len: Cell<u32>,
}

thread_local! {
    static ENTERED: Entered = const { Entered { ids: [const { Cell::new(0) }; 8], len: Cell::new(0) } };
    /// The last `permits_requested` seen on this thread: (task, key, n).
    /// tokio emits it when an acquire future is first polled, just before
    /// that poll's `poll_op`.
    static REQUEST: Cell<(u64, u64, u32)> = const { Cell::new((0, 0, 0)) };
}

/// Whether an async op's poll span of the resource of `key` is entered on
/// this thread: permits assigned inside it are the polling task's own, not
/// given back by it.
fn in_op_poll(key: u64) -> bool {
    ENTERED
        .try_with(|e| {
            let len = (e.len.get() as usize).min(e.ids.len());
            e.ids[..len]
                .iter()
                .map(Cell::get)
                .any(|id| role_of(id) == ROLE_OP_POLL && key_of(id) == Some(key))
        })
        .unwrap_or(false)
}

/// The permits `task` asked of `key` in the acquire it just started, once.
fn take_request(task: Option<u64>, key: u64) -> Option<u32> {
    let task = task?;
    REQUEST
        .try_with(|r| {
            let (t, k, n) = r.get();
            (t == task && k == key).then(|| {
                r.set((0, 0, 0));
                n
            })
        })
        .ok()
        .flatten()
}

/// The key of the innermost resource span entered on this thread.
fn current_key() -> Option<u64> {
    let top = ENTERED.try_with(|e| Some(e.ids.get((e.len.get() as usize).checked_sub(1)?)?.get())).ok()??;
    key_of(top)
}

/// Reads a resource span's fields.
#[derive(Default)]
struct NewVisitor<'a> {
    kind: Option<Kind>,
    file: Option<String>,
    line: u32,
    col: u32,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Visit for NewVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "concrete_type" => self.kind = Kind::from_concrete(value),
            "loc.file" => self.file = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "loc.line" => self.line = value as u32,
            "loc.col" => self.col = value as u32,
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value as u64);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "concrete_type" | "loc.file") {
            let text = format!("{value:?}");
            self.record_str(field, text.trim_matches('"'));
        }
    }
}

/// Opens the resource of a `runtime.resource` span.
fn open(table: &ResourceTable, attrs: &Attributes<'_>) -> Option<u64> {
    let mut v = NewVisitor::default();
    attrs.record(&mut v);
    table.open(&NewResource { kind: v.kind, file: v.file.as_deref(), line: v.line, col: v.col })
}

/// The lean subscriber's `new_span` for a resource callsite.
pub(crate) fn new_span(attrs: &Attributes<'_>) -> Id {
    Id::from_u64(lean_id(attrs))
}

/// The id the lean subscriber gives a resource-related span (the layer
/// keeps it in the span's extensions): its role and its resource's key.
fn lean_id(attrs: &Attributes<'_>) -> u64 {
    let Some(table) = resources::table() else { return DUMMY };
    let id = match class(attrs.metadata()) {
        Class::Resource => open(table, attrs).map(|key| span_id(ROLE_RESOURCE, key)),
        // No reference of their own: the async op holds a clone of the
        // resource's span, which outlives them (tokio's `AsyncOpTracingCtx`
        // drops the op's spans first).
        class @ (Class::AsyncOp | Class::OpPoll | Class::Inner) => {
            current_key().filter(|&k| table.get(k).is_some()).map(|key| {
                let role = match class {
                    Class::AsyncOp => ROLE_ASYNC_OP,
                    Class::OpPoll => ROLE_OP_POLL,
                    _ => ROLE_INNER,
                };
                span_id(role, key)
            })
        }
        _ => None,
    };
    id.unwrap_or(DUMMY)
}

/// A resource-related span is entered on this thread.
#[inline]
pub(crate) fn enter(id: u64) {
    let _ = ENTERED.try_with(|e| {
        let len = e.len.get();
        if let Some(slot) = e.ids.get(len as usize) {
            slot.set(id);
        }
        e.len.set(len + 1);
    });
}

/// ... and exited (spans are exited innermost first).
#[inline]
pub(crate) fn exit(_id: u64) {
    let _ = ENTERED.try_with(|e| e.len.set(e.len.get().saturating_sub(1)));
}

/// The lean subscriber's `clone_span` of a resource-related span.
pub(crate) fn clone_span(id: u64) {
    if role_of(id) != ROLE_RESOURCE {
        // Clones of an async op's spans hold nothing (see `new_span`).
        return;
    }
    if let (Some(key), Some(table)) = (key_of(id), resources::existing()) {
        table.retain(key);
    }
}

/// The lean subscriber's `try_close` of a resource-related span: an async
/// op's span closes when its future is dropped, ending any wait of the task
/// dropping it.
pub(crate) fn try_close(id: u64) -> bool {
    let (Some(key), Some(table)) = (key_of(id), resources::existing()) else { return false };
    match role_of(id) {
        ROLE_RESOURCE => table.release(key),
        ROLE_ASYNC_OP => {
            if table.anyone_waits() {
                if let Some(task) = current_task() {
                    table.op_dropped(key, task);
                }
            }
            false
        }
        _ => false,
    }
}

/// True if the lean subscriber should hand `event` to [`event`]: only
/// resource events and waker events are enabled, and only resource events
/// have a target starting with `runtime::`.
#[inline(always)]
pub(crate) fn is_event(meta: &Metadata<'_>) -> bool {
    meta.target().as_bytes().first() == Some(&b'r')
}

/// Reads a resource event's fields.
#[derive(Default)]
struct EventVisitor {
    locked: Option<bool>,
    is_ready: Option<bool>,
    readers: bool,
    op: Option<bool>,
    /// `permits` (`PermitUpdate`) or `permits_obtained` (`OpPermits`).
    permits: Option<u64>,
    requested: Option<u64>,
    /// `permits.op = "add"`.
    permits_add: bool,
}

impl Visit for EventVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "locked" | "write_locked" => self.locked = Some(value),
            "is_ready" => self.is_ready = Some(value),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "current_readers" => self.readers = true,
            "permits" | "permits_obtained" => self.permits = Some(value),
            "permits_requested" => self.requested = Some(value),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "current_readers.op" => {
                self.op = match value {
                    "add" => Some(true),
                    "sub" => Some(false),
                    _ => None,
                }
            }
            "permits.op" => self.permits_add = value == "add",
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "current_readers.op" | "permits.op") {
            let text = format!("{value:?}");
            self.record_str(field, text.trim_matches('"'));
        }
    }
}

/// A resource event on the resource of `key`.
fn apply(table: &ResourceTable, key: u64, event: &Event<'_>) {
    let mut v = EventVisitor::default();
    event.record(&mut v);
    match class(event.metadata()) {
        Class::PermitUpdate | Class::OpPermits => return permits(table, key, &v),
        Class::PollOp if v.is_ready.is_some() && table.kind_of(key) == Some(Kind::Semaphore) => {
            return semaphore_polled(table, key, v.is_ready == Some(true));
        }
        _ => {}
    }
    if let Some(ready) = v.is_ready {
        // A ready poll of a task that never waited (the common, uncontended
        // case) has nothing to clear.
        if !ready || table.anyone_waits() {
            if let Some(task) = current_task() {
                table.polled(key, task, ready, 0);
            }
        }
    } else if let Some(locked) = v.locked {
        table.set_locked(key, current_task(), locked);
    } else if let (true, Some(add)) = (v.readers, v.op) {
        table.reader(key, current_task(), add);
    }
}

/// A `poll_op` of a `Semaphore`'s acquire: not ready, the task waits for the
/// permits it asked for; ready, it holds them.
///
/// A ready acquire of a closed semaphore (an error) reads as holding them
/// too: tokio's events do not tell it apart.
fn semaphore_polled(table: &ResourceTable, key: u64, ready: bool) {
    let task = current_task();
    let request = take_request(task, key);
    if !ready {
        if let Some(task) = task {
            table.polled(key, task, false, request.unwrap_or(0));
        }
        return;
    }
    let waited = task.and_then(|t| table.requested(key, t));
    if let Some(task) = task.filter(|_| table.anyone_waits()) {
        table.polled(key, task, true, 0);
    }
    table.permits_acquired(key, task, request.or(waited).unwrap_or(1) as u64);
}

/// The inner semaphore of a `Semaphore`:
///
/// - `permits_requested = n`: the current task starts an acquire of `n`;
/// - permits given back to the semaphore (`permits = n, permits.op = add`)
///   or assigned to a waiter (`permits_obtained = n, permits.op = add`)
///   outside that waiter's own poll: the current task gave them back, by
///   dropping a permit or cancelling an acquire.
fn permits(table: &ResourceTable, key: u64, v: &EventVisitor) {
    if let Some(n) = v.requested {
        if let Some(task) = current_task() {
            let _ = REQUEST.try_with(|r| r.set((task, key, n.min(u32::MAX as u64) as u32)));
        }
        return;
    }
    match v.permits {
        Some(n) if n > 0 && v.permits_add && !in_op_poll(key) => {
            table.permits_released(key, current_task(), n);
        }
        _ => {}
    }
}

/// The lean subscriber's `event` for a resource event.
pub(crate) fn event(event: &Event<'_>) {
    if let (Some(key), Some(table)) = (current_key(), resources::existing()) {
        apply(table, key, event);
    }
}

/// The layer's part. The `Registry` names the spans; each resource-related
/// span keeps the id the lean subscriber would have given it in its
/// extensions, and the layer's enter and exit keep the same per-thread stack
/// of them, so that events, filters and the lean subscriber share one logic.
pub(crate) mod layer {
    use super::*;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// The lean id of a resource-related span (see [`lean_id`]).
    struct LeanId(u64);

    fn lean_id_of<S>(id: &Id, ctx: &Context<'_, S>) -> Option<u64>
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        ctx.span(id)?.extensions().get::<LeanId>().map(|l| l.0)
    }

    pub(crate) fn on_new_span<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        if !matches!(class(attrs.metadata()), Class::Resource | Class::AsyncOp | Class::OpPoll | Class::Inner)
        {
            return;
        }
        let lean = lean_id(attrs);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(LeanId(lean));
        } else if role_of(lean) == ROLE_RESOURCE {
            // No span to keep it in: never closed, so not tracked either.
            if let (Some(key), Some(table)) = (key_of(lean), resources::existing()) {
                table.close(key);
            }
        }
    }

    /// A span that is not a task's is entered: a resource-related one
    /// joins the per-thread stack.
    pub(crate) fn on_enter<S>(id: &Id, ctx: &Context<'_, S>)
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(lean) = lean_id_of(id, ctx) {
            enter(lean);
        }
    }

    /// ... and exited.
    pub(crate) fn on_exit<S>(id: &Id, ctx: &Context<'_, S>)
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(lean) = lean_id_of(id, ctx) {
            exit(lean);
        }
    }

    pub(crate) fn on_event(e: &Event<'_>) {
        if matches!(
            class(e.metadata()),
            Class::StateUpdate | Class::PollOp | Class::PermitUpdate | Class::OpPermits
        ) {
            event(e);
        }
    }

    pub(crate) fn on_close<S>(id: &Id, ctx: &Context<'_, S>)
    where
        S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(lean) = lean_id_of(id, ctx) else { return };
        let (Some(key), Some(table)) = (key_of(lean), resources::existing()) else { return };
        match role_of(lean) {
            ROLE_RESOURCE => table.close(key),
            ROLE_ASYNC_OP if table.anyone_waits() => {
                if let Some(task) = current_task() {
                    table.op_dropped(key, task);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_span_ids_never_look_like_task_span_ids() {
        let key = resources::key(59_999, 0x3fff);
        for role in [ROLE_RESOURCE, ROLE_ASYNC_OP, ROLE_OP_POLL] {
            let id = span_id(role, key);
            assert!(is_id(id));
            assert_eq!((key_of(id), role_of(id)), (Some(key), role));
        }
        assert!(is_id(DUMMY) && key_of(DUMMY).is_none());
        // Task spans: `generation << 32 | slot + 1`, and the untracked one.
        assert!(!is_id((7 << 32) | 1));
        assert!(!is_id(u64::MAX));
    }
}
