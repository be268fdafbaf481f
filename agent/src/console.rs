//! tokio-console interop (cargo feature `console`): console-subscriber's
//! layer joins taskscope's in the global subscriber that taskscope installs,
//! and its gRPC server runs on a thread of its own, so that `tokio-console`
//! and the debug endpoint read the same app.
//!
//! Unlike console-subscriber's one hour, completed tasks are kept for a
//! bounded time (`TASKSCOPE_CONSOLE_RETENTION`, default 60 s), so that an app
//! that spawns many short tasks keeps a bounded footprint.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use console_subscriber::{ConsoleLayer, Server, ServerParts};
use tracing_core::Metadata;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::Layer;

use crate::config;

/// Where the console's gRPC server listens by default (tokio-console's).
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:6669";
/// How long completed tasks stay visible in tokio-console by default.
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(60);

static ADDR: OnceLock<SocketAddr> = OnceLock::new();

/// The console layer, enabling only what tokio-console reads (tokio's
/// `runtime.*` spans and events), as console-subscriber's own `spawn` does.
pub(crate) type ConsoleFilter<S> = Filtered<ConsoleLayer, FilterFn<fn(&Metadata<'_>) -> bool>, S>;

fn wanted(meta: &Metadata<'_>) -> bool {
    if meta.is_event() {
        meta.target().starts_with("runtime") || meta.target().starts_with("tokio")
    } else {
        meta.name().starts_with("runtime.") || meta.target().starts_with("tokio")
    }
}

/// The console's server, bound but not yet serving.
pub(crate) struct Pending {
    server: Server,
    listener: std::net::TcpListener,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("listener", &self.listener).finish()
    }
}

/// Binds the console's address and builds its layer; `None` (reported) if
/// the address is bad or busy, and taskscope runs without the console.
pub(crate) fn build<S>() -> Option<(ConsoleFilter<S>, Pending)>
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let addr = match std::env::var(config::CONSOLE_ADDR).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => match config::parse_addr(config::CONSOLE_ADDR, &v) {
            Ok(addr) => addr,
            Err(e) => {
                crate::watch::error(format_args!("{e}; tokio-console's server is not started"));
                return None;
            }
        },
        None => DEFAULT_ADDR.parse().expect("the default console address parses"),
    };
    let retention = match config::env_duration(config::CONSOLE_RETENTION) {
        Ok(d) => d.unwrap_or(DEFAULT_RETENTION),
        Err(e) => {
            crate::watch::warn(format_args!("{e}; using the default"));
            DEFAULT_RETENTION
        }
    };
    let listener = match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => l,
        Err(e) => {
            crate::watch::error(format_args!(
                "could not bind tokio-console's server to {addr}: {e}; set {} to another address",
                config::CONSOLE_ADDR
            ));
            return None;
        }
    };
    let local = listener.local_addr().ok()?;
    let (layer, server) = ConsoleLayer::builder().retention(retention).server_addr(local).build();
    let layer = layer.with_filter(FilterFn::new(wanted as fn(&Metadata<'_>) -> bool));
    Some((layer, Pending { server, listener }))
}

/// Serves the console's gRPC API for the rest of the process, on a thread
/// with its own runtime, which no subscriber watches (so that the console
/// does not report on itself).
pub(crate) fn serve(pending: Pending) {
    let Pending { server, listener } = pending;
    let addr = listener.local_addr().ok();
    let spawned = std::thread::Builder::new().name("taskscope-console".into()).spawn(move || {
        // A registered dispatcher that enables nothing, rather than
        // `Dispatch::none()`: with only one dispatcher registered, tracing
        // computes a new callsite's interest from the default of the thread
        // that first hits it, and a callsite first hit here (tokio's waker
        // events, say) would then be off for the whole process.
        let quiet = tracing_core::Dispatch::new(tracing_core::subscriber::NoSubscriber::default());
        let _quiet = tracing_core::dispatcher::set_default(&quiet);
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                crate::watch::error(format_args!("could not start tokio-console's server: {e}"));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    crate::watch::error(format_args!("could not serve tokio-console: {e}"));
                    return;
                }
            };
            let ServerParts { instrument_server, aggregator, .. } = server.into_parts();
            let aggregate = tokio::spawn(aggregator.run());
            let served = tonic::transport::Server::builder()
                .add_service(instrument_server)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
            aggregate.abort();
            if let Err(e) = served {
                crate::watch::error(format_args!("tokio-console's server stopped: {e}"));
            }
        });
    });
    match spawned {
        Ok(_) => {
            if let Some(addr) = addr {
                let _ = ADDR.set(addr);
                tracing::info!(target: "taskscope", "tokio-console's server listens on {addr}");
            }
        }
        Err(e) => crate::watch::error(format_args!("could not start tokio-console's thread: {e}")),
    }
}

/// The address of tokio-console's gRPC server (`tokio-console
/// http://<addr>`), once taskscope has started it: at the first task spawn
/// on an instrumented runtime, unless the app installed its own tracing
/// subscriber first. Set it with `TASKSCOPE_CONSOLE_ADDR` (default
/// `127.0.0.1:6669`; port 0 picks a free port).
///
/// ```no_run
/// # fn main() {
/// if let Some(addr) = taskscope::console_addr() {
///     eprintln!("run: tokio-console http://{addr}");
/// }
/// # }
/// ```
pub fn console_addr() -> Option<SocketAddr> {
    ADDR.get().copied()
}
