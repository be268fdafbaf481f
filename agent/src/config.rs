//! Settings read from the environment. Every setting of the agent's
//! [`Builder`](crate::Builder) has a `TASKSCOPE_*` variable that overrides it.

use std::net::SocketAddr;

use crate::tasks::Capacity;
use crate::Error;

pub(crate) const ADDR: &str = "TASKSCOPE_ADDR";
pub(crate) const DISABLE: &str = "TASKSCOPE_DISABLE";
pub(crate) const TOKEN: &str = "TASKSCOPE_TOKEN";
pub(crate) const MAX_TASKS: &str = "TASKSCOPE_MAX_TASKS";
pub(crate) const MAX_SITES: &str = "TASKSCOPE_MAX_SITES";
pub(crate) const COMPLETED: &str = "TASKSCOPE_COMPLETED";

/// The default address of the debug endpoint.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";

/// True when `TASKSCOPE_DISABLE` is set to anything but `0`/`false`/empty.
pub(crate) fn disabled() -> bool {
    match std::env::var(DISABLE) {
        Ok(v) => !matches!(v.trim(), "" | "0" | "false" | "no"),
        Err(_) => false,
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn parse_addr(name: &'static str, value: &str) -> Result<SocketAddr, Error> {
    value.trim().parse().map_err(|_| Error::InvalidSetting {
        name,
        value: value.to_string(),
        expected: "a socket address such as 127.0.0.1:6060 (port 0 picks a free port)",
    })
}

fn parse_count(name: &'static str, value: &str, min: u64, max: u64) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::InvalidSetting {
            name,
            value: value.to_string(),
            expected: "a whole number in the allowed range (see the docs of Builder)",
        }),
    }
}

pub(crate) fn env_addr() -> Result<Option<SocketAddr>, Error> {
    var(ADDR).map(|v| parse_addr(ADDR, &v)).transpose()
}

pub(crate) fn env_token() -> Option<String> {
    var(TOKEN)
}

/// The registry's capacity from the environment, or its defaults. A bad value
/// is reported on stderr and the default is used: the app must start anyway.
pub(crate) fn capacity_from_env() -> Capacity {
    let mut capacity = Capacity::default();
    let read = |name: &'static str, min: u64, max: u64, set: &mut dyn FnMut(u64)| {
        if let Some(v) = var(name) {
            match parse_count(name, &v, min, max) {
                Ok(n) => set(n),
                Err(e) => eprintln!("taskscope: {e}; using the default"),
            }
        }
    };
    read(MAX_TASKS, 1, u32::MAX as u64 / 2, &mut |n| capacity.tasks = n as u32);
    read(MAX_SITES, 2, 1 << 16, &mut |n| capacity.sites = n as u32);
    read(COMPLETED, 0, 1 << 24, &mut |n| capacity.completed = n as usize);
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_socket_addresses() {
        assert_eq!(parse_addr(ADDR, "127.0.0.1:0").unwrap().port(), 0);
        let err = parse_addr(ADDR, "localhost").unwrap_err().to_string();
        assert!(err.contains("TASKSCOPE_ADDR=localhost"), "{err}");
    }
}
