//! GGUF stores only the *name* of a byte-level BPE pre-tokenizer
//! (`tokenizer.ggml.pre`). This table maps each name pipe knows to the exact
//! normalizer and split rules of that model family's own `tokenizer.json`
//! (the ones llama.cpp implements under the same name). An unknown name is an
//! error: falling back to another regex would silently change token ids.

use tokenizers::SplitDelimiterBehavior;
use tokenizers::normalizers::{NFC, NormalizerWrapper};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

/// GPT-2's split (also the one `ByteLevel(use_regex=true)` applies).
pub const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's split: digits in groups of up to three, case-insensitive contractions.
pub const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: like Llama 3 but one digit per piece.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o's (o200k) split: case-aware words with trailing contractions.
pub const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenization of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2 byte-level regex.
    Gpt2,
    /// Each digit alone, then the GPT-2 byte-level regex (SmolLM2, StarCoder).
    DigitsGpt2,
    /// One explicit split regex (isolated), then byte-level without its own regex.
    Split {
        regex: &'static str,
        /// NFC normalization first (Qwen2's tokenizer.json has it).
        nfc: bool,
        /// Whole pieces found in the vocabulary skip the merges (Llama 3's `ignore_merges`).
        ignore_merges: bool,
    },
}

/// Name -> rules. Names are llama.cpp's (`convert_hf_to_gguf.py` writes them).
pub const TABLE: &[(&str, PreTokenizer)] = &[
    ("gpt-2", PreTokenizer::Gpt2),
    ("mpt", PreTokenizer::Gpt2),
    ("olmo", PreTokenizer::Gpt2),
    ("smollm", PreTokenizer::DigitsGpt2),
    ("starcoder", PreTokenizer::DigitsGpt2),
    ("refact", PreTokenizer::DigitsGpt2),
    ("llama-bpe", LLAMA3),
    ("llama3", LLAMA3),
    ("llama-v3", LLAMA3),
    ("falcon3", LLAMA3),
    ("smaug-bpe", LLAMA3),
    ("dbrx", LLAMA3),
    ("qwen2", QWEN2),
    ("deepseek-r1-qwen", QWEN2),
    ("gpt-4o", GPT4O),
];

const LLAMA3: PreTokenizer = PreTokenizer::Split {
    regex: LLAMA3_SPLIT,
    nfc: false,
    ignore_merges: true,
};
const QWEN2: PreTokenizer = PreTokenizer::Split {
    regex: QWEN2_SPLIT,
    nfc: true,
    ignore_merges: false,
};
const GPT4O: PreTokenizer = PreTokenizer::Split {
    regex: GPT4O_SPLIT,
    nfc: false,
    ignore_merges: false,
};

/// The rules for a `tokenizer.ggml.pre` name, if known.
pub fn lookup(name: &str) -> Option<PreTokenizer> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// Known names, for error messages.
pub fn known_names() -> String {
    TABLE.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl PreTokenizer {
    /// The tokenizers pipeline pieces: (normalizer, pre-tokenizer).
    pub fn build(&self) -> (Option<NormalizerWrapper>, PreTokenizerWrapper) {
        match *self {
            PreTokenizer::Gpt2 => (None, ByteLevel::new(false, false, true).into()),
            PreTokenizer::DigitsGpt2 => (
                None,
                Sequence::new(vec![
                    Digits::new(true).into(),
                    ByteLevel::new(false, false, true).into(),
                ])
                .into(),
            ),
            PreTokenizer::Split { regex, nfc, .. } => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .expect("the split regexes in the table compile");
                (
                    nfc.then(|| NFC.into()),
                    Sequence::new(vec![
                        split.into(),
                        ByteLevel::new(false, false, false).into(),
                    ])
                    .into(),
                )
            }
        }
    }

    pub fn ignore_merges(&self) -> bool {
        matches!(
            self,
            PreTokenizer::Split {
                ignore_merges: true,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    /// The pieces (as original text) the pre-tokenizer cuts `text` into.
    fn pieces(p: PreTokenizer, text: &str) -> Vec<String> {
        let (_, pre) = p.build();
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (a, b), _)| text[a..b].to_owned())
            .collect()
    }

    const TEXT: &str = "I'LL pay 12345 USD, don't\n\n  wait!";

    // Expected pieces were checked against Python `tokenizers` 0.23.3 with the same
    // rules as each family's tokenizer.json (Digits + ByteLevel for smollm; Split(Regex,
    // isolated) + ByteLevel(use_regex=False) for the others).
    #[test]
    fn gpt2_groups_digits_and_keeps_leading_space() {
        assert_eq!(
            pieces(lookup("gpt-2").unwrap(), TEXT),
            [
                "I", "'", "LL", " pay", " 12345", " USD", ",", " don", "'t", "\n\n ", " wait", "!"
            ]
        );
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(
            pieces(lookup("smollm").unwrap(), TEXT),
            [
                "I", "'", "LL", " pay", " ", "1", "2", "3", "4", "5", " USD", ",", " don", "'t",
                "\n\n ", " wait", "!"
            ]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three_and_ignores_case_in_contractions() {
        assert_eq!(
            pieces(lookup("llama-bpe").unwrap(), TEXT),
            [
                "I", "'LL", " pay", " ", "123", "45", " USD", ",", " don", "'t", "\n\n", " ",
                " wait", "!"
            ]
        );
        assert!(lookup("llama-bpe").unwrap().ignore_merges());
    }

    #[test]
    fn qwen2_splits_every_digit() {
        assert_eq!(
            pieces(lookup("qwen2").unwrap(), TEXT),
            [
                "I", "'LL", " pay", " ", "1", "2", "3", "4", "5", " USD", ",", " don", "'t",
                "\n\n", " ", " wait", "!"
            ]
        );
    }

    #[test]
    fn gpt4o_keeps_contraction_with_word() {
        assert_eq!(
            pieces(lookup("gpt-4o").unwrap(), TEXT),
            [
                "I'LL", " pay", " ", "123", "45", " USD", ",", " don't", "\n\n", " ", " wait", "!"
            ]
        );
    }

    #[test]
    fn unknown_names_are_not_guessed() {
        assert!(lookup("default").is_none());
        assert!(lookup("SmolLM").is_none());
        assert!(known_names().contains("smollm"));
    }
}
