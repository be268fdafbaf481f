//! Live samples: the sampled blocks not freed yet, each with the weight it
//! was sampled with, its stack-table entry and the task that allocated it.
//!
//! A fixed array and a bitmap of the entries in use. A sampled block carries
//! its entry's index in its header, so freeing it finds the entry without a
//! search; the entry's address confirms that the header is genuine. Readers
//! never block writers: a per-entry sequence number tells them to skip an
//! entry that changed while they read it.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// One live sampled block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LiveBlock {
    /// The address handed to the application.
    pub(crate) addr: usize,
    /// Bytes the application asked for.
    pub(crate) size: u64,
    /// Its entry in the stack table.
    pub(crate) stack: u32,
    /// The spawn site + 1 of the task polled when it was allocated; 0 if none.
    pub(crate) site: u32,
    /// The id of that task; 0 if none.
    pub(crate) task: u64,
    /// How many allocations this sample stands for.
    pub(crate) weight: f64,
}

#[derive(Debug)]
struct Entry {
    /// 0 while free.
    addr: AtomicUsize,
    /// Odd while being written.
    seq: AtomicU32,
    stack: AtomicU32,
    site: AtomicU32,
    size: AtomicU64,
    task: AtomicU64,
    weight: AtomicU64,
}

impl Entry {
    const fn new() -> Self {
        Entry {
            addr: AtomicUsize::new(0),
            seq: AtomicU32::new(0),
            stack: AtomicU32::new(0),
            site: AtomicU32::new(0),
            size: AtomicU64::new(0),
            task: AtomicU64::new(0),
            weight: AtomicU64::new(0),
        }
    }

