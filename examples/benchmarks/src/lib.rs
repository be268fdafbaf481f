//! The overhead benchmarks of BENCHMARKS.md: the `workload` binary runs one
//! workload in the mode it was built for and prints one JSON line; the
//! `bench` binary builds every mode, runs them side by side (A B A B …) and
//! reports each mode as a ratio to the baseline.

pub mod runner;
pub mod workload;
