//! The agent: the debug server on its own named thread, with its own
//! current-thread runtime, so that it answers even when every worker of the
//! app is blocked.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config;
use crate::http::{self, Shared};
use crate::Error;

/// Configures and starts the [`Agent`]. Every setting has a default and a
/// `TASKSCOPE_*` environment variable that overrides it.
///
/// ```no_run
/// # fn main() -> Result<(), taskscope::Error> {
/// let agent = taskscope::Agent::builder()
///     .addr("127.0.0.1:0".parse().unwrap())
///     .start()?;
/// println!("browse http://{}/debug/pprof/", agent.local_addr().unwrap());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is called"]
pub struct Builder {
    addr: SocketAddr,
    serve: bool,
    token: Option<String>,
    allow_remote: bool,
    detect: crate::detect::Settings,
    cpu: crate::cpu::Settings,
    metrics: crate::render::metrics::Options,
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            addr: config::DEFAULT_ADDR.parse().expect("the default address parses"),
            serve: true,
            token: None,
            allow_remote: false,
            detect: crate::detect::Settings::default(),
            cpu: crate::cpu::Settings::default(),
            metrics: crate::render::metrics::Options::default(),
            runtime: None,
        }
    }
}

impl Builder {
    /// The address of the debug endpoint. Default `127.0.0.1:6060`; port 0
    /// picks a free port. Env: `TASKSCOPE_ADDR` (`off` serves no port, for
    /// apps that mount [`Agent::router`] themselves). An address that is
    /// not loopback (`0.0.0.0` included) is refused at `start` unless a
    /// [`token`](Self::token) is set or [`allow_remote`](Self::allow_remote)
    /// is on.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Whether to listen on [`addr`](Self::addr) at all. Default `true`;
    /// turn it off to only mount [`Agent::router`] into the app's server.
    pub fn serve(mut self, serve: bool) -> Self {
        self.serve = serve;
        self
    }

    /// Require `Authorization: Bearer <token>` on every request. Default:
    /// none. Env: `TASKSCOPE_TOKEN`. The token must be 1 to 4096 visible
    /// ASCII characters (no spaces); anything else is an error at `start`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serve a non-loopback [`addr`](Self::addr) without a token, so that
    /// anyone who can reach it can read the app's task dumps and profiles.
    /// Default `false`. Env: `TASKSCOPE_ALLOW_REMOTE=1`. A warning says so
    /// on stderr (and through `tracing`) at `start`.
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }

    /// Idle time after which a task waiting on something other than a timer
    /// or I/O counts as stuck. Default 60 s. Env: `TASKSCOPE_STUCK_AFTER`
    /// (`250ms`, `2s`, `5m`, `1h`).
    pub fn stuck_after(mut self, after: std::time::Duration) -> Self {
        self.detect.stuck_after_ms = after.as_millis() as u64;
        self
    }

    /// Poll time after which a running task counts as blocking its worker.
    /// Default 100 ms. Env: `TASKSCOPE_BLOCKED_AFTER`.
    pub fn blocked_after(mut self, after: std::time::Duration) -> Self {
        self.detect.blocked_after_ms = after.as_millis() as u64;
        self
    }

    /// How many samples CPU profiles take per second of CPU time the process
    /// uses (across all its threads). Default 99: Go's 100, but off the beat
    /// of periodic work. Values above 250 are clamped to 250: SIGPROF timers
    /// advance with the kernel tick (250 Hz on common distributions), and
    /// faster rates would lose samples while still counting each as 1/hz of
    /// CPU time. 0 is an error at `start`. Env: `TASKSCOPE_CPU_HZ`.
    pub fn cpu_hz(mut self, hz: u32) -> Self {
        self.cpu.hz = hz;
        self
    }

    /// The longest CPU profile a request may ask for with `seconds`; longer
    /// requests get a 400. Default 300 (5 minutes). Env:
    /// `TASKSCOPE_CPU_MAX_SECONDS`.
    pub fn cpu_max_seconds(mut self, seconds: u64) -> Self {
        self.cpu.max_seconds = seconds;
        self
    }

    /// How many spawn sites get their own `site` label in `/metrics`; the
    /// others are summed under `site="other"`, which bounds the number of
    /// series. The sites with the most spawns are kept. Default 20. Env:
    /// `TASKSCOPE_METRICS_TOP_SITES`.
    pub fn metrics_top_sites(mut self, sites: usize) -> Self {
        self.metrics.top_sites = sites;
        self
    }

    /// The runtime whose workers to report. Default: the runtime `start` is
    /// called from, if any.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Applies the environment's overrides.
    fn with_env(mut self) -> Result<Self, Error> {
        match std::env::var(config::ADDR).ok().as_deref().map(str::trim) {
            Some("off") => self.serve = false,
            _ => {
                if let Some(addr) = config::env_addr()? {
                    self.addr = addr;
                }
            }
        }
        if let Some(token) = config::env_token() {
            self.token = Some(token);
        }
        if let Some(allow) = config::env_allow_remote()? {
            self.allow_remote = allow;
        }
        if let Some(after) = config::env_duration(config::STUCK_AFTER)? {
            self.detect.stuck_after_ms = after.as_millis() as u64;
        }
        if let Some(after) = config::env_duration(config::BLOCKED_AFTER)? {
            self.detect.blocked_after_ms = after.as_millis() as u64;
        }
        if let Some(hz) = config::env_count(config::CPU_HZ, 1, u32::MAX as u64)? {
            self.cpu.hz = hz as u32;
        }
        if let Some(seconds) = config::env_count(config::CPU_MAX_SECONDS, 1, u32::MAX as u64)? {
            self.cpu.max_seconds = seconds;
        }
        if let Some(sites) = config::env_count(config::METRICS_TOP_SITES, 0, 100_000)? {
            self.metrics.top_sites = sites as usize;
        }
        Ok(self)
    }

    /// Starts the agent: binds the endpoint, starts its thread, and prints
    /// `taskscope: listening on http://<addr>/debug/pprof/` on stderr.
    ///
    /// With `TASKSCOPE_DISABLE=1` nothing is started and the returned agent
    /// serves nothing.
    pub fn start(self) -> Result<Agent, Error> {
        if config::disabled() {
            return Ok(Agent::disabled());
        }
        let mut b = self.with_env()?;
        b.cpu = b.cpu.validated()?;
        if b.token.as_deref().is_some_and(|t| !http::guard::valid_token(t)) {
            return Err(Error::InvalidSetting {
                name: config::TOKEN,
                value: "<hidden>".into(),
                expected: "1 to 4096 visible ASCII characters, without spaces",
            });
        }
        if b.runtime.is_none() {
            b.runtime = tokio::runtime::Handle::try_current().ok();
        }
        let shared = Arc::new(Shared {
            runtime: b.runtime.clone(),
            token: b.token.clone(),
            detect: b.detect,
            cpu: b.cpu,
            metrics: b.metrics,
        });
        if !b.serve {
            return Ok(Agent { local_addr: None, shared, _server: None });
        }

        if http::server::exposure(b.addr, b.token.is_some(), b.allow_remote)? == http::server::Exposure::Open
        {
            let warning = format!(
                "WARNING: serving the debug endpoint on {} without a token ({}=1): anyone who can reach \
                 it can read the task dumps and the CPU and heap profiles of the app",
                b.addr,
                config::ALLOW_REMOTE
            );
            eprintln!("taskscope: {warning}");
            if crate::watch::app_listens() {
                tracing::warn!(target: "taskscope", "{warning}");
            }
        }
        let listener = std::net::TcpListener::bind(b.addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Bind { addr: b.addr, source })?;
        let local_addr = listener.local_addr().map_err(Error::Start)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("taskscope".into())
            .spawn(move || {
                // The endpoint goes down with its thread, but the app runs on.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(listener, router, stopped)
                }));
                if let Err(payload) = served {
                    crate::health::report_panic(
                        "the agent's server thread (the endpoint is down)",
                        &*payload,
                    );
                }
            })
            .map_err(Error::Start)?;
        eprintln!("taskscope: listening on http://{local_addr}/debug/pprof/");
        Ok(Agent {
            local_addr: Some(local_addr),
            shared,
            _server: Some(Server { stop: Some(stop), thread: Some(thread) }),
        })
    }
}

