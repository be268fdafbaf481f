//! The model: the agent's snapshot as typed data, and the pure functions the
//! commands and the TUI share (which tasks a finding flags, what `check`
//! decides, what grew between two snapshots, how numbers read). Nothing here
//! does I/O, so all of it is tested on recorded fixtures.

pub mod check;
pub mod diff;
pub mod flags;
pub mod format;
pub mod snapshot;

pub use snapshot::{Finding, Severity, Snapshot, Task};

/// Recorded agent output, for the tests of every module.
#[cfg(test)]
pub mod fixtures {
    /// `leaky-server` (driving its pathologies, `TASKSCOPE_STUCK_AFTER=1s`).
    pub const LEAKY: &str = include_str!("../../tests/fixtures/leaky.json");
    /// The `healthy` example.
    pub const HEALTHY: &str = include_str!("../../tests/fixtures/healthy.json");
    /// `leaky-server --manual`, before and after more `/leak`, `/stuck` and `/block` requests.
    pub const BEFORE: &str = include_str!("../../tests/fixtures/diff-before.json");
    pub const AFTER: &str = include_str!("../../tests/fixtures/diff-after.json");
    /// `tasks?debug=2` of the agent that gave [`LEAKY`].
    pub const LEAKY_DEBUG2: &str = include_str!("../../tests/fixtures/leaky-tasks-debug2.txt");

    pub fn snapshot(json: &str) -> super::Snapshot {
        super::Snapshot::parse(json.as_bytes()).expect("a recorded snapshot")
    }
}
