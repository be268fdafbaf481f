//! From raw samples (thread, instruction addresses) to a [`Recording`]:
//! demangled function names, files and lines, inlined functions included,
//! and the spawn site of the task each sample was polling.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A finished CPU profile, symbolized.
#[derive(Debug)]
pub(crate) struct Recording {
    pub(crate) hz: u32,
    pub(crate) start_time: SystemTime,
    pub(crate) duration: Duration,
    /// CPU time the whole process used meanwhile, as the kernel counts it.
    pub(crate) process_cpu: Option<Duration>,
    pub(crate) samples: Vec<Sample>,
    /// What the reader should know about the profile's limits.
    pub(crate) notes: Vec<String>,
}

impl Recording {
    /// Samples in all.
    pub(crate) fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.count).sum()
    }

    /// The CPU time one sample stands for: one period of the timer.
    pub(crate) fn period_nanos(&self) -> i64 {
        1_000_000_000 / i64::from(self.hz.max(1))
    }
}

/// One distinct stack, with how many samples hit it.
#[derive(Debug)]
pub(crate) struct Sample {
    /// The thread's name as the kernel keeps it (at most 15 bytes).
    pub(crate) thread: String,
    /// Where the task being polled was spawned, `file:line:col`.
    pub(crate) spawn_site: Option<String>,
    /// Leaf first.
    pub(crate) stack: Vec<Arc<Location>>,
    pub(crate) count: u64,
}

/// One frame: an address and the functions at it, innermost inlined first.
#[derive(Debug)]
pub(crate) struct Location {
    pub(crate) address: u64,
    pub(crate) lines: Vec<Line>,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Demangled, without the hash.
    pub(crate) function: String,
    /// As in the symbol table.
    pub(crate) system_name: String,
    pub(crate) file: String,
    pub(crate) line: i64,
}

/// Symbolizes addresses once each.
pub(crate) struct Symbolizer {
    /// Whether each stack starts with the interrupted instruction (rather
    /// than a return address).
    leaf_first: bool,
    /// Marker address -> spawn site location.
    markers: HashMap<usize, String>,
    cache: HashMap<usize, Arc<Location>>,
}

impl Symbolizer {
    /// `markers` maps marker addresses to spawn-site indexes.
    pub(crate) fn new(leaf_first: bool, markers: Vec<(usize, u32)>) -> Self {
        let sites = crate::tasks::registry().map(|r| r.sites()).unwrap_or_default();
        let markers = markers
            .into_iter()
            .map(|(addr, site)| {
                let location = match sites.get(site as usize).and_then(|s| s.location) {
                    Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
                    None => "<other>".to_string(),
                };
                (addr, location)
            })
            .collect();
        Symbolizer { leaf_first, markers, cache: HashMap::new() }
    }

    /// A sample from the addresses pprof-rs recorded, leaf first.
    pub(crate) fn sample(&mut self, thread: String, ips: &[usize], count: u64) -> Sample {
        let (spawn_site, ips) = match ips.split_first() {
            Some((first, rest)) if self.markers.contains_key(first) => {
                (self.markers.get(first).cloned(), rest)
            }
            _ => (None, ips),
        };
        let stack = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| {
                // A return address points after its call: look up the call.
                let ip = if i == 0 && self.leaf_first { ip } else { ip.saturating_sub(1) };
                self.cache.entry(ip).or_insert_with(|| Arc::new(resolve(ip))).clone()
            })
            .collect();
        Sample { thread, spawn_site, stack, count }
    }
}

/// The functions at instruction address `ip`.
fn resolve(ip: usize) -> Location {
    let mut lines = Vec::new();
    // `backtrace::resolve` takes a return address: it looks up the byte
    // before it.
    backtrace::resolve(ip.wrapping_add(1) as *mut std::ffi::c_void, |symbol| {
        let (function, system_name) = match symbol.name() {
            Some(name) => (format!("{name:#}"), String::from_utf8_lossy(name.as_bytes()).into_owned()),
            None => (format!("{ip:#x}"), String::new()),
        };
        lines.push(Line {
            function,
            system_name,
            file: symbol.filename().map(|f| f.display().to_string()).unwrap_or_default(),
            line: symbol.lineno().map_or(0, i64::from),
        });
    });
    if lines.is_empty() {
        lines.push(Line {
            function: format!("{ip:#x}"),
            system_name: String::new(),
            file: String::new(),
            line: 0,
        });
    }
    Location { address: ip as u64, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> usize {
        std::hint::black_box(a_function_to_find as fn() -> usize as usize)
    }

    #[test]
    fn addresses_resolve_to_demangled_names_with_files_and_lines() {
        let mut s = Symbolizer::new(true, vec![(1234, 0)]);
        let ip = a_function_to_find() + 4;
        let sample = s.sample("worker".into(), &[1234, ip, ip + 1], 3);
        assert_eq!(sample.count, 3);
        assert!(sample.spawn_site.is_some(), "the marker names a site");
        assert_eq!(sample.stack.len(), 2, "the marker is not a frame");
        // In release builds `black_box` is inlined into the function, so the
        // address has two lines: the inlined `black_box`, then the function.
        let lines = &sample.stack[0].lines;
        let leaf = lines
            .iter()
            .find(|l| l.function.ends_with("a_function_to_find"))
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(leaf.file.ends_with("symbols.rs"), "{leaf:?}");
        assert!(leaf.line > 0);
        assert!(!leaf.function.contains("::h"), "no hash: {}", leaf.function);
        // The leaf is looked up as is, return addresses one byte back.
        assert_eq!(sample.stack[0].address, ip as u64);
        assert_eq!(sample.stack[1].address, ip as u64);
        assert!(Arc::ptr_eq(&sample.stack[0], &sample.stack[1]), "cached");
    }

    #[test]
    fn unknown_addresses_keep_their_address() {
        let mut s = Symbolizer::new(false, vec![]);
        let sample = s.sample("t".into(), &[0x11], 1);
        assert_eq!(sample.stack[0].lines[0].function, "0x10");
    }
}
