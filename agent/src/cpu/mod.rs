//! CPU profiling: pprof-rs's SIGPROF sampler, run only while a profile is
//! requested and one profile at a time, with samples that include the running
//! function, the thread, and the spawn site of the task being polled.

mod handler;
mod profile;
mod session;
mod symbols;

pub(crate) use profile::{folded, pprof};
pub(crate) use session::{record, CpuError};
pub(crate) use symbols::Recording;

/// Default sampling rate: samples per second of CPU time.
pub(crate) const DEFAULT_HZ: u32 = 99;
/// The highest useful rate. SIGPROF timers advance with the kernel tick
/// (CONFIG_HZ, 250 on common distributions); above it, samples are lost
/// while each remaining one would still be counted as 1/hz of CPU time.
pub(crate) const MAX_HZ: u32 = 250;
/// Default of the longest profile a request may ask for, in seconds.
pub(crate) const DEFAULT_MAX_SECONDS: u64 = 300;
/// The length of a profile when the request does not say, as in Go.
pub(crate) const DEFAULT_SECONDS: u64 = 30;

/// Whether CPU profiles are available in this build.
pub(crate) const SUPPORTED: bool = cfg!(unix);

/// The CPU profiler's settings, from the agent's builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Samples per second of CPU time, 1 to [`MAX_HZ`].
    pub(crate) hz: u32,
    /// The longest profile a request may ask for, in seconds (at least 1).
    pub(crate) max_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { hz: DEFAULT_HZ, max_seconds: DEFAULT_MAX_SECONDS }
    }
}

impl Settings {
    /// Rejects zeros, and clamps `hz` to [`MAX_HZ`], saying so on stderr.
    pub(crate) fn validated(self) -> Result<Settings, crate::Error> {
        let invalid = |name, value: u64, expected| crate::Error::InvalidSetting {
            name,
            value: value.to_string(),
            expected,
        };
        if self.hz == 0 {
            return Err(invalid("cpu_hz", 0, "a CPU sampling rate from 1 to 250 Hz"));
        }
        if self.max_seconds == 0 {
            return Err(invalid("cpu_max_seconds", 0, "a longest CPU profile of at least 1 second"));
        }
        if self.hz > MAX_HZ {
            eprintln!(
                "taskscope: CPU sampling at {} Hz is above the kernel tick, which would lose samples; \
                 sampling at {MAX_HZ} Hz",
                self.hz
            );
        }
        Ok(Settings { hz: self.hz.min(MAX_HZ), ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_zeros_and_clamp_the_rate() {
        assert_eq!(Settings::default().validated().unwrap(), Settings { hz: 99, max_seconds: 300 });
        assert_eq!(
            Settings { hz: 999, max_seconds: 5 }.validated().unwrap(),
            Settings { hz: 250, max_seconds: 5 }
        );
        let e = Settings { hz: 0, ..Default::default() }.validated().unwrap_err().to_string();
        assert!(e.contains("cpu_hz=0"), "{e}");
        assert!(Settings { max_seconds: 0, ..Default::default() }.validated().is_err());
    }
}
