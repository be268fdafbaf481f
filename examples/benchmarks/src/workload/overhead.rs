//! The timed workloads whose cost is all per-poll or per-spawn overhead:
//! poll-heavy, spawn-heavy and mutex-heavy. Each runs from a task on the app's runtime,
//! as an app's own code would, and reports the wall time of that task and
//! the CPU time of the whole process meanwhile.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{probe, App};

/// poll-heavy: `tasks` tasks that each call `yield_now()` `yields` times.
pub fn poll(app: &App, tasks: usize, yields: usize) -> Value {
    let (secs, cpu_secs) = timed(app, async move {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("a poll-heavy task panicked");
        }
    });
    json!({ "secs": secs, "cpu_secs": cpu_secs, "tasks": tasks, "yields": yields })
}

/// spawn-heavy: `rounds` rounds, each spawning `per_round` empty tasks and
/// then joining them.
pub fn spawn(app: &App, rounds: usize, per_round: usize) -> Value {
    let (secs, cpu_secs) = timed(app, async move {
        let mut handles = Vec::with_capacity(per_round);
        for _ in 0..rounds {
            handles.extend((0..per_round).map(|_| tokio::spawn(async {})));
            for handle in handles.drain(..) {
                handle.await.expect("an empty task panicked");
            }
        }
    });
    json!({ "secs": secs, "cpu_secs": cpu_secs, "rounds": rounds, "per_round": per_round })
}

/// mutex-heavy: `tasks` tasks, each taking one of `mutexes` tokio mutexes
/// `locks` times and yielding once while it holds it, so that every lock
/// is contended: the cost of tracking the mutexes as resources and the
/// tasks that wait on them.
pub fn mutex(app: &App, tasks: usize, locks: usize, mutexes: usize) -> Value {
    let mutexes = mutexes.max(1);
    let shared: Arc<Vec<Mutex<u64>>> = Arc::new((0..mutexes).map(|_| Mutex::new(0)).collect());
    let counted = shared.clone();
    let (secs, cpu_secs) = timed(app, async move {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mutex = &shared[i % mutexes];
                    for _ in 0..locks {
                        let mut guard = mutex.lock().await;
                        tokio::task::yield_now().await;
                        *guard += 1;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("a mutex-heavy task panicked");
        }
    });
    let total: u64 = counted.iter().map(|m| *m.try_lock().expect("no task holds a mutex anymore")).sum();
    assert_eq!(total, (tasks * locks) as u64, "every lock was counted");
    json!({ "secs": secs, "cpu_secs": cpu_secs, "tasks": tasks, "locks": locks, "mutexes": mutexes })
}

/// Runs `work` in a task on the app's runtime and times it there: wall and
/// process CPU seconds.
fn timed(app: &App, work: impl std::future::Future<Output = ()> + Send + 'static) -> (f64, f64) {
    app.rt.block_on(async move {
        tokio::spawn(async move {
            let cpu = probe::cpu_secs();
            let start = Instant::now();
            work.await;
            (start.elapsed().as_secs_f64(), probe::cpu_secs() - cpu)
        })
        .await
        .expect("the workload's driver task panicked")
    })
}
