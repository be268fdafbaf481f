//! Stacks: cheap capture by walking frame pointers, a bounded table that
//! dedups them, and lazy symbolization (with inlined frames) when a dump or
//! snapshot asks, plus the wait reason read from a stack's frames.

mod capture;
mod symbolize;
mod table;

pub(crate) use capture::{capture, MAX_FRAMES};
pub(crate) use symbolize::{symbolize, wait_reason};
pub(crate) use table::StackTable;
