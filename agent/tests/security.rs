//! Hardening of the debug endpoint, on every route: the bearer token is
//! required everywhere but the viewer's files, every answer has `nosniff`
//! and no CORS header; and over real HTTP, the server's limits: header size,
//! URI length, slow clients, open connections and requests in flight.
//!
//! The routes walked are read from the router's own source, plus every link
//! of the index page, so that a new route is checked without anyone having
//! to list it here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";

/// Every path the router's source routes, with a value in each `{param}`.
fn routed_paths() -> Vec<String> {
    let sources = [include_str!("../src/http/mod.rs"), include_str!("../src/http/assets.rs")];
    let mut paths = Vec::new();
    for source in sources {
        for (i, _) in source.match_indices(".route(\"") {
            let rest = &source[i + ".route(\"".len()..];
            let path = &rest[..rest.find('"').unwrap()];
            let filled: Vec<String> = path
                .split('/')
                .map(|seg| match seg {
                    "{*file}" => "app.js".to_string(),
                    s if s.starts_with('{') => "x".to_string(),
                    s => s.to_string(),
                })
                .collect();
            paths.push(filled.join("/"));
        }
    }
    assert!(paths.len() >= 15, "the route list looks wrong: {paths:?}");
    assert!(paths.iter().any(|p| p == "/metrics"), "{paths:?}");
    paths
}

