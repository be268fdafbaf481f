//! Run with: `cargo run -p hello`
//!
//! The smallest app with taskscope: `#[taskscope::main]` instead of
//! `#[tokio::main]`. Browse the address it prints.

use std::time::Duration;

#[taskscope::main]
async fn main() {
    // A few tasks worth looking at: sleepers, and a receiver that waits forever.
    for i in 0..3u64 {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500 * (i + 1))).await;
            }
        });
    }
    let (_keep_sender, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move { rx.recv().await });
    println!("hello: running; press Ctrl-C to stop");
    std::future::pending::<()>().await;
}