    fn write(&self, b: &LiveBlock) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.stack.store(b.stack, Relaxed);
        self.site.store(b.site, Relaxed);
        self.size.store(b.size, Relaxed);
        self.task.store(b.task, Relaxed);
        self.weight.store(b.weight.to_bits(), Relaxed);
        self.addr.store(b.addr, Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    fn load(&self, addr: usize) -> LiveBlock {
        LiveBlock {
            addr,
            size: self.size.load(Relaxed),
            stack: self.stack.load(Relaxed),
            site: self.site.load(Relaxed),
            task: self.task.load(Relaxed),
            weight: f64::from_bits(self.weight.load(Relaxed)),
        }
    }
}

/// `N = 64 * W` entries.
#[derive(Debug)]
pub(crate) struct LiveTable<const N: usize, const W: usize> {
    entries: [Entry; N],
    used: [AtomicU64; W],
    /// A word of `used` that recently had room.
    hint: AtomicUsize,
    /// Samples not taken because every entry was in use.
    pub(crate) full: AtomicU64,
}

impl<const N: usize, const W: usize> LiveTable<N, W> {
    pub(crate) const fn new() -> Self {
        assert!(N == 64 * W && W > 0 && N <= u32::MAX as usize);
        LiveTable {
            entries: [const { Entry::new() }; N],
            used: [const { AtomicU64::new(0) }; W],
            hint: AtomicUsize::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// Takes a free entry; `None` (counted) when all are in use.
    pub(crate) fn reserve(&self) -> Option<u32> {
        let start = self.hint.load(Relaxed) % W;
        for k in 0..W {
            let w = (start + k) % W;
            let word = &self.used[w];
            let mut bits = word.load(Relaxed);
            while bits != u64::MAX {
                let bit = (!bits).trailing_zeros();
                match word.compare_exchange_weak(bits, bits | 1 << bit, Acquire, Relaxed) {
                    Ok(_) => {
                        if k != 0 {
                            self.hint.store(w, Relaxed);
                        }
                        return Some((w * 64) as u32 + bit);
                    }
                    Err(seen) => bits = seen,
                }
            }
        }
        self.full.fetch_add(1, Relaxed);
        None
    }

    /// Gives back an entry taken by [`reserve`](Self::reserve) and not
    /// published.
    pub(crate) fn unreserve(&self, index: u32) {
        let i = index as usize;
        self.used[i / 64].fetch_and(!(1 << (i % 64)), Release);
    }

    /// Fills a reserved entry. `block.addr` must not be 0.
    pub(crate) fn publish(&self, index: u32, block: &LiveBlock) {
        self.entries[index as usize % N].write(block);
    }

    /// The block at `index` if its address is `addr`: the confirmation that
    /// a header read from memory belongs to a live sample.
    pub(crate) fn get(&self, index: u32, addr: usize) -> Option<LiveBlock> {
        let e = self.entries.get(index as usize)?;
        (addr != 0 && e.addr.load(Acquire) == addr).then(|| e.load(addr))
    }

    /// Frees entry `index`, returning what it held. Only the thread freeing
    /// the block calls this, once.
    pub(crate) fn remove(&self, index: u32) -> LiveBlock {
        let block = self.unpublish(index);
        self.unreserve(index % N as u32);
        block
    }

    /// Clears entry `index`'s address, keeping the entry reserved, and
    /// returns what it held: a block about to move (`realloc`) must not be
    /// confirmed at its old address, which the inner allocator may hand to
    /// another thread before the move is recorded.
    pub(crate) fn unpublish(&self, index: u32) -> LiveBlock {
        let e = &self.entries[index as usize % N];
        let block = e.load(e.addr.load(Relaxed));
        e.write(&LiveBlock { addr: 0, ..block });
        block
    }

    /// Every live block, skipping entries that change while being read.
    pub(crate) fn read(&self) -> Vec<LiveBlock> {
        let mut out = Vec::new();
        for (w, word) in self.used.iter().enumerate() {
            let mut bits = word.load(Acquire);
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let e = &self.entries[w * 64 + bit];
                let before = e.seq.load(Acquire);
                let addr = e.addr.load(Relaxed);
                let block = e.load(addr);
                fence(Acquire);
                if before % 2 == 0 && e.seq.load(Relaxed) == before && addr != 0 {
                    out.push(block);
                }
            }
        }
        out
    }

    /// Entries in use.
    pub(crate) fn len(&self) -> usize {
        self.used.iter().map(|w| w.load(Relaxed).count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(addr: usize) -> LiveBlock {
        LiveBlock { addr, size: 10, stack: 1, site: 0, task: 0, weight: 2.0 }
    }

    #[test]
    fn entries_are_reserved_published_confirmed_and_removed() {
        let t = Box::new(LiveTable::<128, 2>::new());
        let i = t.reserve().unwrap();
        assert_eq!(t.get(i, 0x1000), None, "not published yet");
        t.publish(i, &block(0x1000));
        assert_eq!(t.get(i, 0x1000), Some(block(0x1000)));
        assert_eq!(t.get(i, 0x2000), None, "another address is not confirmed");
        assert_eq!(t.get(999, 0x1000), None, "an index out of range is not confirmed");
        assert_eq!(t.read(), vec![block(0x1000)]);
        t.unpublish(i);
        assert_eq!(t.get(i, 0x1000), None, "unpublished");
        assert!(t.read().is_empty());
        assert_eq!(t.len(), 1, "still reserved");
        t.publish(i, &block(0x1000));
        assert_eq!(t.remove(i), block(0x1000));
        assert_eq!(t.get(i, 0x1000), None);
        assert!(t.read().is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_counts_what_it_turns_away() {
        let t = Box::new(LiveTable::<64, 1>::new());
        let got: Vec<u32> = (0..64).map(|_| t.reserve().unwrap()).collect();
        assert_eq!(got.len(), 64);
        assert_eq!(t.reserve(), None);
        assert_eq!(t.full.load(Relaxed), 1);
        t.unreserve(got[10]);
        assert_eq!(t.reserve(), Some(got[10]));
    }

    #[test]
    fn concurrent_reservations_never_share_an_entry() {
        let t: &'static LiveTable<1024, 16> = Box::leak(Box::new(LiveTable::new()));
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || (0..256).map(|_| t.reserve().unwrap()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<u32> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1024);
        assert_eq!(t.reserve(), None);
    }
}
