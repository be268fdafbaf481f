//! `/debug/pprof/profile` and `/debug/pprof/flamegraph`: CPU profiles of the
//! next `seconds`, as Go's pprof handler serves them. The request awaits a
//! timer meanwhile, so the agent's thread keeps answering other requests.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::{profile_response, AppState, HttpError};
use crate::cpu::{self, CpuError, Recording};
use crate::render::flamegraph;

pub(super) async fn profile(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let seconds = Params::parse(query.as_deref())?.seconds(shared.cpu.max_seconds)?;
    let recording = record(&shared, seconds).await?;
    let body = blocking(move || cpu::pprof(&recording)).await?;
    Ok(profile_response("profile", body))
}

pub(super) async fn flamegraph(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref())?;
    let seconds = params.seconds(shared.cpu.max_seconds)?;
    let mut options = params.flamegraph()?;
    let recording = record(&shared, seconds).await?;
    let svg = blocking(move || {
        options.title = title(&recording);
        options.subtitle = Some(format!(
            "{} Hz of CPU time; roots are threads, then the spawn site of the task being polled",
            recording.hz
        ));
        flamegraph::svg(cpu::folded(&recording).into_iter(), &options)
    })
    .await?
    .map_err(|e| HttpError::internal(format!("could not draw the flamegraph: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// `CPU profile: 2 s, 198 samples (1.98 s of CPU)`.
fn title(recording: &Recording) -> String {
    let total = recording.total();
    let cpu = (total as f64 * recording.period_nanos() as f64) / 1e9;
    format!(
        "CPU profile: {:.0} s, {total} {} ({cpu:.2} s of CPU)",
        recording.duration.as_secs_f64(),
        if total == 1 { "sample" } else { "samples" }
    )
}

async fn record(shared: &AppState, seconds: u64) -> Result<Recording, HttpError> {
    cpu::record(Duration::from_secs(seconds), shared.cpu.hz).await.map_err(|e| match e {
        CpuError::InUse | CpuError::Start(_) => {
            HttpError::internal(format!("Could not enable CPU profiling: {e}"))
        }
        CpuError::Failed(_) => HttpError::internal(format!("Could not read the CPU profile: {e}")),
    })
}

/// Encoding and drawing run off the serving thread; a panic becomes a
/// counted 500 (see layers.rs).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, HttpError> {
    super::layers::join(tokio::task::spawn_blocking(f)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn the_title_gives_the_duration_and_the_samples() {
        let r = Recording {
            hz: 100,
            start_time: SystemTime::now(),
            duration: Duration::from_millis(2004),
            process_cpu: None,
            samples: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(title(&r), "CPU profile: 2 s, 0 samples (0.00 s of CPU)");
    }
}
