//! The app under soak: two spawner tasks that keep up to 10,000 short tasks
//! in flight (each allocates, computes, sometimes yields or sleeps, and
//! completes), a population of 2,000 longer-lived tasks that each sleep 1 to
//! 5 s and are replaced as they finish, and a cache that plateaus. Its own
//! memory is bounded, so growth over the run would be the agent's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

const SHORT_IN_FLIGHT: usize = 10_000;
const POPULATION: usize = 2_000;
const CACHE_ENTRIES: usize = 1_024;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    spawned: AtomicU64,
    completed: AtomicU64,
    cache: Mutex<VecDeque<Vec<u8>>>,
}

/// The running app.
#[derive(Debug)]
pub struct App {
    shared: Arc<Shared>,
    spawners: Vec<tokio::task::JoinHandle<()>>,
}

pub fn start(runtime: &Handle) -> App {
    let shared = Arc::new(Shared::default());
    let short = Arc::new(Semaphore::new(SHORT_IN_FLIGHT));
    let mut spawners: Vec<_> =
        (0..2u64).map(|n| runtime.spawn(spawn_short_tasks(shared.clone(), short.clone(), n))).collect();
    spawners.push(runtime.spawn(keep_population(shared.clone())));
    App { shared, spawners }
}

impl App {
    /// Tasks completed so far.
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Relaxed)
    }

    /// Tasks spawned and not completed yet.
    pub fn live(&self) -> u64 {
        self.shared.spawned.load(Relaxed).saturating_sub(self.completed())
    }

    /// Stops spawning; returns the tasks completed.
    pub fn stop(mut self, runtime: &tokio::runtime::Runtime) -> u64 {
        self.shared.stop.store(true, Relaxed);
        for s in std::mem::take(&mut self.spawners) {
            let _ = runtime.block_on(s);
        }
        self.completed()
    }
}

async fn spawn_short_tasks(shared: Arc<Shared>, in_flight: Arc<Semaphore>, n: u64) {
    let mut seed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !shared.stop.load(Relaxed) {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (shared2, s) = (shared.clone(), seed);
        shared.spawned.fetch_add(1, Relaxed);
        // Four spawn sites, so that the dumps group tasks.
        match seed % 4 {
            0 => tokio::spawn(async move { short(shared2, s, permit).await }),
            1 => tokio::spawn(async move { short(shared2, s, permit).await }),
            2 => tokio::spawn(async move { short(shared2, s, permit).await }),
            _ => tokio::spawn(async move { short(shared2, s, permit).await }),
        };
    }
}

async fn short(shared: Arc<Shared>, seed: u64, _permit: tokio::sync::OwnedSemaphorePermit) {
    let buf = vec![seed as u8; 64 + (seed % 8_192) as usize];
    std::hint::black_box(buf.iter().map(|&b| b as u64).sum::<u64>());
    drop(buf);
    match seed % 64 {
        0 => tokio::time::sleep(Duration::from_millis(1)).await,
        1..=7 => tokio::task::yield_now().await,
        8 => {
            let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() == CACHE_ENTRIES {
                cache.pop_front();
            }
            cache.push_back(vec![0u8; 4_096]);
        }
        _ => {}
    }
    shared.completed.fetch_add(1, Relaxed);
}

async fn keep_population(shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(POPULATION));
    let mut seed = 0x5EED_u64;
    while !shared.stop.load(Relaxed) {
        let Ok(permit) =
            tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned()).await
        else {
            continue;
        };
        let Ok(permit) = permit else { return };
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let lifetime = Duration::from_millis(1_000 + (seed >> 33) % 4_000);
        let shared2 = shared.clone();
        shared.spawned.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let held = vec![1u8; 1_024];
            tokio::time::sleep(lifetime).await;
            std::hint::black_box(held);
            drop(permit);
            shared2.completed.fetch_add(1, Relaxed);
        });
    }
}
