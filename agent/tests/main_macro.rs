//! `#[taskscope::main]` takes `#[tokio::main]`'s arguments. Its own test
//! binary, because it sets `TASKSCOPE_ADDR` for the agents the macro starts.

#[taskscope::main(flavor = "current_thread")]
async fn on_current_thread() -> u64 {
    tokio::spawn(async { 7 }).await.unwrap()
}

#[taskscope::main(worker_threads = 3)]
async fn on_multi_thread() -> Result<usize, String> {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tokio::spawn(async move { workers }).await.map_err(|e| e.to_string())
}

#[test]
fn the_main_macro_accepts_tokio_main_arguments() {
    // The macro starts an agent from the environment; keep it off port 6060.
    std::env::set_var("TASKSCOPE_ADDR", "127.0.0.1:0");
    assert_eq!(on_current_thread(), 7);
    assert_eq!(on_multi_thread(), Ok(3));
}
