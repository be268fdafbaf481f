//! What `taskscope check` decides: the findings at or above a level fail,
//! the rest are counted. A small pure function, so that CI's verdict is
//! tested on recorded snapshots.

use super::{Finding, Severity, Snapshot};

/// The process exit codes of `taskscope`, as `--help` documents them.
pub mod exit {
    /// Success; for `check`, no finding at or above the level.
    pub const CLEAN: u8 = 0;
    /// `check` found findings at or above the level.
    pub const FINDINGS: u8 = 1;
    /// A usage error, an unreachable or refusing agent, an unreadable file.
    pub const ERROR: u8 = 2;
}

/// The outcome of a check.
#[derive(Debug)]
pub struct Verdict<'a> {
    pub level: Severity,
    /// The findings at or above `level`, most severe first.
    pub failing: Vec<&'a Finding>,
    /// How many findings are below `level`.
    pub below: usize,
}

impl Verdict<'_> {
    pub fn passed(&self) -> bool {
        self.failing.is_empty()
    }

    pub fn exit_code(&self) -> u8 {
        if self.passed() {
            exit::CLEAN
        } else {
            exit::FINDINGS
        }
    }

    /// The one-line summary printed last.
    pub fn summary(&self, tasks: usize) -> String {
        let level = self.level.as_str();
        let below = match self.below {
            0 => String::new(),
            1 => "; 1 finding below it".to_string(),
            n => format!("; {n} findings below it"),
        };
        if self.passed() {
            format!("check passed: no finding at or above {level} ({tasks} live tasks{below})")
        } else {
            let n = self.failing.len();
            let counts = counts(self.failing.iter().copied());
            let findings = if n == 1 { "finding" } else { "findings" };
            format!("check failed: {n} {findings} at or above {level} ({counts}{below})")
        }
    }
}

/// Decides a check of `snapshot` at `level`.
pub fn check(snapshot: &Snapshot, level: Severity) -> Verdict<'_> {
    let mut failing: Vec<&Finding> = snapshot.findings.iter().filter(|f| f.severity >= level).collect();
    failing.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let below = snapshot.findings.len() - failing.len();
    Verdict { level, failing, below }
}

/// `1 critical, 7 warning`: the non-zero counts by severity, most severe first.
pub fn counts<'a>(findings: impl Iterator<Item = &'a Finding>) -> String {
    let mut n = [0usize; 3];
    for f in findings {
        n[f.severity as usize] += 1;
    }
    let parts: Vec<String> = Severity::ALL_DESCENDING
        .iter()
        .filter(|s| n[**s as usize] > 0)
        .map(|s| format!("{} {}", n[*s as usize], s.as_str()))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, HEALTHY, LEAKY};

    #[test]
    fn a_leaky_app_fails_at_warning_and_at_critical() {
        let s = snapshot(LEAKY);
        let v = check(&s, Severity::Warning);
        assert_eq!(v.exit_code(), exit::FINDINGS);
        assert_eq!(v.failing.len(), s.findings.len());
        assert_eq!(v.failing[0].severity, Severity::Critical);
        assert!(
            v.summary(s.tasks_total)
                .starts_with("check failed: 7 findings at or above warning (1 critical, 6 warning)"),
            "{}",
            v.summary(0)
        );
        let v = check(&s, Severity::Critical);
        assert_eq!((v.failing.len(), v.below), (1, 6));
        assert!(v.summary(0).ends_with("(1 critical; 6 findings below it)"), "{}", v.summary(0));
    }

    #[test]
    fn a_healthy_app_passes() {
        let s = snapshot(HEALTHY);
        let v = check(&s, Severity::Warning);
        assert_eq!(v.exit_code(), exit::CLEAN);
        assert_eq!(v.summary(15), "check passed: no finding at or above warning (15 live tasks)");
    }

    #[test]
    fn info_findings_fail_only_at_info() {
        let mut s = snapshot(HEALTHY);
        let mut f = snapshot(LEAKY).findings.remove(0);
        f.severity = Severity::Info;
        s.findings.push(f);
        assert!(check(&s, Severity::Warning).passed());
        assert_eq!(check(&s, Severity::Warning).below, 1);
        assert!(!check(&s, Severity::Info).passed());
        assert_eq!(counts(s.findings.iter()), "1 info");
        assert_eq!(counts([].iter()), "none");
    }
}
