//! What the CLI tests share: a fixture agent (a tiny HTTP server on
//! 127.0.0.1:0 that answers the agent's paths with recorded output), and
//! guards that stop every process a test starts.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The token the `/secure` agent wants.
pub const TOKEN: &str = "s3cret";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Recorded agents under path prefixes, as if mounted there: `/leaky`,
/// `/healthy`, `/secure` (leaky behind [`TOKEN`]); `/elsewhere` is a web
/// server that is not an agent, `/garbage` answers 200 with HTML.
pub struct FixtureAgent {
    pub addr: String,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FixtureAgent {
    pub fn start() -> FixtureAgent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let r = r.clone();
                    std::thread::spawn(move || serve(stream, &r));
                }
            }
        });
        FixtureAgent { addr, stop, requests, thread: Some(thread) }
    }

    /// The URL of the agent under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}", self.addr)
    }

    /// The paths requested so far (with their queries).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FixtureAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    log.lock().unwrap().push(target.to_string());
    let (status, content_type, body) = answer(method, target, authorization.as_deref());
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = reader.read(&mut [0u8; 1]);
}

const TEXT: &str = "text/plain; charset=utf-8";

fn answer(method: &str, target: &str, authorization: Option<&str>) -> (&'static str, &'static str, Vec<u8>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (prefix, rest) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let rest = format!("/{rest}");
    let set = match prefix {
        "leaky" | "healthy" => prefix,
        "secure" => {
            if authorization != Some(&format!("Bearer {TOKEN}")) {
                let reason = "missing or wrong bearer token: send Authorization: Bearer <TASKSCOPE_TOKEN>\n";
                return ("401 Unauthorized", TEXT, reason.into());
            }
            "leaky"
        }
        "garbage" => return ("200 OK", "text/html", b"<!doctype html><title>welcome</title>".to_vec()),
        _ => return ("404 Not Found", "text/html", b"<html><body><h1>Not Found</h1></body></html>".to_vec()),
    };
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, b"method not allowed: use GET\n".to_vec());
    }
    let file = |name: String| std::fs::read(fixture(&name)).ok();
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")));
    let found = match rest.as_str() {
        "/debug/taskscope/api/snapshot" => file(format!("{set}.json")).map(|b| ("application/json", b)),
        "/debug/pprof/tasks" => match param("debug") {
            Some("1") | Some("2") => {
                file(format!("{set}-tasks-debug{}.txt", param("debug").unwrap())).map(|b| (TEXT, b))
            }
            _ => file("tasks.pb.gz".into()).map(|b| ("application/octet-stream", b)),
        },
        "/debug/pprof/flamegraph" => file("cpu.svg".into()).map(|b| ("image/svg+xml", b)),
        "/debug/pprof/heap/flamegraph" => file("heap.svg".into()).map(|b| ("image/svg+xml", b)),
        "/debug/pprof/heap" | "/debug/pprof/allocs" => {
            file("heap.pb.gz".into()).map(|b| ("application/octet-stream", b))
        }
        "/debug/pprof/profile" => file("profile.pb.gz".into()).map(|b| ("application/octet-stream", b)),
        _ => None,
    };
    match found {
        Some((content_type, body)) => ("200 OK", content_type, body),
        None => ("404 Not Found", TEXT, b"not found: the profiles are listed at /debug/pprof/\n".to_vec()),
    }
}

/// A child process, killed and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
