//! The SIGPROF handler taskscope puts in front of pprof-rs's while a profile
//! runs.
//!
//! pprof-rs's frame-pointer walk starts at the interrupted function's return
//! address, so the function that was running is missing from every sample.
//! This handler hands pprof-rs a copy of the signal context whose frame
//! pointer first leads through up to two frame records on the handler's own
//! stack: one whose return address is the interrupted instruction, and, when
//! a task is being polled on the thread, one whose return address is a
//! *marker*: a function that stands for the task's spawn site for the length
//! of the profile. pprof-rs keys samples by the enclosing function of each
//! frame, so the markers must be distinct functions.
//!
//! The handler reads registers, one `const` thread-local (the polled task,
//! kept by the task hooks) and a fixed table of atomics. It never locks,
//! allocates or blocks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::OnceLock;

/// How many spawn sites one profile can tell apart; samples of further sites
/// are counted in [`unmarked`] and carry no site.
pub(crate) const MARKERS: usize = 64;

/// A marker. Each `K` is a distinct function with its own unwind entry.
#[inline(never)]
fn marker<const K: usize>() -> usize {
    std::hint::black_box(K)
}

macro_rules! markers {
    ($($k:literal)*) => { [$(marker::<$k> as fn() -> usize),*] };
}

static MARKER_FNS: [fn() -> usize; MARKERS] = markers!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
);

/// The spawn site + 1 that each marker stands for; 0 while unclaimed.
static SITES: [AtomicU32; MARKERS] = [const { AtomicU32::new(0) }; MARKERS];
/// Samples of a polled task that found no free marker.
static UNMARKED: AtomicU64 = AtomicU64::new(0);
/// pprof-rs's handler while a profile runs; 0 when paused.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Whether samples get marker frames (the markers passed [`markers_usable`]).
static MARK: AtomicBool = AtomicBool::new(false);

/// What [`install`] achieved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Installed {
    /// Samples include the interrupted function.
    pub(crate) leaf: bool,
    /// Samples taken while a task is polled carry its spawn site.
    pub(crate) tasks: bool,
}

/// Puts the handler in front of the SIGPROF handler pprof-rs has just
/// installed. Call only while holding the profiling session (one at a time).
pub(crate) fn install() -> Installed {
    for site in &SITES {
        site.store(0, Relaxed);
    }
    UNMARKED.store(0, Relaxed);
    let tasks = markers_usable() && crate::health::instrumented();
    MARK.store(tasks, Relaxed);
    if !platform::chain() {
        return Installed::default();
    }
    Installed { leaf: true, tasks }
}

/// Stops chaining to pprof-rs: no further samples are recorded. The handler
/// stays installed until pprof-rs ignores the signal when it stops.
pub(crate) fn pause() {
    NEXT.store(0, Release);
}

/// The markers claimed during the profile: (marker address, spawn site).
pub(crate) fn claimed() -> Vec<(usize, u32)> {
    SITES
        .iter()
        .enumerate()
        .filter_map(|(k, site)| match site.load(Acquire) {
            0 => None,
            s => Some((marker_ip(k), s - 1)),
        })
        .collect()
}

/// Samples of a polled task that carry no site: more than [`MARKERS`] sites
/// were busy during the profile.
pub(crate) fn unmarked() -> u64 {
    UNMARKED.load(Relaxed)
}

/// The marker standing for `site`, claiming a free one if needed.
#[cfg_attr(
    not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))),
    allow(dead_code)
)]
fn marker_for(site: u32) -> Option<usize> {
    let want = site.checked_add(1)?;
    for (k, slot) in SITES.iter().enumerate() {
        let claimed = match slot.load(Acquire) {
            0 => match slot.compare_exchange(0, want, AcqRel, Acquire) {
                Ok(_) => want,
                Err(other) => other,
            },
            other => other,
        };
        if claimed == want {
            return Some(marker_ip(k));
        }
    }
    UNMARKED.fetch_add(1, Relaxed);
    None
}

extern "C" {
    /// libgcc's (or libunwind's) lookup of the function enclosing `pc`, which
    /// pprof-rs uses to key samples.
    fn _Unwind_FindEnclosingFunction(pc: *mut libc::c_void) -> *mut libc::c_void;
}

/// The return address a marker frame carries: one byte into marker `k`, as
/// if it had called out of its first instruction. (Unwinders look up the
/// byte before a return address.)
fn marker_ip(k: usize) -> usize {
    MARKER_FNS[k] as usize + 1
}

