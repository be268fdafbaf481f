//! The box phase of the workload with both allocators in one process, called
//! directly in alternating slices of a few milliseconds, so that a noisy
//! machine slows both alike. Prints the median time per allocate-and-free
//! pair of each, and their ratio. The sampling rate comes from
//! `TASKSCOPE_HEAP_SAMPLE_BYTES`. Run by `alloc-bench`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

/// Not the global allocator: called directly, next to `System`.
static TASKSCOPE: taskscope::Allocator = taskscope::Allocator::system();

const PAIRS: usize = 200_000;
const SLICES: usize = 60;
const WINDOW: usize = 64;

/// Allocates and frees `PAIRS` blocks of 8 and 32 bytes through `a`, each
/// freed `WINDOW` allocations later; returns ns per pair.
fn slice(a: &dyn GlobalAlloc) -> f64 {
    let layouts = [Layout::new::<u64>(), Layout::new::<[u64; 4]>()];
    let mut ring: [(*mut u8, usize); WINDOW] = [(std::ptr::null_mut(), 0); WINDOW];
    let started = Instant::now();
    for i in 0..PAIRS {
        let which = i % 2;
        // SAFETY: non-zero layouts; each block is freed once with the
        // layout it was allocated with.
        unsafe {
            let p = a.alloc(layouts[which]);
            black_box(p);
            let old = std::mem::replace(&mut ring[i % WINDOW], (p, which));
            if !old.0.is_null() {
                a.dealloc(old.0, layouts[old.1]);
            }
        }
    }
    for (p, which) in ring {
        if !p.is_null() {
            // SAFETY: as above.
            unsafe { a.dealloc(p, layouts[which]) };
        }
    }
    started.elapsed().as_nanos() as f64 / PAIRS as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: Vec<_> = (0..alloc_bench::THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                let (mut system, mut taskscope) = (Vec::new(), Vec::new());
                slice(&System);
                slice(&TASKSCOPE);
                for _ in 0..SLICES {
                    system.push(slice(&System));
                    taskscope.push(slice(&TASKSCOPE));
                }
                (median(&mut system), median(&mut taskscope))
            })
        })
        .collect();
    let results: Vec<(f64, f64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let system = results.iter().map(|r| r.0).sum::<f64>() / results.len() as f64;
    let taskscope = results.iter().map(|r| r.1).sum::<f64>() / results.len() as f64;
    println!("system_ns_per_pair={system:.3} taskscope_ns_per_pair={taskscope:.3}");
}
