//! The coarse clock of the hot path.
//!
//! It ticks every millisecond while the process works, and every 16 ms while
//! the process is idle (below 5% of a core), so that an idle app does not pay
//! for a thousand wakeups a second.
//!
//! `Instant::now()` costs about 30 ns here, too much to pay twice per poll. The
//! agent's ticker thread publishes the milliseconds elapsed since the agent's
//! epoch into one atomic that the hooks only read. Busy time accumulated from
//! this clock is unbiased: a poll of length `d` crosses `d / 1 ms` tick
//! boundaries on average, whatever its phase.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since [`epoch`], published by the ticker thread.
static NOW_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
static TICKER_STARTED: AtomicBool = AtomicBool::new(false);

/// How often the ticker publishes the clock while the process is busy.
pub(crate) const TICK: Duration = Duration::from_millis(1);
/// How often it ticks while the process is idle: a thousand wakeups a
/// second cost about 2% of a core here, which an idle app should not pay.
pub(crate) const IDLE_TICK: Duration = Duration::from_millis(16);
/// Below this share of one core of process CPU time (the ticker's own
/// included), the process counts as idle.
const IDLE_SHARE: f64 = 0.05;
/// How often a busy process is checked for idleness.
const CHECK_EVERY_MS: u64 = 100;

/// The tick to use after the process used `cpu_ns` of CPU time over
/// `wall_ns` of wall time.
fn tick_for(cpu_ns: u64, wall_ns: u64) -> Duration {
    if wall_ns > 0 && (cpu_ns as f64) < IDLE_SHARE * wall_ns as f64 {
        IDLE_TICK
    } else {
        TICK
    }
}

/// CPU time of the whole process (every thread), in ns; 0 if unknown.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The instant every millisecond count of the agent is relative to.
pub(crate) fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// The coarse time, in ms since [`epoch`]: one relaxed load, no clock read.
#[inline(always)]
pub(crate) fn coarse_ms() -> u64 {
    NOW_MS.load(Relaxed)
}

/// The precise time in ms since [`epoch`], for code off the hot path.
pub(crate) fn precise_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Starts the ticker thread once per process. `on_second` runs on the ticker
/// thread about once a second (the registry samples spawn-site counts there).
pub(crate) fn start_ticker(on_second: fn()) {
    if TICKER_STARTED.swap(true, Relaxed) {
        return;
    }
    let epoch = epoch();
    NOW_MS.store(precise_ms(), Relaxed);
    let spawned = std::thread::Builder::new().name("taskscope-clock".into()).spawn(move || {
        let mut next_second = 1000;
        let mut last_report: Option<u64> = None;
        let mut tick = TICK;
        let (mut checked_at, mut checked_cpu) = (epoch.elapsed(), process_cpu_ns());
        loop {
            let elapsed = epoch.elapsed();
            let now = elapsed.as_millis() as u64;
            NOW_MS.store(now, Relaxed);
            // Tick slowly while the process is idle; an idle process is
            // checked on every (slow) tick, so work speeds the clock up again
            // within one.
            if tick == IDLE_TICK || elapsed - checked_at >= Duration::from_millis(CHECK_EVERY_MS) {
                let cpu = process_cpu_ns();
                let wall = (elapsed - checked_at).as_nanos() as u64;
                tick = tick_for(cpu.saturating_sub(checked_cpu), wall);
                (checked_at, checked_cpu) = (elapsed, cpu);
            }
            if now >= next_second {
                next_second = now + 1000;
                // A bug in sampling must not stop the clock. Every panic is
                // counted; the first is reported, then at most one an hour.
                if let Err(payload) = std::panic::catch_unwind(once_a_second(on_second)) {
                    crate::health::count_panic();
                    if last_report.is_none_or(|at| now >= at + 3_600_000) {
                        last_report = Some(now);
                        crate::health::report_panic_uncounted(
                            "the clock thread's once-a-second work",
                            &*payload,
                        );
                    }
                }
            }
            std::thread::sleep(tick);
        }
    });
    if let Err(err) = spawned {
        TICKER_STARTED.store(false, Relaxed);
        crate::watch::error(format_args!("could not start the clock thread: {err}; task times will read 0"));
    }
}

/// Set by tests: the next once-a-second work panics.
#[cfg(test)]
static PANIC_NEXT_SECOND: AtomicBool = AtomicBool::new(false);

/// `on_second`, made to panic once when a test asks for it.
fn once_a_second(on_second: fn()) -> impl FnOnce() + std::panic::UnwindSafe {
    move || {
        #[cfg(test)]
        if PANIC_NEXT_SECOND.swap(false, Relaxed) {
            panic!("deliberate panic in the ticker");
        }
        on_second()
    }
}

/// A human duration in the style of Go's goroutine dumps: `5 minutes`.
pub(crate) fn human(ms: u64) -> String {
    match ms {
        0 => "0 ms".to_string(),
        1..=999 => format!("{ms} ms"),
        1_000..=1_999 => "1 second".to_string(),
        2_000..=59_999 => format!("{} seconds", ms / 1_000),
        60_000..=119_999 => "1 minute".to_string(),
        120_000..=3_599_999 => format!("{} minutes", ms / 60_000),
        3_600_000..=7_199_999 => "1 hour".to_string(),
        7_200_000..=172_799_999 => format!("{} hours", ms / 3_600_000),
        _ => format!("{} days", ms / 86_400_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_slows_down_only_while_the_process_is_idle() {
        let ms = 1_000_000;
        assert_eq!(tick_for(0, 100 * ms), IDLE_TICK);
        // The ticker's own 2% of a core is idle.
        assert_eq!(tick_for(2 * ms, 100 * ms), IDLE_TICK);
        assert_eq!(tick_for(5 * ms, 100 * ms), TICK);
        assert_eq!(tick_for(150 * ms, 100 * ms), TICK, "two busy cores");
        // Unknown CPU time (0) reads as idle, a zero interval as busy.
        assert_eq!(tick_for(0, 0), TICK);
        assert!(process_cpu_ns() > 0);
    }

    #[test]
    fn human_durations_read_like_go_dumps() {
        assert_eq!(human(0), "0 ms");
        assert_eq!(human(999), "999 ms");
        assert_eq!(human(1_000), "1 second");
        assert_eq!(human(59_999), "59 seconds");
        assert_eq!(human(60_000), "1 minute");
        assert_eq!(human(300_000), "5 minutes");
        assert_eq!(human(3_600_000), "1 hour");
        assert_eq!(human(10 * 3_600_000), "10 hours");
        assert_eq!(human(3 * 86_400_000), "3 days");
    }

    #[test]
    fn the_ticker_advances_the_coarse_clock() {
        start_ticker(|| {});
        let before = coarse_ms();
        // A loaded machine may not schedule the ticker for a while: wait for
        // it rather than for a fixed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while coarse_ms() == before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(coarse_ms() > before, "clock stuck at {before} for 10 s");
    }

    /// A panic in the ticker's once-a-second work is caught and counted,
    /// and the clock runs on.
    #[test]
    fn a_panic_in_the_ticker_is_counted_and_the_clock_runs_on() {
        start_ticker(|| {});
        let panics = crate::health::panics();
        PANIC_NEXT_SECOND.store(true, Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while PANIC_NEXT_SECOND.load(Relaxed) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!PANIC_NEXT_SECOND.load(Relaxed), "the ticker did not run its once-a-second work");
        while crate::health::panics() == panics && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(crate::health::panics() > panics, "the ticker's panic was not counted");
        let after = coarse_ms();
        while coarse_ms() == after && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(coarse_ms() > after, "the clock stopped after the ticker's panic");
    }
}
