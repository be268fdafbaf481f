//! Run with: cargo run --release -p benchmarks -- [--quick]
//!
//! The overhead benchmarks of BENCHMARKS.md. Builds the `workload` binary
//! once per mode (baseline, off, lean, deep, console), runs poll-heavy,
//! spawn-heavy and million-tasks in every mode in turn, and prints a
//! markdown table of medians, ranges and ratios to the baseline. Options:
//! `--runs N` (default 5, after one warm-up), `--workloads poll,spawn,million`,
//! `--modes baseline,off,lean,deep,console`, `--million-tasks N`, `--json FILE`;
//! `--quick` runs tiny sizes once, as a smoke test.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = benchmarks::runner::main(&args) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
