//! How numbers read: durations in words (as the agent's dumps write them) and
//! in a table's few columns, byte counts, frames with the cargo registry's
//! long prefixes cut, and the `30s` / `5m` durations that flags take.

use std::time::Duration;

/// A duration in words, as the agent's text dumps write it: `250 ms`,
/// `1 second`, `5 minutes`.
pub fn human(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=1_999 => "1 second".to_string(),
        2_000..=59_999 => format!("{} seconds", ms / 1_000),
        60_000..=119_999 => "1 minute".to_string(),
        120_000..=3_599_999 => format!("{} minutes", ms / 60_000),
        3_600_000..=7_199_999 => "1 hour".to_string(),
        7_200_000..=172_799_999 => format!("{} hours", ms / 3_600_000),
        _ => format!("{} days", ms / 86_400_000),
    }
}

/// A duration in at most seven characters, for table cells: `830ms`,
/// `4.2s`, `17s`, `5m03s`, `2h10m`, `3d04h`.
pub fn compact(ms: u64) -> String {
    let s = ms / 1_000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{}.{}s", s, (ms % 1_000) / 100),
        10_000..=59_999 => format!("{s}s"),
        60_000..=3_599_999 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A byte count with a binary unit: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A signed difference: `+3`, `-12`, `0`.
pub fn signed(delta: i64) -> String {
    if delta > 0 {
        format!("+{delta}")
    } else {
        delta.to_string()
    }
}

/// A source path without the parts that only say where cargo keeps crates:
/// `/root/.cargo/registry/src/index.crates.io-…/tokio-1.54.1/src/x.rs`
/// becomes `tokio-1.54.1/src/x.rs`, and `/rustc/<hash>/library/…` becomes
/// `library/…`. Anything else is left alone.
pub fn short_path(path: &str) -> &str {
    if let Some(i) = path.find("/registry/src/") {
        let rest = &path[i + "/registry/src/".len()..];
        // Skip the index directory (`index.crates.io-<hash>`).
        return rest.split_once('/').map_or(rest, |(_, crate_path)| crate_path);
    }
    if let Some(rest) = path.strip_prefix("/rustc/") {
        return rest.split_once('/').map_or(rest, |(_, p)| p);
    }
    path
}

/// A frame written as `function at file:line`, with its path shortened.
pub fn short_frame(frame: &str) -> String {
    match frame.rsplit_once(" at ") {
        Some((function, at)) => format!("{function} at {}", short_path(at)),
        None => frame.to_string(),
    }
}

/// Parses a duration flag: a whole number with a unit `ms`, `s`, `m` or `h`
/// (`500ms`, `30s`, `5m`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: want a whole number and a unit, e.g. 30s, 500ms, 5m")
    })?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => {
            return Err(format!("invalid duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"))
        }
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("invalid duration {text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words_match_the_agent() {
        assert_eq!(human(0), "0 ms");
        assert_eq!(human(1_500), "1 second");
        assert_eq!(human(59_999), "59 seconds");
        assert_eq!(human(300_000), "5 minutes");
        assert_eq!(human(3 * 86_400_000), "3 days");
    }

    #[test]
    fn compact_durations_fit_a_column() {
        for (ms, want) in [
            (0, "0ms"),
            (830, "830ms"),
            (4_250, "4.2s"),
            (17_000, "17s"),
            (303_000, "5m03s"),
            (7_800_000, "2h10m"),
            (3 * 86_400_000 + 4 * 3_600_000, "3d04h"),
        ] {
            assert_eq!(compact(ms), want);
            assert!(compact(ms).len() <= 7);
        }
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(signed(3), "+3");
        assert_eq!(signed(-12), "-12");
        assert_eq!(signed(0), "0");
    }

    #[test]
    fn registry_and_toolchain_prefixes_are_cut() {
        let tokio =
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/sync/mutex.rs:455";
        assert_eq!(short_path(tokio), "tokio-1.54.1/src/sync/mutex.rs:455");
        assert_eq!(
            short_path("/rustc/5980761/library/core/src/task/wake.rs:619"),
            "library/core/src/task/wake.rs:619"
        );
        assert_eq!(short_path("/work/app/src/main.rs:118"), "/work/app/src/main.rs:118");
        assert_eq!(
            short_frame(&format!("tokio::sync::Mutex::lock at {tokio}")),
            "tokio::sync::Mutex::lock at tokio-1.54.1/src/sync/mutex.rs:455"
        );
    }

    #[test]
    fn duration_flags_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "s", "-1s", "1.5s", "10 days", "99999999999999999999h"] {
            assert!(parse_duration(bad).unwrap_err().starts_with("invalid duration"), "{bad}");
        }
    }
}