/// The viewer's page and files, which the guard lets through (no data).
fn is_viewer_file(path: &str) -> bool {
    matches!(path, "/debug/taskscope" | "/debug/taskscope/" | "/debug/taskscope/index.html")
        || path.starts_with("/debug/taskscope/static/")
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(router: &axum::Router, uri: &str, authorization: Option<&str>) -> Reply {
    let mut req = Request::get(uri).header("origin", "http://elsewhere.example");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let res = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn assert_hardened_headers(uri: &str, r: &Reply) {
    assert_eq!(r.headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{uri}");
    for name in r.headers.keys() {
        assert!(!name.as_str().starts_with("access-control-"), "{uri}: CORS header {name}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    b.build().unwrap()
}

#[test]
fn every_route_and_every_link_of_the_index_requires_the_token() {
    runtime().block_on(async {
        let router = taskscope::Agent::builder().serve(false).token(TOKEN).start().unwrap().router();
        let bearer = format!("Bearer {TOKEN}");
        let mut paths = routed_paths();
        let index = get(&router, "/debug/pprof/", Some(&bearer)).await;
        assert_eq!(index.status, 200);
        for (i, _) in index.body.match_indices("href='") {
            let rest = &index.body[i + 6..];
            let href = &rest[..rest.find('\'').unwrap()];
            let href = href.replace("&amp;", "&");
            paths.push(if href.starts_with('/') { href } else { format!("/debug/pprof/{href}") });
        }
        paths.extend(["/nowhere".to_string(), "/debug/pprof/nosuch".to_string(), "/".to_string()]);
        let (mut guarded, mut public) = (0, 0);
        for path in &paths {
            let bare = path.split('?').next().unwrap();
            let denied = get(&router, path, None).await;
            assert_hardened_headers(path, &denied);
            if is_viewer_file(bare) {
                public += 1;
                assert_ne!(denied.status, 401, "{path}: the viewer's files are served without the token");
                let kind = denied.headers.get("content-type").map_or("", |v| v.to_str().unwrap());
                assert!(
                    !kind.contains("json") && !kind.contains("octet-stream"),
                    "{path}: a viewer file must hold no data ({kind})"
                );
                continue;
            }
            guarded += 1;
            assert_eq!(denied.status, 401, "{path} answered without the token");
            assert_eq!(denied.headers["www-authenticate"], "Bearer", "{path}");
            assert!(
                denied.body.starts_with("missing or wrong bearer token") && denied.body.lines().count() == 1
            );
            for wrong in [
                "Bearer wrong",
                "Bearer s3cret-toke",
                "Bearer s3cret-token2",
                "Basic czNjcmV0",
                "s3cret-token",
            ] {
                assert_eq!(get(&router, path, Some(wrong)).await.status, 401, "{path} with {wrong:?}");
            }
            // With the token: past the guard. `seconds=0` is refused by the
            // profiles (400) before they record anything.
            let sep = if path.contains('?') { '&' } else { '?' };
            let uri = format!("{path}{sep}seconds=0");
            let allowed = get(&router, &uri, Some(&bearer)).await;
            assert_hardened_headers(&uri, &allowed);
            assert!(allowed.status != 401 && allowed.status.as_u16() < 500, "{uri}: {}", allowed.status);
        }
        assert!(
            guarded >= 20 && public >= 3,
            "walked {guarded} guarded and {public} public paths: {paths:?}"
        );
    });
}

#[test]
fn preflight_and_other_methods_get_no_cors_headers() {
    runtime().block_on(async {
        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        for method in ["OPTIONS", "POST", "PUT", "DELETE"] {
            let req = Request::builder()
                .method(method)
                .uri("/debug/taskscope/api/snapshot")
                .header("origin", "http://elsewhere.example")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(res.headers()["x-content-type-options"], "nosniff");
            assert!(res.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{method}");
        }
    });
}

/// An agent on 127.0.0.1:0 with the token, and the runtime it observes.
struct Served {
    agent: Option<taskscope::Agent>,
    _runtime: tokio::runtime::Runtime,
}

impl Served {
    fn start() -> Served {
        let runtime = runtime();
        let agent = {
            let _enter = runtime.enter();
            taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).token(TOKEN).start().unwrap()
        };
        Served { agent: Some(agent), _runtime: runtime }
    }

    fn addr(&self) -> SocketAddr {
        self.agent.as_ref().unwrap().local_addr().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.agent.take());
    }
}

/// Sends `request` as is and reads the answer until the server closes the
/// connection or `wait` passes.
fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a raw HTTP/1.1 answer, de-chunked if it was sent in chunks
/// (the snapshot JSON is streamed).
fn body_of(answer: &str) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

fn status_of(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("<no answer>")
}

#[test]
fn oversized_requests_are_refused_with_4xx_over_http() {
    let served = Served::start();
    let addr = served.addr();
    let wait = Duration::from_secs(5);
    let auth = format!("authorization: Bearer {TOKEN}\r\n");

    let ok = raw(
        addr,
        format!("GET /debug/pprof/tasks?debug=1 HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")
            .as_bytes(),
        wait,
    );
    assert_eq!(status_of(&ok), "200", "{ok}");
    assert!(ok.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{ok}");

    let long_uri = format!("/debug/pprof/tasks?debug=1&pad={}", "a".repeat(9 * 1024));
    let answer = raw(
        addr,
        format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        wait,
    );
    assert_eq!(status_of(&answer), "414", "{answer}");

    let big_header = format!("x-pad: {}\r\n", "b".repeat(20 * 1024));
    let answer = raw(
        addr,
        format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\n{auth}{big_header}\r\n").as_bytes(),
        wait,
    );
    assert_eq!(status_of(&answer), "431", "{answer}");

    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer =
        raw(addr, format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\n{auth}{many}\r\n").as_bytes(), wait);
    assert_eq!(status_of(&answer), "431", "{answer}");

    let garbage = raw(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", wait);
    assert!(garbage.is_empty() || status_of(&garbage).starts_with('4'), "{garbage:?}");

    // And the server still answers.
    let ok = raw(
        addr,
        format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n").as_bytes(),
        wait,
    );
    assert_eq!(status_of(&ok), "200");
}

/// Slow clients cannot hold the server: connections that do not send their
/// headers in time are closed, and beyond the cap of open connections new
/// ones get a 503 at once rather than waiting.
#[test]
fn slow_and_surplus_connections_are_closed() {
    let served = Served::start();
    let addr = served.addr();
    // 64 connections that send half a request head and then nothing.
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    // Refused, not queued: a queued connection would get a 200 once the
    // slow ones time out.
    let surplus = raw(addr, b"GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\n\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&surplus), "503", "{surplus:?}");
    assert!(surplus.ends_with("too many connections to the taskscope endpoint: retry later\n"), "{surplus}");

    // The server closes every slow connection after its header timeout (10 s).
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        // EOF or a reset: closed by the server, not our read timeout.
        if let Err(e) = s.read_to_end(&mut buf) {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(8) && waited < Duration::from_secs(20), "closed after {waited:?}");

    // Then there is room again.
    let ok = raw(
        addr,
        format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&ok), "200", "{ok}");
}

/// Slowloris: clients that send their request's head a byte at a time,
/// never finishing it, are cut off by the header timeout, which runs from
/// the first byte and is not reset by each new one; meanwhile the server
/// answers others. Without that, each would hold its connection for as long
/// as it kept trickling (here up to 60 s, far beyond the 10 s limit).
#[test]
fn clients_that_trickle_their_headers_byte_by_byte_are_cut_off() {
    let served = Served::start();
    let addr = served.addr();
    const TRICKLERS: usize = 4;
    // Bytes a trickler sends at most: a byte every 200 ms for 60 s, all of
    // it within the 16 KiB head limit, so only the timeout can end it.
    const BUDGET: usize = 300;
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            std::thread::spawn(move || -> Result<usize, String> {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\nx-slow: ").unwrap();
                s.set_nonblocking(true).unwrap();
                for sent in 0..BUDGET {
                    std::thread::sleep(Duration::from_millis(200));
                    if s.write(b"a").is_err() {
                        return Ok(sent);
                    }
                    let mut buf = [0u8; 256];
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(sent),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Ok(sent),
                        Ok(n) => {
                            return Err(format!(
                                "the server answered an unfinished head: {:?}",
                                String::from_utf8_lossy(&buf[..n])
                            ))
                        }
                    }
                }
                Err(format!("still connected after trickling {BUDGET} bytes"))
            })
        })
        .collect();
    // The server is not pinned by them: it answers while they trickle.
    std::thread::sleep(Duration::from_millis(500));
    let ok = raw(
        addr,
        format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(status_of(&ok), "200", "{ok}");
    for t in tricklers {
        let sent = t.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(sent > 0, "closed before the first trickled byte");
    }
    // And they were counted as slow clients.
    let json = raw(
        addr,
        format!(
            "GET /debug/taskscope/api/snapshot?limit=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(status_of(&json), "200", "{json}");
    let json: serde_json::Value = serde_json::from_str(&body_of(&json)).unwrap();
    let slow = json["agent"]["http"]["slow_clients"].as_u64().unwrap();
    assert!(slow >= TRICKLERS as u64, "slow_clients = {slow}");
}

/// At most 16 requests run at once; the 17th is refused at once with a 503
/// and `Retry-After`, not queued behind the others.
#[test]
fn requests_beyond_the_in_flight_limit_get_a_503_over_http() {
    let served = Served::start();
    let addr = served.addr();
    let slow = format!(
        "GET /debug/pprof/heap?seconds=3 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
    );
    let waiting: Vec<_> = (0..16)
        .map(|_| {
            let slow = slow.clone();
            std::thread::spawn(move || raw(addr, slow.as_bytes(), Duration::from_secs(20)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1_000));
    // Refused at once, not queued: a queued request would get a 200 once
    // one of the 3-second deltas is done.
    let refused = raw(
        addr,
        format!("GET /debug/pprof/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&refused), "503", "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("too many requests in flight"), "{refused}");
    for w in waiting {
        let answer = w.join().unwrap();
        assert_eq!(status_of(&answer), "200", "{answer}");
    }
}

/// What the caps dropped and what the endpoint turned away is in the JSON,
/// for the viewer and `/metrics` to show.
#[test]
fn drop_and_refusal_counters_are_in_the_snapshot() {
    runtime().block_on(async {
        let router = taskscope::Agent::builder().serve(false).token(TOKEN).start().unwrap().router();
        assert_eq!(get(&router, "/debug/pprof/", None).await.status, 401);
        let r = get(&router, "/debug/taskscope/api/snapshot?limit=0", Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(r.status, 200);
        let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let agent = &json["agent"];
        for counter in [
            "tasks",
            "sites_overflowed",
            "deep_tasks",
            "deep_stacks",
            "heap_live_samples",
            "heap_stacks",
            "completed_evicted",
        ] {
            assert!(agent["dropped"][counter].is_u64(), "agent.dropped.{counter} in {agent}");
        }
        for counter in
            ["unauthorized", "busy", "timed_out", "too_large", "connections_refused", "slow_clients"]
        {
            assert!(agent["http"][counter].is_u64(), "agent.http.{counter} in {agent}");
        }
        assert!(agent["http"]["unauthorized"].as_u64().unwrap() >= 1, "{agent}");
        assert!(agent["panics"].is_u64());
    });
}
