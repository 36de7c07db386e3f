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

#[inline]
fn py_isspace_byte(b: u8) -> bool {
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
/// hash and no allocation.
#[derive(Default)]
pub struct Interner {
    ids: FxMap<String, u32>,
}

impl Interner {
    #[inline]
    pub fn id(&mut self, token: &str) -> u32 {
        if let Some(&id) = self.ids.get(token) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(token.to_owned(), id);
        id
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
}
