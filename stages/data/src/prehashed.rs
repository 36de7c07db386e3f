//! Hash maps keyed by values that are already good hashes (xxh3 of a key,
//! a polynomial n-gram hash): the map uses their bits as they are instead of
//! hashing them again with SipHash, which cost more than the lookups.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A [`Hasher`] for keys that are well-mixed `u64`/`u128` hashes.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64 ^ (x >> 64) as u64;
    }
}

/// A map keyed by prehashed values.
pub type PrehashedMap<K, V> = HashMap<K, V, BuildHasherDefault<Prehashed>>;

/// An empty [`PrehashedMap`] with room for `n` entries.
pub fn prehashed_map<K, V>(n: usize) -> PrehashedMap<K, V> {
    HashMap::with_capacity_and_hasher(n, Default::default())
}
