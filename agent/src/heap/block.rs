//! Sampled blocks: how they are laid out, so that a free recognizes them
//! without a lookup.
//!
//! A free must tell a sampled block from the rest to keep the in-use figures
//! right, and it must do so on every free, in a few instructions. Go and
//! jemalloc keep a flag in the allocation's metadata; a wrapper around any
//! `GlobalAlloc` has no metadata of its own. The choices were:
//!
//! - a shared set of sampled addresses, checked on every free: a hash and a
//!   load from a table that is mostly cold in cache, several ns per free;
//! - a dedicated address range for sampled blocks: a free is two compares,
//!   but sampled blocks would need an allocator of their own, and moving
//!   them out on `realloc` copies large buffers (a growing `Vec` is sampled
//!   almost surely once it passes the mean interval);
//! - a header in front of sampled blocks (chosen). The block handed to the
//!   application is preceded by 16 bytes: a 32-bit magic number (the low
//!   half of the address, xor a key) and the index of its live-table entry.
//!   A free reads the magic slot 16 bytes before the block and compares;
//!   only on a match (a sampled block, or a 1 in 2^32 coincidence) does it
//!   look the entry up, and the entry's address must equal the block's for
//!   the block to count as sampled, so a coincidence costs a lookup, never a
//!   wrong free.
//!
//! The read is safe for every block: it is skipped unless the block starts
//! at least 16 bytes into its 4 KiB page, so the word read lies in the same
//! page as the block's first byte, which is mapped. With glibc's malloc
//! it shares a cache line with the chunk header that `free` reads next
//! anyway, so the load costs next to nothing: the check is five
//! instructions. Sampled blocks are placed so that they always
//! start 16 or more bytes into a page.
//!
//! A sampled block of `size` bytes aligned to `align` is an inner block of
//! `size + 2 * pad` bytes, `pad = max(16, align)`: the application's block
//! starts `pad` bytes in, or `2 * pad` when that would fall in a page's first
//! 16 bytes. Growing it with `realloc` keeps that shape, so the inner
//! allocator can still grow it in place. Alignments above 2048 are not
//! sampled (they always start a page); they are counted.

use std::alloc::Layout;

/// Mixed into the magic number, so that an address alone does not match.
const KEY: u32 = 0xd15c_a11e;
/// Bytes of header before a sampled block.
const HEADER: usize = 16;
const PAGE: usize = 4096;
/// The largest alignment a sampled block can have.
pub(crate) const MAX_ALIGN: usize = 2048;

fn pad(align: usize) -> usize {
    align.max(HEADER)
}

/// The layout to ask the inner allocator for to hold a sampled block of
/// `layout`; `None` if such a block cannot be sampled.
pub(crate) fn inner_layout(layout: Layout) -> Option<Layout> {
    if layout.align() > MAX_ALIGN {
        return None;
    }
    let size = layout.size().checked_add(2 * pad(layout.align()))?;
    Layout::from_size_align(size, layout.align().max(std::mem::align_of::<usize>())).ok()
}

/// Where the application's block goes in an inner block at `base`: its
/// address, and whether it took the second position.
pub(crate) fn place(base: usize, align: usize) -> (usize, bool) {
    let first = base + pad(align);
    if first % PAGE >= HEADER {
        (first, false)
    } else {
        (first + pad(align), true)
    }
}

/// The inner block's address, from the application's block and its header.
pub(crate) fn base(addr: usize, align: usize, shifted: bool) -> usize {
    addr - pad(align) * if shifted { 2 } else { 1 }
}

/// Writes the header in front of the block at `addr`.
///
/// # Safety
///
/// `addr` must come from [`place`] for a live inner block of
/// [`inner_layout`]: the 16 bytes before it are then inside that block.
pub(crate) unsafe fn write_header(addr: usize, index: u32, shifted: bool) {
    let at = addr - HEADER;
    // SAFETY: `at..addr` lies inside the inner block (the caller's
    // contract) and is word-aligned (`addr` is aligned to at least 8 and
    // HEADER is 16).
    unsafe {
        (at as *mut u32).write(magic(addr));
        ((at + 4) as *mut u32).write(0);
        ((at + 8) as *mut u32).write(index);
        ((at + 12) as *mut u32).write(shifted as u32);
    }
}

#[inline(always)]
fn magic(addr: usize) -> u32 {
    addr as u32 ^ KEY
}

/// Whether `addr` may be a sampled block: reads the magic slot in front of
/// it. A true answer must be confirmed against the live table.
#[inline(always)]
pub(crate) fn maybe_sampled(addr: usize) -> bool {
    if addr % PAGE < HEADER {
        return false;
    }
    // SAFETY: `addr - HEADER` is in the same 4 KiB page as `addr`, the first
    // byte of a live allocation, so it is mapped and readable.
    unsafe { read_magic(addr) == magic(addr) }
}

