//! The allocator is reentrancy-safe: here the allocator it wraps allocates
//! through the global allocator itself (as an allocator that logs, or one
//! whose set-up allocates, would), so that the sampler is entered again
//! while it is taking a sample. The nested allocations must be served and
//! counted as dropped samples ("inside the allocator"), never sampled
//! recursively, deadlocked on the sampler's tables, or lost.
//!
//! The sampling rate is read before `main`, so the test runs itself in a
//! child process with a tiny rate, where nearly every allocation is sampled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

mod child_support;
use child_support::in_child;

/// The system allocator, but an allocation of 64 bytes or more first
/// allocates and frees a small vector through the global allocator.
struct Reentering;

thread_local! {
    /// Set while this thread is inside `Reentering::alloc`'s own
    /// allocation, so that it nests once rather than for ever.
    static NESTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the nested allocation is an ordinary, balanced one.
unsafe impl GlobalAlloc for Reentering {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= 64 && NESTED.try_with(|n| !n.replace(true)).unwrap_or(false) {
            let nested: Vec<u64> = Vec::with_capacity(4);
            std::hint::black_box(&nested);
            drop(nested);
            NESTED.with(|n| n.set(false));
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: taskscope::Allocator<Reentering> = taskscope::Allocator::new(Reentering);

#[inline(never)]
fn reentrant_test_churn(seed: u64) -> usize {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut x = seed | 1;
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = vec![x as u8; 16 + (x % 4_096) as usize];
        if x % 3 == 0 {
            kept.push(v);
        }
        if kept.len() > 100 {
            kept.swap_remove((x % 100) as usize);
        }
    }
    kept.iter().map(Vec::len).sum()
}

#[test]
fn an_inner_allocator_that_allocates_is_served_and_its_samples_dropped() {
    if !in_child(
        "an_inner_allocator_that_allocates_is_served_and_its_samples_dropped",
        &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "64")],
    ) {
        return;
    }

    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    // Threads and tasks that allocate, each sampled allocation reentering.
    let threads: Vec<_> =
        (0..4u64).map(|seed| std::thread::spawn(move || reentrant_test_churn(seed))).collect();
    let tasks: Vec<_> = (10..14u64).map(|seed| rt.spawn(async move { reentrant_test_churn(seed) })).collect();
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    rt.block_on(async {
        for t in tasks {
            assert!(t.await.unwrap() > 0);
        }
        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let res = router
            .clone()
            .oneshot(Request::get("/debug/taskscope/api/snapshot?limit=0").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let heap = &json["heap"];
        let sampler = &heap["sampler"];
        assert!(sampler["samples"].as_u64().unwrap() > 1_000, "{sampler}");
        assert!(
            sampler["dropped_reentrant"].as_u64().unwrap() > 0,
            "no reentrant allocation was seen: {sampler}"
        );
        let totals = &heap["totals"];
        let (allocated, freed) =
            (totals["allocated_objects"].as_u64().unwrap(), totals["freed_objects"].as_u64().unwrap());
        // The churn above and the nested vectors, each allocated and freed.
        assert!(allocated > 2 * 8 * 2_000 && freed > 8 * 2_000, "{totals}");

        // And the profiles are served.
        for uri in ["/debug/pprof/heap", "/debug/pprof/allocs?debug=1"] {
            let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), 200, "{uri}");
        }
    });
}
