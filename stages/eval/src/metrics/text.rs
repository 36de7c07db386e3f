//! Text helpers that behave exactly like the Python built-ins the reference
//! tools call (`str.split()`, `str.strip()`), since a different idea of
//! "whitespace" changes token counts and therefore scores.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Python's `str.isspace()` for one character: Rust's `char::is_whitespace`
/// plus the ASCII information separators U+001C..U+001F, which Python counts
/// as whitespace (bidi class B/S) and Rust does not.
#[inline]
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// [`py_isspace`] for an ASCII byte.
#[inline]
pub const fn py_isspace_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

/// Python's `s.split()` (no argument): runs of whitespace separate tokens,
/// leading and trailing whitespace yield nothing.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    let ascii = s.is_ascii();
    let mut rest = s;
    std::iter::from_fn(move || {
        if ascii {
            let bytes = rest.as_bytes();
            let start = bytes.iter().position(|&b| !py_isspace_byte(b))?;
            let len = bytes[start..]
                .iter()
                .position(|&b| py_isspace_byte(b))
                .unwrap_or(bytes.len() - start);
            let token = &rest[start..start + len];
            rest = &rest[start + len..];
            Some(token)
        } else {
            let trimmed = rest.trim_start_matches(py_isspace);
            if trimmed.is_empty() {
                return None;
            }
            let end = trimmed.find(py_isspace).unwrap_or(trimmed.len());
            let token = &trimmed[..end];
            rest = &trimmed[end..];
            Some(token)
        }
    })
}

/// Python's `s.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_isspace)
}

/// Python's `s.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// The small multiplicative hash rustc uses (FxHash): n-gram and token tables
/// are hot loops over short keys, where SipHash costs more than the work.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Maps token strings to dense ids so that n-grams become integers. Kept
/// across segments: the vocabulary of a corpus is small, and a hit costs one
/// hash and one probe, with no allocation. Open addressing; a slot holds a
/// token of up to 8 bytes itself (most words), so finding one reads nothing
/// else; longer ones are compared with their copy in `text`.
#[derive(Default)]
pub struct Interner {
    /// The length is a power of two (or 0).
    slots: Vec<InternSlot>,
    /// Per id: where its string lies in `text`.
    spans: Vec<(u32, u32)>,
    text: String,
}

#[derive(Clone, Copy, Default)]
struct InternSlot {
    /// The token's bytes (little-endian, zero-padded) if it has at most 8,
    /// else its hash.
    word: u64,
    len: u32,
    /// id + 1; 0 for an empty slot.
    id: u32,
}

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// A token as one `u64`: its bytes when it has at most 8 (read as a few
/// overlapping loads, no byte loop), else an FxHash-style hash of them.
#[inline]
fn token_word(b: &[u8]) -> u64 {
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
    let n = b.len();
    match n {
        0 => 0,
        // Overlapping reads put the shared bytes at the same place: OR is exact.
        1..=3 => {
            b[0] as u64 | (b[n / 2] as u64) << (8 * (n / 2)) | (b[n - 1] as u64) << (8 * (n - 1))
        }
        4..=7 => half(0) | half(n - 4) << (8 * (n - 4)),
        8 => word(0),
        _ => {
            let mut h = mix(0, n as u64);
            let mut i = 0;
            while i + 8 < n {
                h = mix(h, word(i));
                i += 8;
            }
            mix(h, word(n - 8))
        }
    }
}

