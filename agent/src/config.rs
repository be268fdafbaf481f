//! Settings read from the environment. Every setting of the agent's
//! [`Builder`](crate::Builder) has a `TASKSCOPE_*` variable that overrides it.

use std::net::SocketAddr;

use crate::tasks::Capacity;
use crate::Error;

pub(crate) const ADDR: &str = "TASKSCOPE_ADDR";
pub(crate) const DISABLE: &str = "TASKSCOPE_DISABLE";
pub(crate) const TOKEN: &str = "TASKSCOPE_TOKEN";
pub(crate) const ALLOW_REMOTE: &str = "TASKSCOPE_ALLOW_REMOTE";
pub(crate) const STUCK_AFTER: &str = "TASKSCOPE_STUCK_AFTER";
pub(crate) const BLOCKED_AFTER: &str = "TASKSCOPE_BLOCKED_AFTER";
pub(crate) const MAX_TASKS: &str = "TASKSCOPE_MAX_TASKS";
pub(crate) const MAX_SITES: &str = "TASKSCOPE_MAX_SITES";
pub(crate) const COMPLETED: &str = "TASKSCOPE_COMPLETED";
pub(crate) const CPU_HZ: &str = "TASKSCOPE_CPU_HZ";
pub(crate) const CPU_MAX_SECONDS: &str = "TASKSCOPE_CPU_MAX_SECONDS";
pub(crate) const DEEP: &str = "TASKSCOPE_DEEP";
pub(crate) const METRICS_TOP_SITES: &str = "TASKSCOPE_METRICS_TOP_SITES";
#[cfg(feature = "console")]
pub(crate) const CONSOLE_ADDR: &str = "TASKSCOPE_CONSOLE_ADDR";
#[cfg(feature = "console")]
pub(crate) const CONSOLE_RETENTION: &str = "TASKSCOPE_CONSOLE_RETENTION";
pub(crate) const HEAP_SAMPLE_BYTES: &str = "TASKSCOPE_HEAP_SAMPLE_BYTES";
pub(crate) const HEAP_GROWTH_WINDOW: &str = "TASKSCOPE_HEAP_GROWTH_WINDOW";

/// The default address of the debug endpoint.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";

/// How deep mode reads tokio's instrumentation (`TASKSCOPE_DEEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeepMode {
    /// Unset, `on` or `auto`: taskscope installs its own global subscriber
    /// at the first task spawn, unless the app has installed one by then.
    Auto,
    /// `off` (`0`, `false`, `no`): lean mode at run time.
    Off,
    /// `layer`: taskscope installs no subscriber; the app adds
    /// [`crate::layer`] to its own.
    Layer,
}

/// `TASKSCOPE_DEEP`, read once; a bad value is reported and `auto` used.
pub(crate) fn deep_mode() -> DeepMode {
    static MODE: std::sync::OnceLock<DeepMode> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| match std::env::var(DEEP).as_deref().map(str::trim) {
        Err(_) | Ok("" | "on" | "auto" | "1" | "true" | "yes") => DeepMode::Auto,
        Ok("off" | "0" | "false" | "no") => DeepMode::Off,
        Ok("layer") => DeepMode::Layer,
        Ok(other) => {
            crate::watch::warn(format_args!(
                "{DEEP}={other} is not one of on, off, layer; deep mode stays on (auto)"
            ));
            DeepMode::Auto
        }
    })
}

/// True when `TASKSCOPE_DISABLE` is set to anything but `0`/`false`/empty.
pub(crate) fn disabled() -> bool {
    match std::env::var(DISABLE) {
        Ok(v) => !matches!(v.trim(), "" | "0" | "false" | "no"),
        Err(_) => false,
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn parse_addr(name: &'static str, value: &str) -> Result<SocketAddr, Error> {
    value.trim().parse().map_err(|_| Error::InvalidSetting {
        name,
        value: value.to_string(),
        expected: "a socket address such as 127.0.0.1:6060 (port 0 picks a free port)",
    })
}

/// `250ms`, `2s`, `5m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(name: &'static str, value: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::InvalidSetting {
        name,
        value: value.to_string(),
        expected: "a duration such as 250ms, 2s, 5m or 1h",
    };
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_millis(ms))
}

pub(crate) fn env_duration(name: &'static str) -> Result<Option<std::time::Duration>, Error> {
    var(name).map(|v| parse_duration(name, &v)).transpose()
}

