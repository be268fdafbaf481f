//! Heap: a sampling global allocator ([`Allocator`]), the fixed tables of
//! sampled stacks and live sampled blocks it feeds (each tagged with the
//! task being polled), exact per-thread totals, and the readers behind the
//! heap profiles, the snapshot's heap section and the growth detector.
//!
//! The allocator's hot path is [`counters`]; a sample is taken in
//! [`sample`] (stack from [`stack`], tables [`table`] and [`live`]), and its
//! block laid out by [`block`] so that frees recognize it. [`sampler`] has
//! the statistics; [`profile`], [`summary`], [`history`] and [`growth`] are
//! the read side, off the hot path.

mod allocator;
mod block;
mod counters;
pub(crate) mod growth;
mod history;
mod live;
mod profile;
mod sample;
mod sampler;
mod stack;
mod summary;
mod symbols;
mod table;

pub use allocator::Allocator;
pub(crate) use counters::installed;
pub(crate) use history::start as start_history;
pub(crate) use profile::{take, HeapProfile, Record};
pub(crate) use sampler::DEFAULT_SAMPLE_BYTES;
pub(crate) use summary::{summary, HeapSummary, HOW_TO_ENABLE, SAMPLING_OFF};
#[cfg(test)]
pub(crate) use symbols::Frame;
pub(crate) use table::Counts;

/// Runs before `main`, on the initial thread: records its stack bounds
/// (reading `/proc/self/maps` is fine here, not inside the allocator) and
/// the sampling rate from the environment, so that neither has to be done
/// inside the allocator.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(target_os = "linux")]
extern "C" fn before_main() {
    stack::record_main_thread();
    counters::set_rate(crate::config::heap_sample_bytes());
    if crate::config::disabled() {
        counters::set_passthrough();
    }
}
