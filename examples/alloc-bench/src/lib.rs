//! The alloc-heavy workload of BENCHMARKS.md: 2 threads, each allocating and
//! freeing 20,000,000 small boxes, then a Vec-growth phase. The two workload
//! binaries run it under the system allocator and under
//! `taskscope::Allocator`; the `alloc-bench` driver runs them in turn.

use std::hint::black_box;
use std::time::Instant;

/// Threads of each phase.
pub const THREADS: usize = 2;
/// Boxes each thread allocates and frees.
pub const BOXES: u64 = 20_000_000;
/// Boxes alive at once per thread: each is freed `WINDOW` allocations
/// later, so that frees do not simply follow their allocation.
const WINDOW: usize = 64;
/// Vecs each thread grows by `push`, from empty to `VEC_LEN` elements.
pub const VEC_ROUNDS: u64 = 40;
pub const VEC_LEN: u64 = 1 << 20;

/// Small boxes of two sizes, 8 and 32 bytes.
enum Small {
    One(#[allow(dead_code)] Box<u64>),
    Four(#[allow(dead_code)] Box<[u64; 4]>),
}

/// `name` from the environment, else `default`: lets a slow tool such as
/// callgrind run a shorter workload.
fn scale(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn boxes(seed: u64) -> u64 {
    let mut ring: Vec<Option<Small>> = (0..WINDOW).map(|_| None).collect();
    for i in 0..scale("ALLOC_BENCH_BOXES", BOXES) {
        let b = if i % 2 == 0 { Small::One(Box::new(i ^ seed)) } else { Small::Four(Box::new([i; 4])) };
        ring[i as usize % WINDOW] = Some(black_box(b));
    }
    ring.len() as u64
}

fn vecs(seed: u64) -> u64 {
    let mut sum = 0;
    for _ in 0..scale("ALLOC_BENCH_VEC_ROUNDS", VEC_ROUNDS) {
        let mut v = Vec::new();
        for i in 0..VEC_LEN {
            v.push(i ^ seed);
        }
        sum += black_box(&v).len() as u64;
    }
    sum
}

/// The sizes the workload allocates, per thread: the boxes, and the
/// buffers of each growing Vec (a `Vec<u64>` starts at 4 elements and
/// doubles).
pub fn sizes() -> impl Iterator<Item = (u64, u64)> {
    let growth = std::iter::successors(Some(32u64), |s| (*s < VEC_LEN * 8).then_some(s * 2));
    [(8, BOXES / 2), (32, BOXES / 2)].into_iter().chain(growth.map(|s| (s, VEC_ROUNDS)))
}

/// The number of samples expected at a mean sampling interval of `rate`
/// bytes: each allocation of `s` bytes is sampled with probability
/// `1 - exp(-s / rate)`.
pub fn expected_samples(rate: u64) -> f64 {
    if rate == 0 {
        return 0.0;
    }
    let per_thread: f64 = sizes().map(|(s, n)| n as f64 * -(-(s as f64) / rate as f64).exp_m1()).sum();
    per_thread * THREADS as f64
}

/// CPU time (user + system) of the whole process so far, in nanoseconds.
/// On a shared machine it is steadier than wall-clock time, which also
/// counts the time other processes hold the CPUs.
pub fn cpu_ns() -> u128 {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// One phase's wall-clock and CPU time, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub wall: u128,
    pub cpu: u128,
}

/// Runs `f(seed)` `frames` stack frames deeper than the caller. A
/// thread's stack starts at the same offset in its page in every run of a
/// binary, and that offset, against the heap blocks' offsets, can move a
/// malloc/free loop's time by a quarter (4 KiB aliasing of stack and heap
/// accesses): runs at several depths measure the code, not the layout.
#[inline(never)]
fn at_depth(frames: u64, f: fn(u64) -> u64, seed: u64) -> u64 {
    if frames == 0 {
        return f(seed);
    }
    let pad = black_box([frames; 4]);
    let out = at_depth(frames - 1, f, seed);
    black_box(pad);
    out
}

/// Runs both phases; returns their times. `ALLOC_BENCH_FRAMES` sets how
/// many frames deeper the threads run them (see `at_depth`).
pub fn run() -> (Times, Times) {
    let frames = scale("ALLOC_BENCH_FRAMES", 0);
    let phase = |f: fn(u64) -> u64| {
        let (wall, cpu) = (Instant::now(), cpu_ns());
        let threads: Vec<_> =
            (0..THREADS as u64).map(|seed| std::thread::spawn(move || at_depth(frames, f, seed))).collect();
        for t in threads {
            black_box(t.join().unwrap());
        }
        Times { wall: wall.elapsed().as_nanos(), cpu: cpu_ns() - cpu }
    };
    (phase(boxes), phase(vecs))
}

/// What a workload binary prints: one line the driver parses.
pub fn report() {
    let (boxes, vecs) = run();
    println!(
        "boxes_ns={} vecs_ns={} boxes_cpu_ns={} vecs_cpu_ns={}",
        boxes.wall, vecs.wall, boxes.cpu, vecs.cpu
    );
}