fn parse_count(name: &'static str, value: &str, min: u64, max: u64) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::InvalidSetting {
            name,
            value: value.to_string(),
            expected: "a whole number in the allowed range (see the docs of Builder)",
        }),
    }
}

pub(crate) fn env_addr() -> Result<Option<SocketAddr>, Error> {
    var(ADDR).map(|v| parse_addr(ADDR, &v)).transpose()
}

/// A whole number from `min` to `max` in variable `name`, if set.
pub(crate) fn env_count(name: &'static str, min: u64, max: u64) -> Result<Option<u64>, Error> {
    var(name).map(|v| parse_count(name, &v, min, max)).transpose()
}

pub(crate) fn env_token() -> Option<String> {
    var(TOKEN)
}

/// `TASKSCOPE_ALLOW_REMOTE`: `1` (`true`, `yes`) or `0` (`false`, `no`), if set.
pub(crate) fn env_allow_remote() -> Result<Option<bool>, Error> {
    match var(ALLOW_REMOTE).as_deref().map(str::trim) {
        None => Ok(None),
        Some("1" | "true" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "no") => Ok(Some(false)),
        Some(other) => Err(Error::InvalidSetting {
            name: ALLOW_REMOTE,
            value: other.to_string(),
            expected: "1 to serve a non-loopback address without a token, or 0",
        }),
    }
}

/// The mean heap sampling interval in bytes (`TASKSCOPE_HEAP_SAMPLE_BYTES`,
/// default 512 KiB; `0` keeps only the totals). 0 when the agent is
/// disabled. Read once, before `main`; a bad value is reported on stderr and
/// the default used.
pub(crate) fn heap_sample_bytes() -> u64 {
    if disabled() {
        return 0;
    }
    match env_count(HEAP_SAMPLE_BYTES, 0, 1 << 40) {
        Ok(Some(n)) => n,
        Ok(None) => crate::heap::DEFAULT_SAMPLE_BYTES,
        Err(e) => {
            eprintln!("taskscope: {e}; using the default");
            crate::heap::DEFAULT_SAMPLE_BYTES
        }
    }
}

/// The window over which an allocation site must keep growing to be
/// reported (`TASKSCOPE_HEAP_GROWTH_WINDOW`, default 60 s, at least 1 s).
pub(crate) fn heap_growth_window() -> std::time::Duration {
    let default = std::time::Duration::from_secs(60);
    match env_duration(HEAP_GROWTH_WINDOW) {
        Ok(Some(d)) => d.max(std::time::Duration::from_secs(1)),
        Ok(None) => default,
        Err(e) => {
            eprintln!("taskscope: {e}; using the default");
            default
        }
    }
}

/// The registry's capacity from the environment, or its defaults. A bad value
/// is reported on stderr and the default is used: the app must start anyway.
pub(crate) fn capacity_from_env() -> Capacity {
    let mut capacity = Capacity::default();
    let read = |name: &'static str, min: u64, max: u64, set: &mut dyn FnMut(u64)| {
        if let Some(v) = var(name) {
            match parse_count(name, &v, min, max) {
                Ok(n) => set(n),
                Err(e) => crate::watch::warn(format_args!("{e}; using the default")),
            }
        }
    };
    read(MAX_TASKS, 1, u32::MAX as u64 / 2, &mut |n| capacity.tasks = n as u32);
    read(MAX_SITES, 2, 1 << 16, &mut |n| capacity.sites = n as u32);
    read(COMPLETED, 0, 1 << 24, &mut |n| capacity.completed = n as usize);
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        let d = |s| parse_duration(STUCK_AFTER, s).map(|d| d.as_millis());
        assert_eq!(d("250ms").unwrap(), 250);
        assert_eq!(d("2s").unwrap(), 2_000);
        assert_eq!(d("5m").unwrap(), 300_000);
        assert_eq!(d("1h").unwrap(), 3_600_000);
        assert_eq!(d("7").unwrap(), 7_000);
        for bad in ["", "s", "-1s", "2 weeks", "1.5s", "99999999999999999999h"] {
            let err = d(bad).unwrap_err().to_string();
            assert!(err.contains("TASKSCOPE_STUCK_AFTER"), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_must_be_socket_addresses() {
        assert_eq!(parse_addr(ADDR, "127.0.0.1:0").unwrap().port(), 0);
        let err = parse_addr(ADDR, "localhost").unwrap_err().to_string();
        assert!(err.contains("TASKSCOPE_ADDR=localhost"), "{err}");
    }
}
