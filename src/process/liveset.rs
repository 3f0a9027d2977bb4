//! The set of live child records, by address: every send, flush and lookup of a child
//! asks it, so the record found last is remembered (a program busy with one child, or a
//! reply to the child whose frame is being handled, finds it without hashing).

use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes record addresses (distinct multiples of the allocation alignment).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) struct LiveSet {
    set: HashSet<usize, BuildHasherDefault<AddrHasher>>,
    /// The member found last (0: none); cleared when it leaves the set.
    hot: Cell<usize>,
}

impl LiveSet {
    pub(crate) const fn new() -> Self {
        LiveSet {
            set: HashSet::with_hasher(BuildHasherDefault::new()),
            hot: Cell::new(0),
        }
    }

    /// Whether the record at address `k` is a member.
    #[inline]
    pub(crate) fn contains(&self, k: usize) -> bool {
        if k != 0 && self.hot.get() == k {
            return true;
        }
        if !self.set.contains(&k) {
            return false;
        }
        self.hot.set(k);
        true
    }

    pub(crate) fn insert(&mut self, k: usize) {
        self.set.insert(k);
    }

    /// Whether `k` was a member.
    pub(crate) fn remove(&mut self, k: usize) -> bool {
        if self.hot.get() == k {
            self.hot.set(0);
        }
        self.set.remove(&k)
    }

    pub(crate) fn clear(&mut self) {
        self.set.clear();
        self.hot.set(0);
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}