/// The header of a block for which [`maybe_sampled`] held: its live-table
/// index and whether it took the second position.
///
/// # Safety
///
/// [`maybe_sampled(addr)`](maybe_sampled) must have returned true.
pub(crate) unsafe fn header(addr: usize) -> (u32, bool) {
    // SAFETY: the 16 bytes before `addr` are in its page (see
    // `maybe_sampled`), so mapped.
    let word = unsafe { read_word(addr - 8) };
    let bytes = word.to_ne_bytes();
    let index = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let shifted = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) == 1;
    (index, shifted)
}

/// Reads the 32 bits 16 bytes before `addr`, like [`read_word`].
///
/// # Safety
///
/// `addr - 16..addr - 12` must be mapped and readable, and `addr` aligned
/// to 4.
#[inline(always)]
unsafe fn read_magic(addr: usize) -> u32 {
    let value: u32;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a single aligned load from readable memory (the caller's
    // contract); no stack use, flags preserved.
    unsafe {
        std::arch::asm!("mov {v:e}, dword ptr [{a} - 16]", a = in(reg) addr, v = lateout(reg) value,
            options(nostack, preserves_flags, readonly, pure));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("ldur {v:w}, [{a}, #-16]", a = in(reg) addr, v = lateout(reg) value,
            options(nostack, preserves_flags, readonly, pure));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract.
    unsafe {
        value = std::ptr::read_volatile((addr - HEADER) as *const u32);
    }
    value
}

/// Reads a word of memory that may belong to another allocation, which
/// another thread may be writing: with an instruction the compiler does not
/// see through, so that it is neither a data race nor a read of
/// uninitialized memory in Rust's model, just a load.
///
/// # Safety
///
/// `addr` must be mapped, readable and word-aligned.
#[inline(always)]
unsafe fn read_word(addr: usize) -> usize {
    let value: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a single aligned load from readable memory (the caller's
    // contract); no stack use, flags preserved.
    unsafe {
        std::arch::asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = lateout(reg) value,
            options(nostack, preserves_flags, readonly, pure));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = lateout(reg) value,
            options(nostack, preserves_flags, readonly, pure));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the caller's contract.
    unsafe {
        value = std::ptr::read_volatile(addr as *const usize);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_blocks_are_aligned_inside_and_never_in_a_pages_first_16_bytes() {
        for align in [1, 8, 16, 64, 256, 2048] {
            let layout = Layout::from_size_align(100, align).unwrap();
            let inner = inner_layout(layout).unwrap();
            for base in (0..3 * PAGE).step_by(inner.align()).map(|b| b + 0x10_0000) {
                let (addr, shifted) = place(base, align);
                assert_eq!(addr % align, 0);
                assert!(addr % PAGE >= HEADER, "align {align}, base {base:#x}");
                assert!(addr - HEADER >= base && addr + 100 <= base + inner.size());
                assert_eq!(super::base(addr, align, shifted), base);
            }
        }
        assert!(inner_layout(Layout::from_size_align(8, 4096).unwrap()).is_none());
        assert!(inner_layout(Layout::from_size_align(isize::MAX as usize - 16, 8).unwrap()).is_none());
    }

    #[test]
    fn headers_are_recognized_and_ordinary_blocks_are_not() {
        let mut page = vec![0u64; 1024];
        // 512 bytes into a 4 KiB page (the first half of the 8 KiB buffer
        // has such a word), so that none of the blocks below starts in a
        // page's first 16 bytes, where the check never reads.
        let start = page.as_mut_ptr() as usize;
        let base = start + (512 + PAGE - start % PAGE) % PAGE;
        let (addr, shifted) = place(base, 8);
        // SAFETY: `page` is a live block far larger than the inner layout.
        unsafe { write_header(addr, 4242, shifted) };
        assert!(maybe_sampled(addr));
        // SAFETY: it matched.
        assert_eq!(unsafe { header(addr) }, (4242, shifted));
        // The neighbours do not match.
        assert!(!maybe_sampled(addr + 16));
        assert!(!maybe_sampled(addr + 32));
        // A word that happens to hold the address alone does not match.
        let i = (addr + 64 - start) / 8;
        page[i - 2] = (addr + 64) as u64;
        assert!(!maybe_sampled(addr + 64));
        // The magic alone matches, for the live table to confirm or not.
        page[i - 2] = magic(addr + 64) as u64;
        assert!(maybe_sampled(addr + 64));
    }
}
