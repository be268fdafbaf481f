//! `taskscope::testing` and `#[taskscope::test]`: a test that leaves a task
//! behind fails with a report naming its spawn site; a clean one passes.
//!
//! These tests run in parallel in one process, as a user's would, so each
//! asserts only on its own tasks: a leak report may list other tests' tasks
//! too, but a clean test must pass whatever the others do.

#[path = "goleak/daemon.rs"]
mod daemon;

use std::time::Duration;

use taskscope::testing::{LeakGuard, Options};

fn runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    taskscope::instrument(&mut builder);
    builder.build().unwrap()
}

/// Short, since a check that finds a leak waits out the whole grace.
fn quick() -> Options {
    Options::default().grace(Duration::from_millis(200))
}

#[taskscope::test]
async fn a_clean_test_passes() {
    let tasks: Vec<_> = (0..10).map(|i| tokio::spawn(async move { i * 2 })).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), i * 2);
    }
    // Not awaited, but done within the grace period: not a leak.
    tokio::spawn(tokio::time::sleep(Duration::from_millis(50)));
}

#[taskscope::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_macro_takes_tokio_test_arguments() -> Result<(), String> {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let workers = tokio::spawn(async move { workers }).await.map_err(|e| e.to_string())?;
    assert_eq!(workers, 2);
    Ok(())
}

#[taskscope::test]
#[should_panic(expected = "leaked: still alive after the test")]
async fn a_test_that_leaks_a_task_fails() {
    tokio::spawn(std::future::pending::<()>());
}

#[taskscope::test(ignore = "goleak/daemon.rs")]
async fn the_test_macro_ignores_tasks_by_spawn_location() {
    daemon::start();
}

#[test]
fn a_leak_report_names_the_spawn_site_and_the_task() {
    let rt = runtime();
    let (report, line) = rt.block_on(async {
        let guard = LeakGuard::with_options(quick());
        let (_keep, rx) = tokio::sync::oneshot::channel::<()>();
        let line = line!() + 1;
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        let report = guard.check_async().await.expect_err("the task is still waiting");
        (report, (line, task.id()))
    });
    let (line, id) = line;
    let at = format!("{}:{line}:", file!());
    let ours: Vec<_> = report.leaked.iter().filter(|t| t.spawned_at.starts_with(&at)).collect();
    assert_eq!(ours.len(), 1, "{report}");
    assert_eq!(ours[0].id.to_string(), id.to_string());
    assert!(!ours[0].running);
    let text = report.to_string();
    assert!(text.contains(&format!("1 task spawned at {at}")), "{text}");
    assert!(text.contains(&format!("task {id} [idle, ")), "{text}");
    assert!(report.alive_on_runtime >= Some(1), "{report:?}");
}

#[test]
fn the_blocking_check_fails_a_leak_and_passes_once_it_is_gone() {
    let rt = runtime();
    let guard = LeakGuard::with_options(quick());
    let (release, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let _ = rx.await;
    });
    // Outside the runtime the guard cannot read the runtime's own count, so
    // it fails on any task spawned since, ours among them.
    let report = guard.check().expect_err("the task is still waiting");
    assert!(report.leaked.iter().any(|t| t.spawned_at.starts_with(file!())), "{report}");
    assert_eq!(report.alive_on_runtime, None);

    let guard = rt.block_on(async { LeakGuard::with_options(quick()) });
    let done = rt.spawn(async move {
        let _ = release.send(());
    });
    rt.block_on(done).unwrap();
    rt.block_on(guard.check_async()).expect("every task of the runtime finished");
}

#[test]
fn ignored_locations_may_outlive_the_test() {
    let rt = runtime();
    rt.block_on(async {
        let guard = LeakGuard::with_options(quick().ignore("goleak/daemon.rs"));
        daemon::start();
        guard.check_async().await.expect("the daemon is ignored");

        // The same task without the option is a leak.
        let guard = LeakGuard::with_options(quick());
        daemon::start();
        let report = guard.check_async().await.expect_err("the daemon counts");
        assert!(report.leaked.iter().any(|t| t.spawned_at.contains("goleak/daemon.rs")), "{report}");
    });
}

#[test]
fn only_spawned_in_keeps_to_the_given_files() {
    let rt = runtime();
    rt.block_on(async {
        let guard = LeakGuard::with_options(quick().only_spawned_in(file!()));
        daemon::start();
        guard.check_async().await.expect("the daemon was spawned in another file");
    });
}

#[test]
fn a_runtime_without_hooks_cannot_pass_silently() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let guard = LeakGuard::with_options(quick());
        tokio::spawn(std::future::pending::<()>());
        let report = guard.check_async().await.expect_err("a live task on the runtime");
        assert_eq!(report.alive_on_runtime, Some(1), "{report}");
    });
}