/// The markers are distinct and each is its own function to the unwinder;
/// otherwise pprof-rs would merge the samples of different sites.
fn markers_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let mut seen = std::collections::HashSet::new();
        (0..MARKERS).all(|k| {
            let start = MARKER_FNS[k] as usize;
            // SAFETY: a lookup in the unwinder's tables; nothing is
            // dereferenced, and an address outside any function gives null.
            let found = unsafe { _Unwind_FindEnclosingFunction(marker_ip(k) as *mut libc::c_void) } as usize;
            found == start && seen.insert(start)
        })
    })
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod platform {
    use super::*;
    use libc::{c_int, c_void, siginfo_t, ucontext_t};

    type Action = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

    /// A frame record as frame-pointer walks read it: the caller's record,
    /// then the return address.
    #[repr(C)]
    struct FrameRecord {
        next: usize,
        ret: usize,
    }

    /// The context up to the end of the registers; past it, the kernel's
    /// layout and libc's `ucontext_t` differ.
    const CONTEXT_PREFIX: usize =
        std::mem::offset_of!(ucontext_t, uc_mcontext) + std::mem::size_of::<libc::mcontext_t>();

    /// Reads the current SIGPROF action (pprof-rs's) and installs
    /// [`on_sigprof`] in front of it.
    pub(super) fn chain() -> bool {
        // SAFETY: sigaction with a null new action only reads the current
        // one into `old`, a zeroed plain C struct.
        let (ok, old) = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old) == 0, old)
        };
        let is_function = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
        if !ok || !is_function || old.sa_flags & libc::SA_SIGINFO == 0 {
            return false;
        }
        NEXT.store(old.sa_sigaction, Release);
        // SAFETY: installs a handler of the SA_SIGINFO signature with an empty
        // mask; `new` is fully initialized.
        let installed = unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigprof as Action as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGPROF, &new, std::ptr::null_mut()) == 0
        };
        if !installed {
            NEXT.store(0, Release);
        }
        installed
    }

    #[cfg(target_arch = "x86_64")]
    fn registers(c: &ucontext_t) -> (usize, usize) {
        let g = &c.uc_mcontext.gregs;
        (g[libc::REG_RIP as usize] as usize, g[libc::REG_RBP as usize] as usize)
    }

    #[cfg(target_arch = "x86_64")]
    fn set_frame_pointer(c: &mut ucontext_t, fp: usize) {
        c.uc_mcontext.gregs[libc::REG_RBP as usize] = fp as i64;
    }

    #[cfg(target_arch = "aarch64")]
    fn registers(c: &ucontext_t) -> (usize, usize) {
        (c.uc_mcontext.pc as usize, c.uc_mcontext.regs[29] as usize)
    }

    #[cfg(target_arch = "aarch64")]
    fn set_frame_pointer(c: &mut ucontext_t, fp: usize) {
        c.uc_mcontext.regs[29] = fp as u64;
    }

    extern "C" fn on_sigprof(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
        let next = NEXT.load(Acquire);
        if next == 0 || context.is_null() {
            return;
        }
        // SAFETY: NEXT only holds a handler read from sigaction with
        // SA_SIGINFO set, whose signature is `Action`.
        let next = unsafe { std::mem::transmute::<usize, Action>(next) };
        // SAFETY: a zeroed ucontext_t is a valid value of this C struct; the
        // kernel's context has at least CONTEXT_PREFIX readable bytes (its
        // header and registers), which are copied over it.
        let mut copy: ucontext_t = unsafe {
            let mut copy: ucontext_t = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                context as *const u8,
                (&mut copy as *mut ucontext_t).cast::<u8>(),
                CONTEXT_PREFIX,
            );
            copy
        };
        let (pc, fp) = registers(&copy);
        let marker = if MARK.load(Relaxed) {
            crate::tasks::polling().and_then(|(_, site)| marker_for(site))
        } else {
            None
        };
        // The walk requires each record to sit below its caller's: these sit
        // in this handler's frame, below the interrupted code's.
        let mut records =
            [FrameRecord { next: 0, ret: marker.unwrap_or(0) }, FrameRecord { next: fp, ret: pc }];
        records[0].next = &records[1] as *const FrameRecord as usize;
        let first = if marker.is_some() { &records[0] } else { &records[1] };
        set_frame_pointer(&mut copy, first as *const FrameRecord as usize);
        next(signal, info, (&mut copy as *mut ucontext_t).cast::<c_void>());
        std::hint::black_box(&records);
    }
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod platform {
    /// Elsewhere pprof-rs's handler runs alone: no leaf frames, no sites.
    pub(super) fn chain() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_distinct_functions() {
        assert!(markers_usable(), "markers share code or unwind entries");
    }

    #[test]
    fn each_site_keeps_its_marker_until_they_run_out() {
        let a = marker_for(5).unwrap();
        assert_eq!(marker_for(5), Some(a));
        let b = marker_for(7).unwrap();
        assert_ne!(a, b);
        let before = unmarked();
        for site in 100..100 + MARKERS as u32 {
            marker_for(site);
        }
        assert!(unmarked() > before, "no marker should be left for the last sites");
        assert_eq!(marker_for(5), Some(a));
        let claimed = claimed();
        assert_eq!(claimed.len(), MARKERS);
        assert!(claimed.contains(&(a, 5)) && claimed.contains(&(b, 7)));
    }
}
