//! The stack of a sample: return addresses read by walking frame pointers
//! into a fixed array, inside the allocator, so without allocating, locking
//! or reading `/proc`.
//!
//! The workspace builds with `-C force-frame-pointers=yes`, and so is std.
//! Code without frame pointers (C libraries) may leave any value in the frame
//! pointer register, so every frame record read must lie inside this
//! thread's stack, at increasing addresses: the walk then ends early instead
//! of faulting. The stack's bounds are read once per thread with
//! `pthread_getattr_np`, which for threads other than the initial one reads
//! the thread's descriptor. For the initial thread it parses
//! `/proc/self/maps`, so a constructor records those bounds before `main`.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Frames kept per sample, leaf first.
pub(crate) const MAX_DEPTH: usize = 64;

/// The initial thread's stack, recorded before `main`; `(0, 0)` if unknown.
static MAIN_LOW: AtomicUsize = AtomicUsize::new(0);
static MAIN_HIGH: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stack as `(low, high)`; `(0, 0)` until first needed.
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Records the initial thread's stack bounds. Called by the constructor
/// that runs before `main`, on the initial thread, outside the allocator.
pub(crate) fn record_main_thread() {
    if let Some((low, high)) = pthread_bounds() {
        MAIN_LOW.store(low, Relaxed);
        MAIN_HIGH.store(high, Relaxed);
    }
}

#[cfg(target_os = "linux")]
fn pthread_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialized by `pthread_getattr_np` before it is
    // read and destroyed once; the out-pointers point to live locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (ok && !addr.is_null()).then(|| (addr as usize, addr as usize + size))
    }
}

#[cfg(not(target_os = "linux"))]
fn pthread_bounds() -> Option<(usize, usize)> {
    None
}

/// Whether this is the process's initial thread, whose bounds
/// `pthread_getattr_np` would read from `/proc`.
#[cfg(target_os = "linux")]
fn initial_thread() -> bool {
    // SAFETY: plain system calls without arguments that touch memory.
    unsafe { libc::syscall(libc::SYS_gettid) == libc::getpid() as libc::c_long }
}

#[cfg(not(target_os = "linux"))]
fn initial_thread() -> bool {
    true
}

/// The bounds of the stack that `sp` is on, if they can be known here.
fn bounds(sp: usize) -> Option<(usize, usize)> {
    let cached = BOUNDS.try_with(Cell::get).unwrap_or((0, 0));
    if cached.0 <= sp && sp < cached.1 {
        return Some(cached);
    }
    let main = (MAIN_LOW.load(Relaxed), MAIN_HIGH.load(Relaxed));
    let found = if main.0 <= sp && sp < main.1 {
        main
    } else if initial_thread() {
        // Before the constructor ran, or on an alternate signal stack:
        // finding out would read /proc. No stack this time.
        return None;
    } else {
        pthread_bounds()?
    };
    if !(found.0 <= sp && sp < found.1) {
        // An alternate signal stack, or a stack the pthread library does
        // not know: do not walk it.
        return None;
    }
    let _ = BOUNDS.try_with(|b| b.set(found));
    Some(found)
}

#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; touches no memory.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; touches no memory.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Fills `out` with the return addresses of the current stack, innermost
/// first (starting with this function's caller), and returns how many.
/// Returns 0 where the stack cannot be walked safely.
#[inline(never)]
pub(crate) fn capture(out: &mut [usize; MAX_DEPTH]) -> usize {
    if !cfg!(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))) {
        return 0;
    }
    let fp = frame_pointer();
    match bounds(fp) {
        // SAFETY: `low..high` is this thread's stack, mapped and readable.
        Some((low, high)) => unsafe { walk(fp, low, high, out) },
        None => 0,
    }
}

