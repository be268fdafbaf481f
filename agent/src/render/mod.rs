//! Render: snapshots into the formats tools read. Pure functions: text dumps
//! in Go's shapes, gzip'd `profile.proto`, JSON, and the HTML index page.

pub(crate) mod flamegraph;
pub(crate) mod heap;
pub(crate) mod index;
pub(crate) mod json;
pub(crate) mod metrics;
pub(crate) mod pprof;
pub(crate) mod text;
