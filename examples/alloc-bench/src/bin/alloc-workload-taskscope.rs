//! The workload under `taskscope::Allocator`; the sampling rate comes from
//! `TASKSCOPE_HEAP_SAMPLE_BYTES`. Run by `alloc-bench`.

#[global_allocator]
static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();

fn main() {
    alloc_bench::report();
}
