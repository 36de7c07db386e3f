//! Byte-level BPE over raw bytes, with a large per-thread word cache.
//!
//! Why: tokenizers' BPE model takes each piece as a `String` spelt in the byte
//! alphabet, returns a `Vec<Token>` with a `String` per token, and keeps only
//! 10,000 words in its cache. Here a piece's bytes go straight to ids: a hit in
//! the thread's cache is one hash lookup and a copy, a miss runs the merges.
//!
//! The merges follow tokenizers' rule: start from one symbol per byte, then
//! repeatedly merge the adjacent pair whose merge has the lowest rank, the
//! leftmost one on ties, until no adjacent pair has a merge. Vocabulary and
//! merges are read back from the loaded tokenizer's own BPE model (its
//! serialized form lists the merges in rank order), so they are the ones the
//! tokenizers pipeline uses. [`ByteBpe::from_tokenizer`] declines any model
//! with options this does not reproduce (dropout, subword prefixes or suffixes,
//! `ignore_merges`, or bytes missing from the vocabulary while the model has an
//! unknown token or byte fallback; without those tokenizers drops such bytes,
//! and so does this).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::load::bytes_to_unicode;

/// A thread's cache starts over when it holds this many words, or this many
/// bytes of words and ids: 30-40 MB at most.
const CACHE_WORDS: usize = 1 << 18;
const CACHE_BYTES: usize = 1 << 24;
/// Longer pieces are not cached: they are rare and would crowd the cache.
const CACHE_MAX_BYTES: usize = 256;
/// Encoders whose caches a thread keeps at once.
const CACHES_PER_THREAD: usize = 4;

/// A byte-level BPE model: vocabulary ids of the 256 bytes, merges, token lengths.
#[derive(Debug)]
pub(crate) struct ByteBpe {
    /// Tells the thread-local caches of different encoders apart.
    cache_key: u64,
    /// Id of each byte's token; [`NONE`] for bytes the vocabulary lacks, which
    /// tokenizers leaves out of the word (as it does any unknown character when
    /// the model has no unknown token).
    byte_ids: [u32; 256],
    /// `(left, right)` -> `(rank, merged id)`.
    merges: AHashMap<u64, (u32, u32)>,
    /// Bytes each token id stands for (its length in the byte alphabet).
    token_bytes: Vec<u32>,
}

