//! Without taskscope's allocator, the heap endpoints still answer scrapers
//! with valid, empty profiles, and tell humans how to turn heap profiling
//! on: in the profile's comments, the `debug=1` text, the flamegraph, the
//! index page and the snapshot JSON.

use std::io::Read;
use std::time::Duration;

use pprof::protos::{Message, Profile};

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    let disposition =
        res.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, disposition, res.body_mut().read_to_vec().expect("body"))
}

const HOW: &str = "#[global_allocator] static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();";

#[test]
fn heap_endpoints_serve_empty_profiles_and_say_how_to_enable_them() {
    let agent = taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap();
    let addr = agent.local_addr().unwrap();
    for (path, name, default) in
        [("/debug/pprof/heap", "heap", "inuse_space"), ("/debug/pprof/allocs", "allocs", "alloc_space")]
    {
        let (status, disposition, body) = get(addr, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(disposition, format!("attachment; filename=\"{name}\""));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut raw).unwrap();
        let p = Profile::decode(raw.as_slice()).unwrap();
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert!(p.sample.is_empty(), "{path}");
        let types: Vec<_> = p.sample_type.iter().map(|t| s(t.ty)).collect();
        assert_eq!(types, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
        assert_eq!(s(p.default_sample_type), default);
        assert!(p.comment.iter().any(|&c| s(c).contains(HOW)), "{path}");
    }
    let (status, _, text) = get(addr, "/debug/pprof/heap?debug=1");
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200);
    assert!(text.starts_with("heap profile: 0: 0 [0: 0] @ heap/"), "{text}");
    assert!(text.contains(HOW), "{text}");
    let (status, _, svg) = get(addr, "/debug/pprof/heap/flamegraph");
    assert_eq!(status, 200);
    assert!(String::from_utf8(svg).unwrap().contains("profiling is off"));
    let (_, _, index) = get(addr, "/debug/pprof/");
    let index = String::from_utf8(index).unwrap();
    assert!(index.contains("heap profiling is off") && index.contains("taskscope::Allocator"), "{index}");
    let (_, _, json) = get(addr, "/debug/taskscope/api/snapshot");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["heap"]["enabled"], false);
    assert_eq!(json["agent"]["features"]["heap"], false);
    assert!(json["heap"]["problem"].as_str().unwrap().contains(HOW), "{}", json["heap"]);
    // A delta of an empty profile is still a valid profile.
    let (status, disposition, _) = get(addr, "/debug/pprof/heap?seconds=1");
    assert_eq!((status, disposition.as_str()), (200, "attachment; filename=\"heap-delta\""));
    drop(agent);
}
