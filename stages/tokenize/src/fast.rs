//! A faster encoder for the tokenizers this crate builds itself (builtin:tiny and
//! GGUF vocabularies with the GPT-2 split, with or without single digits).
//!
//! Why: the tokenizers pipeline runs the GPT-2 split regex on fancy-regex
//! (backtracking for the `\s+(?!\S)` lookahead), allocates strings per piece and
//! per token, and caches only 10,000 words. Here special tokens are matched
//! leftmost-longest as tokenizers' added vocabulary does (they are all plain: no
//! lstrip/rstrip/single_word), the text between them is cut into digits
//! (`Digits(individual_digits)`, when the model has it) and GPT-2 pieces
//! ([`gpt2_split`]), and each piece's bytes go to [`ByteBpe`] with its per-thread
//! word cache. Tests check the ids and offsets against the tokenizers pipeline.

use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::bpe::ByteBpe;
use crate::gpt2_split;

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// builtin:tiny: token id = byte value.
    Bytes,
    /// Byte-level BPE after the GPT-2 split, digits first isolated when `digits`.
    Gpt2 { digits: bool, bpe: Arc<ByteBpe> },
}

#[derive(Debug, Clone)]
pub(crate) struct Fast {
    kind: Kind,
    /// Added tokens by first byte, longest first.
    specials: Vec<Vec<(Box<str>, u32)>>,
    /// Whether some added token starts with this byte: most bytes skip the lookup.
    starts_special: [bool; 256],
}

impl Fast {
    pub(crate) fn bytes(tokenizer: &Tokenizer) -> Self {
        Self::new(Kind::Bytes, tokenizer)
    }

    /// `None` when the tokenizer's BPE model has options [`ByteBpe`] does not reproduce.
    pub(crate) fn gpt2(tokenizer: &Tokenizer, digits: bool) -> Option<Self> {
        let bpe = Arc::new(ByteBpe::from_tokenizer(tokenizer)?);
        Some(Self::new(Kind::Gpt2 { digits, bpe }, tokenizer))
    }

    fn new(kind: Kind, tokenizer: &Tokenizer) -> Self {
        let mut specials: Vec<Vec<(Box<str>, u32)>> = vec![Vec::new(); 256];
        let mut added: Vec<(u32, String)> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (id, t.content))
            .collect();
        added.sort();
        for (id, content) in added {
            if let Some(&b) = content.as_bytes().first() {
                specials[b as usize].push((content.into_boxed_str(), id));
            }
        }
        for list in &mut specials {
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        }
        let starts_special = std::array::from_fn(|b| !specials[b].is_empty());
        Self {
            kind,
            specials,
            starts_special,
        }
    }

    /// Token ids and byte offsets of `text` (no BOS), appended to `ids` / `offsets`.
    pub(crate) fn encode(&self, text: &str, ids: &mut Vec<u32>, offsets: &mut Vec<(usize, usize)>) {
        match &self.kind {
            Kind::Bytes => self.segments(text, ids, offsets, |start, end, ids, offsets| {
                for k in start..end {
                    ids.push(u32::from(text.as_bytes()[k]));
                    offsets.push((k, k + 1));
                }
            }),
            Kind::Gpt2 { digits, bpe } => bpe.with_cache(|cache| {
                self.segments(text, ids, offsets, |start, end, ids, offsets| {
                    let mut gpt2 = |from: usize, to: usize, ids: &mut Vec<u32>, offsets: &mut _| {
                        gpt2_split::split(&text[from..to], |a, b| {
                            let word = &text.as_bytes()[from + a..from + b];
                            bpe.encode_word(cache, word, from + a, ids, offsets)
                        })
                    };
                    if !*digits {
                        return gpt2(start, end, ids, offsets);
                    }
                    // Every numeric character is a piece of its own (tokenizers' Digits),
                    // and the GPT-2 split runs on the text between them.
                    let mut from = start;
                    for (k, c) in text[start..end].char_indices() {
                        if c.is_numeric() {
                            let (k, e) = (start + k, start + k + c.len_utf8());
                            gpt2(from, k, ids, offsets);
                            gpt2(k, e, ids, offsets);
                            from = e;
                        }
                    }
                    gpt2(from, end, ids, offsets);
                })
            }),
        }
    }

    /// Cuts `text` at the special tokens: their ids go straight to `ids`, the
    /// text between them (byte range) to `plain`.
    fn segments(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
        mut plain: impl FnMut(usize, usize, &mut Vec<u32>, &mut Vec<(usize, usize)>),
    ) {
        let bytes = text.as_bytes();
        let mut start = 0; // start of the current plain segment
        let mut i = 0;
        while i < bytes.len() {
            if !self.starts_special[bytes[i] as usize] {
                i += 1;
                continue;
            }
            let found = self.specials[bytes[i] as usize]
                .iter()
                .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()));
            match found {
                Some((s, id)) => {
                    if start < i {
                        plain(start, i, ids, offsets);
                    }
                    ids.push(*id);
                    offsets.push((i, i + s.len()));
                    i += s.len();
                    start = i;
                }
                None => i += 1,
            }
        }
        if start < bytes.len() {
            plain(start, bytes.len(), ids, offsets);
        }
    }
}
