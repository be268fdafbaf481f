//! The one public error type of the library.

/// What can go wrong when starting the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `TASKSCOPE_*` variable or builder setting has a value that does not parse.
    #[error("{name}={value} is invalid: expected {expected}")]
    InvalidSetting {
        /// The variable's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// The debug endpoint could not listen on its address.
    #[error("could not listen on {addr}: {source} (set TASKSCOPE_ADDR to another address, or port 0 for any free port)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint would listen on an address other hosts can reach, with
    /// neither a token nor an explicit opt-in.
    #[error(
        "refusing to serve the debug endpoint on {addr}: it is not a loopback address, and anyone who can \
         reach it could read the task dumps and the CPU and heap profiles of the app; set TASKSCOPE_TOKEN to require \
         `Authorization: Bearer <token>`, or TASKSCOPE_ALLOW_REMOTE=1 to serve it without one"
    )]
    Exposed {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The agent's thread or runtime could not be started.
    #[error("could not start the agent's thread: {0}")]
    Start(#[source] std::io::Error),
}
