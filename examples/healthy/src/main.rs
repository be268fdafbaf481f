//! Run with: `cargo run -p healthy` (`TASKSCOPE_DEEP=off` for lean mode)
//!
//! A service with nothing wrong: an idle accept loop, a busy worker pool, an
//! interval ticker, a task sleeping for an hour, a cache that fills and then
//! stays flat, and short-lived request tasks. taskscope must report no
//! warning or critical finding about it, in either mode.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

#[taskscope::main(worker_threads = 2)]
async fn main() {
    // An accept loop that nobody connects to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = socket.read(&mut buf).await;
            });
        }
    });

    // A fixed pool of four workers, each fed through its own channel.
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(16);
        workers.push(tx);
        tokio::spawn(async move {
            while let Some(ms) = rx.recv().await {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        });
    }

    // A ticker, and a long sleeper.
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
        }
    });
    tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));

    // A cache that fills to 32 entries, then stays flat.
    let cache: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();

    println!("healthy: running");
    let mut round = 0u64;
    loop {
        round += 1;
        // Short-lived request tasks.
        for i in 0..8 {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 + i)).await;
                let mut cache = cache.lock().unwrap();
                if cache.len() < 32 {
                    cache.push(vec![0u8; 4096]);
                }
            });
        }
        let _ = workers[(round % 4) as usize].send(round % 20).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
