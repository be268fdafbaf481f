//! Frame-pointer stack walks, bounded to the current thread's stack.
//!
//! The workspace builds with `-C force-frame-pointers=yes`. A frame without a
//! frame pointer (precompiled std, C code) ends the walk early rather than
//! crashing it: every frame pointer must lie above the previous one and
//! inside this thread's stack, whose bounds are read once per thread.

use std::cell::Cell;

/// Frames kept per stack, leaf first.
pub(crate) const MAX_FRAMES: usize = 48;

thread_local! {
    /// `(low, high)` of this thread's stack; `(0, 0)` until first read.
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

#[cfg(target_os = "linux")]
fn read_bounds() -> (usize, usize) {
    // SAFETY: `attr` is initialized by `pthread_getattr_np` before it is
    // read, and destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if ok {
            (addr as usize, addr as usize + size)
        } else {
            (0, 0)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_bounds() -> (usize, usize) {
    (0, 0)
}

#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, touches no memory.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register, touches no memory.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Writes the return addresses of the current call stack into `out`, leaf
/// first, and returns how many. Never allocates; returns 0 where frame
/// pointers cannot be walked.
#[inline(never)]
pub(crate) fn capture(out: &mut [usize; MAX_FRAMES]) -> usize {
    let (low, high) = BOUNDS
        .try_with(|b| {
            if b.get().1 == 0 {
                b.set(read_bounds());
            }
            b.get()
        })
        .unwrap_or((0, 0));
    if high == 0 {
        return 0;
    }
    let here = &out as *const _ as usize;
    let low = low.max(here);
    let mut fp = frame_pointer();
    let mut n = 0;
    while n < MAX_FRAMES {
        if fp < low || fp % std::mem::align_of::<usize>() != 0 || fp + 16 > high {
            break;
        }
        // SAFETY: `fp` and `fp + 8` lie inside this thread's stack (checked
        // above), which is mapped and readable; the values read are plain
        // integers, validated before use as addresses.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
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

    #[inline(never)]
    fn outer(out: &mut [usize; MAX_FRAMES]) -> usize {
        std::hint::black_box(inner(out))
    }

    #[inline(never)]
    fn inner(out: &mut [usize; MAX_FRAMES]) -> usize {
        std::hint::black_box(capture(out))
    }

    #[test]
    fn a_walk_finds_its_callers() {
        let mut frames = [0; MAX_FRAMES];
        let n = outer(&mut frames);
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(n >= 3, "only {n} frames");
            let names: Vec<String> =
                frames[..n].iter().flat_map(|&a| crate::stacks::symbolize(a)).map(|f| f.function).collect();
            let joined = names.join("\n");
            assert!(joined.contains("inner"), "{joined}");
            assert!(joined.contains("outer"), "{joined}");
        }
    }

    #[test]
    fn walks_on_many_threads_never_crash() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut frames = [0; MAX_FRAMES];
                    (0..10_000).map(|_| outer(&mut frames)).max().unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
