//! Bad input never hurts: every parameter of every endpoint, fuzzed through
//! the real router with `oneshot`. Whatever the query, the answer is below
//! 500, and a 4xx is one line of plain text. `tests/data/fuzz-corpus.txt`
//! keeps the inputs that once broke something, and other hand-picked edge
//! cases, as a regression corpus replayed on every run.
//!
//! The runtime's clock is paused, so that valid `seconds=N` profiles and
//! heap deltas complete at once. `PROPTEST_CASES=100000 cargo test --release
//! -p taskscope --test fuzz` runs a longer fuzz.

use axum::body::Body;
use axum::http::{Request, Uri};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower::ServiceExt;

/// Every endpoint, and the ones that take parameters more than once.
const ENDPOINTS: &[&str] = &[
    "/debug/pprof/",
    "/debug/pprof/tasks",
    "/debug/pprof/tasks",
    "/debug/pprof/goroutine",
    "/debug/pprof/profile",
    "/debug/pprof/flamegraph",
    "/debug/pprof/flamegraph",
    "/debug/pprof/block",
    "/debug/pprof/mutex",
    "/debug/pprof/allocs",
    "/debug/pprof/heap",
    "/debug/pprof/heap",
    "/debug/pprof/heap/flamegraph",
    "/debug/pprof/heap/flamegraph",
    "/debug/taskscope/api/snapshot",
    "/debug/taskscope/api/snapshot",
    "/debug/taskscope/api/snapshot",
    "/debug/taskscope/findings",
    "/debug/taskscope/",
    "/debug/taskscope/static/x/app.js",
    "/metrics",
];

/// Every parameter name any endpoint reads, and a few it does not.
#[rustfmt::skip]
const KEYS: &[&str] = &[
    "debug", "seconds", "sample", "width", "minwidth", "reverse", "icicle", "sort", "order", "state",
    "limit", "offset", "site", "wait", "id", "min_idle", "min_polls", "max_polls", "gc", "snapshot",
    "token", "",
];

/// Values at the edges of what the parameters accept.
#[rustfmt::skip]
const EDGES: &[&str] = &[
    "", "0", "1", "2", "3", "-1", "-0", "+1", "01", " 1 ", "1.0", "1e3", "0x10", "NaN", "nan", "inf", "-inf",
    "4294967295", "4294967296", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
    "100", "99", "100000", "100001", "0.5%", "100%", "101%", "1%25", "true", "false", "yes", "asc", "desc",
    "idle", "running", "id", "busy", "inuse_space", "alloc_objects", "chan receive", "none", "1,2,3", ",",
    "1,,2", "%", "%ZZ", "%00", "%FF%FE", "%C3%A9", "+", "&", "=", "==", "\u{0}", "é", "\u{202e}", "5s", "1h",
    "1000000000000", "1000000000001",
];

/// One `name=value` pair: each side either percent-encoded text (anything)
/// or raw URI characters (stray `%`, `+`, `=` and `&` included).
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(EDGES).prop_map(encode),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| encode(&f.to_string())),
        2 => any::<String>().prop_map(|s| encode(&s)),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        1 => "[-a-zA-Z0-9._~%+=,;:!$'()*@/?]{0,24}",
        1 => "[0-9]{1,6}(,[0-9]{1,6}){0,30}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![8 => prop::sample::select(KEYS).prop_map(String::from), 2 => part()]
}

fn query() -> impl Strategy<Value = String> {
    let pair = (key(), prop::option::weighted(0.9, part()))
        .prop_map(|(k, v)| v.map_or(k.clone(), |v| format!("{k}={v}")));
    (prop::collection::vec(pair, 0..6), prop::sample::select(&["&", "&", "&", "&&", ";"][..]))
        .prop_map(|(pairs, sep)| pairs.join(sep))
}

fn uri() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        9 => prop::sample::select(ENDPOINTS).prop_map(String::from),
        1 => "/debug/(pprof|taskscope)/[a-z0-9%._/-]{0,16}",
    ];
    (path, query()).prop_map(|(p, q)| if q.is_empty() { p } else { format!("{p}?{q}") })
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer to `uri` is below 500, and a 4xx says why in one line.
async fn check(router: &axum::Router, uri: &str) -> Result<u16, String> {
    let Ok(parsed) = uri.parse::<Uri>() else { return Ok(0) };
    let req = Request::get(parsed).body(Body::empty()).unwrap();
    let res = router.clone().oneshot(req).await.map_err(|e| format!("{uri}: {e}"))?;
    let status = res.status().as_u16();
    let kind = res.headers().get("content-type").map(|v| v.to_str().unwrap_or("?").to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    if status >= 500 {
        return Err(format!("{uri}: {status} {}", String::from_utf8_lossy(&body)));
    }
    if (400..500).contains(&status) {
        let text =
            std::str::from_utf8(&body).map_err(|_| format!("{uri}: a {status} body that is not UTF-8"))?;
        if kind.as_deref() != Some("text/plain; charset=utf-8")
            || !text.ends_with('\n')
            || text.lines().count() != 1
            || text.contains('\r')
        {
            return Err(format!("{uri}: {status} is not one line of plain text: {kind:?} {text:?}"));
        }
    }
    Ok(status)
}

fn runtime() -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all().start_paused(true);
    taskscope::instrument(&mut b);
    b.build().unwrap()
}

fn router(rt: &tokio::runtime::Runtime) -> axum::Router {
    let _enter = rt.enter();
    // Some tasks for the dumps to list.
    for _ in 0..20 {
        rt.spawn(std::future::pending::<()>());
    }
    taskscope::Agent::builder().serve(false).start().unwrap().router()
}

/// Both tests of this file run in one: the CPU profiler serves one profile at
/// a time, and a second one at once would be Go's (correct) 500.
#[test]
fn fuzzed_and_corpus_queries_never_get_a_5xx_and_4xx_say_why_in_one_line() {
    let rt = runtime();
    let router = router(&rt);

    let corpus = include_str!("data/fuzz-corpus.txt");
    let mut replayed = 0;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for line in corpus.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let status = rt.block_on(check(&router, line)).unwrap_or_else(|e| panic!("corpus: {e}"));
        assert_ne!(status, 0, "corpus line {line:?} is not a valid URI");
        *statuses.entry(status).or_default() += 1;
        replayed += 1;
    }
    assert!(replayed >= 100, "the corpus has {replayed} entries");
    assert!(statuses.get(&400).copied().unwrap_or(0) >= 50, "{statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) >= 10, "{statuses:?}");

    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let cases = runner.config().cases;
    let result = runner.run(&uri(), |uri| {
        rt.block_on(check(&router, &uri)).map_err(TestCaseError::fail)?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n(add the minimal input above to tests/data/fuzz-corpus.txt once fixed)");
    }
    eprintln!("fuzz: {replayed} corpus entries ({statuses:?}) and {cases} generated queries");
}
