//! The coarse clock of the hot path.
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

/// How often the ticker publishes the clock.
pub(crate) const TICK: Duration = Duration::from_millis(1);

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
        loop {
            let now = epoch.elapsed().as_millis() as u64;
            NOW_MS.store(now, Relaxed);
            if now >= next_second {
                next_second = now + 1000;
                // A bug in sampling must not stop the clock.
                if std::panic::catch_unwind(on_second).is_err() {
                    crate::health::count_panic();
                }
            }
            std::thread::sleep(TICK);
        }
    });
    if let Err(err) = spawned {
        TICKER_STARTED.store(false, Relaxed);
        crate::watch::error(format_args!("could not start the clock thread: {err}; task times will read 0"));
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
}
