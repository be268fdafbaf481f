//! What tracking tokio resources costs per `lock()`: one task on a
//! current-thread runtime locks and unlocks a tokio `Mutex` N times
//! (uncontended, so that the lock itself is cheap and the instrumentation
//! shows), then N `RwLock` reads, then N bounded-channel round trips (whose
//! inner semaphore taskscope does not track), then N acquires and releases
//! of a `Semaphore` permit, then N `Mutex`es made and dropped (what a
//! tracked resource costs to make); prints nanoseconds of thread CPU time
//! per operation, which a loaded machine disturbs less than wall time.
//!
//! ```sh
//! for mode in on off; do
//!   TASKSCOPE_ADDR=off TASKSCOPE_RESOURCES=$mode cargo run --release -p taskscope --example resources_cost
//! done
//! TASKSCOPE_ADDR=off TASKSCOPE_DEEP=off cargo run --release -p taskscope --example resources_cost
//! ```

use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    taskscope::instrument(&mut builder);
    let rt = builder.build().unwrap();
    let _agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().start().unwrap()
    };
    let (mutex, rwlock, channel, semaphore, made) = rt.block_on(async move {
        // The first spawn installs deep mode's subscriber; the resources are
        // made after it, as an app's usually are.
        tokio::spawn(async {}).await.unwrap();
        tokio::spawn(async move {
            let m = tokio::sync::Mutex::new(0u64);
            let l = tokio::sync::RwLock::new(0u64);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(16);
            let s = tokio::sync::Semaphore::new(4);
            let start = thread_cpu();
            for _ in 0..n {
                *m.lock().await += 1;
            }
            let mutex = thread_cpu() - start;
            let start = thread_cpu();
            for _ in 0..n {
                std::hint::black_box(*l.read().await);
            }
            let rwlock = thread_cpu() - start;
            let start = thread_cpu();
            for i in 0..n {
                tx.send(i).await.unwrap();
                std::hint::black_box(rx.recv().await);
            }
            let channel = thread_cpu() - start;
            let start = thread_cpu();
            for _ in 0..n {
                drop(std::hint::black_box(s.acquire().await.unwrap()));
            }
            let semaphore = thread_cpu() - start;
            // What a tracked resource costs to make and drop: what tracking
            // every `Sleep` or oneshot channel would add to each.
            let start = thread_cpu();
            for _ in 0..n {
                let _made = std::hint::black_box(tokio::sync::Mutex::new(0u8));
            }
            (mutex, rwlock, channel, semaphore, thread_cpu() - start)
        })
        .await
        .unwrap()
    });
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "{{\"resources\":{:?},\"deep\":{:?},\"n\":{n},\"mutex_lock_unlock_ns\":{:.1},\"rwlock_read_ns\":{:.1},\"channel_round_trip_ns\":{:.1},\"semaphore_acquire_release_ns\":{:.1},\"mutex_new_drop_ns\":{:.1}}}",
        std::env::var("TASKSCOPE_RESOURCES").unwrap_or_else(|_| "on".into()),
        std::env::var("TASKSCOPE_DEEP").unwrap_or_else(|_| "on".into()),
        per(mutex),
        per(rwlock),
        per(channel),
        per(semaphore),
        per(made)
    );
}
