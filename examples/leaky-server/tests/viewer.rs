//! The web viewer in headless Chromium against the leaky server: what is
//! wrong must show without reading dumps. Skipped (with a message) when
//! Chromium or chromedriver is missing, except under CI (`CI` set).

mod common;
mod webdriver;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, spawn_site, start, try_get};
use serde_json::json;
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(30);

/// Refreshes every 2 s instead of 5, so that waits are short.
fn refresh_fast(browser: &Browser) {
    browser.run(
        "const s = document.getElementById('interval'); s.value = '2000'; s.dispatchEvent(new Event('change'));",
        json!([]),
    );
}

/// The `tr` of the task table (or of `selector`) whose spawn site starts with `site`.
fn row_script(selector: &str, site: &str, body: &str) -> String {
    format!(
        "const row = [...document.querySelectorAll({selector:?})].find(r => r.textContent.includes({site:?})); \
         if (!row) return null; {body}"
    )
}

#[test]
fn stuck_tasks_leaking_sites_blocked_workers_and_cpu_show_in_the_viewer() {
    let Some(browser) = Browser::start("viewer") else { return };
    let server = start(&[("TASKSCOPE_STUCK_AFTER", "1s")]);
    let viewer = format!("http://{}/debug/taskscope/", server.agent);
    get(&server.app, "/stuck");

    // Leak a task every 200 ms meanwhile: the detector needs 20 one-second samples.
    let leaking = Arc::new(AtomicBool::new(true));
    let leaker = {
        let (app, leaking) = (server.app.clone(), leaking.clone());
        std::thread::spawn(move || {
            while leaking.load(Ordering::Relaxed) {
                get(&app, "/leak");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let _stop = Stop(leaking);
    let leak_started = Instant::now();

    // The stuck task: highlighted, and its badge says so in words.
    let stuck = spawn_site("stuck");
    browser.goto(&format!("{viewer}#/tasks?sort=idle"));
    refresh_fast(&browser);
    let row = browser.wait_for(
        "the stuck task's row, highlighted",
        WAIT,
        &row_script(
            "tr.task",
            &stuck,
            "return row.classList.contains('sev-warning') && \
             [...row.querySelectorAll('.badge')].some(b => b.textContent === 'stuck') && \
             getComputedStyle(row).backgroundColor !== 'rgba(0, 0, 0, 0)' && row.dataset.taskId;",
        ),
    );
    let id = row.as_str().expect("a task id").to_string();

    // Clicking it shows its async backtrace, down to the line that awaits.
    browser.click(&format!("tr.task[data-task-id='{id}'] td:nth-child(3)"));
    let backtrace = browser.wait_for(
        "the stuck task's backtrace",
        WAIT,
        "const d = document.getElementById('task-detail'); \
         return d && d.querySelector('.frame.user') ? d.textContent : null;",
    );
    let backtrace = backtrace.as_str().unwrap();
    assert!(backtrace.contains(&format!("Task {id}")), "{backtrace}");
    assert!(backtrace.contains("Async backtrace"), "{backtrace}");
    assert!(backtrace.contains("Receiver<T>::recv"), "the library call it awaits: {backtrace}");
    assert!(backtrace.contains("leaky_server::stuck::{{closure}}"), "the app's frame: {backtrace}");
    let await_line = format!("examples/leaky-server/src/main.rs:{}", stuck_await_line());
    assert!(backtrace.contains(&await_line), "the await line {await_line}: {backtrace}");
    assert!(backtrace.contains(&format!("Spawned at {stuck}")), "{backtrace}");
    assert!(location_hash(&browser).contains(&format!("task={id}")));

    // A worker blocked in sync code: its task, named, in the Workers view.
    // 10 s leaves the page time to load on a busy machine.
    get(&server.app, "/block?ms=10000");
    let blocked_at = Instant::now();
    browser.goto(&format!("{viewer}#/workers"));
    refresh_fast(&browser);
    let block = spawn_site("block");
    let card = browser.wait_for(
        "the blocked worker's card",
        WAIT,
        &row_script(".card.blocked", &block, "return row.innerText;"),
    );
    let card = card.as_str().unwrap();
    assert!(card.contains("blocked") && card.contains("inside one poll"), "{card}");

    // The CPU flamegraph: inferno's interactive SVG inside an <object>, of
    // an app kept busy answering requests meanwhile. Not while a worker is
    // blocked: tasks queued behind it (the app's accept loop among them, at
    // times) wait too, and the app would be idle.
    std::thread::sleep(Duration::from_millis(10_500).saturating_sub(blocked_at.elapsed()));
    let busy = Arc::new(AtomicBool::new(true));
    let _stop_busy = Stop(busy.clone());
    let hammer = {
        let app = server.app.clone();
        std::thread::spawn(move || {
            while busy.load(Ordering::Relaxed) {
                try_get(&app, "/");
            }
        })
    };
    browser.goto(&format!("{viewer}#/cpu"));
    browser.wait_for("the CPU form", WAIT, "return document.querySelector('#view-cpu input[name=seconds]');");
    browser.run("document.querySelector('#view-cpu input[name=seconds]').value = '2';", json!([]));
    browser.click("#view-cpu button[type=submit]");
    browser.wait_for(
        "the profiling progress",
        WAIT,
        "return document.querySelector('#cpu-flame progress') || document.querySelector('#cpu-flame object');",
    );
    let svg = browser.wait_for(
        "the CPU flamegraph",
        WAIT,
        "const o = document.querySelector('#cpu-flame object'); \
         const doc = o && o.contentDocument; \
         return doc && doc.documentElement && doc.documentElement.outerHTML.startsWith('<svg') \
           ? [doc.documentElement.outerHTML.length, !!doc.querySelector('script'), o.type] : null;",
    );
    assert!(svg[0].as_u64().unwrap() > 500, "{svg}");
    assert_eq!((&svg[1], &svg[2]), (&json!(true), &json!("image/svg+xml")), "inferno's script came along");
    drop(_stop_busy);
    hammer.join().unwrap();

    // The leaking site: highlighted, with its growth rate.
    let leak = spawn_site("leak");
    std::thread::sleep(Duration::from_secs(20).saturating_sub(leak_started.elapsed()));
    browser.goto(&format!("{viewer}#/sites"));
    refresh_fast(&browser);
    let site = browser.wait_for(
        "the leaking site, highlighted with its growth",
        Duration::from_secs(45),
        &row_script(
            "tr.site",
            &leak,
            "return row.dataset.problems.includes('leaking_spawn_site') && row.classList.contains('sev-warning') \
               ? row.innerText : null;",
        ),
    );
    let site = site.as_str().unwrap();
    assert!(site.contains("leaking site"), "a text badge, not colour alone: {site}");
    assert!(site.contains("/s (+") && site.contains("/min)"), "the growth rate: {site}");
    let sparkline = browser.run(
        &row_script("tr.site", &leak, "return row.querySelector('svg.spark').getAttribute('aria-label');"),
        json!([]),
    );
    assert!(sparkline.as_str().unwrap().starts_with("live tasks at"), "{sparkline}");

    // The overview lists it among the findings, linked to its site.
    browser.goto(&format!("{viewer}#/overview"));
    let link = browser.wait_for(
        "the leak finding on the overview",
        WAIT,
        "const f = document.querySelector('.finding[data-kind=leaking_spawn_site]'); \
         return f && [...f.querySelectorAll('a')].map(a => a.getAttribute('href')).join(' ');",
    );
    assert!(link.as_str().unwrap().contains("#/sites?site="), "{link}");
    drop(_stop);
    leaker.join().unwrap();
}

#[test]
fn the_token_is_asked_for_once_and_sent_as_a_bearer() {
    let Some(browser) = Browser::start("viewer with a token") else { return };
    let server = start(&[("TASKSCOPE_TOKEN", "sesame")]);
    let viewer = format!("http://{}/debug/taskscope/", server.agent);
    browser.goto(&viewer);
    browser.wait_for("the token form", WAIT, "return !document.getElementById('token-form').hidden;");

    browser.type_into("#token", "wrong");
    browser.click("#token-form button");
    browser.wait_for(
        "the refusal",
        WAIT,
        "return !document.getElementById('token-form').hidden && \
         document.getElementById('token-reason').textContent.includes('refused');",
    );

    browser.run("document.getElementById('token').value = '';", json!([]));
    browser.type_into("#token", "sesame");
    browser.click("#token-form button");
    let live = "return document.querySelector('#view-overview .card') && document.getElementById('token-form').hidden \
                ? document.querySelector('#view-overview').innerText : null;";
    let overview = browser.wait_for("the overview with the token", WAIT, live);
    assert!(overview.as_str().unwrap().contains("TASKS"), "{overview}");

    // Kept for the tab's session: a reload does not ask again.
    browser.goto(&format!("{viewer}#/tasks"));
    browser.run("location.reload();", json!([]));
    browser.wait_for(
        "the tasks table after a reload",
        WAIT,
        "return document.querySelector('#view-tasks table.tasks');",
    );
    assert_eq!(browser.run("return document.getElementById('token-form').hidden;", json!([])), json!(true));
}

#[test]
fn a_saved_snapshot_opens_read_only() {
    let Some(browser) = Browser::start("viewer of a saved snapshot") else { return };
    let server = start(&[("TASKSCOPE_STUCK_AFTER", "1s")]);
    get(&server.app, "/stuck");
    std::thread::sleep(Duration::from_millis(1500));
    let snapshot = format!("http://{}/debug/taskscope/api/snapshot?sort=idle&limit=100000", server.agent);
    let url = format!(
        "http://{}/debug/taskscope/?snapshot={}#/tasks?sort=idle",
        server.agent,
        snapshot.replace('?', "%3F").replace('&', "%26").replace('=', "%3D")
    );
    browser.goto(&url);
    let stuck = spawn_site("stuck");
    browser.wait_for(
        "the stuck task, from the file",
        WAIT,
        &row_script("tr.task", &stuck, "return row.classList.contains('sev-warning');"),
    );
    let status = browser.run("return document.getElementById('status').textContent;", json!([]));
    assert!(status.as_str().unwrap().starts_with("saved snapshot"), "{status}");
    let controls = browser.run(
        "return [getComputedStyle(document.getElementById('pause')).display, document.body.classList.contains('offline')];",
        json!([]),
    );
    assert_eq!(controls, json!(["none", true]), "no live controls on a saved snapshot");
    browser.goto(&url.replace("#/tasks?sort=idle", "#/cpu"));
    let cpu = browser.wait_for(
        "the CPU view",
        WAIT,
        "return document.getElementById('view-cpu').innerText || null;",
    );
    assert!(cpu.as_str().unwrap().contains("saved snapshot"), "no CPU button offline: {cpu}");
}

fn location_hash(browser: &Browser) -> String {
    browser.run("return location.hash;", json!([])).as_str().unwrap_or("").to_string()
}

/// Stops the leaking thread even when an assertion fails.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The line of leaky-server's `stuck` task that awaits its channel.
fn stuck_await_line() -> usize {
    let source = include_str!("../src/main.rs");
    let lines: Vec<&str> = source.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("fn stuck(")).expect("fn stuck in main.rs");
    start + 1 + lines[start..].iter().position(|l| l.contains("rx.recv().await")).expect("its await")
}
