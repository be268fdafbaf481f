//! The workload under the system allocator (the baseline). Run by
//! `alloc-bench`.

fn main() {
    alloc_bench::report();
}
