//! The heap section of the snapshot: exact totals, the sampler's health,
//! estimated in-use memory per spawn site, per task and per allocation
//! site, and the allocation sites found growing.

use std::collections::HashMap;

use serde::Serialize;

use super::growth::{self, GrowthOptions, HeapGrowth};
use super::profile::{self, Stats};
use super::{history, symbols};

/// What to do when heap profiling is off.
pub(crate) const HOW_TO_ENABLE: &str = "heap profiling is off: install taskscope's allocator with \
     `#[global_allocator] static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();` \
     in the application's main.rs and rebuild";

/// What to do when the allocator is installed but samples nothing.
pub(crate) const SAMPLING_OFF: &str = "heap sampling is off (TASKSCOPE_HEAP_SAMPLE_BYTES=0 or \
     TASKSCOPE_DISABLE=1): only the totals are kept; unset them to sample every 512 KiB on average";

/// Tasks listed, the largest first.
const TOP_TASKS: usize = 100;
/// Allocation sites listed, the largest first.
const TOP_SITES: usize = 50;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TotalsJson {
    pub(crate) allocated_bytes: u64,
    pub(crate) allocated_objects: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) freed_objects: u64,
    pub(crate) inuse_bytes: u64,
    pub(crate) inuse_objects: u64,
}

/// Estimated memory in use that tasks of one spawn site allocated.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SiteInUse {
    pub(crate) site: u32,
    pub(crate) location: String,
    pub(crate) inuse_bytes: u64,
    pub(crate) inuse_objects: u64,
}

/// Estimated memory in use that one task allocated.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskInUse {
    pub(crate) id: u64,
    pub(crate) site: u32,
    pub(crate) spawned_at: String,
    pub(crate) inuse_bytes: u64,
    pub(crate) inuse_objects: u64,
}

/// An allocation site: the first frame in the application's own code.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AllocationSite {
    pub(crate) location: String,
    pub(crate) function: String,
    pub(crate) inuse_bytes: u64,
    pub(crate) inuse_objects: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_objects: u64,
    /// Estimated in-use bytes over the growth window, oldest first.
    pub(crate) history: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HeapSummary {
    /// Whether [`Allocator`](crate::Allocator) is the global allocator.
    pub(crate) enabled: bool,
    /// Why figures are missing and how to get them; absent when all is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) problem: Option<&'static str>,
    /// The mean sampling interval in bytes; 0 when sampling is off.
    pub(crate) sample_bytes: u64,
    /// Exact, counted on every allocation and free.
    pub(crate) totals: TotalsJson,
    pub(crate) sampler: Stats,
    /// Estimated in-use memory allocated outside any task.
    pub(crate) outside_tasks_bytes: u64,
    pub(crate) sites: Vec<SiteInUse>,
    pub(crate) tasks: Vec<TaskInUse>,
    pub(crate) allocation_sites: Vec<AllocationSite>,
    /// True while the agent's heap thread is still symbolizing stacks: their
    /// allocation sites are missing from `allocation_sites` and `growth`
    /// until it is done.
    pub(crate) symbolizing: bool,
    pub(crate) growth_window_ms: u64,
    /// Allocation sites whose in-use memory keeps growing, fastest first.
    pub(crate) growth: Vec<HeapGrowth>,
}

