//! A faster encoder for the tokenizers this crate builds itself (builtin:tiny and
//! GGUF vocabularies with the GPT-2 split, with or without single digits).
//!
//! Why: tokenizers without its C features runs the GPT-2 split regex on
//! fancy-regex, whose backtracking (for the `\s+(?!\S)` lookahead) is ~85% of
//! encode time. Here the same split runs on the `regex` crate's automaton without
//! the lookahead, and the lookahead's one effect is applied by hand: a run of two
//! or more whitespace characters followed by a non-space gives its last character
//! to the next piece. Special tokens are matched leftmost-longest as tokenizers'
//! added vocabulary does (they are all plain: no lstrip/rstrip/single_word), and
//! each piece goes to the same BPE model (with its cache). Tests check the ids
//! and offsets against the tokenizers pipeline.

use regex::Regex;
use tokenizers::{Model, Tokenizer};

use crate::load::bytes_to_unicode;

/// GPT-2's split minus the `\s+(?!\S)` alternative (handled in [`Fast::split`]).
const GPT2_NO_LOOKAHEAD: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// builtin:tiny: token id = byte value.
    Bytes,
    /// Byte-level BPE after the GPT-2 split, digits first isolated when `digits`.
    Gpt2 { digits: bool, regex: Regex },
}

#[derive(Debug, Clone)]
pub(crate) struct Fast {
    kind: Kind,
    /// Added tokens by first byte, longest first.
    specials: Vec<Vec<(Box<str>, u32)>>,
    byte_chars: [char; 256],
}

impl Fast {
    pub(crate) fn bytes(tokenizer: &Tokenizer) -> Self {
        Self::new(Kind::Bytes, tokenizer)
    }

    pub(crate) fn gpt2(tokenizer: &Tokenizer, digits: bool) -> Self {
        let regex = Regex::new(GPT2_NO_LOOKAHEAD).expect("the GPT-2 split compiles");
        Self::new(Kind::Gpt2 { digits, regex }, tokenizer)
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
        Self {
            kind,
            specials,
            byte_chars: bytes_to_unicode(),
        }
    }

    /// Token ids and byte offsets of `text` (no BOS), appended to `ids` / `offsets`.
    pub(crate) fn encode(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> tokenizers::Result<()> {
        let bytes = text.as_bytes();
        let mut start = 0; // start of the current plain segment
        let mut i = 0;
        while i < bytes.len() {
            let found = self.specials[bytes[i] as usize]
                .iter()
                .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()));
            match found {
                Some((s, id)) => {
                    self.plain(tokenizer, text, start, i, ids, offsets)?;
                    ids.push(*id);
                    offsets.push((i, i + s.len()));
                    i += s.len();
                    start = i;
                }
                None => i += 1,
            }
        }
        self.plain(tokenizer, text, start, bytes.len(), ids, offsets)
    }

    /// A segment without special tokens.
    fn plain(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        start: usize,
        end: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> tokenizers::Result<()> {
        if start == end {
            return Ok(());
        }
        match &self.kind {
            Kind::Bytes => {
                for (k, &b) in text.as_bytes()[start..end].iter().enumerate() {
                    ids.push(u32::from(b));
                    offsets.push((start + k, start + k + 1));
                }
                Ok(())
            }
            Kind::Gpt2 { digits, regex } => {
                let segment = &text[start..end];
                if *digits {
                    // Every numeric character is a piece of its own (tokenizers' Digits).
                    let mut piece_start = 0;
                    for (k, c) in segment.char_indices() {
                        if c.is_numeric() {
                            self.split(
                                tokenizer,
                                regex,
                                segment,
                                piece_start,
                                k,
                                start,
                                ids,
                                offsets,
                            )?;
                            let e = k + c.len_utf8();
                            self.bpe(tokenizer, &segment[k..e], start + k, ids, offsets)?;
                            piece_start = e;
                        }
                    }
                    self.split(
                        tokenizer,
                        regex,
                        segment,
                        piece_start,
                        segment.len(),
                        start,
                        ids,
                        offsets,
                    )
                } else {
                    self.split(
                        tokenizer,
                        regex,
                        segment,
                        0,
                        segment.len(),
                        start,
                        ids,
                        offsets,
                    )
                }
            }
        }
    }

    /// The GPT-2 split of `segment[from..to]`, each piece through BPE.
    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        tokenizer: &Tokenizer,
        regex: &Regex,
        segment: &str,
        from: usize,
        to: usize,
        base: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> tokenizers::Result<()> {
        let piece = &segment[from..to];
        let mut pos = 0;
        while pos < piece.len() {
            let (s, mut e) = match regex.find_at(piece, pos) {
                Some(m) => (m.start(), m.end()),
                None => (piece.len(), piece.len()),
            };
            if s > pos {
                // Nothing in the split matched here: an isolated gap piece.
                self.bpe(tokenizer, &piece[pos..s], base + from + pos, ids, offsets)?;
            }
            if s == e {
                break;
            }
            let m = &piece[s..e];
            if e < piece.len() && m.chars().all(char::is_whitespace) {
                // `\s+(?!\S)`: before a non-space, leave the last whitespace char to the next piece.
                let last = m.chars().next_back().expect("non-empty match");
                if m.len() > last.len_utf8() {
                    e -= last.len_utf8();
                }
            }
            self.bpe(tokenizer, &piece[s..e], base + from + s, ids, offsets)?;
            pos = e;
        }
        Ok(())
    }

    /// One pre-token: spelt in the byte alphabet, then the BPE model.
    fn bpe(
        &self,
        tokenizer: &Tokenizer,
        piece: &str,
        base: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> tokenizers::Result<()> {
        let spelt: String = piece.bytes().map(|b| self.byte_chars[b as usize]).collect();
        let mut at = base;
        for token in tokenizer.get_model().tokenize(&spelt)? {
            let n = token.value.chars().count();
            ids.push(token.id);
            offsets.push((at, at + n));
            at += n;
        }
        Ok(())
    }
}
