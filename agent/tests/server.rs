//! The server over real HTTP: it runs on its own thread, so it answers even
//! while every worker of the app is blocked in synchronous code.

use std::time::{Duration, Instant};

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().expect("body"))
}

/// An app's runtime (two workers, taskscope's hooks) and its agent on an
/// ephemeral loopback port.
fn instrumented_app() -> (tokio::runtime::Runtime, taskscope::Agent) {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    let agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
    };
    (rt, agent)
}

#[test]
fn the_endpoint_answers_while_every_worker_is_blocked() {
    let (rt, agent) = instrumented_app();
    let addr = agent.local_addr().unwrap();

    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let wait = wait.clone();
            rt.spawn(async move {
                // Blocks the worker thread until the test releases it.
                let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(20));
            })
        })
        .collect();
    // Give both workers time to pick up a blocker.
    std::thread::sleep(Duration::from_millis(300));

    // Every worker is blocked: no app task can run, yet the agent answers.
    let started = Instant::now();
    let (status, dump) = http_get(addr, "/debug/pprof/tasks?debug=2");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let running = dump.lines().filter(|l| l.starts_with("task ") && l.contains("[running, ")).count();
    assert!(running >= 1, "expected the blockers to show as running:\n{dump}");
    let (status, json) = http_get(addr, "/debug/taskscope/api/snapshot");
    assert_eq!(status, 200);
    assert!(json.contains("\"state\":\"running\""), "{json}");

    // Unblock, and the tasks complete.
    drop(release);
    rt.block_on(async {
        for b in blockers {
            b.await.unwrap();
        }
    });
    drop(agent);
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = taskscope::Agent::builder().addr(addr).start().unwrap_err().to_string();
    assert!(err.starts_with(&format!("could not listen on {addr}: ")), "{err}");
    assert!(err.contains("TASKSCOPE_ADDR"), "{err}");
}

/// The snapshot JSON is sent while it is written (chunked, not buffered
/// whole), arrives whole and in order, and a client that leaves half-way
/// does not stop the server from answering the next one.
#[test]
fn a_large_snapshot_is_streamed_whole_and_a_client_may_leave_half_way() {
    use std::io::{Read, Write};

    let (rt, agent) = instrumented_app();
    let addr = agent.local_addr().unwrap();
    // About 250 bytes each: some 5 MB of JSON, many chunks.
    const TASKS: usize = 20_000;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let idle: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut stopped = stopped.clone();
            rt.spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
        })
        .collect();

    // A client that reads the head and a little of the body, then leaves.
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(conn, "GET /debug/taskscope/api/snapshot HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut head = vec![0u8; 4096];
        let n = conn.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "not streamed:\n{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
    }

    let started = Instant::now();
    let agent_http =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().new_agent();
    let mut res =
        agent_http.get(format!("http://{addr}/debug/taskscope/api/snapshot")).call().expect("request");
    let body = res.body_mut().with_config().limit(1 << 30).read_to_string().expect("body");
    let json: serde_json::Value = serde_json::from_str(&body).expect("the streamed JSON parses");
    let tasks = json["tasks"].as_array().expect("tasks");
    assert!(tasks.len() >= TASKS, "{} tasks", tasks.len());
    assert_eq!(json["tasks_total"].as_u64(), Some(tasks.len() as u64));
    let ids: Vec<u64> = tasks.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids are not ascending");
    assert!(json["agent"].is_object(), "the rest of the snapshot follows the tasks");
    eprintln!("{} bytes in {:?}", body.len(), started.elapsed());

    // debug=2 (some 3 MB here) is streamed the same way, whole.
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(conn, "GET /debug/pprof/tasks?debug=2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = vec![0u8; 4096];
    let n = conn.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "debug=2 not streamed:\n{head}");
    drop(conn);
    let mut res = agent_http.get(format!("http://{addr}/debug/pprof/tasks?debug=2")).call().expect("request");
    let dump = res.body_mut().with_config().limit(1 << 30).read_to_string().expect("body");
    let blocks = dump.lines().filter(|l| l.starts_with("task ")).count();
    assert!(blocks >= TASKS, "{blocks} task blocks");
    assert_eq!(dump.matches("\nspawned at ").count(), blocks, "every block is whole");

    stop.send(true).unwrap();
    rt.block_on(async {
        for t in idle {
            t.await.unwrap();
        }
    });
    drop(agent);
}
