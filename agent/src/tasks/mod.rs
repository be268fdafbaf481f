//! Tasks: tokio's runtime hooks feed a registry of live tasks and spawn sites.
//! This is the hot path: no locks, no clock reads, no shared counters; the
//! agent copies it into a [`Snapshot`](crate::Snapshot) off the hot path.

mod completed;
mod hooks;
mod index;
mod polls;
mod registry;
mod sites;
mod slab;
mod tally;

pub use hooks::instrument;
pub(crate) use hooks::registry;
#[allow(unused_imports)] // read by the heap sampler
pub(crate) use hooks::{id_of, polling};
pub(crate) use registry::{Capacity, Registry, TaskRecord};
pub(crate) use sites::SiteCounts;
pub(crate) use slab::{zeroed_slots as zeroed, Cache, Entry, Slab};
