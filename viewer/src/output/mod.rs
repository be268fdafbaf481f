//! Text output for a terminal or a CI log: colour handling, findings grouped
//! by severity, diffs. Pure string building over the model, so every shape
//! is tested without a process.

pub mod diff;
pub mod findings;
pub mod style;

pub use style::{ColorChoice, Painter};
