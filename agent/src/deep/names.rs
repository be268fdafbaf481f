//! Task names (deep mode): `tokio::task::Builder::new().name("…")` puts the
//! name in the `task.name` field of the task's `runtime.spawn` span. tokio
//! 1.54's runtime hooks (`TaskMeta`) carry no name, so lean mode has none.
//!
//! Names are interned in a fixed, lock-free table: a task keeps a small id in
//! its deep slot (in the word the slab uses only while the slot is free), so
//! a named spawn costs a hash and a probe, never an allocation. Names longer
//! than [`MAX_LEN`] bytes are cut; names past [`MAX_NAMES`] distinct ones are
//! not kept, and counted.
// Lean builds never read spawn spans.
#![cfg_attr(not(feature = "deep"), allow(dead_code))]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Distinct names kept.
pub(crate) const MAX_NAMES: usize = 1024;
/// Bytes kept of a name.
pub(crate) const MAX_LEN: usize = 64;
/// Slots probed for a name before giving up.
const PROBES: usize = 64;

/// A name id in a slot's spare word: this tag (above any free-list link,
/// which is a `u32`) plus the entry's index.
const TAG: u64 = 1 << 40;

struct Entry {
    /// The name's hash (never 0); 0 while free.
    hash: AtomicU64,
    /// Length + 1 once the bytes are written; 0 before.
    len: AtomicU32,
    bytes: [AtomicU64; MAX_LEN / 8],
}

static TABLE: [Entry; MAX_NAMES] = [const {
    Entry {
        hash: AtomicU64::new(0),
        len: AtomicU32::new(0),
        bytes: [const { AtomicU64::new(0) }; MAX_LEN / 8],
    }
}; MAX_NAMES];

/// Names not kept because the table was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Names not kept because the table was full.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

fn hash(name: &[u8]) -> u64 {
    // FNV-1a: short names, no allocation.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

/// The spare-word value naming `name` (0 for no name, or a name the table
/// has no room for). A 64-bit hash stands for the name: two names with the
/// same hash would share an entry.
pub(crate) fn intern(name: &[u8]) -> u64 {
    if name.is_empty() {
        return 0;
    }
    let name = &name[..name.len().min(MAX_LEN)];
    let h = hash(name);
    let mut i = (h >> 16) as usize % MAX_NAMES;
    for _ in 0..PROBES {
        let e = &TABLE[i];
        let current = e.hash.load(Acquire);
        if current == h {
            return TAG | i as u64;
        }
        if current == 0 {
            match e.hash.compare_exchange(0, h, AcqRel, Acquire) {
                Ok(_) => {
                    for (k, word) in e.bytes.iter().enumerate() {
                        let mut chunk = [0u8; 8];
                        let part = name.get(k * 8..).unwrap_or(&[]);
                        let n = part.len().min(8);
                        chunk[..n].copy_from_slice(&part[..n]);
                        word.store(u64::from_le_bytes(chunk), Relaxed);
                    }
                    e.len.store(name.len() as u32 + 1, Release);
                    return TAG | i as u64;
                }
                Err(other) if other == h => return TAG | i as u64,
                Err(_) => {}
            }
        }
        i = (i + 1) % MAX_NAMES;
    }
    DROPPED.fetch_add(1, Relaxed);
    0
}

/// The name a spare word names, if any (and once its bytes are written).
pub(crate) fn get(word: u64) -> Option<String> {
    if word & !0xffff_ffff != TAG {
        return None;
    }
    let e = TABLE.get((word & 0xffff_ffff) as usize)?;
    let len = (e.len.load(Acquire) as usize).checked_sub(1)?;
    let mut bytes = Vec::with_capacity(MAX_LEN);
    for word in &e.bytes {
        bytes.extend_from_slice(&word.load(Relaxed).to_le_bytes());
    }
    bytes.truncate(len.min(MAX_LEN));
    // A name cut inside a character loses that character.
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    })
}

/// Collects a `Display` value into a fixed buffer, without allocating.
#[derive(Debug)]
pub(crate) struct NameBuf {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf { buf: [0; MAX_LEN], len: 0 }
    }
}

impl NameBuf {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(MAX_LEN - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once_and_read_back() {
        let a = intern(b"names-test-flusher");
        assert_ne!(a, 0);
        assert_eq!(intern(b"names-test-flusher"), a);
        assert_ne!(intern(b"names-test-other"), a);
        assert_eq!(get(a).as_deref(), Some("names-test-flusher"));
        assert_eq!(intern(b""), 0);
        assert_eq!(get(0), None);
        // A free-list link is no name.
        assert_eq!(get(17), None);
        assert_eq!(get(TAG | MAX_NAMES as u64), None);
    }

    #[test]
    fn long_names_are_cut_at_a_character() {
        let long = "é".repeat(40); // 80 bytes
        let id = intern(long.as_bytes());
        assert_eq!(get(id), Some("é".repeat(32)));
        let mut buf = NameBuf::default();
        std::fmt::Write::write_fmt(&mut buf, format_args!("{}", "x".repeat(100))).unwrap();
        assert_eq!(buf.as_bytes().len(), MAX_LEN);
    }
}
