//! Symbolization of sampled stacks, lazily, when a profile or snapshot is
//! asked for: return addresses to functions, files, lines and columns, with
//! inlined frames, cached per address. And which frames are the allocator's
//! own and which are the application's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

/// One frame, after symbolization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct Frame {
    pub(crate) function: String,
    /// Relative to the working directory when under it; empty if unknown.
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) column: u32,
}

/// Frames of the allocator and of Rust's allocation plumbing: trimmed from
/// the leaf end of every stack, as Go trims `runtime.mallocgc`.
const ALLOCATOR: &[&str] = &[
    "taskscope::heap::",
    "__rustc::__rust_",
    "__rust_",
    "__rdl_",
    "__rg_",
    "alloc::alloc::",
    "std::alloc::",
    "core::alloc::",
];

/// Crates whose frames are not the application's own.
const LIBRARY: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "tokio::",
    "taskscope::",
    "taskscope_macros::",
    "hashbrown::",
    "futures",
    "tracing",
    "backtrace::",
    "axum::",
    "hyper::",
    "hyper_util::",
    "tower::",
    "pin_project",
    "__rust",
];

impl Frame {
    /// `file:line:col`, or as much of it as is known.
    pub(crate) fn location(&self) -> String {
        match (self.file.is_empty(), self.line, self.column) {
            (true, _, _) => self.function.clone(),
            (false, 0, _) => self.file.clone(),
            (false, line, 0) => format!("{}:{line}", self.file),
            (false, line, column) => format!("{}:{line}:{column}", self.file),
        }
    }

    fn name(&self) -> &str {
        self.function.trim_start_matches('<')
    }

    pub(crate) fn is_allocator(&self) -> bool {
        ALLOCATOR.iter().any(|p| self.name().starts_with(p))
    }

    /// Whether the frame is in std, tokio, taskscope, C code or another
    /// library rather than in the application's own code.
    pub(crate) fn is_library(&self) -> bool {
        LIBRARY.iter().any(|p| self.name().starts_with(p))
            || !self.file.ends_with(".rs")
            || self.file.starts_with("/rustc/")
            || self.file.contains("/.cargo/registry/")
            || self.file.contains("/.cargo/git/")
            || self.file.contains("/lib/rustlib/")
    }

    /// Whether the frame is the agent's own code (the allocator's frames are
    /// trimmed before this is asked).
    fn is_agent(&self) -> bool {
        self.name().starts_with("taskscope::")
    }
}

/// The allocation site of memory the agent allocated for itself (its task
/// registry, tables, buffers), so that it is not charged to the
/// application's frame that started the agent.
pub(crate) const AGENT_SITE: &str = "<taskscope agent>";

/// Symbolized addresses; bounded, cleared when full.
static CACHE: OnceLock<Mutex<HashMap<usize, Arc<[Frame]>>>> = OnceLock::new();
const CACHE_CAP: usize = 1 << 16;

fn working_dir() -> &'static Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::current_dir().ok())
}

/// The frames at return address `addr`, innermost inlined frame first.
pub(crate) fn resolve(addr: usize) -> Arc<[Frame]> {
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&addr) {
        return hit.clone();
    }
    let mut frames = Vec::new();
    // `backtrace::resolve` looks up `addr - 1`: the call, not the return.
    backtrace::resolve(addr as *mut std::ffi::c_void, |symbol| {
        let function = symbol.name().map(|n| format!("{n:#}")).unwrap_or_else(|| format!("{addr:#x}"));
        let file = symbol
            .filename()
            .map(|p| match working_dir() {
                Some(dir) => p.strip_prefix(dir).unwrap_or(p).display().to_string(),
                None => p.display().to_string(),
            })
            .unwrap_or_default();
        frames.push(Frame {
            function,
            file,
            line: symbol.lineno().unwrap_or(0),
            column: symbol.colno().unwrap_or(0),
        });
    });
    if frames.is_empty() {
        frames.push(Frame { function: format!("{addr:#x}"), file: String::new(), line: 0, column: 0 });
    }
    let frames: Arc<[Frame]> = frames.into();
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= CACHE_CAP {
        cache.clear();
    }
    cache.insert(addr, frames.clone());
    frames
}

/// The frames of a stack of return addresses (leaf first), inlined frames
/// expanded, the allocator's own frames trimmed from the leaf end.
pub(crate) fn symbolize(addresses: &[usize]) -> Vec<Frame> {
    let frames: Vec<Frame> =
        addresses.iter().flat_map(|&a| resolve(a).iter().cloned().collect::<Vec<_>>()).collect();
    trim(frames)
}

/// Drops the allocator's frames from the leaf end.
pub(crate) fn trim(mut frames: Vec<Frame>) -> Vec<Frame> {
    let keep = frames.iter().position(|f| !f.is_allocator()).unwrap_or(frames.len());
    frames.drain(..keep);
    frames
}

