//! The app's runtime, built the way a user of each mode would build it:
//! plain tokio, tokio with taskscope's hooks and agent, or tokio under
//! console-subscriber. Always the multi-thread runtime with 2 workers.

use std::net::SocketAddr;

use super::Error;

/// The runtime, and the agent of the taskscope modes (kept alive with it).
#[derive(Debug)]
pub struct App {
    /// The app's runtime.
    pub rt: tokio::runtime::Runtime,
    #[cfg(feature = "taskscope")]
    agent: taskscope::Agent,
}

impl App {
    /// Builds the runtime and starts the instrumentation of this build.
    pub fn start() -> Result<App, Error> {
        // console-subscriber serves from its own thread and runtime, and
        // must be the global subscriber before tokio emits its spans.
        #[cfg(feature = "console")]
        console_subscriber::init();
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        #[cfg(feature = "taskscope")]
        taskscope::instrument(&mut builder);
        let rt = builder.build()?;
        #[cfg(feature = "taskscope")]
        let agent = {
            let _in_runtime = rt.enter();
            taskscope::Agent::builder().addr("127.0.0.1:0".parse()?).start()?
        };
        Ok(App {
            rt,
            #[cfg(feature = "taskscope")]
            agent,
        })
    }

    /// The address of taskscope's endpoint, when it is serving.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "taskscope")]
        return self.agent.local_addr();
        #[cfg(not(feature = "taskscope"))]
        None
    }

    /// What instruments this app, for the runner to check each build.
    pub fn instrumentation(&self) -> &'static str {
        let serving = self.agent_addr().is_some();
        match (cfg!(feature = "taskscope"), serving, cfg!(feature = "console")) {
            (false, _, false) => "none",
            (false, _, true) => "console",
            (true, true, false) if cfg!(feature = "deep") => "taskscope-deep",
            (true, true, false) => "taskscope",
            (true, false, false) => "taskscope-disabled",
            (true, _, true) => "taskscope+console",
        }
    }
}
