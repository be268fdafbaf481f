//! Builds the `workload` binary once per mode with that mode's features, and
//! keeps each copy as `target/bench-bins/workload-<mode>`: one feature set
//! per build, so features never unify across modes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::modes::Mode;
use crate::workload::Error;

/// Builds each mode's binary, once per feature set (deep and deep+cpu share
/// one), and returns the path of each copy, in the order of `modes`.
pub fn build_all(modes: &[&'static Mode]) -> Result<Vec<(&'static Mode, PathBuf)>, Error> {
    let mut bins: Vec<(&'static Mode, PathBuf)> = Vec::new();
    for &mode in modes {
        let path = match bins.iter().find(|(m, _)| m.features == mode.features) {
            // The same build, kept under this mode's name too, so that
            // `workload-<mode>` is always this run's binary.
            Some((_, built)) => keep_as(built, built.parent().ok_or("unexpected binary path")?, mode)?,
            None => build(mode)?,
        };
        bins.push((mode, path));
    }
    Ok(bins)
}

/// Builds `mode`'s binary in release and returns the path of its copy.
pub fn build(mode: &Mode) -> Result<PathBuf, Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it, since
    // a binary found fresh in a shared target dir may come from another copy
    // of the workspace.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut cmd = Command::new(cargo);
    // From the workspace root, so that .cargo/config.toml (tokio_unstable,
    // frame pointers) applies wherever the runner was started.
    cmd.current_dir(manifest.join("../.."))
        .args(["build", "--release", "-p", "benchmarks", "--bin", "workload"])
        .arg("--manifest-path")
        .arg(manifest.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !mode.features.is_empty() {
        cmd.args(["--features", mode.features]);
    }
    eprintln!("bench: building mode {} ({})", mode.name, describe(mode));
    let out = cmd.output().map_err(|e| format!("could not run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building mode {} failed ({})", mode.name, out.status).into());
    }
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "workload")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or("cargo reported no workload executable")?;
    // target/release/workload -> target/bench-bins/workload-<mode>
    let target = built.parent().and_then(Path::parent).ok_or("unexpected executable path")?;
    let dir = target.join("bench-bins");
    std::fs::create_dir_all(&dir)?;
    keep_as(&built, &dir, mode)
}

/// Copies `binary` to `dir/workload-<mode>` and returns the copy's path.
fn keep_as(binary: &Path, dir: &Path, mode: &Mode) -> Result<PathBuf, Error> {
    let copy = dir.join(format!("workload-{}", mode.name));
    std::fs::copy(binary, &copy)
        .map_err(|e| format!("copying {} to {}: {e}", binary.display(), copy.display()))?;
    Ok(copy)
}

fn describe(mode: &Mode) -> String {
    let features =
        if mode.features.is_empty() { "no features".to_string() } else { mode.features.to_string() };
    let env: Vec<String> = mode.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if env.is_empty() {
        features
    } else {
        format!("{features}; {}", env.join(" "))
    }
}
