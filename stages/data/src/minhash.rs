//! MinHash signatures and LSH banding for near-duplicate detection, after
//! datatrove's `MinhashDedup*` (14 bands x 8 rows by default), with a union-find
//! to turn candidate pairs into clusters.
//!
//! Shingles are n-grams of [`crate::text::words`] over the normalized text, so
//! Chinese/Japanese text is shingled by characters (each CJK character is a
//! word) and space-separated text by words. Hashes are xxh3 (stable across
//! platforms) and the permutations come from a seeded splitmix64, so signatures
//! are reproducible bit for bit.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::text::{cjk_fraction, normalize, words};

/// Settings of one MinHash/LSH scheme.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    pub bands: usize,
    pub rows: usize,
    pub ngram: usize,
    pub cjk_ngram: usize,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MinHasher {
    pub fn new(seed: u64, bands: usize, rows: usize, ngram: usize, cjk_ngram: usize) -> Self {
        let mut state = seed ^ 0x6d69_6e68_6173_6821; // "minhash!"
        let n = bands * rows;
        // multiply-shift hashing needs odd multipliers
        let a = (0..n).map(|_| splitmix64(&mut state) | 1).collect();
        let b = (0..n).map(|_| splitmix64(&mut state)).collect();
        Self {
            a,
            b,
            bands,
            rows,
            ngram: ngram.max(1),
            cjk_ngram: cjk_ngram.max(1),
        }
    }

    /// The similarity at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r).
    pub fn threshold(&self) -> f64 {
        (1.0 / self.bands as f64).powf(1.0 / self.rows as f64)
    }

    /// Sorted, deduplicated shingle hashes of `text`. Text shorter than one
    /// n-gram gives one shingle of all its words; empty text gives none.
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let norm = normalize(text, false);
        let n = if cjk_fraction(&norm) >= 0.5 {
            self.cjk_ngram
        } else {
            self.ngram
        };
        let toks: Vec<u64> = words(&norm).map(|w| xxh3_64(w.as_bytes())).collect();
        let mut out: Vec<u64> = if toks.is_empty() {
            Vec::new()
        } else if toks.len() <= n {
            vec![hash_window(&toks)]
        } else {
            toks.windows(n).map(hash_window).collect()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The MinHash signature (bands x rows values).
    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for &x in shingles {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                if v < *s {
                    *s = v;
                }
            }
        }
        sig
    }

    /// One key per band: rows with an equal key in any band are candidates.
    pub fn band_keys(&self, sig: &[u32]) -> Vec<u64> {
        let mut bytes = Vec::with_capacity(self.rows * 4);
        sig.chunks(self.rows)
            .enumerate()
            .map(|(band, chunk)| {
                bytes.clear();
                for v in chunk {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                xxh3_64_with_seed(&bytes, band as u64)
            })
            .collect()
    }
}

/// Combine the word hashes of one n-gram (order matters); no allocation, as
/// this runs once per word of every row.
fn hash_window(w: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &t in w {
        h = (h ^ t).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    let mut state = h;
    splitmix64(&mut state)
}

/// Exact Jaccard similarity of two sorted, deduplicated shingle sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Union-find whose root is always the smallest index, so a cluster's root is
/// its first member in input order.
pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
        }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    pub fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi as usize] = lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_share_a_band_distinct_do_not() {
        let h = MinHasher::new(42, 14, 8, 5, 5);
        assert!((h.threshold() - 0.719).abs() < 0.01);
        let a = "The quick brown fox jumps over the lazy dog while the farmer watches from the porch and drinks his morning coffee slowly in the sun";
        let b = "The quick brown fox jumps over the lazy dog while the farmer watches from the porch and drinks his morning coffee slowly in the shade";
        let c = "Contracts require offer, acceptance and consideration; without consideration a promise is generally not enforceable in common law courts";
        let (sa, sb, sc) = (h.shingles(a), h.shingles(b), h.shingles(c));
        assert!(jaccard(&sa, &sb) > 0.9);
        assert_eq!(jaccard(&sa, &sc), 0.0);
        let (ka, kb, kc) = (
            h.band_keys(&h.signature(&sa)),
            h.band_keys(&h.signature(&sb)),
            h.band_keys(&h.signature(&sc)),
        );
        assert!(ka.iter().zip(&kb).any(|(x, y)| x == y));
        assert!(!ka.iter().zip(&kc).any(|(x, y)| x == y));
        // deterministic for a seed
        assert_eq!(
            ka,
            MinHasher::new(42, 14, 8, 5, 5).band_keys(&h.signature(&sa))
        );
    }

    #[test]
    fn union_find_roots_at_first() {
        let mut uf = UnionFind::new(5);
        uf.union(4, 2);
        uf.union(3, 4);
        uf.union(1, 0);
        assert_eq!(uf.find(3), 2);
        assert_eq!(uf.find(1), 0);
    }
}
