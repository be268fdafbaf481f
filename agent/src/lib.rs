#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]
// Without tokio_unstable there are no hooks, so the registry is never fed.
#![cfg_attr(not(tokio_unstable), allow(dead_code, unused_imports))]

mod agent;
mod clock;
mod config;
mod cpu;
mod detect;
mod error;
mod health;
mod http;
mod render;
mod snapshot;
mod tasks;

pub use agent::{init, try_init, Agent, Builder};
pub use error::Error;
pub use tasks::instrument;
pub use taskscope_macros::main;

/// Support for `#[taskscope::main]`; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// The runtime flavors `#[taskscope::main]` accepts.
    #[derive(Debug, Clone, Copy)]
    pub enum Flavor {
        /// `flavor = "multi_thread"`, the default.
        MultiThread,
        /// `flavor = "current_thread"`.
        CurrentThread,
    }

    /// Builds the runtime with taskscope's hooks, starts the agent, and
    /// runs `body` to completion, as `#[tokio::main]` would.
    pub fn run<F: std::future::Future>(flavor: Flavor, workers: Option<usize>, body: F) -> F::Output {
        let mut builder = match flavor {
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_all();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        crate::instrument(&mut builder);
        let runtime = builder.build().expect("Failed building the Runtime");
        let agent = {
            let _guard = runtime.enter();
            crate::init()
        };
        let out = runtime.block_on(body);
        drop(agent);
        out
    }
}
