//! Deep mode's tokio resources over real HTTP, with taskscope's own
//! subscriber: which lock a task waits on and who holds it, in `debug=2`
//! and the JSON; `deadlock` findings for two- and three-task cycles; none
//! for a lock that is contended but changes hands.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Barrier, Mutex};

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.body_mut().read_to_string().expect("body")
}

fn snapshot(addr: std::net::SocketAddr) -> Value {
    serde_json::from_str(&http_get(addr, "/debug/taskscope/api/snapshot")).unwrap()
}

struct App {
    rt: tokio::runtime::Runtime,
    agent: taskscope::Agent,
    addr: std::net::SocketAddr,
}

fn app() -> App {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    // The first spawn of the process installs deep mode's subscriber, so
    // that task itself has no deep data.
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    let agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
    };
    let addr = agent.local_addr().unwrap();
    App { rt, agent, addr }
}

impl App {
    fn stop(self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        for t in &tasks {
            t.abort();
        }
        drop(self.agent);
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Polls the snapshot until `done` says yes (at most 30 s).
fn wait_for(addr: std::net::SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = snapshot(addr);
        if done(&s) {
            return s;
        }
        if std::time::Instant::now() > deadline {
            panic!("no {what}:\n{}\n{}", http_get(addr, "/debug/pprof/tasks?debug=2"), s["findings"]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The deadlock findings about any of `tasks` (the tests of this binary
/// share one process, so one test's cycle shows in the others' snapshots).
fn deadlocks<'a>(s: &'a Value, tasks: &[u64]) -> Vec<&'a Value> {
    s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "deadlock")
        .filter(|f| f["task_ids"].as_array().unwrap().iter().any(|t| tasks.contains(&t.as_u64().unwrap())))
        .collect()
}

fn id_of(handle: &tokio::task::JoinHandle<()>) -> u64 {
    handle.id().to_string().parse().unwrap()
}

/// `n` tasks, each holding lock i and then waiting for lock i + 1.
fn cycle(app: &App, locks: &[Arc<Mutex<u32>>]) -> Vec<tokio::task::JoinHandle<()>> {
    let n = locks.len();
    let barrier = Arc::new(Barrier::new(n));
    (0..n)
        .map(|i| {
            let (mine, next) = (locks[i].clone(), locks[(i + 1) % n].clone());
            let barrier = barrier.clone();
            app.rt.spawn(async move {
                let _held = mine.lock().await;
                barrier.wait().await;
                let _never = next.lock().await;
            })
        })
        .collect()
}

fn check_cycle(n: usize) {
    let app = app();
    let (locks, lines): (Vec<_>, Vec<_>) =
        (0..n).map(|_| (Arc::new(Mutex::new(0)), format!("agent/tests/resources.rs:{}:", line!()))).unzip();
    let tasks = cycle(&app, &locks);
    let ids: Vec<u64> = tasks.iter().map(id_of).collect();
    let s = wait_for(app.addr, "deadlock finding", |s| !deadlocks(s, &ids).is_empty());
    let found = deadlocks(&s, &ids);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = found[0];
    assert_eq!(f["severity"], "critical");
    let mut in_cycle: Vec<u64> =
        f["task_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    in_cycle.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(in_cycle, expected, "{f:#}");
    let message = f["message"].as_str().unwrap();
    for id in &ids {
        assert!(message.contains(&format!("task {id} ")), "{message}");
    }
    assert!(message.contains(&lines[0]), "{message}");
    assert!(message.contains("tokio::sync::Mutex created at agent/tests/resources.rs:"), "{message}");
    let cycle = f["evidence"]["cycle"].as_array().unwrap();
    assert_eq!(cycle.len(), n);
    for step in cycle {
        assert_eq!(step["holds"]["type"], "tokio::sync::Mutex");
        assert!(step["waits_for"]["created_at"].as_str().unwrap().starts_with("agent/tests/resources.rs:"));
    }
    // Each lock of the cycle is distinct.
    let held: std::collections::BTreeSet<u64> =
        cycle.iter().map(|s| s["holds"]["id"].as_u64().unwrap()).collect();
    assert_eq!(held.len(), n);
    // The text page says it too.
    let text = http_get(app.addr, "/debug/taskscope/findings");
    assert!(text.contains("critical deadlock at agent/tests/resources.rs:"), "{text}");
    app.stop(tasks);
}

#[test]
fn a_two_task_lock_cycle_is_a_critical_deadlock() {
    check_cycle(2);
}

#[test]
fn a_three_task_lock_cycle_is_a_critical_deadlock() {
    check_cycle(3);
}

#[test]
fn a_task_waiting_on_a_mutex_shows_the_lock_and_its_holder() {
    let app = app();
    let lock = Arc::new(Mutex::new(0u32));
    let created = format!("tokio::sync::Mutex created at agent/tests/resources.rs:{}:", line!() - 1);
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel::<()>();
    let (_release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let lock = lock.clone();
        app.rt.spawn(async move {
            let _guard = lock.lock().await;
            let _ = locked_tx.send(());
            // Holds the lock while waiting on something else.
            let _ = release_rx.await;
        })
    };
    app.rt.block_on(locked_rx).unwrap();
    let waiter = {
        let lock = lock.clone();
        app.rt.spawn(async move {
            let _guard = lock.lock().await;
        })
    };
    let (h, w) = (id_of(&holder), id_of(&waiter));
    let s = wait_for(app.addr, "waiting task with its resource", |s| {
        s["tasks"].as_array().unwrap().iter().any(|t| t["id"] == w && t["resource"].is_object())
    });
    let task = s["tasks"].as_array().unwrap().iter().find(|t| t["id"] == w).unwrap();
    let resource = &task["resource"];
    assert_eq!(resource["type"], "tokio::sync::Mutex", "{task:#}");
    assert!(format!("tokio::sync::Mutex created at {}", resource["created_at"].as_str().unwrap())
        .starts_with(&created));
    assert_eq!(resource["held_by"], serde_json::json!([h]));
    assert_eq!(resource["waiting"], 1, "{resource}");
    assert!(resource.get("waiters").is_none(), "a waiting task's resource does not list every waiter");
    let listed = s["resources"]["list"].as_array().unwrap();
    assert!(
        listed.iter().any(|r| r["id"] == resource["id"] && r["held_by"] == serde_json::json!([h])),
        "{listed:?}"
    );
    assert_eq!(s["resources"]["tracked"], true);

    let dump = http_get(app.addr, "/debug/pprof/tasks?debug=2");
    let block = |id: u64| {
        dump.split("\n\n")
            .find(|b| b.starts_with(&format!("task {id} [")))
            .unwrap_or_else(|| panic!("{dump}"))
            .to_string()
    };
    let waiting = block(w);
    assert!(waiting.contains(&format!("\twaiting on {created}")), "{waiting}");
    assert!(waiting.contains(&format!(", held by task {h}\n")), "{waiting}");
    assert!(waiting.starts_with(&format!("task {w} [mutex lock, ")), "{waiting}");
    let holding = block(h);
    assert!(holding.contains(&format!("\tholding {created}")), "{holding}");
    // A holder waiting on a channel is not a deadlock.
    assert!(deadlocks(&s, &[h, w]).is_empty(), "{:#?}", s["findings"]);
    app.stop(vec![holder, waiter]);
}

#[test]
fn a_contended_mutex_that_changes_hands_is_not_a_deadlock() {
    let app = app();
    let lock = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (lock, stop) = (lock.clone(), stop.clone());
            app.rt.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut n = lock.lock().await;
                    *n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let ids: Vec<u64> = tasks.iter().map(id_of).collect();
    // Past the grace of the detector, several times over.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut snapshots = 0;
    while std::time::Instant::now() < deadline {
        let s = snapshot(app.addr);
        assert!(deadlocks(&s, &ids).is_empty(), "{:#?}", s["findings"]);
        snapshots += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(snapshots > 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let progressed = app.rt.block_on(async { *lock.lock().await });
    assert!(progressed > 0);
    app.stop(tasks);
}

#[test]
fn rwlock_and_semaphore_waits_show_the_resource() {
    let app = app();
    let table = Arc::new(tokio::sync::RwLock::new(0u32));
    let rw_line = format!("tokio::sync::RwLock created at agent/tests/resources.rs:{}:", line!() - 1);
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let sem_line = format!("tokio::sync::Semaphore created at agent/tests/resources.rs:{}:", line!() - 1);
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel::<()>();
    let (_release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let table = table.clone();
        app.rt.spawn(async move {
            let _guard = table.write().await;
            let _ = locked_tx.send(());
            let _ = release_rx.await;
        })
    };
    app.rt.block_on(locked_rx).unwrap();
    let reader = {
        let table = table.clone();
        app.rt.spawn(async move {
            let _guard = table.read().await;
        })
    };
    let acquirer = {
        let permits = permits.clone();
        app.rt.spawn(async move {
            let _permit = permits.acquire().await;
        })
    };
    let (w, r, a) = (id_of(&writer), id_of(&reader), id_of(&acquirer));
    wait_for(app.addr, "rwlock and semaphore waits", |s| {
        let has = |id: u64| {
            s["tasks"].as_array().unwrap().iter().any(|t| t["id"] == id && t["resource"].is_object())
        };
        has(r) && has(a)
    });
    let dump = http_get(app.addr, "/debug/pprof/tasks?debug=2");
    let block = |id: u64| {
        dump.split("\n\n")
            .find(|b| b.starts_with(&format!("task {id} [")))
            .unwrap_or_else(|| panic!("{dump}"))
            .to_string()
    };
    let reading = block(r);
    assert!(reading.starts_with(&format!("task {r} [rwlock, ")), "{reading}");
    assert!(reading.contains(&format!("\twaiting on {rw_line}")), "{reading}");
    assert!(reading.contains(&format!(", held by task {w}\n")), "{reading}");
    assert!(block(w).contains(&format!("\tholding {rw_line}")), "{}", block(w));
    let acquiring = block(a);
    assert!(acquiring.starts_with(&format!("task {a} [semaphore acquire, ")), "{acquiring}");
    assert!(acquiring.contains(&format!("\twaiting on {sem_line}")), "{acquiring}");
    assert!(acquiring.contains(" (its holders are not tracked)\n"), "{acquiring}");
    app.stop(vec![writer, reader, acquirer]);
}
