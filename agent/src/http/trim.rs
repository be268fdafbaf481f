//! Gives back to the system the memory that the agent's answers used.
//!
//! A dump of a large app allocates megabytes on the agent's threads and
//! frees them once sent. glibc's allocator keeps freed memory in the arena
//! of the thread that used it, and since other allocations sit between the
//! freed blocks, it seldom returns it by itself: under repeated dumps the
//! process's resident memory creeps up towards a plateau well above what is
//! in use (+136 MiB over a 10-minute stress soak; see BENCHMARKS.md). So
//! once answers have been sent, at most once every [`EVERY`], the agent's
//! server asks the allocator to release the free pages of its arenas
//! (`malloc_trim(0)`). Only memory already freed is released, the app's
//! included; nothing in use moves. Elsewhere than glibc this does nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The shortest time between two trims.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// Answers given, by any router of the agent.
static ANSWERED: AtomicU64 = AtomicU64::new(0);
/// Trims done.
static TRIMS: AtomicU64 = AtomicU64::new(0);

/// Counts an answer: there is memory to give back once it is sent.
pub(crate) fn note_answer() {
    ANSWERED.fetch_add(1, Relaxed);
}

/// Runs on the agent's own server, for as long as it serves: every
/// [`EVERY`], trims if anything was answered since the last look.
pub(crate) async fn after_answers() {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = ANSWERED.load(Relaxed);
    loop {
        every.tick().await;
        let answered = ANSWERED.load(Relaxed);
        if answered != seen {
            seen = answered;
            // It takes the allocator's locks for a few milliseconds: off
            // the thread that accepts connections.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only gives free pages back to the system; it
    // takes each arena's lock, as `malloc` does.
    unsafe {
        libc::malloc_trim(0);
    }
    TRIMS.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trim follows answers, within [`EVERY`]; with no answer since the
    /// last one there is none.
    #[tokio::test(start_paused = true)]
    async fn trims_follow_answers_and_only_answers() {
        let trimmer = tokio::spawn(after_answers());
        let settle = || async {
            // Lets the blocking trim finish (real threads, paused clock).
            for _ in 0..100 {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        tokio::time::sleep(EVERY * 3).await;
        settle().await;
        let before = TRIMS.load(Relaxed);
        note_answer();
        tokio::time::sleep(EVERY + Duration::from_millis(1)).await;
        settle().await;
        let after = TRIMS.load(Relaxed);
        assert!(after > before, "no trim after an answer");
        trimmer.abort();
    }
}
