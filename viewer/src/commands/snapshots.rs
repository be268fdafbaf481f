//! Saved snapshots: `snapshot` writes the agent's JSON as it came (checked
//! to be a snapshot first), and `diff` compares two saved ones offline.

use std::path::Path;

use anyhow::Result;

use super::{print, read_snapshot, write_output};
use crate::client::Client;
use crate::model::check::exit;
use crate::output::{diff as render, ColorChoice, Painter};

pub fn save(client: &Client, output: &Path) -> Result<u8> {
    // Every task, unpaged: a saved snapshot is for reading later in full.
    let (snapshot, bytes) = client.snapshot("")?;
    let what = format!("the snapshot ({} tasks, {} findings)", snapshot.tasks_total, snapshot.findings.len());
    write_output(output, &bytes, &what)
}

pub fn diff(before: &Path, after: &Path, color: ColorChoice) -> Result<u8> {
    let (a, b) = (read_snapshot(before)?, read_snapshot(after)?);
    let d = crate::model::diff::diff(&a, &b);
    print(&render::render(&d, Painter { color: color.enabled() }))?;
    Ok(exit::CLEAN)
}
