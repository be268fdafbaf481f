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
//! - a magic header in front of every sampled block, read by every free:
//!   no lookup, but a load from memory in front of each block freed, which
//!   measured 0.5 to 2 ns per free (until commit `e7865fc`);
//! - a sampled block always starts at the same offset in its 4 KiB page,
//!   [`TAG`], and carries a header (chosen). A free first tests the
//!   address alone (an `and` and a compare, no load); only blocks at that
//!   offset (about 1 in 256 ordinary blocks of 16-byte alignment) read the
//!   header: a 32-bit magic number (the low half of the address, xor a
//!   key), the block's offset in its inner block and the index of its
//!   live-table entry. On a magic match the entry's address must equal the
//!   block's for the block to count as sampled, so a coincidence costs a
//!   lookup, never a wrong free.
//!
//! The header read is safe for every block at [`TAG`]: the 16 bytes before
//! it lie in the same page as the block's first byte, which is mapped.
//!
//! A sampled block of `size` bytes is an inner block of `size + 4096 + 16`
//! bytes, with the application's block at the first address at least 16
//! bytes in that is [`TAG`] into its page; that address is aligned to 2048,
//! so to any alignment up to that. Alignments above 2048 are not sampled
//! (they are counted). The extra 4 KiB per live sampled block is about 0.8%
//! of the sampled memory at the default mean of 512 KiB. Growing a sampled
//! block with `realloc` keeps that shape, so the inner allocator can still
//! grow it in place.

use std::alloc::Layout;

/// Mixed into the magic number, so that an address alone does not match.
const KEY: u32 = 0xd15c_a11e;
/// Bytes of header before a sampled block.
const HEADER: usize = 16;
const PAGE: usize = 4096;
/// Where in its page every sampled block starts.
pub(crate) const TAG: usize = 2048;
/// The largest alignment a sampled block can have.
pub(crate) const MAX_ALIGN: usize = 2048;

/// The layout to ask the inner allocator for to hold a sampled block of
/// `layout`; `None` if such a block cannot be sampled.
pub(crate) fn inner_layout(layout: Layout) -> Option<Layout> {
    if layout.align() > MAX_ALIGN {
        return None;
    }
    let size = layout.size().checked_add(PAGE + HEADER)?;
    Layout::from_size_align(size, HEADER).ok()
}

/// Where the application's block goes in an inner block at `base`: its
/// address, and its offset from `base`.
pub(crate) fn place(base: usize) -> (usize, u32) {
    let first = base + HEADER;
    let addr = first + (TAG + PAGE - first % PAGE) % PAGE;
    (addr, (addr - base) as u32)
}

/// The inner block's address, from the application's block and its header.
pub(crate) fn base(addr: usize, offset: u32) -> usize {
    addr - offset as usize
}

/// Writes the header in front of the block at `addr`.
///
/// # Safety
///
/// `addr` must come from [`place`] for a live inner block of
/// [`inner_layout`]: the 16 bytes before it are then inside that block.
pub(crate) unsafe fn write_header(addr: usize, index: u32, offset: u32) {
    let at = addr - HEADER;
    // SAFETY: `at..addr` lies inside the inner block (the caller's
    // contract) and is word-aligned (`addr` is aligned to 2048 and HEADER
    // is 16).
    unsafe {
        (at as *mut u32).write(magic(addr));
        ((at + 4) as *mut u32).write(offset);
        ((at + 8) as *mut u32).write(index);
        ((at + 12) as *mut u32).write(0);
    }
}

#[inline(always)]
fn magic(addr: usize) -> u32 {
    addr as u32 ^ KEY
}

/// Whether `addr` may be a sampled block: it starts [`TAG`] into its page.
/// The address alone: no load. A true answer must be confirmed with
/// [`header`].
#[inline(always)]
pub(crate) fn maybe_sampled(addr: usize) -> bool {
    addr % PAGE == TAG
}

/// The header of a block at [`TAG`], if its magic number matches: its
/// live-table index and its offset in its inner block. A match must still
/// be confirmed against the live table.
///
/// # Safety
///
/// [`maybe_sampled(addr)`](maybe_sampled) must have returned true, and
/// `addr` must be a live block.
pub(crate) unsafe fn header(addr: usize) -> Option<(u32, u32)> {
    // SAFETY: the 16 bytes before `addr` are in its page, which is mapped
    // (`addr` is a live block 2048 bytes into it).
    if unsafe { read_magic(addr) } != magic(addr) {
        return None;
    }
    // SAFETY: as above.
    let word = unsafe { read_word(addr - 8) };
    let bytes = word.to_ne_bytes();
    let index = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    // SAFETY: as above.
    let bytes = unsafe { read_word(addr - HEADER) }.to_ne_bytes();
    let offset = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Some((index, offset))
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
    fn placed_blocks_are_aligned_inside_and_at_the_tag() {
        for align in [1, 8, 16, 64, 256, 2048] {
            let layout = Layout::from_size_align(100, align).unwrap();
            let inner = inner_layout(layout).unwrap();
            for base in (0..3 * PAGE).step_by(inner.align()).map(|b| b + 0x10_0000) {
                let (addr, offset) = place(base);
                assert_eq!(addr % align, 0);
                assert!(maybe_sampled(addr), "align {align}, base {base:#x}");
                assert!(addr - HEADER >= base && addr + 100 <= base + inner.size());
                assert_eq!(super::base(addr, offset), base);
            }
        }
        assert!(inner_layout(Layout::from_size_align(8, 4096).unwrap()).is_none());
        assert!(inner_layout(Layout::from_size_align(isize::MAX as usize - 16, 8).unwrap()).is_none());
    }

    #[test]
    fn only_blocks_at_the_tag_are_candidates() {
        let tagged = (0..1 << 20).step_by(16).filter(|&a| maybe_sampled(0x7f00_0000_0000 + a)).count();
        assert_eq!(tagged, (1 << 20) / PAGE);
        assert!(!maybe_sampled(0x10_0000 + 16));
        assert!(!maybe_sampled(0x10_0000 + TAG + 16));
    }

    #[test]
    fn headers_are_recognized_and_ordinary_blocks_are_not() {
        let mut page = vec![0u64; 2048];
        let start = page.as_mut_ptr() as usize;
        let (addr, offset) = place(start);
        assert!(offset as usize + 64 <= 2048 * 8);
        // SAFETY: `page` is a live block far larger than the inner layout.
        unsafe { write_header(addr, 4242, offset) };
        // SAFETY: `addr` is at the tag, inside `page`.
        assert_eq!(unsafe { header(addr) }, Some((4242, offset)));
        // A word that happens to hold the address alone does not match.
        let i = (addr - start) / 8;
        page[i - 2] = addr as u64;
        // SAFETY: as above.
        assert_eq!(unsafe { header(addr) }, None);
        // The magic alone matches, for the live table to confirm or not.
        page[i - 2] = magic(addr) as u64;
        // SAFETY: as above.
        assert!(unsafe { header(addr) }.is_some());
    }
}