/// Follows the chain of frame records (`[saved frame pointer, return
/// address]`) from `fp`, keeping every record inside `low..high`, strictly
/// increasing, and aligned.
///
/// # Safety
///
/// All of `low..high` must be readable.
unsafe fn walk(mut fp: usize, low: usize, high: usize, out: &mut [usize; MAX_DEPTH]) -> usize {
    const WORD: usize = std::mem::size_of::<usize>();
    let mut n = 0;
    while n < MAX_DEPTH {
        if fp < low || fp % WORD != 0 || fp > high.saturating_sub(2 * WORD) {
            break;
        }
        // SAFETY: `fp..fp + 2 words` is inside `low..high`, which the caller
        // guarantees readable. Volatile: the words may be anything.
        let (next, ret) = unsafe {
            (
                std::ptr::read_volatile(fp as *const usize),
                std::ptr::read_volatile((fp + WORD) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake stack: frame records at chosen word offsets.
    fn fake(records: &[(usize, usize, usize)]) -> (Vec<usize>, usize) {
        let mut mem = vec![0usize; 64];
        let base = mem.as_ptr() as usize;
        for &(at, next, ret) in records {
            mem[at] = if next == usize::MAX { 0 } else { base + next * 8 };
            mem[at + 1] = ret;
        }
        (mem, base)
    }

    #[test]
    fn the_walk_follows_the_chain_until_it_ends() {
        let (mem, base) = fake(&[(2, 10, 0xA), (10, 20, 0xB), (20, usize::MAX, 0xC)]);
        let mut out = [0; MAX_DEPTH];
        // SAFETY: the bounds are those of `mem`.
        let n = unsafe { walk(base + 16, base, base + mem.len() * 8, &mut out) };
        assert_eq!(&out[..n], &[0xA, 0xB, 0xC]);
    }

    #[test]
    fn the_walk_stops_at_pointers_that_leave_the_stack_or_go_down() {
        // Points below itself.
        let (mem, base) = fake(&[(10, 4, 0xA), (4, 30, 0xB)]);
        let mut out = [0; MAX_DEPTH];
        let high = base + mem.len() * 8;
        // SAFETY: the bounds are those of `mem`.
        let n = unsafe { walk(base + 80, base, high, &mut out) };
        assert_eq!(&out[..n], &[0xA]);
        // Points past the top, or misaligned: never dereferenced.
        let (mem, base) = fake(&[(2, 63, 0xA)]);
        // SAFETY: as above.
        let n = unsafe { walk(base + 16, base, base + mem.len() * 8, &mut out) };
        assert_eq!(&out[..n], &[0xA]);
        // SAFETY: as above; the start itself is misaligned.
        let n = unsafe { walk(base + 17, base, base + mem.len() * 8, &mut out) };
        assert_eq!(n, 0);
    }

    #[test]
    fn the_walk_is_bounded_in_depth() {
        let mut mem = vec![0usize; 2 * MAX_DEPTH + 8];
        let base = mem.as_ptr() as usize;
        for i in 0..MAX_DEPTH + 3 {
            mem[2 * i] = base + 16 * (i + 1);
            mem[2 * i + 1] = 0x1000 + i;
        }
        let mut out = [0; MAX_DEPTH];
        // SAFETY: the bounds are those of `mem`.
        let n = unsafe { walk(base, base, base + mem.len() * 8, &mut out) };
        assert_eq!(n, MAX_DEPTH);
    }

    #[inline(never)]
    fn nested(depth: usize, out: &mut [usize; MAX_DEPTH]) -> usize {
        if depth == 0 {
            capture(out)
        } else {
            let n = nested(depth - 1, out);
            std::hint::black_box(n)
        }
    }

    #[test]
    fn a_real_stack_is_captured_on_spawned_threads() {
        let n = std::thread::spawn(|| {
            let mut out = [0; MAX_DEPTH];
            nested(5, &mut out)
        })
        .join()
        .unwrap();
        if cfg!(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))) {
            assert!(n >= 6, "{n} frames");
        }
    }
}
