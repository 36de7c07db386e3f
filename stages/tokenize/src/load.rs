//! Building a [`ModelTokenizer`] from a resolved model: builtin, Hugging Face
//! folder (`tokenizer.json`) or GGUF metadata (byte-level BPE as llama.cpp stores it).

use ahash::AHashMap;
use std::path::Path;

use pipe_model::gguf::GgufFile;
use pipe_model::{ModelMeta, ResolvedModel, builtin};
use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::TokenizeError;
use crate::fast::Fast;
use crate::pretok;

/// A model's tokenizer with the special-token facts that masking needs.
#[derive(Clone)]
pub struct ModelTokenizer {
    pub tokenizer: Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Tokens that end an assistant turn (EOS and end-of-turn tokens such as
    /// `<|im_end|>` or `<|eot_id|>`), sorted.
    pub stop_ids: Vec<u32>,
    pub pad_id: Option<u32>,
    /// Whether the model's tokenizer puts BOS in front of a text by itself.
    pub add_bos: bool,
    pub meta: ModelMeta,
    /// The fast encoder for tokenizers built here (see `fast.rs`); `None` for
    /// tokenizer.json folders. Built from `tokenizer` at load time.
    pub(crate) fast: Option<Fast>,
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("stop_ids", &self.stop_ids)
            .field("pad_id", &self.pad_id)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// Token ids and, for each, the byte range `[start, end)` of the text it covers.
pub type IdsAndOffsets = (Vec<u32>, Vec<(usize, usize)>);

/// End-of-turn tokens of common chat formats: learned at the end of each
/// assistant turn when the vocabulary has them as special tokens.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
];

impl ModelTokenizer {
    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`)
    /// become single tokens. BOS is put in front only when the model's tokenizer
    /// adds one and the text does not already start with it.
    ///
    /// # Panics
    /// If the underlying tokenizer fails, which byte-level vocabularies cannot
    /// (every byte has a token); use [`ModelTokenizer::try_encode`] to get the error.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.try_encode(text)
            .unwrap_or_else(|e| panic!("tokenizer failed on {text:?}: {e}"))
    }

    /// [`ModelTokenizer::encode`] returning the tokenizer's error.
    pub fn try_encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let (ids, _) = self.encode_with_offsets(text)?;
        let mut out = Vec::with_capacity(ids.len() + 1);
        if let Some(bos) = self.bos_to_add(&ids) {
            out.push(bos);
        }
        out.extend_from_slice(&ids);
        Ok(out)
    }

    /// Token ids of `text` with the byte range of `text` each one covers; no BOS.
    pub fn encode_with_offsets(&self, text: &str) -> Result<IdsAndOffsets, TokenizeError> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut offsets = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, &mut ids, &mut offsets)?;
        Ok((ids, offsets))
    }

    /// [`ModelTokenizer::encode_with_offsets`] into buffers the caller reuses
    /// (cleared first).
    pub(crate) fn encode_into(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> Result<(), TokenizeError> {
        ids.clear();
        offsets.clear();
        match &self.fast {
            Some(fast) => fast.encode(text, ids, offsets),
            None => {
                let (i, o) = self.encode_with_tokenizers(text)?;
                ids.extend_from_slice(&i);
                offsets.extend_from_slice(&o);
            }
        }
        Ok(())
    }

    /// [`ModelTokenizer::encode_with_offsets`] through the full tokenizers pipeline
    /// (what the fast path is checked against).
    pub fn encode_with_tokenizers(&self, text: &str) -> Result<IdsAndOffsets, TokenizeError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| TokenizeError::Encode {
                row: 0,
                message: e.to_string(),
            })?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Whether [`ModelTokenizer::encode_with_offsets`] takes this crate's fast
    /// encoder rather than the tokenizers pipeline (same ids either way).
    pub fn has_fast_encoder(&self) -> bool {
        self.fast.is_some()
    }

    /// The BOS to put in front of `ids`, if the tokenizer adds one and it is not there yet.
    pub fn bos_to_add(&self, ids: &[u32]) -> Option<u32> {
        let bos = self.bos_id.filter(|_| self.add_bos)?;
        (ids.first() != Some(&bos)).then_some(bos)
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer
            .decode(ids, false)
            .unwrap_or_else(|e| panic!("cannot decode {ids:?}: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn id(&self, token: Option<&str>) -> Option<u32> {
        token.and_then(|t| self.tokenizer.token_to_id(t))
    }

    /// EOS plus the end-of-turn tokens the vocabulary has, plus `extra`.
    fn finish_stop_ids(&mut self, extra: impl IntoIterator<Item = u32>) {
        let mut ids: Vec<u32> = self.eos_id.into_iter().chain(extra).collect();
        let added = self.tokenizer.get_added_tokens_decoder();
        for name in END_OF_TURN {
            if let Some(id) = self.tokenizer.token_to_id(name)
                && added.get(&id).is_some_and(|t| t.special)
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        self.stop_ids = ids;
    }
}

/// Load the tokenizer of a resolved model.
pub fn load_tokenizer(model: &ResolvedModel) -> Result<ModelTokenizer, TokenizeError> {
    match model {
        ResolvedModel::Builtin { .. } => Ok(builtin_tiny()),
        ResolvedModel::HfFolder {
            dir,
            tokenizer_json,
            tokenizer_config,
            ..
        } => {
            let path = tokenizer_json
                .as_ref()
                .ok_or_else(|| TokenizeError::NoTokenizerJson { dir: dir.clone() })?;
            hf_folder(model, dir, path, tokenizer_config.as_deref())
        }
        ResolvedModel::Gguf { path } => gguf(&GgufFile::open(path)?),
    }
}

/// GPT-2's byte -> printable character table, which byte-level vocabularies are spelt in.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).expect("valid code point");
            n += 1;
            c
        };
    }
    table
}

/// `builtin:tiny`: token `b` is byte `b`, then the three specials.
fn builtin_tiny() -> ModelTokenizer {
    let spelling = bytes_to_unicode();
    let vocab: AHashMap<String, u32> = (0..=255u8)
        .map(|b| (spelling[b as usize].to_string(), u32::from(b)))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .expect("a vocabulary without merges is valid");
    let mut tokenizer = Tokenizer::new(bpe);
    // No split regex: without merges it could not change the ids, only cost time.
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .add_special_tokens(
            builtin::SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true).normalized(false)),
        )
        .expect("adding special tokens to a fresh tokenizer");
    let meta = pipe_model::metadata(&ResolvedModel::Builtin {
        name: builtin::TINY.into(),
    })
    .expect("builtin metadata is static");
    let mut tok = ModelTokenizer {
        tokenizer,
        bos_id: None,
        eos_id: Some(builtin::IM_END_ID),
        stop_ids: Vec::new(),
        pad_id: Some(builtin::ENDOFTEXT_ID),
        add_bos: false,
        meta,
        fast: None,
    };
    tok.fast = Some(Fast::bytes(&tok.tokenizer));
    tok.finish_stop_ids([]);
    tok
}

fn hf_folder(
    model: &ResolvedModel,
    dir: &Path,
    path: &Path,
    tokenizer_config: Option<&Path>,
) -> Result<ModelTokenizer, TokenizeError> {
    let tokenizer = Tokenizer::from_file(path).map_err(|e| TokenizeError::Load {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let meta = pipe_model::metadata(model)?;
    let config: Value = match tokenizer_config {
        Some(p) => read_json(p)?,
        None => Value::Null,
    };
    let mut tok = ModelTokenizer {
        tokenizer,
        bos_id: None,
        eos_id: None,
        stop_ids: Vec::new(),
        pad_id: None,
        add_bos: false,
        meta,
        fast: None,
    };
    tok.bos_id = tok.id(tok.meta.bos_token.as_deref());
    tok.eos_id = tok.id(tok.meta.eos_token.as_deref());
    tok.pad_id = tok.id(pipe_model::special_token(config.get("pad_token")).as_deref());
    // `add_bos_token` when the config says; otherwise whatever the post-processor does.
    tok.add_bos = match config.get("add_bos_token").and_then(Value::as_bool) {
        Some(flag) => flag && tok.bos_id.is_some(),
        None => {
            let with = tok.tokenizer.encode_fast("a", true);
            let without = tok.tokenizer.encode_fast("a", false);
            match (with, without, tok.bos_id) {
                (Ok(w), Ok(wo), Some(bos)) => {
                    w.get_ids().first() == Some(&bos) && wo.get_ids().first() != Some(&bos)
                }
                _ => false,
            }
        }
    };
    // generation_config.json's eos_token_id (int or list) names every stop token.
    let mut extra = Vec::new();
    let generation = dir.join("generation_config.json");
    if generation.is_file() {
        match read_json(&generation)?.get("eos_token_id") {
            Some(Value::Number(n)) => extra.extend(n.as_u64().map(|v| v as u32)),
            Some(Value::Array(list)) => {
                extra.extend(list.iter().filter_map(Value::as_u64).map(|v| v as u32))
            }
            _ => {}
        }
    }
    tok.finish_stop_ids(extra);
    Ok(tok)
}

fn read_json(path: &Path) -> Result<Value, TokenizeError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenizeError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| TokenizeError::Read {
        path: path.to_owned(),
        message: format!("invalid JSON: {e}"),
    })
}

/// llama.cpp token types.
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// A byte-level BPE tokenizer from GGUF metadata.
pub fn gguf(file: &GgufFile) -> Result<ModelTokenizer, TokenizeError> {
    let path = &file.path;
    let bad = |what: String| TokenizeError::BadGgufTokenizer {
        path: path.clone(),
        what,
    };
    let model = file.get_str("tokenizer.ggml.model").unwrap_or("(missing)");
    if model != "gpt2" {
        return Err(TokenizeError::UnsupportedGgufModel {
            path: path.clone(),
            model: model.to_owned(),
        });
    }
    let pre_name = file.get_str("tokenizer.ggml.pre").ok_or_else(|| {
        bad("metadata `tokenizer.ggml.pre` is missing: the split rules are unknown".into())
    })?;
    let pre = pretok::lookup(pre_name).ok_or_else(|| TokenizeError::UnknownPreTokenizer {
        path: path.clone(),
        name: pre_name.to_owned(),
        known: pretok::known_names(),
    })?;
    let tokens = file.str_array("tokenizer.ggml.tokens")?;
    let merges = file.str_array("tokenizer.ggml.merges")?;
    let types = match file.get("tokenizer.ggml.token_type") {
        Some(_) => file.i64_array("tokenizer.ggml.token_type")?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(bad(format!(
            "`tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    // Tokens are stored in the byte alphabet; respell any that is not (as transformers does).
    let spelling = bytes_to_unicode();
    let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
    let spelt = |t: &str| -> String {
        if t.chars().all(|c| alphabet.contains(&c)) {
            t.to_owned()
        } else {
            t.bytes().map(|b| spelling[b as usize]).collect()
        }
    };
    let mut vocab: AHashMap<String, u32> = AHashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        vocab.entry(spelt(t)).or_insert(id as u32);
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| {
                    bad(format!(
                        "merge #{i} `{m}` is not two tokens separated by a space"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges())
        .build()
        .map_err(|e| bad(format!("invalid BPE vocabulary/merges: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let (normalizer, pre_tokenizer) = pre.build();
    if let Some(n) = normalizer {
        tokenizer
            .with_normalizer(Some(n))
            .map_err(|e| bad(e.to_string()))?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens are special; user-defined ones are matched whole but not special.
    // A control token outside the byte alphabet is a llama.cpp mislabel and is skipped.
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, ty)| **ty == TOKEN_CONTROL && t.chars().all(|c| alphabet.contains(&c)))
        .map(|(t, _)| AddedToken::from(*t, true).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(control)
        .map_err(|e| bad(e.to_string()))?;
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, ty)| **ty == TOKEN_USER_DEFINED)
        .map(|(t, _)| AddedToken::from(*t, false).normalized(false))
        .collect();
    tokenizer.add_tokens(user).map_err(|e| bad(e.to_string()))?;
    if tokenizer.get_vocab_size(true) != tokens.len() {
        return Err(bad(format!(
            "the tokenizer built has {} tokens, the file lists {} (duplicate or mislabelled tokens)",
            tokenizer.get_vocab_size(true),
            tokens.len()
        )));
    }
    let id_key = |key: &str| {
        file.get_u64(key)
            .map(|v| v as u32)
            .filter(|&v| (v as usize) < tokens.len())
    };
    let bos_id = id_key("tokenizer.ggml.bos_token_id");
    let eos_id = id_key("tokenizer.ggml.eos_token_id");
    let mut tok = ModelTokenizer {
        tokenizer,
        bos_id,
        eos_id,
        stop_ids: Vec::new(),
        pad_id: id_key("tokenizer.ggml.padding_token_id"),
        add_bos: file
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(false)
            && bos_id.is_some(),
        meta: pipe_model::gguf_meta(file),
        fast: None,
    };
    tok.fast = match pre {
        pretok::PreTokenizer::Gpt2 => Fast::gpt2(&tok.tokenizer, false),
        pretok::PreTokenizer::DigitsGpt2 => Fast::gpt2(&tok.tokenizer, true),
        pretok::PreTokenizer::Split { .. } => None,
    };
    let extra: Vec<u32> = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
        .iter()
        .filter_map(|k| id_key(k))
        .collect();
    tok.finish_stop_ids(extra);
    Ok(tok)
}
