#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]
// Without tokio_unstable there are no hooks, so the registry is never fed.
#![cfg_attr(not(tokio_unstable), allow(dead_code, unused_imports))]

mod agent;
mod clock;
mod config;
#[cfg(feature = "console")]
mod console;
mod cpu;
mod deep;
mod detect;
mod error;
mod health;
mod heap;
mod http;
mod render;
mod snapshot;
// Stacks are walked for deep mode's parked-at stacks only.
#[cfg_attr(not(feature = "deep"), allow(dead_code, unused_imports))]
mod stacks;
mod tasks;
pub mod testing;
mod watch;

pub use agent::{init, try_init, Agent, Builder};
#[cfg(feature = "console")]
pub use console::console_addr;
#[cfg(feature = "deep")]
pub use deep::layer;
pub use error::Error;
pub use heap::Allocator;
pub use tasks::instrument;
pub use taskscope_macros::{main, test};

/// The web viewer's files, for servers of saved snapshots (`taskscope
/// serve`); not a public API. See the module for how offline mode works.
#[doc(hidden)]
pub use http::assets as __assets;

/// Support for `#[taskscope::main]` and `#[taskscope::test]`; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// The runtime flavors `#[taskscope::main]` and `#[taskscope::test]` accept.
    #[derive(Debug, Clone, Copy)]
    pub enum Flavor {
        /// `flavor = "multi_thread"`, the default.
        MultiThread,
        /// `flavor = "current_thread"`.
        CurrentThread,
    }

    /// A runtime of `flavor` with every driver and taskscope's hooks.
    fn instrumented(flavor: Flavor, workers: Option<usize>) -> tokio::runtime::Runtime {
        let mut builder = match flavor {
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_all();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        crate::instrument(&mut builder);
        builder.build().expect("Failed building the Runtime")
    }

    /// Builds the runtime with taskscope's hooks, starts the agent, and
    /// runs `body` to completion, as `#[tokio::main]` would.
    pub fn run<F: std::future::Future>(flavor: Flavor, workers: Option<usize>, body: F) -> F::Output {
        let runtime = instrumented(flavor, workers);
        let agent = {
            let _guard = runtime.enter();
            crate::init()
        };
        let out = runtime.block_on(body);
        drop(agent);
        out
    }

    /// Builds a runtime with taskscope's hooks (no agent, no port), runs the
    /// test `body` on it, then fails the test if tasks it spawned are still
    /// alive, as `#[taskscope::test]` promises.
    #[track_caller]
    pub fn run_test<F: std::future::Future>(
        flavor: Flavor,
        workers: Option<usize>,
        ignore: &[&str],
        body: F,
    ) -> F::Output {
        let runtime = instrumented(flavor, workers);
        let options = ignore.iter().fold(crate::testing::Options::default(), |o, i| o.ignore(*i));
        let guard = crate::testing::LeakGuard::on(Some(runtime.handle().clone()), options);
        let (out, verdict) = runtime.block_on(async {
            let out = body.await;
            (out, guard.check_async().await)
        });
        if let Err(report) = verdict {
            // Dropping the runtime would wait for leaked blocking tasks.
            runtime.shutdown_background();
            panic!("{report}");
        }
        out
    }
}