impl Interner {
    /// The first slot to probe for a token of `len` bytes read as `word`.
    #[inline]
    fn home(&self, word: u64, len: u32) -> usize {
        (mix(len as u64, word) >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    #[inline]
    pub fn id(&mut self, token: &str) -> u32 {
        let bytes = token.as_bytes();
        let word = token_word(bytes);
        let len = u32::try_from(bytes.len()).expect("token under 4 GiB");
        if self.slots.is_empty() {
            self.slots = vec![InternSlot::default(); 1024];
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.home(word, len);
        loop {
            let entry = self.slots[slot];
            if entry.id == 0 {
                break;
            }
            if entry.word == word
                && entry.len == len
                && (len <= 8 || self.get(entry.id - 1).as_bytes() == bytes)
            {
                return entry.id - 1;
            }
            slot = (slot + 1) & mask;
        }
        let id = self.spans.len() as u32;
        self.slots[slot] = InternSlot {
            word,
            len,
            id: id + 1,
        };
        let start = u32::try_from(self.text.len()).expect("vocabulary text under 4 GiB");
        self.spans.push((start, len));
        self.text.push_str(token);
        if 2 * self.spans.len() > self.slots.len() {
            self.grow();
        }
        id
    }

    /// The string of `id`.
    #[inline]
    pub fn get(&self, id: u32) -> &str {
        let (start, len) = self.spans[id as usize];
        &self.text[start as usize..(start + len) as usize]
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn grow(&mut self) {
        let size = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![InternSlot::default(); size]);
        let mask = self.slots.len() - 1;
        for entry in old.into_iter().filter(|e| e.id != 0) {
            let mut slot = self.home(entry.word, entry.len);
            while self.slots[slot].id != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = entry;
        }
    }
}

/// A multiset of n-gram keys for clipped matching: `add` one side's n-grams,
/// then `take` the other side's. A key can be taken as many times as it was
/// added, so the successful takes sum to `Σ min(count_a, count_b)`, the
/// clipped count of BLEU, chrF and ROUGE-N, without sorting or allocating per
/// segment. Open addressing with linear probing; key 0 marks an empty slot, so
/// callers pack token ids + 1 (which also keeps n-grams of different orders
/// distinct: a longer n-gram has a nonzero high part).
#[derive(Default)]
pub struct ClipCounter {
    keys: Vec<u128>,
    counts: Vec<u32>,
    /// Occupied slots, to clear them (and list entries) without a full sweep.
    used: Vec<u32>,
    /// log2 of the table size.
    bits: u32,
}

impl ClipCounter {
    /// Empties the counter and makes room for up to `max_keys` distinct keys
    /// (at most half full, so probes stay short).
    pub fn reset(&mut self, max_keys: usize) {
        for &slot in &self.used {
            self.keys[slot as usize] = 0;
            self.counts[slot as usize] = 0;
        }
        self.used.clear();
        let want = (2 * max_keys).next_power_of_two().max(64);
        if want > self.keys.len() {
            self.keys = vec![0; want];
            self.counts = vec![0; want];
            self.bits = want.trailing_zeros();
        }
    }

    /// The slot holding `key`, or the empty slot where it would go.
    #[inline]
    fn slot(&self, key: u128) -> usize {
        debug_assert!(key != 0, "key 0 marks empty slots");
        let mixed = ((key as u64) ^ ((key >> 64) as u64).rotate_left(23))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mask = self.keys.len() - 1;
        let mut slot = (mixed >> (64 - self.bits)) as usize;
        loop {
            let k = self.keys[slot];
            if k == key || k == 0 {
                return slot;
            }
            slot = (slot + 1) & mask;
        }
    }

    #[inline]
    fn occupy(&mut self, key: u128) -> usize {
        let slot = self.slot(key);
        if self.keys[slot] == 0 {
            // A full table would make `slot` probe forever.
            assert!(
                self.used.len() < self.keys.len() / 2,
                "more keys than reset() made room for"
            );
            self.keys[slot] = key;
            self.used.push(slot as u32);
        }
        slot
    }

    /// One more occurrence of `key`.
    #[inline]
    pub fn add(&mut self, key: u128) {
        let slot = self.occupy(key);
        self.counts[slot] += 1;
    }

    /// Raises the count of `key` to at least `count` (the max over references).
    #[inline]
    pub fn raise(&mut self, key: u128, count: u32) {
        let slot = self.occupy(key);
        self.counts[slot] = self.counts[slot].max(count);
    }

    /// Consumes one occurrence of `key` if any is left: `Some(true)` if one
    /// was, `Some(false)` if all were taken already, `None` if `key` was never
    /// added (so no longer n-gram extending it was either).
    #[inline]
    pub fn take(&mut self, key: u128) -> Option<bool> {
        let slot = self.slot(key);
        if self.keys[slot] == 0 {
            return None;
        }
        let left = &mut self.counts[slot];
        let taken = *left > 0;
        *left -= taken as u32;
        Some(taken)
    }

    /// Adds the n-grams of orders 1..=`max_order` of `units` (token ids or
    /// characters), each packed `bits` per unit as unit + 1, so that n-grams
    /// of different orders never share a key (`max_order * bits <= 128`).
    pub fn add_ngrams(&mut self, units: &[u32], max_order: usize, bits: u32) {
        debug_assert!(max_order as u32 * bits <= 128);
        for start in 0..units.len() {
            let mut key = 0u128;
            for &unit in units[start..].iter().take(max_order) {
                key = (key << bits) | (unit as u128 + 1);
                self.add(key);
            }
        }
    }

    /// Takes the n-grams of `units` packed as in [`Self::add_ngrams`], adding
    /// the successful takes of order n to `matched[n - 1]`.
    pub fn take_ngrams(&mut self, units: &[u32], max_order: usize, bits: u32, matched: &mut [u64]) {
        for start in 0..units.len() {
            let mut key = 0u128;
            for (order, &unit) in units[start..].iter().take(max_order).enumerate() {
                key = (key << bits) | (unit as u128 + 1);
                match self.take(key) {
                    Some(taken) => matched[order] += taken as u64,
                    // Never added, so neither is a longer n-gram from here.
                    None => break,
                }
            }
        }
    }

    /// The distinct keys with their current counts, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = (u128, u32)> + '_ {
        self.used
            .iter()
            .map(|&slot| (self.keys[slot as usize], self.counts[slot as usize]))
    }
}

/// Sorted `(key, count)` runs of a key list (sorts the list in place).
pub fn count_sorted<K: Ord + Copy>(keys: &mut [K], out: &mut Vec<(K, u32)>) {
    out.clear();
    keys.sort_unstable();
    for &k in keys.iter() {
        match out.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => out.push((k, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_like_python() {
        let v: Vec<_> = py_split("  a\u{1c}b\u{a0}c\x0bd  ").collect();
        assert_eq!(v, ["a", "b", "c", "d"]);
        let v: Vec<_> = py_split("a \t b\x0b").collect();
        assert_eq!(v, ["a", "b"]);
        assert_eq!(py_split("   ").count(), 0);
        assert_eq!(py_rstrip("ab \u{3000}\n"), "ab");
    }

    #[test]
    fn interner_ids_are_dense_and_stable() {
        let mut interner = Interner::default();
        // Lengths around every branch of the hash, enough strings to grow twice.
        let words: Vec<String> = (0..3000)
            .map(|i| {
                "ab\u{e9}cdefghijklmnopq"
                    .chars()
                    .cycle()
                    .skip(i % 7)
                    .take(i % 21)
                    .collect::<String>()
                    + &i.to_string()
            })
            .chain(
                [
                    "", "a", "a\0", "ab", "ba", "abc", "acb", "bac", "abcd", "abdc", "bacd",
                ]
                .map(str::to_owned),
            )
            .chain(
                [
                    "abcdefgh",
                    "abcdefhg",
                    "bacdefgh",
                    "abcdefghijklmnop",
                    "abcdefghijkmlnop",
                ]
                .map(str::to_owned),
            )
            .collect();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(interner.id(w), i as u32, "{w:?}");
        }
        for (i, w) in words.iter().enumerate().rev() {
            assert_eq!(interner.id(w), i as u32);
            assert_eq!(interner.get(i as u32), w);
        }
        assert_eq!(interner.len(), words.len());
    }

    #[test]
    fn clip_counter_sums_clipped_counts() {
        let mut c = ClipCounter::default();
        // The second round reuses the table: the first round's keys must be gone.
        for round in 0..2u128 {
            let n = 110 - 100 * round as usize;
            c.reset(n);
            for k in 1..=n as u128 {
                // key k added k % 3 times; 0 in another round must not leak.
                for _ in 0..k % 3 {
                    c.add(k << 64 | round);
                }
            }
            let mut taken = 0;
            for k in 1..=n as u128 {
                for _ in 0..2 {
                    taken += (c.take(k << 64 | round) == Some(true)) as usize;
                }
            }
            let want: usize = (1..=n).map(|k| (k % 3).min(2)).sum();
            assert_eq!(taken, want);
            assert_eq!(c.take(1 << 64 | (1 - round)), None);
            // Key 4 was added once and taken; key 3 never added.
            assert_eq!(c.take(4 << 64 | round), Some(false));
            assert_eq!(c.take(3 << 64 | round), None);
        }
        c.reset(4);
        c.raise(7, 2);
        c.raise(7, 1);
        c.raise(9, 1);
        let mut e: Vec<_> = c.entries().collect();
        e.sort_unstable();
        assert_eq!(e, [(7, 2), (9, 1)]);
    }
}
