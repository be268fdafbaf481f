//! What grew between two snapshots: live tasks per spawn site, estimated
//! in-use heap per spawn site (when both have a heap section), and the
//! findings that appeared or went away. Sites are matched by location, not
//! id, so snapshots of two runs of the same app compare too.

use std::collections::{BTreeMap, HashSet};

use super::{Finding, Snapshot};

/// One spawn site's number before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub location: String,
    pub before: u64,
    pub after: u64,
}

impl Change {
    pub fn delta(&self) -> i64 {
        self.after as i64 - self.before as i64
    }
}

/// The heap side of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeapDiff {
    /// Both snapshots have heap figures: in-use bytes per spawn site that grew.
    Sites { before_total: u64, after_total: u64, grew: Vec<Change> },
    /// At least one snapshot has none, with why.
    Missing(String),
}

#[derive(Debug, Clone)]
pub struct Diff {
    /// The agent's uptime at each snapshot (0 when unknown).
    pub uptime_ms: (u64, u64),
    pub tasks: (usize, usize),
    /// Sites whose live task count rose, the largest rise first.
    pub grew: Vec<Change>,
    /// How many sites fell.
    pub shrank: usize,
    pub heap: HeapDiff,
    pub new_findings: Vec<Finding>,
    pub gone_findings: Vec<Finding>,
}

/// Compares `before` with `after`.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Diff {
    let live = |s: &Snapshot| s.sites.iter().map(|site| (site.location.clone(), site.live)).collect();
    let (grew, shrank) = changes(live(before), live(after));
    Diff {
        uptime_ms: (before.agent.uptime_ms, after.agent.uptime_ms),
        tasks: (before.tasks_total, after.tasks_total),
        grew,
        shrank,
        heap: heap(before, after),
        new_findings: missing_from(&after.findings, &before.findings),
        gone_findings: missing_from(&before.findings, &after.findings),
    }
}

/// The rises, largest first (then by location), and the count of falls.
fn changes(before: BTreeMap<String, u64>, after: BTreeMap<String, u64>) -> (Vec<Change>, usize) {
    let locations: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let all: Vec<Change> = locations
        .into_iter()
        .map(|l| Change {
            location: l.clone(),
            before: before.get(l).copied().unwrap_or(0),
            after: after.get(l).copied().unwrap_or(0),
        })
        .collect();
    let shrank = all.iter().filter(|c| c.delta() < 0).count();
    let mut grew: Vec<Change> = all.into_iter().filter(|c| c.delta() > 0).collect();
    grew.sort_by(|a, b| b.delta().cmp(&a.delta()).then_with(|| a.location.cmp(&b.location)));
    (grew, shrank)
}

fn heap(before: &Snapshot, after: &Snapshot) -> HeapDiff {
    fn enabled(s: &Snapshot) -> Option<&super::snapshot::Heap> {
        s.heap.as_ref().filter(|h| h.enabled)
    }
    match (enabled(before), enabled(after)) {
        (Some(a), Some(b)) => {
            let per_site = |h: &super::snapshot::Heap| {
                let mut m = BTreeMap::new();
                for s in &h.sites {
                    *m.entry(s.location.clone()).or_insert(0) += s.inuse_bytes;
                }
                m
            };
            let total = |h: &super::snapshot::Heap| h.totals.as_ref().map_or(0, |t| t.inuse_bytes);
            let (grew, _) = changes(per_site(a), per_site(b));
            HeapDiff::Sites { before_total: total(a), after_total: total(b), grew }
        }
        _ => {
            let why = [before, after]
                .iter()
                .find_map(|s| s.heap.as_ref().and_then(|h| h.problem.clone()))
                .unwrap_or_else(|| "the snapshots have no heap section".to_string());
            HeapDiff::Missing(why)
        }
    }
}

/// What a finding is about, ignoring its numbers.
fn identity(f: &Finding) -> (String, String, Option<String>) {
    (f.kind.clone(), f.location.clone(), f.wait().map(str::to_string))
}

/// The findings of `these` that `those` does not have.
fn missing_from(these: &[Finding], those: &[Finding]) -> Vec<Finding> {
    let known: HashSet<_> = those.iter().map(identity).collect();
    these.iter().filter(|f| !known.contains(&identity(f))).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, AFTER, BEFORE};
    use crate::model::snapshot::{Heap, HeapSite, HeapTotals};

    #[test]
    fn recorded_leaks_show_as_growth_and_new_findings() {
        let d = diff(&snapshot(BEFORE), &snapshot(AFTER));
        assert!(d.tasks.1 > d.tasks.0);
        let top = &d.grew[0];
        assert!(top.location.ends_with("main.rs:48:5"), "{top:?}");
        assert_eq!((top.before, top.after), (5, 25));
        assert!(d.new_findings.iter().any(|f| f.kind == "blocked_worker"), "{:?}", d.new_findings);
        assert!(d.gone_findings.is_empty());
        assert!(matches!(&d.heap, HeapDiff::Missing(why) if why.contains("heap profiling is off")));
    }

    #[test]
    fn a_snapshot_compared_with_itself_shows_nothing() {
        let d = diff(&snapshot(AFTER), &snapshot(AFTER));
        assert!(
            d.grew.is_empty() && d.shrank == 0 && d.new_findings.is_empty() && d.gone_findings.is_empty()
        );
    }

    #[test]
    fn heap_growth_per_site_is_compared_by_location() {
        let heap = |sites: &[(&str, u64)]| Heap {
            enabled: true,
            problem: None,
            totals: Some(HeapTotals { inuse_bytes: sites.iter().map(|s| s.1).sum() }),
            sites: sites.iter().map(|(l, b)| HeapSite { location: l.to_string(), inuse_bytes: *b }).collect(),
        };
        let mut a = snapshot(BEFORE);
        let mut b = snapshot(BEFORE);
        a.heap = Some(heap(&[("src/a.rs:1:1", 1000), ("src/b.rs:2:2", 500)]));
        b.heap = Some(heap(&[("src/a.rs:1:1", 900), ("src/b.rs:2:2", 5000), ("src/c.rs:3:3", 100)]));
        let HeapDiff::Sites { before_total, after_total, grew } = diff(&a, &b).heap else { panic!() };
        assert_eq!((before_total, after_total), (1500, 6000));
        let got: Vec<(&str, i64)> = grew.iter().map(|c| (c.location.as_str(), c.delta())).collect();
        assert_eq!(got, [("src/b.rs:2:2", 4500), ("src/c.rs:3:3", 100)]);
    }
}
