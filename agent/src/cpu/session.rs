//! One CPU profile at a time: start pprof-rs's sampler, let it run while the
//! request awaits a timer, stop it, and copy its samples out.
//!
//! The sampler runs only while a profile does. pprof-rs's sample table
//! (about 18 MB with frame pointers) is allocated by the first profile and
//! kept from then on: pprof-rs makes a fresh one whenever a profile stops.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant, SystemTime};

use pprof::{ProfilerGuard, ProfilerGuardBuilder};

use super::handler::{self, Installed};
use super::symbols::{Recording, Symbolizer};

static BUSY: AtomicBool = AtomicBool::new(false);

/// Why a profile could not be taken. The messages follow Go's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CpuError {
    /// Another profile is running (in taskscope or through pprof-rs).
    #[error("cpu profiling already in use")]
    InUse,
    /// pprof-rs could not start its sampler.
    #[error("{0}")]
    Start(String),
    /// The profile was taken but could not be read.
    #[error("{0}")]
    Failed(String),
}

/// Profiles the whole process for `duration` at `hz` samples a second of CPU
/// time. Awaits a timer meanwhile, so the calling thread stays free; dropping
/// the future stops the profile.
pub(crate) async fn record(duration: Duration, hz: u32) -> Result<Recording, CpuError> {
    let busy = Busy::acquire().ok_or(CpuError::InUse)?;
    let mut session = blocking(move || Session::start(hz, busy)).await??;
    tokio::time::sleep(duration).await;
    session.stop();
    blocking(move || session.finish()).await?
}

/// Runs `f` on a blocking thread: starting the sampler warms up the
/// symbolizer, and reading it out symbolizes every frame.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, CpuError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let why = if e.is_panic() {
            let payload = e.into_panic();
            crate::health::report_panic("the CPU profiler", &*payload);
            crate::health::panic_message(&*payload)
        } else {
            crate::health::count_panic();
            e.to_string()
        };
        CpuError::Failed(format!("the CPU profiler failed (counted): {why}"))
    })
}

/// The right to run the one profile; released when dropped.
#[derive(Debug)]
struct Busy(());

impl Busy {
    fn acquire() -> Option<Busy> {
        BUSY.compare_exchange(false, true, Acquire, Relaxed).ok().map(|_| Busy(()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.store(false, Release);
    }
}

/// A running profile. Dropping it stops the sampler, then frees [`Busy`].
struct Session {
    guard: Option<ProfilerGuard<'static>>,
    hz: u32,
    installed: Installed,
    start_time: SystemTime,
    started: Instant,
    cpu_at_start: Option<Duration>,
    /// Wall and process CPU time, set by [`Session::stop`].
    stopped: Option<(Duration, Option<Duration>)>,
    _busy: Busy,
}

impl Session {
    fn start(hz: u32, busy: Busy) -> Result<Session, CpuError> {
        let guard =
            ProfilerGuardBuilder::default().frequency(hz as libc::c_int).build().map_err(|e| match e {
                pprof::Error::Running => CpuError::InUse,
                e => CpuError::Start(e.to_string()),
            })?;
        let installed = handler::install();
        Ok(Session {
            guard: Some(guard),
            hz,
            installed,
            start_time: SystemTime::now(),
            started: Instant::now(),
            cpu_at_start: process_cpu_time(),
            stopped: None,
            _busy: busy,
        })
    }

    /// Stops recording samples; cheap enough for the agent's thread.
    fn stop(&mut self) {
        handler::pause();
        let cpu = process_cpu_time().zip(self.cpu_at_start).map(|(end, start)| end.saturating_sub(start));
        self.stopped = Some((self.started.elapsed(), cpu));
    }

    /// Reads the samples out, stops pprof-rs, and symbolizes.
    fn finish(mut self) -> Result<Recording, CpuError> {
        if self.stopped.is_none() {
            self.stop();
        }
        let (duration, process_cpu) = self.stopped.unwrap_or_default();
        let report = match &self.guard {
            Some(guard) => guard.report().build_unresolved().map_err(|e| CpuError::Failed(e.to_string()))?,
            None => return Err(CpuError::Failed("the profiler was already stopped".into())),
        };
        let markers = handler::claimed();
        let unmarked = handler::unmarked();
        let stacks: Vec<(String, Vec<usize>, u64)> = report
            .data
            .iter()
            .map(|(frames, &count)| {
                let name = &frames.thread_name[..frames.thread_name_length.min(frames.thread_name.len())];
                let ips = frames.frames.iter().map(|f| f.ip).collect();
                (String::from_utf8_lossy(name).into_owned(), ips, count.max(0) as u64)
            })
            .collect();
        drop(report);
        let (hz, installed, start_time) = (self.hz, self.installed, self.start_time);
        drop(self);

        let mut notes = Vec::new();
        if !installed.leaf {
            notes.push(
                "the running function of each sample is missing: taskscope's SIGPROF handler is not \
                 supported on this platform"
                    .to_string(),
            );
        }
        if !installed.tasks {
            notes.push("samples carry no spawn site: task tracking is off or unsupported here".to_string());
        }
        if unmarked > 0 {
            notes.push(format!(
                "{unmarked} samples carry no spawn site: more than {} sites were busy",
                handler::MARKERS
            ));
        }
        let mut symbolizer = Symbolizer::new(installed.leaf, markers);
        let samples =
            stacks.into_iter().map(|(thread, ips, count)| symbolizer.sample(thread, &ips, count)).collect();
        Ok(Recording { hz, start_time, duration, process_cpu, samples, notes })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        handler::pause();
        // Stops the timer and ignores SIGPROF from now on.
        drop(self.guard.take());
    }
}

/// CPU time used by the whole process so far.
fn process_cpu_time() -> Option<Duration> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } == 0;
    ok.then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}
