//! Run with: `cargo run --release -p leaky-server`
//!
//! An axum service with taskscope and one route per pathology, next to a
//! healthy background (a ticker, a fixed worker pool, a long sleeper):
//!
//! - `/stuck`: a task waits on a channel that nobody will ever send on;
//! - `/leak`: each request leaves a task behind at the same spawn site;
//! - `/block?ms=N`: a task blocks its worker thread in sync code;
//! - `/deadlock`: two tasks lock two mutexes in opposite orders;
//! - `/lost-waker`: a task awaits a future that drops its waker;
//! - `/grow`: a cache that only grows (a `heap_growth` finding);
//! - `/cache`: healthy, a cache bounded at 16 MiB: it fills, then stays flat;
//! - `/work`: healthy, short-lived work for the pool.
//!
//! taskscope's allocator is installed, so the heap is profiled too.
//!
//! By default it also drives these itself (`--manual` turns that off), so the
//! endpoint has something to show at once. `LEAKY_ADDR` sets its address
//! (default `127.0.0.1:3000`); `TASKSCOPE_ADDR` sets the agent's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();

#[derive(Clone, Default)]
struct App {
    /// Senders kept alive so their receivers wait forever.
    stuck: Arc<Mutex<Vec<mpsc::Sender<()>>>>,
    leaked: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
    cache: Arc<Mutex<Vec<Vec<u8>>>>,
    bounded: Arc<Mutex<std::collections::VecDeque<Vec<u8>>>>,
    jobs: Option<mpsc::Sender<u64>>,
}

/// A task stuck on a channel receive.
fn stuck(app: &App) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    app.stuck.lock().unwrap().push(tx);
    tokio::spawn(async move {
        rx.recv().await;
    });
}

/// A handler that forgets a task each time it runs.
fn leak(app: &App) {
    let (tx, rx) = oneshot::channel::<()>();
    app.leaked.lock().unwrap().push(tx);
    tokio::spawn(async move {
        let _ = rx.await;
    });
}

/// A task that blocks its worker thread.
fn block(ms: u64) {
    tokio::spawn(async move {
        std::thread::sleep(Duration::from_millis(ms));
    });
}

/// Two tasks that take two locks in opposite orders: a deadlock.
fn deadlock() {
    let a = Arc::new(tokio::sync::Mutex::new(()));
    let b = Arc::new(tokio::sync::Mutex::new(()));
    let (a2, b2) = (a.clone(), b.clone());
    tokio::spawn(async move {
        let _first = a.lock().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _second = b.lock().await;
    });
    tokio::spawn(async move {
        let _first = b2.lock().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _second = a2.lock().await;
    });
}

/// A future that returns `Pending` without keeping its waker: nothing can
/// ever wake the task that awaits it.
struct Forgetful;

impl std::future::Future for Forgetful {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

fn lose_waker() {
    tokio::spawn(async {
        Forgetful.await;
    });
}

fn grow(app: &App) -> usize {
    let mut cache = app.cache.lock().unwrap();
    cache.push(vec![7u8; 1 << 20]);
    cache.len()
}

/// Entries of the bounded cache, 1 MiB each.
const BOUNDED_ENTRIES: usize = 16;

/// A healthy cache: new entries push the oldest out once it holds
/// [`BOUNDED_ENTRIES`], so its memory plateaus.
fn cache(app: &App) -> usize {
    let mut cache = app.bounded.lock().unwrap();
    cache.push_back(vec![3u8; 1 << 20]);
    if cache.len() > BOUNDED_ENTRIES {
        cache.pop_front();
    }
    cache.len()
}

async fn work(app: &App) {
    if let Some(jobs) = &app.jobs {
        let _ = jobs.send(1).await;
    }
}

#[taskscope::main]
async fn main() {
    let manual = std::env::args().any(|a| a == "--manual");
    let addr = std::env::var("LEAKY_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());

    // The healthy background: a fixed pool, a ticker, a long sleeper.
    let (jobs, queue) = mpsc::channel::<u64>(1024);
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    for _ in 0..4 {
        let queue = queue.clone();
        tokio::spawn(async move {
            loop {
                let job = queue.lock().await.recv().await;
                match job {
                    Some(n) => tokio::time::sleep(Duration::from_millis(n)).await,
                    None => return,
                }
            }
        });
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
        }
    });
    tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));

    let app = App { jobs: Some(jobs), ..App::default() };
    if !manual {
        let app = app.clone();
        tokio::spawn(async move {
            stuck(&app);
            deadlock();
            lose_waker();
            let mut round = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                round += 1;
                leak(&app);
                work(&app).await;
                if round.is_multiple_of(10) {
                    grow(&app);
                }
                if round.is_multiple_of(60) {
                    block(300);
                }
            }
        });
    }

    let router = Router::new()
        .route("/", get(|| async { HELP }))
        .route(
            "/stuck",
            get(|State(app): State<App>| async move {
                stuck(&app);
                "spawned a task stuck on a channel receive\n"
            }),
        )
        .route(
            "/leak",
            get(|State(app): State<App>| async move {
                leak(&app);
                format!("leaked a task ({} so far)\n", app.leaked.lock().unwrap().len())
            }),
        )
        .route(
            "/block",
            get(|Query(q): Query<Vec<(String, String)>>| async move {
                let ms =
                    q.iter().find(|(k, _)| k == "ms").and_then(|(_, v)| v.parse().ok()).unwrap_or(5_000u64);
                block(ms);
                format!("spawned a task that blocks its worker for {ms} ms\n")
            }),
        )
        .route(
            "/deadlock",
            get(|| async {
                deadlock();
                "spawned two tasks that deadlock on two mutexes\n"
            }),
        )
        .route(
            "/lost-waker",
            get(|| async {
                lose_waker();
                "spawned a task that awaits a future which drops its waker\n"
            }),
        )
        .route(
            "/grow",
            get(|State(app): State<App>| async move { format!("the cache holds {} MiB\n", grow(&app)) }),
        )
        .route(
            "/cache",
            get(|State(app): State<App>| async move { format!("bounded cache: {} MiB\n", cache(&app)) }),
        )
        .route(
            "/work",
            get(|State(app): State<App>| async move {
                work(&app).await;
                "queued a job for the pool\n"
            }),
        )
        .with_state(app);

    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("leaky-server: cannot listen on {addr}: {e} (set LEAKY_ADDR)");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap();
    println!("leaky-server: listening on http://{local}/ (routes: /stuck /leak /block?ms=N /deadlock /lost-waker /grow /cache /work)");
    println!("leaky-server: {}", if manual { "manual mode" } else { "driving the pathologies itself" });
    axum::serve(listener, router).await.unwrap();
}

const HELP: &str = "leaky-server: /stuck /leak /block?ms=N /deadlock /lost-waker /grow /cache /work\n";
