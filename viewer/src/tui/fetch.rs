//! The fetcher: a thread that asks the agent for a snapshot every interval
//! (at once when the query changes), backs off while the agent is away and
//! keeps trying, so the TUI survives restarts of the app. It also fetches a
//! task's backtrace from the agent's `debug=2` dump when the snapshot does
//! not carry it.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::state::{Backtrace, Request};
use crate::client::Client;
use crate::model::Snapshot;

/// What the fetcher reports to the UI.
#[derive(Debug)]
pub enum Update {
    Snapshot(Box<Snapshot>),
    Error(String),
    Backtrace(u64, Backtrace),
}

/// The UI's end of the fetcher; the thread ends when this is dropped.
#[derive(Debug)]
pub struct Fetcher {
    pub requests: Sender<Request>,
    pub updates: Receiver<Update>,
}

/// The longest pause between attempts while the agent is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub fn spawn(client: Client, query: String, interval: Duration) -> Fetcher {
    let (requests, incoming) = mpsc::channel();
    let (outgoing, updates) = mpsc::channel();
    std::thread::Builder::new()
        .name("taskscope-fetch".into())
        .spawn(move || run(client, query, interval, incoming, outgoing))
        .expect("spawning a thread");
    Fetcher { requests, updates }
}

/// The pause after `failures` failed attempts in a row: the interval, then
/// doubling up to [`MAX_BACKOFF`].
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval.saturating_mul(1 << failures.min(8)).min(MAX_BACKOFF.max(interval))
}

fn run(
    client: Client,
    mut query: String,
    interval: Duration,
    incoming: Receiver<Request>,
    out: Sender<Update>,
) {
    let mut paused = false;
    let mut failures = 0;
    let mut next = Instant::now();
    loop {
        match incoming.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Request::Fetch(q)) => {
                query = q;
                next = Instant::now();
            }
            Ok(Request::Pause(p)) => {
                paused = p;
                next = Instant::now();
            }
            Ok(Request::Backtrace(id)) => {
                let bt = match client.text("/debug/pprof/tasks?debug=2") {
                    Ok(dump) => backtrace_from_dump(&dump, id),
                    Err(e) => Backtrace::Unavailable(format!("{e:#}")),
                };
                if out.send(Update::Backtrace(id, bt)).is_err() {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if paused || Instant::now() < next {
            if paused {
                next = Instant::now() + interval;
            }
            continue;
        }
        let update = match client.snapshot(&query) {
            Ok((s, _)) => {
                failures = 0;
                Update::Snapshot(Box::new(s))
            }
            Err(e) => {
                failures += 1;
                Update::Error(format!("{e:#}"))
            }
        };
        if out.send(update).is_err() {
            return;
        }
        next = Instant::now() + backoff(interval, failures);
    }
}

/// Task `id`'s frames from a `debug=2` dump, as `function at file:line`
/// lines (and the dump's note on folded frames).
pub fn backtrace_from_dump(dump: &str, id: u64) -> Backtrace {
    let head = format!("task {id} [");
    let Some(start) = dump.lines().position(|l| l.starts_with(&head)) else {
        return Backtrace::Unavailable(format!("task {id} is no longer in the agent's dump"));
    };
    let mut frames: Vec<String> = Vec::new();
    for line in dump.lines().skip(start + 1).take_while(|l| !l.is_empty()) {
        match line.strip_prefix('\t') {
            Some(rest) if rest.starts_with("polls:") => {}
            Some(rest) if rest.starts_with("...") => frames.push(rest.to_string()),
            Some(at) => match frames.last_mut() {
                Some(function) if !function.contains(" at ") => *function = format!("{function} at {at}"),
                _ => frames.push(format!("\t{at}")),
            },
            None if line.starts_with("spawned at ") => {}
            None => frames.push(line.to_string()),
        }
    }
    if frames.is_empty() {
        Backtrace::Unavailable(
            "the agent has no parked-at stack for this task (running, or lean mode)".into(),
        )
    } else {
        Backtrace::Lines(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, LEAKY, LEAKY_DEBUG2};

    #[test]
    fn a_task_block_becomes_frames() {
        // The interval ticker of leaky-server.
        let s = snapshot(LEAKY);
        let ticker = s.tasks.iter().find(|t| t.spawned_at.ends_with("main.rs:126:5")).unwrap();
        let Backtrace::Lines(frames) = backtrace_from_dump(LEAKY_DEBUG2, ticker.id) else { panic!() };
        assert!(
            frames[0].starts_with("tokio::time::interval::Interval::tick::{{closure}} at /root/.cargo/"),
            "{frames:?}"
        );
        assert!(frames[1].starts_with("leaky_server::main::{{closure}}::{{closure}} at /work/main/examples/leaky-server/src/main.rs:"), "{frames:?}");
        assert!(frames[2].starts_with("... ") && frames[2].ends_with(" folded"), "{frames:?}");
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn a_missing_task_says_so() {
        assert_eq!(
            backtrace_from_dump(LEAKY_DEBUG2, 999_999),
            Backtrace::Unavailable("task 999999 is no longer in the agent's dump".into())
        );
    }

    /// Answers every connection with `body` as JSON until `stop` is set.
    fn serve_json(
        listener: std::net::TcpListener,
        body: &'static str,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::io::{Read, Write};
        listener.set_nonblocking(true).unwrap();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn the_fetcher_reports_a_lost_agent_and_reconnects_when_it_is_back() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // A free port, with nothing listening on it yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = crate::client::AgentUrl::parse(&format!("127.0.0.1:{port}")).unwrap();
        let fetcher = spawn(Client::new(url, None), "limit=10".into(), Duration::from_millis(50));
        match fetcher.updates.recv_timeout(Duration::from_secs(10)).unwrap() {
            Update::Error(e) => assert!(e.contains("connection refused"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The agent comes back on the same address.
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || serve_json(listener, LEAKY, stop))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let snapshot = loop {
            match fetcher.updates.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Update::Snapshot(s)) => break s,
                Ok(_) => continue,
                Err(e) => panic!("no snapshot after the agent came back: {e}"),
            }
        };
        assert_eq!(snapshot.tasks_total, 132);
        drop(fetcher);
        stop.store(true, Ordering::SeqCst);
        server.join().unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 0), s);
        assert_eq!(backoff(s, 1), Duration::from_secs(2));
        assert_eq!(backoff(s, 2), Duration::from_secs(4));
        assert_eq!(backoff(s, 30), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(10), 3), Duration::from_secs(10), "never faster than asked");
    }
}
