//! alloc-heavy: the cost of the global allocator. The taskscope modes run
//! with `taskscope::Allocator` installed (the `allocator` feature of the
//! workload binary), the others with the system allocator. Plain OS
//! threads, not the app's runtime: nothing here is a task.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde_json::{json, Value};

use super::probe;

/// Runs `f` `frames` stack frames deeper than the caller. Where a thread's
/// stack starts in its page, against where the heap blocks fall, moves a
/// malloc/free loop by up to a quarter (4 KiB aliasing), and it is the same
/// in every run of one binary: the runner changes the depth from round to
/// round, so that the medians are over layouts.
#[inline(never)]
fn at_depth<R>(frames: usize, f: &mut dyn FnMut() -> R) -> R {
    if frames == 0 {
        return f();
    }
    let pad = black_box([frames; 4]);
    let out = at_depth(frames - 1, f);
    black_box(pad);
    out
}

/// `threads` threads, started together, each of which first allocates and
/// frees `boxes` boxes of 8 bytes one at a time, then grows `vecs` vectors
/// of `u32` by `push` from empty to `vec_len` elements (reallocations of a
/// growing block, up to `4 * vec_len` bytes); `frames` deeper on their
/// stacks (see `at_depth`).
pub fn run(threads: usize, boxes: usize, vecs: usize, vec_len: usize, frames: usize) -> Value {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let start = start.clone();
            std::thread::Builder::new()
                .name(format!("bench-alloc-{t}"))
                .spawn(move || {
                    at_depth(frames, &mut || {
                        start.wait();
                        let begin = Instant::now();
                        for i in 0..boxes {
                            // black_box keeps the pair from being optimized out.
                            drop(black_box(Box::new(i as u64)));
                        }
                        let boxes_secs = begin.elapsed().as_secs_f64();
                        for _ in 0..vecs {
                            let mut v = Vec::new();
                            for i in 0..vec_len {
                                v.push(i as u32);
                            }
                            black_box(&v);
                        }
                        let secs = begin.elapsed().as_secs_f64();
                        (boxes_secs, secs - boxes_secs, probe::thread_cpu_secs())
                    })
                })
                .expect("an allocating thread starts")
        })
        .collect();
    let before = probe::threads();
    let begin = Instant::now();
    start.wait();
    let phases: Vec<(f64, f64, f64)> =
        handles.into_iter().map(|h| h.join().expect("an allocating thread panicked")).collect();
    let secs = begin.elapsed().as_secs_f64();
    // The allocating threads have exited, so each measured its own CPU
    // time; the other threads' (the runtime's, the agent's) is added.
    let others: u64 = probe::threads()
        .iter()
        .filter_map(|t| Some(t.cpu_ns - before.iter().find(|b| b.tid == t.tid)?.cpu_ns))
        .sum();
    let cpu_secs = phases.iter().map(|p| p.2).sum::<f64>() + others as f64 / 1e9;
    let slowest = |f: fn(&(f64, f64, f64)) -> f64| phases.iter().map(f).fold(0.0, f64::max);
    json!({
        "secs": secs, "cpu_secs": cpu_secs,
        "boxes_secs": slowest(|p| p.0), "vecs_secs": slowest(|p| p.1),
        "threads": threads, "boxes": boxes, "vecs": vecs, "vec_len": vec_len,
    })
}
