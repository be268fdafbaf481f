//! A task meant to outlive the tests that start it, in a file of its own so
//! that its spawn location is easy to ignore.

/// Spawns a task that never finishes.
pub fn start() -> tokio::task::JoinHandle<()> {
    tokio::spawn(std::future::pending())
}
