//! Render: snapshots into the formats tools read. Pure functions: text dumps
//! in Go's shapes, gzip'd `profile.proto`, JSON, and the HTML index page.

pub(crate) mod flamegraph;
pub(crate) mod heap;
pub(crate) mod index;
pub(crate) mod json;
pub(crate) mod metrics;
pub(crate) mod pprof;
pub(crate) mod text;

/// What a streaming renderer writes, collected into one buffer (tests).
#[cfg(test)]
pub(crate) fn collected(write: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> bool)) -> Vec<u8> {
    let mut body = Vec::new();
    write(&mut |chunk| {
        body.extend_from_slice(&chunk);
        true
    });
    body
}