/// Reads the heap for the snapshot. Never symbolizes: allocation sites come
/// from the agent's heap thread, which this asks to symbolize new stacks.
pub(crate) fn summary() -> HeapSummary {
    if !super::counters::installed() {
        return HeapSummary { problem: Some(HOW_TO_ENABLE), ..HeapSummary::default() };
    }
    let totals = super::counters::totals();
    let totals = TotalsJson {
        allocated_bytes: totals.allocated_bytes,
        allocated_objects: totals.allocated_objects,
        freed_bytes: totals.freed_bytes,
        freed_objects: totals.freed_objects,
        inuse_bytes: totals.inuse_bytes(),
        inuse_objects: totals.inuse_objects(),
    };
    history::start();
    history::want_sites();
    let rate = super::counters::rate();
    let spawn_sites = profile::spawn_sites();
    let location =
        |site: u32| spawn_sites.get(site as usize).cloned().unwrap_or_else(|| "<unknown>".to_string());

    let mut per_site: HashMap<u32, (f64, f64)> = HashMap::new();
    let mut per_task: HashMap<u64, (u32, f64, f64)> = HashMap::new();
    let mut outside = 0.0;
    for b in profile::live().into_iter().filter(|b| b.weight > 0.0) {
        let (objects, bytes) = (b.weight, b.weight * b.size as f64);
        if b.site == 0 {
            outside += bytes;
            continue;
        }
        let s = per_site.entry(b.site - 1).or_default();
        s.0 += objects;
        s.1 += bytes;
        let t = per_task.entry(b.task).or_insert((b.site - 1, 0.0, 0.0));
        t.1 += objects;
        t.2 += bytes;
    }
    let mut sites: Vec<SiteInUse> = per_site
        .into_iter()
        .map(|(site, (objects, bytes))| SiteInUse {
            site,
            location: location(site),
            inuse_bytes: bytes.round() as u64,
            inuse_objects: objects.round() as u64,
        })
        .collect();
    sites.sort_by(|a, b| b.inuse_bytes.cmp(&a.inuse_bytes).then(a.site.cmp(&b.site)));
    let mut tasks: Vec<TaskInUse> = per_task
        .into_iter()
        .map(|(id, (site, objects, bytes))| TaskInUse {
            id,
            site,
            spawned_at: location(site),
            inuse_bytes: bytes.round() as u64,
            inuse_objects: objects.round() as u64,
        })
        .collect();
    tasks.sort_by(|a, b| b.inuse_bytes.cmp(&a.inuse_bytes).then(a.id.cmp(&b.id)));
    tasks.truncate(TOP_TASKS);

    let histories = history::by_site();
    let window_ms = history::window().as_millis() as u64;
    // The agent's own memory is bounded by its settings; findings are about
    // the application.
    let app: Vec<growth::SiteHistory> =
        histories.iter().filter(|h| h.location != symbols::AGENT_SITE).cloned().collect();
    let growth = growth::detect(&app, &GrowthOptions::for_window(window_ms, rate));
    let (allocation_sites, symbolizing) = allocation_sites(&histories);

    HeapSummary {
        enabled: true,
        problem: (rate == 0).then_some(SAMPLING_OFF),
        sample_bytes: rate,
        totals,
        sampler: profile::stats(),
        outside_tasks_bytes: outside.round() as u64,
        sites,
        tasks,
        allocation_sites,
        symbolizing,
        growth_window_ms: window_ms,
        growth,
    }
}

/// The allocation sites known so far, largest first, and whether some
/// stacks are still to be symbolized.
fn allocation_sites(histories: &[growth::SiteHistory]) -> (Vec<AllocationSite>, bool) {
    let mut by_location: HashMap<String, AllocationSite> = HashMap::new();
    let mut symbolizing = false;
    for r in profile::take(false).records {
        let site = match symbols::cached_site(r.id) {
            Some(Some(site)) => site,
            Some(None) => continue,
            None => {
                symbolizing |= r.id != 0;
                continue;
            }
        };
        let a = by_location.entry(site.location()).or_insert_with(|| AllocationSite {
            location: site.location(),
            function: site.function.clone(),
            inuse_bytes: 0,
            inuse_objects: 0,
            alloc_bytes: 0,
            alloc_objects: 0,
            history: Vec::new(),
        });
        a.inuse_bytes += r.counts.inuse_bytes().max(0.0).round() as u64;
        a.inuse_objects += r.counts.inuse_objects().max(0.0).round() as u64;
        a.alloc_bytes += r.counts.alloc_bytes.round() as u64;
        a.alloc_objects += r.counts.alloc_objects.round() as u64;
    }
    for h in histories {
        if let Some(a) = by_location.get_mut(&h.location) {
            a.history = h.points.iter().map(|p| p.bytes.round() as u64).collect();
        }
    }
    let mut sites: Vec<AllocationSite> = by_location.into_values().collect();
    sites.sort_by(|a, b| b.inuse_bytes.cmp(&a.inuse_bytes).then(a.location.cmp(&b.location)));
    sites.truncate(TOP_SITES);
    (sites, symbolizing)
}