/// The allocation site of a stack: its first frame in the application's
/// own code; [`AGENT_SITE`] if the agent's own code comes first.
pub(crate) fn allocation_site(frames: &[Frame]) -> Option<Frame> {
    let first = frames.iter().find(|f| !f.is_library() || f.is_agent())?;
    Some(if first.is_agent() {
        Frame { function: "taskscope".into(), file: AGENT_SITE.into(), line: 0, column: 0 }
    } else {
        first.clone()
    })
}

/// Allocation sites by stack-table entry: an entry's stack never changes.
fn sites() -> &'static Mutex<HashMap<u32, Option<Frame>>> {
    static SITES: OnceLock<Mutex<HashMap<u32, Option<Frame>>>> = OnceLock::new();
    SITES.get_or_init(Mutex::default)
}

/// The allocation site of stack-table entry `id`, whose return addresses
/// are `addresses`, symbolizing them if not done yet: can take a while (the
/// first symbolization reads the binary's debug info).
pub(crate) fn site_of(id: u32, addresses: &[usize]) -> Option<Frame> {
    if let Some(known) = cached_site(id) {
        return known;
    }
    let site = allocation_site(&symbolize(addresses));
    sites().lock().unwrap_or_else(|e| e.into_inner()).insert(id, site.clone());
    site
}

/// The allocation site of entry `id` if already symbolized (`Some(None)`
/// when it has no frame in the application's code); `None` if not yet.
pub(crate) fn cached_site(id: u32) -> Option<Option<Frame>> {
    sites().lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str) -> Frame {
        Frame { function: function.into(), file: file.into(), line: 7, column: 9 }
    }

    #[test]
    fn allocator_frames_are_trimmed_and_the_site_is_the_first_app_frame() {
        let frames = vec![
            frame("taskscope::heap::sample::prepare", "agent/src/heap/sample.rs"),
            frame(
                "<taskscope::heap::allocator::Allocator<A> as core::alloc::global::GlobalAlloc>::alloc",
                "x.rs",
            ),
            frame("__rustc::__rust_alloc", ""),
            frame("alloc::alloc::exchange_malloc", "/rustc/abc/library/alloc/src/alloc.rs"),
            frame("alloc::raw_vec::RawVec<T,A>::grow_one", "/rustc/abc/library/alloc/src/raw_vec.rs"),
            frame(
                "hashbrown::raw::RawTable<T,A>::reserve_rehash",
                "/home/u/.cargo/registry/src/x/hashbrown/raw.rs",
            ),
            frame("app::cache::Cache::insert", "src/cache.rs"),
            frame("app::main::{{closure}}", "src/main.rs"),
            frame("tokio::runtime::task::harness::poll", "/home/u/.cargo/registry/src/x/tokio/harness.rs"),
        ];
        let trimmed = trim(frames);
        assert_eq!(trimmed[0].function, "alloc::raw_vec::RawVec<T,A>::grow_one");
        let site = allocation_site(&trimmed).unwrap();
        assert_eq!(site.function, "app::cache::Cache::insert");
        assert_eq!(site.location(), "src/cache.rs:7:9");
    }

    #[test]
    fn the_agents_own_memory_and_c_code_are_not_the_apps() {
        let agent = vec![
            frame("alloc::alloc::alloc_zeroed", "/rustc/abc/library/alloc/src/alloc.rs"),
            frame("taskscope::tasks::registry::Registry::new", "agent/src/tasks/registry.rs"),
            frame("app::main", "src/main.rs"),
        ];
        assert_eq!(allocation_site(&agent).unwrap().location(), AGENT_SITE);
        let c = vec![frame("start_thread", "./nptl/pthread_create.c"), frame("app::main", "src/main.rs")];
        assert_eq!(allocation_site(&c).unwrap().function, "app::main");
        assert_eq!(allocation_site(&c[..1]), None);
    }

    #[test]
    fn locations_say_what_is_known() {
        assert_eq!(frame("f", "").location(), "f");
        assert_eq!(Frame { line: 0, ..frame("f", "a.rs") }.location(), "a.rs");
        assert_eq!(Frame { column: 0, ..frame("f", "a.rs") }.location(), "a.rs:7");
    }

    #[inline(never)]
    fn here() -> usize {
        let mut frames = [0; crate::heap::stack::MAX_DEPTH];
        let n = crate::heap::stack::capture(&mut frames);
        if n == 0 {
            0
        } else {
            frames[0]
        }
    }

    #[test]
    fn a_return_address_resolves_to_its_function_and_file() {
        let addr = std::thread::spawn(here).join().unwrap();
        if addr == 0 {
            return; // no frame-pointer walk on this platform
        }
        let frames = resolve(addr);
        assert!(frames.iter().any(|f| f.function.contains("symbols::tests::here")), "{frames:#?}");
        assert!(frames.iter().any(|f| f.file.ends_with("heap/symbols.rs") && f.line > 0), "{frames:#?}");
        assert!(Arc::ptr_eq(&frames, &resolve(addr)), "cached");
    }
}
