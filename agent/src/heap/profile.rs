//! Reading the heap: the allocator's tables copied into plain values,
//! symbolized on request, for the renderers and the snapshot.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::counters::{self, Totals};
use super::live::LiveBlock;
use super::sample::{self, LIVE, STACKS};
use super::symbols::{self, Frame};
use super::table::Counts;

/// How the sampler is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Stats {
    /// Samples taken since the start.
    pub(crate) samples: u64,
    /// Sampled blocks not freed yet (with those a `realloc` left unsampled,
    /// kept so that their free is recognized).
    pub(crate) live_samples: u64,
    /// Distinct (stack, spawn site) entries.
    pub(crate) stacks: u64,
    /// Samples not taken: every live-sample entry was in use.
    pub(crate) dropped_live_table_full: u64,
    /// Samples kept under `<table full>`: the stack table was full.
    pub(crate) dropped_stack_table_full: u64,
    /// Samples not taken: they fell inside the allocator's own slow path.
    pub(crate) dropped_reentrant: u64,
    /// Samples not taken: alignment above 2048 bytes.
    pub(crate) dropped_unsampleable: u64,
    /// Samples kept without a stack (it could not be walked safely).
    pub(crate) no_stack: u64,
    /// Threads with counters of their own now (the others share atomics).
    pub(crate) threads: u64,
}

/// One stack-table entry, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) id: u32,
    /// Return addresses, leaf first.
    pub(crate) addresses: Vec<usize>,
    /// Symbolized and trimmed, leaf first; empty unless asked for.
    pub(crate) frames: Vec<Frame>,
    /// Where the task that allocated was spawned; `None` outside tasks.
    pub(crate) task_site: Option<String>,
    pub(crate) counts: Counts,
}

/// The heap, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HeapProfile {
    /// Whether [`Allocator`](crate::Allocator) is the global allocator.
    pub(crate) installed: bool,
    /// The mean sampling interval in bytes; 0 when sampling is off.
    pub(crate) sample_bytes: u64,
    pub(crate) totals: Totals,
    pub(crate) stats: Stats,
    pub(crate) records: Vec<Record>,
}

/// The `file:line:col` of every spawn site, by site index.
pub(crate) fn spawn_sites() -> Vec<String> {
    let Some(registry) = crate::tasks::registry() else {
        return Vec::new();
    };
    registry
        .sites()
        .iter()
        .map(|s| match s.location {
            Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
            None => "<other>".to_string(),
        })
        .collect()
}

/// The sampler's counters.
pub(crate) fn stats() -> Stats {
    Stats {
        samples: sample::SAMPLES.load(Relaxed),
        live_samples: LIVE.len() as u64,
        stacks: STACKS.len() as u64,
        dropped_live_table_full: LIVE.full.load(Relaxed),
        dropped_stack_table_full: STACKS.overflowed.load(Relaxed),
        dropped_reentrant: sample::REENTRANT.load(Relaxed),
        dropped_unsampleable: sample::UNSAMPLEABLE.load(Relaxed),
        no_stack: sample::NO_STACK.load(Relaxed),
        threads: counters::threads(),
    }
}

/// Reads the heap now; symbolizes the stacks if `symbolize`.
pub(crate) fn take(symbolize: bool) -> HeapProfile {
    let sites = spawn_sites();
    let site = |s: u32| match s {
        0 => None,
        s => Some(sites.get(s as usize - 1).cloned().unwrap_or_else(|| "<unknown>".to_string())),
    };
    let records = STACKS
        .read()
        .into_iter()
        .map(|r| Record {
            id: r.id,
            frames: if symbolize { symbols::symbolize(&r.frames) } else { Vec::new() },
            addresses: r.frames,
            task_site: site(r.site),
            counts: r.counts,
        })
        .collect();
    HeapProfile {
        installed: counters::installed(),
        sample_bytes: counters::rate(),
        totals: counters::totals(),
        stats: stats(),
        records,
    }
}

impl HeapProfile {
    /// Symbolizes every record that is not yet.
    pub(crate) fn symbolize(&mut self) {
        for r in &mut self.records {
            if r.frames.is_empty() {
                r.frames = symbols::symbolize(&r.addresses);
            }
        }
    }

    /// What was allocated and freed between `earlier` and `self`, per stack;
    /// in-use figures become the change in use, negative where it fell.
    pub(crate) fn since(&self, earlier: &HeapProfile) -> HeapProfile {
        let before: HashMap<u32, &Counts> = earlier.records.iter().map(|r| (r.id, &r.counts)).collect();
        let records = self
            .records
            .iter()
            .filter_map(|r| {
                let counts = match before.get(&r.id) {
                    Some(b) => r.counts.since(b),
                    None => r.counts,
                };
                (counts.alloc_samples > 0 || counts.free_samples > 0).then(|| Record { counts, ..r.clone() })
            })
            .collect();
        let t = (&self.totals, &earlier.totals);
        HeapProfile {
            installed: self.installed,
            sample_bytes: self.sample_bytes,
            totals: Totals {
                allocated_bytes: t.0.allocated_bytes.saturating_sub(t.1.allocated_bytes),
                allocated_objects: t.0.allocated_objects.saturating_sub(t.1.allocated_objects),
                freed_bytes: t.0.freed_bytes.saturating_sub(t.1.freed_bytes),
                freed_objects: t.0.freed_objects.saturating_sub(t.1.freed_objects),
            },
            stats: self.stats,
            records,
        }
    }
}

/// The live sampled blocks.
pub(crate) fn live() -> Vec<LiveBlock> {
    LIVE.read()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, alloc: f64, free: f64) -> Record {
        Record {
            id,
            addresses: vec![id as usize],
            frames: Vec::new(),
            task_site: None,
            counts: Counts {
                alloc_samples: alloc as u64,
                alloc_bytes: alloc * 100.0,
                alloc_objects: alloc,
                free_samples: free as u64,
                free_bytes: free * 100.0,
                free_objects: free,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn a_delta_keeps_what_changed_and_in_use_can_fall() {
        let before =
            HeapProfile { records: vec![record(1, 5.0, 1.0), record(2, 3.0, 0.0)], ..Default::default() };
        let after = HeapProfile {
            records: vec![record(1, 5.0, 1.0), record(2, 4.0, 3.0), record(3, 2.0, 0.0)],
            ..Default::default()
        };
        let d = after.since(&before);
        let ids: Vec<u32> = d.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 3], "unchanged stacks are left out");
        assert_eq!(d.records[0].counts.alloc_objects, 1.0);
        assert_eq!(d.records[0].counts.inuse_bytes(), -200.0);
        assert_eq!(d.records[1].counts.inuse_objects(), 2.0);
    }
}