/// Lowers the priority of the calling thread (nice +10, Linux only), for
/// the agent's render threads: a snapshot of a million tasks keeps one
/// busy for a few hundred ms, and on a machine with as many busy threads as
/// cores the app's workers should get the cores first. Raising one's own
/// nice value needs no privilege; a failure leaves the thread as it was.
fn yield_to_the_app() {
    #[cfg(target_os = "linux")]
    // SAFETY: `gettid` and `setpriority` on the calling thread only.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Runs the server until `stopped` fires; on its own current-thread runtime,
/// never the app's.
fn serve(listener: std::net::TcpListener, router: axum::Router, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("taskscope-blocking")
        // Snapshots and profiles render on a few long-lived blocking
        // threads: more would not render faster on the app's cores, and
        // each thread that allocates megabytes of dumps gets an allocator
        // arena of its own that keeps memory after they are freed.
        .max_blocking_threads(http::limits::BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(600))
        .on_thread_start(yield_to_the_app)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::watch::error(format_args!(
                "could not start the agent's runtime: {e}; the endpoint is down"
            ));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                crate::watch::error(format_args!("could not serve: {e}; the endpoint is down"));
                return;
            }
        };
        tokio::select! {
            () = http::server::serve(listener, router) => {}
            _ = watch_dropped() => {}
            () = http::trim::after_answers() => {}
            _ = stopped => {}
        }
    });
}

/// Reports counters of dropped events that grew, every 10 s, whether or
/// not anyone asks for a dump.
async fn watch_dropped() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        crate::watch::check_dropped();
    }
}

#[derive(Debug)]
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The running agent. Dropping it stops the debug server.
///
/// ```no_run
/// # async fn app() {
/// let agent = taskscope::init();
/// // Serve the endpoints from the app's own axum server instead:
/// let app: axum::Router = axum::Router::new().merge(agent.router());
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the agent stops its debug server"]
pub struct Agent {
    local_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// Stops and joins the server thread when dropped.
    _server: Option<Server>,
}

impl Agent {
    /// A builder with every setting at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// An agent that serves nothing, as with `TASKSCOPE_DISABLE=1`.
    pub fn disabled() -> Agent {
        Agent { local_addr: None, shared: Arc::default(), _server: None }
    }

    /// The address the endpoint listens on; `None` when it serves no port.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The endpoints as an axum `Router`, to mount into the app's own server.
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }
}

/// Starts the agent with its default settings and the environment's
/// overrides. Errors (a busy port, a bad variable) are reported on stderr
/// (and through `tracing`, if the app has a subscriber) and the app runs on
/// with an agent that serves nothing.
pub fn init() -> Agent {
    try_init().unwrap_or_else(|e| {
        // On stderr whatever the subscriber: at startup the app's logging
        // may not be set up yet.
        eprintln!("taskscope: {e}; the agent is not running");
        if crate::watch::app_listens() {
            tracing::error!(target: "taskscope", "{e}; the agent is not running");
        }
        Agent::disabled()
    })
}

/// Like [`init`], but returns the error.
pub fn try_init() -> Result<Agent, Error> {
    Agent::builder().start()
}
