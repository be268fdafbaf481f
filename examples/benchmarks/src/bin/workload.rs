//! One benchmark workload in the mode this binary was built for; prints one
//! line of JSON. The `bench` runner builds and runs it; by hand:
//! `cargo run --release -p benchmarks --bin workload -- poll|spawn|mutex|alloc|http|idle|million [--quick] [--tasks N] [--secs N]`.

use std::io::Write;

use benchmarks::workload::{self, App, Sizes};

/// The taskscope modes run with taskscope's sampling allocator, as its
/// README has users install it; the others with the system allocator.
#[cfg(feature = "allocator")]
#[global_allocator]
static ALLOCATOR: taskscope::Allocator = taskscope::Allocator::system();

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, rest)) = args.split_first() else {
        eprintln!("usage: workload {} [--quick] [--KEY N]...", workload::NAMES.join("|"));
        std::process::exit(2);
    };
    let app = Sizes::parse(rest).and_then(|sizes| Ok((sizes, App::start()?)));
    match app.and_then(|(sizes, app)| Ok((workload::run(&app, name, &sizes)?, app))) {
        Ok((json, _app)) => {
            println!("{json}");
            let _ = std::io::stdout().flush();
            // Exit with the app still alive: tearing down a runtime with a
            // million live tasks takes seconds and measures nothing.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("workload: {e}");
            std::process::exit(1);
        }
    }
}