/// The parts of tokenizers' serialized BPE model that decide the ids.
#[derive(Deserialize)]
struct SerializedBpe {
    #[serde(rename = "type")]
    kind: String,
    dropout: Option<f32>,
    unk_token: Option<String>,
    #[serde(default)]
    byte_fallback: bool,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    ignore_merges: bool,
    vocab: AHashMap<String, u32>,
    merges: Vec<(String, String)>,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl ByteBpe {
    /// The encoder for `tokenizer`'s model, when it is a byte-level BPE this
    /// reproduces exactly; `None` otherwise.
    pub(crate) fn from_tokenizer(tokenizer: &Tokenizer) -> Option<ByteBpe> {
        let value = serde_json::to_value(tokenizer.get_model()).ok()?;
        let model: SerializedBpe = serde_json::from_value(value).ok()?;
        let plain = model.kind == "BPE"
            && model.dropout.is_none_or(|d| d == 0.0)
            && model.continuing_subword_prefix.is_none()
            && model.end_of_word_suffix.is_none()
            && !model.ignore_merges;
        if !plain {
            return None;
        }
        let spelling = bytes_to_unicode();
        let mut byte_ids = [NONE; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            if let Some(&v) = model
                .vocab
                .get(spelling[b].encode_utf8(&mut [0; 4]) as &str)
            {
                *id = v;
            }
        }
        if byte_ids.contains(&NONE) && (model.unk_token.is_some() || model.byte_fallback) {
            // Missing bytes would become unknown or <0xNN> tokens: not reproduced here.
            return None;
        }
        let mut merges = AHashMap::with_capacity(model.merges.len());
        for (rank, (a, b)) in model.merges.iter().enumerate() {
            let (left, right) = (*model.vocab.get(a)?, *model.vocab.get(b)?);
            let merged = *model.vocab.get(&format!("{a}{b}"))?;
            merges.insert(pair_key(left, right), (rank as u32, merged));
        }
        let mut token_bytes = vec![0; model.vocab.values().max().map_or(0, |&m| m as usize + 1)];
        for (token, &id) in &model.vocab {
            token_bytes[id as usize] = token.chars().count() as u32;
        }
        static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
        Some(ByteBpe {
            cache_key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            byte_ids,
            merges,
            token_bytes,
        })
    }

    /// Runs `f` with this thread's cache for this encoder.
    pub(crate) fn with_cache<R>(&self, f: impl FnOnce(&mut WordCache) -> R) -> R {
        thread_local! {
            static CACHES: RefCell<Vec<(u64, WordCache)>> = const { RefCell::new(Vec::new()) };
        }
        CACHES.with(|caches| {
            let mut caches = caches.borrow_mut();
            let k = match caches.iter().position(|(key, _)| *key == self.cache_key) {
                Some(k) => k,
                None => {
                    if caches.len() == CACHES_PER_THREAD {
                        caches.remove(0);
                    }
                    caches.push((self.cache_key, WordCache::default()));
                    caches.len() - 1
                }
            };
            f(&mut caches[k].1)
        })
    }

    /// Appends the ids of the piece `word` to `ids`, and to `offsets` the byte
    /// range each covers, `word` starting at byte `base` of the text.
    pub(crate) fn encode_word(
        &self,
        cache: &mut WordCache,
        word: &[u8],
        base: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) {
        let start = ids.len();
        match cache.words.get(word) {
            // Most pieces are one token: a push, not a memcpy call.
            Some(hit) if hit.len() == 1 => ids.push(hit[0]),
            Some(hit) => ids.extend_from_slice(hit),
            None => {
                self.merge(&mut cache.scratch, word, ids);
                cache.insert(word, &ids[start..]);
            }
        }
        let mut at = base;
        offsets.extend(ids[start..].iter().map(|&id| {
            let from = at;
            at += self.token_bytes[id as usize] as usize;
            (from, at)
        }));
    }

    /// The merges on `word`, its ids appended to `ids`.
    fn merge(&self, scratch: &mut Scratch, word: &[u8], ids: &mut Vec<u32>) {
        let byte_ids = word
            .iter()
            .map(|&b| self.byte_ids[b as usize])
            .filter(|&id| id != NONE);
        if word.len() == 1 {
            ids.extend(byte_ids);
            return;
        }
        // A doubly linked list of symbols; a merge keeps the left one.
        let symbols = &mut scratch.symbols;
        symbols.clear();
        symbols.extend(byte_ids.map(|id| Symbol {
            id,
            prev: NONE,
            next: NONE,
        }));
        let n = symbols.len();
        for (k, s) in symbols.iter_mut().enumerate() {
            s.prev = if k == 0 { NONE } else { k as u32 - 1 };
            s.next = if k + 1 < n { k as u32 + 1 } else { NONE };
        }
        // Candidate merges `(rank, left position, merged id)`, smallest first;
        // an entry whose pair changed since it was pushed is skipped when popped.
        let queue = &mut scratch.queue;
        queue.clear();
        for k in 0..n.saturating_sub(1) {
            if let Some(&(rank, merged)) =
                self.merges.get(&pair_key(symbols[k].id, symbols[k + 1].id))
            {
                queue.push(Reverse((rank, k as u32, merged)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = queue.pop() {
            let left = symbols[pos as usize];
            if left.id == REMOVED || left.next == NONE {
                continue;
            }
            let right = symbols[left.next as usize];
            let current = self.merges.get(&pair_key(left.id, right.id));
            if current.is_none_or(|&(_, id)| id != merged) {
                continue;
            }
            symbols[pos as usize].id = merged;
            symbols[pos as usize].next = right.next;
            symbols[left.next as usize].id = REMOVED;
            if right.next != NONE {
                symbols[right.next as usize].prev = pos;
            }
            if left.prev != NONE {
                let prev = symbols[left.prev as usize].id;
                if let Some(&(rank, id)) = self.merges.get(&pair_key(prev, merged)) {
                    queue.push(Reverse((rank, left.prev, id)));
                }
            }
            if right.next != NONE {
                let next = symbols[right.next as usize].id;
                if let Some(&(rank, id)) = self.merges.get(&pair_key(merged, next)) {
                    queue.push(Reverse((rank, pos, id)));
                }
            }
        }
        ids.extend(symbols.iter().filter(|s| s.id != REMOVED).map(|s| s.id));
    }
}

/// No neighbour, or no token.
const NONE: u32 = u32::MAX;
/// The id of a symbol merged into its left neighbour.
const REMOVED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
}

#[derive(Debug, Default)]
struct Scratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Reverse<(u32, u32, u32)>>,
}

/// One thread's words seen so far (raw bytes -> ids) and merge buffers.
#[derive(Debug, Default)]
pub(crate) struct WordCache {
    words: AHashMap<Box<[u8]>, Box<[u32]>>,
    /// Bytes of the words and ids held.
    bytes: usize,
    scratch: Scratch,
}

impl WordCache {
    fn insert(&mut self, word: &[u8], ids: &[u32]) {
        if word.len() > CACHE_MAX_BYTES {
            return;
        }
        let bytes = word.len() + 4 * ids.len();
        if self.words.len() >= CACHE_WORDS || self.bytes + bytes > CACHE_BYTES {
            self.words.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        self.words.insert(word.into(), ids.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::Model;
    use tokenizers::models::bpe::BPE;

    /// A tokenizer over the 256 byte tokens plus the merges' results.
    fn tokenizer(merges: &[(&str, &str)]) -> Tokenizer {
        let spelling = bytes_to_unicode();
        let mut vocab: AHashMap<String, u32> = (0..=255u8)
            .map(|b| (spelling[b as usize].to_string(), u32::from(b)))
            .collect();
        for (a, b) in merges {
            let next = vocab.len() as u32;
            vocab.entry(format!("{a}{b}")).or_insert(next);
        }
        let merges = merges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .unwrap();
        Tokenizer::new(bpe)
    }

    fn encode(bpe: &ByteBpe, word: &str) -> (Vec<u32>, Vec<(usize, usize)>) {
        let (mut ids, mut offsets) = (Vec::new(), Vec::new());
        bpe.with_cache(|cache| bpe.encode_word(cache, word.as_bytes(), 10, &mut ids, &mut offsets));
        (ids, offsets)
    }

    #[test]
    fn lowest_rank_first_then_leftmost() {
        let tok = tokenizer(&[("b", "c"), ("a", "b"), ("a", "a"), ("aa", "a")]);
        let bpe = ByteBpe::from_tokenizer(&tok).unwrap();
        let (bc, aa, aaa) = (256, 258, 259);
        // `b c` outranks `a b`, so `abc` is a + bc.
        assert_eq!(encode(&bpe, "abc").0, [u32::from(b'a'), bc]);
        // Ties go left: aaaa is aa + aa, not a + aa + a; aaa merges on to aaa.
        assert_eq!(encode(&bpe, "aaaa").0, [aa, aa]);
        assert_eq!(encode(&bpe, "aaa").0, [aaa]);
        // `a b` outranks `a a`: aab is a + ab; offsets are bytes from the piece's start.
        assert_eq!(
            encode(&bpe, "aab"),
            (vec![u32::from(b'a'), 257], vec![(10, 11), (11, 13)])
        );
        // A cached word gives the same again.
        assert_eq!(encode(&bpe, "aaaa").0, [aa, aa]);
        // ASCII letters are spelt as themselves in the byte alphabet.
        for word in ["abc", "aaaa", "aaa", "aab", "bcbcaab"] {
            let expected: Vec<u32> = tok
                .get_model()
                .tokenize(word)
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(encode(&bpe, word).0, expected, "{word}");
        }
    }

    #[test]
    fn declines_models_it_does_not_reproduce() {
        let spelling = bytes_to_unicode();
        let vocab: AHashMap<String, u32> = (0..=255u8)
            .map(|b| (spelling[b as usize].to_string(), u32::from(b)))
            .collect();
        let with_prefix = BPE::builder()
            .vocab_and_merges(vocab.clone(), Vec::new())
            .continuing_subword_prefix("##".into())
            .build()
            .unwrap();
        assert!(ByteBpe::from_tokenizer(&Tokenizer::new(with_prefix)).is_none());
        let ignore_merges = BPE::builder()
            .vocab_and_merges(vocab, Vec::new())
            .ignore_merges(true)
            .build()
            .unwrap();
        assert!(ByteBpe::from_tokenizer(&Tokenizer::new(ignore_merges)).is_none());
    }

    #[test]
    fn cache_starts_over_when_full() {
        let mut cache = WordCache::default();
        for k in 0..CACHE_WORDS as u32 {
            cache.insert(&k.to_le_bytes(), &[k]);
        }
        assert_eq!(cache.words.len(), CACHE_WORDS);
        cache.insert(b"one more", &[1, 2]);
        assert_eq!(cache.words.len(), 1);
        assert_eq!(
            cache.words.get(&b"one more"[..]).map(|ids| &ids[..]),
            Some(&[1, 2][..])
        );
        // Long words count by bytes, and the longest are not kept at all.
        cache.insert(&[b'x'; CACHE_MAX_BYTES + 1], &[7]);
        assert_eq!(cache.words.len(), 1);
        let long = [b'y'; CACHE_MAX_BYTES];
        for k in 0..=CACHE_BYTES / CACHE_MAX_BYTES {
            let mut word = long;
            word[..8].copy_from_slice(&(k as u64).to_le_bytes());
            cache.insert(&word, &[1]);
        }
        assert!(cache.bytes <= CACHE_BYTES);
        assert!(cache.words.len() < CACHE_BYTES / CACHE_MAX_BYTES);
    }
}
