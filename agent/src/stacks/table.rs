//! A fixed table of distinct stacks, shared by every thread without locks.
//!
//! A stack is identified by a 64-bit hash of its frames; the first thread to
//! claim a free entry writes the frames, then marks it ready. When the table
//! is full, new stacks are dropped and counted.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

use super::MAX_FRAMES;
use crate::tasks::zeroed;

#[derive(Debug)]
struct Entry {
    /// `hash | 1`; 0 while free.
    key: AtomicU64,
    ready: AtomicBool,
    len: AtomicU32,
    frames: [AtomicUsize; MAX_FRAMES],
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            key: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            len: AtomicU32::new(0),
            frames: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct StackTable {
    entries: Box<[Entry]>,
    /// Stacks not kept because the table was full.
    pub(crate) dropped: AtomicU64,
}

fn hash(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

impl StackTable {
    pub(crate) fn new(capacity: usize) -> Self {
        StackTable { entries: zeroed(capacity.next_power_of_two().max(16)), dropped: AtomicU64::new(0) }
    }

    /// The id of `frames`, adding them on first sight; `None` if full.
    pub(crate) fn intern(&self, frames: &[usize]) -> Option<u32> {
        let frames = &frames[..frames.len().min(MAX_FRAMES)];
        let key = hash(frames);
        let mask = self.entries.len() - 1;
        let mut i = (key >> 7) as usize & mask;
        for _ in 0..64 {
            let e = &self.entries[i];
            match e.key.load(Acquire) {
                k if k == key => return Some(i as u32),
                0 => {
                    if e.key.compare_exchange(0, key, AcqRel, Acquire).is_ok() {
                        for (slot, &f) in e.frames.iter().zip(frames) {
                            slot.store(f, Relaxed);
                        }
                        e.len.store(frames.len() as u32, Relaxed);
                        e.ready.store(true, Release);
                        return Some(i as u32);
                    }
                    if e.key.load(Acquire) == key {
                        return Some(i as u32);
                    }
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
        self.dropped.fetch_add(1, Relaxed);
        None
    }

    /// The frames of stack `id`, once written.
    pub(crate) fn get(&self, id: u32) -> Option<Vec<usize>> {
        let e = self.entries.get(id as usize)?;
        if !e.ready.load(Acquire) {
            return None;
        }
        let len = e.len.load(Relaxed) as usize;
        Some(e.frames[..len].iter().map(|f| f.load(Relaxed)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_stacks_share_an_id_and_distinct_ones_do_not() {
        let t = StackTable::new(16);
        let a = t.intern(&[1, 2, 3]).unwrap();
        assert_eq!(t.intern(&[1, 2, 3]), Some(a));
        let b = t.intern(&[1, 2, 4]).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.get(a), Some(vec![1, 2, 3]));
        assert_eq!(t.get(b), Some(vec![1, 2, 4]));
    }

    #[test]
    fn a_full_table_drops_and_counts() {
        let t = StackTable::new(16);
        let kept = (0..100usize).filter(|&i| t.intern(&[i, i + 1]).is_some()).count();
        assert_eq!(kept, 16);
        assert_eq!(t.dropped.load(Relaxed), 84);
    }
}
