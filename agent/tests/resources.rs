//! Deep mode's tokio resources over real HTTP, with taskscope's own
//! subscriber: which lock or semaphore a task waits on and who holds it
//! (with their permits), in `debug=2` and the JSON; `deadlock` findings for
//! two- and three-task cycles over mutexes and for a cycle over semaphores;
//! none for a lock that is contended but changes hands; guards and permits
//! moved to another task and dropped there leave no holder behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Barrier, Mutex, Semaphore};

mod resources_support;
use resources_support::*;

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
    let f = the_deadlock(app.addr, "deadlock finding", &ids);
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
    let block = |id: u64| block(&dump, id);
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
    let block = |id: u64| block(&dump, id);
    let reading = block(r);
    assert!(reading.starts_with(&format!("task {r} [rwlock, ")), "{reading}");
    assert!(reading.contains(&format!("\twaiting on {rw_line}")), "{reading}");
    assert!(reading.contains(&format!(", held by task {w}\n")), "{reading}");
    assert!(block(w).contains(&format!("\tholding {rw_line}")), "{}", block(w));
    let acquiring = block(a);
    assert!(acquiring.starts_with(&format!("task {a} [semaphore acquire, ")), "{acquiring}");
    assert!(acquiring.contains(&format!("\twaiting on {sem_line}")), "{acquiring}");
    // A semaphore of no permits: no one holds any.
    assert!(!acquiring.contains("held by"), "{acquiring}");
    app.stop(vec![writer, reader, acquirer]);
}

#[test]
fn a_semaphore_shows_which_tasks_hold_how_many_permits() {
    let app = app();
    let pool = Arc::new(Semaphore::new(3));
    let site = format!("agent/tests/resources.rs:{}:", line!() - 1);
    // A bounded channel runs on a semaphore of its own: not a resource.
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    // Two holders take all three permits, then wait on something else.
    let holders: Vec<_> = [2u32, 1]
        .into_iter()
        .map(|n| {
            let (pool, held_tx, mut release_rx) = (pool.clone(), held_tx.clone(), release_rx.clone());
            app.rt.spawn(async move {
                let _permits = pool.acquire_many(n).await.unwrap();
                held_tx.send(()).await.unwrap();
                let _ = release_rx.wait_for(|go| *go).await;
            })
        })
        .collect();
    app.rt.block_on(async {
        held_rx.recv().await.unwrap();
        held_rx.recv().await.unwrap();
    });
    let waiter = {
        let pool = pool.clone();
        app.rt.spawn(async move {
            let _permit = pool.acquire().await.unwrap();
        })
    };
    let (two, one, w) = (id_of(&holders[0]), id_of(&holders[1]), id_of(&waiter));
    let s = wait_for(app.addr, "a semaphore waiter with both holders", |s| {
        task(s, w).is_some_and(|t| t["resource"]["held_by"].as_array().is_some_and(|h| h.len() == 2))
    });
    let r = &task(&s, w).unwrap()["resource"];
    assert_eq!(r["type"], "tokio::sync::Semaphore", "{r}");
    let held: std::collections::BTreeMap<u64, u64> = r["held_by"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["held_permits"].as_array().unwrap())
        .map(|(t, n)| (t.as_u64().unwrap(), n.as_u64().unwrap()))
        .collect();
    assert_eq!(held, [(two, 2), (one, 1)].into_iter().collect(), "{r}");
    assert_eq!((r["more_permits"].as_u64(), r["held_outside"].as_bool()), (Some(0), Some(false)), "{r}");
    let listed = resource(&s, &site).unwrap_or_else(|| panic!("{}", s["resources"]));
    assert_eq!(listed["waiters"], serde_json::json!([w]));
    let dump = http_get(app.addr, "/debug/pprof/tasks?debug=2");
    let waiting = block(&dump, w);
    assert!(waiting.starts_with(&format!("task {w} [semaphore acquire, ")), "{waiting}");
    assert!(waiting.contains(&format!("\twaiting on tokio::sync::Semaphore created at {site}")), "{waiting}");
    assert!(
        waiting.contains(&format!("{two} (2 permits)")) && waiting.contains(&format!("{one} (1 permit)")),
        "{waiting}"
    );
    assert!(block(&dump, two).contains(&format!("\tholding tokio::sync::Semaphore created at {site}")));
    // Holders waiting on a channel: no deadlock.
    assert!(deadlocks(&s, &[two, one, w]).is_empty(), "{:#?}", s["findings"]);
    // Released: the waiter gets its permit, returns it, and nothing holds
    // the semaphore any more.
    release_tx.send(true).unwrap();
    wait_for(app.addr, "the semaphore free again", |s| resource(s, &site).is_none());
    assert!(app.rt.block_on(waiter).is_ok());
    assert_eq!(pool.available_permits(), 3);
    app.stop(holders);
}

#[test]
fn a_guard_or_permit_moved_to_another_task_leaves_no_holder_once_dropped() {
    let app = app();
    let lock = Arc::new(Mutex::new(0u32));
    let lock_site = format!("agent/tests/resources.rs:{}:", line!() - 1);
    let pool = Arc::new(Semaphore::new(2));
    let pool_site = format!("agent/tests/resources.rs:{}:", line!() - 1);
    let (hand_tx, hand_rx) = tokio::sync::oneshot::channel();
    let (drop_tx, drop_rx) = tokio::sync::oneshot::channel::<()>();
    let taker = {
        let (lock, pool) = (lock.clone(), pool.clone());
        app.rt.spawn(async move {
            let guard = lock.lock_owned().await;
            let permits = pool.acquire_many_owned(2).await.unwrap();
            let _ = hand_tx.send((guard, permits));
        })
    };
    let keeper = app.rt.spawn(async move {
        let (guard, permits) = hand_rx.await.unwrap();
        let _ = drop_rx.await;
        drop((guard, permits));
        std::future::pending::<()>().await;
    });
    app.rt.block_on(async {
        while !taker.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Held while the keeper has them (tokio's events cannot tell that they
    // moved: the task that took them is named).
    let s = wait_for(app.addr, "the moved guard and permits held", |s| {
        resource(s, &lock_site).is_some()
            && resource(s, &pool_site).is_some_and(|r| r["held_permits"] == serde_json::json!([2]))
    });
    assert_eq!(resource(&s, &lock_site).unwrap()["held_by"].as_array().unwrap().len(), 1);
    drop_tx.send(()).unwrap();
    wait_for(app.addr, "no holder once the keeper dropped them", |s| {
        resource(s, &lock_site).is_none() && resource(s, &pool_site).is_none()
    });
    assert_eq!(pool.available_permits(), 2);
    app.stop(vec![keeper]);
}

#[test]
fn a_cycle_over_semaphores_is_a_critical_deadlock() {
    let app = app();
    let sems: Vec<_> = (0..2).map(|_| Arc::new(Semaphore::new(1))).collect();
    let site = format!("tokio::sync::Semaphore created at agent/tests/resources.rs:{}:", line!() - 1);
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = (0..2)
        .map(|i| {
            let (mine, next, barrier) = (sems[i].clone(), sems[1 - i].clone(), barrier.clone());
            app.rt.spawn(async move {
                let _held = mine.acquire().await.unwrap();
                barrier.wait().await;
                let _never = next.acquire().await;
            })
        })
        .collect();
    let ids: Vec<u64> = tasks.iter().map(id_of).collect();
    let f = the_deadlock(app.addr, "deadlock over semaphores", &ids);
    assert!(f["message"].as_str().unwrap().contains(&site), "{f:#}");
    app.stop(tasks);
}
