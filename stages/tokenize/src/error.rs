//! Errors of pipe-tokenize: each names the file or key at fault and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error(transparent)]
    Model(#[from] pipe_model::ModelError),
    #[error(transparent)]
    Gguf(#[from] pipe_model::gguf::GgufError),
    #[error("{path}: cannot load the tokenizer: {message}")]
    Load { path: PathBuf, message: String },
    #[error(
        "model folder {dir} has no tokenizer.json: pipe needs the fast-tokenizer file (save it with `AutoTokenizer.from_pretrained(...).save_pretrained(dir)`)"
    )]
    NoTokenizerJson { dir: PathBuf },
    #[error(
        "{path}: GGUF tokenizer model `{model}` is not supported: pipe reads byte-level BPE (`gpt2`) vocabularies only (SmolLM2, Llama 3, Qwen2, ...); use the model's Hugging Face folder instead"
    )]
    UnsupportedGgufModel { path: PathBuf, model: String },
    #[error(
        "{path}: unknown pre-tokenizer `tokenizer.ggml.pre = {name}`: pipe does not guess split rules (a wrong regex silently changes token ids); known names: {known}. Use the model's Hugging Face folder (tokenizer.json), or add `{name}` to the table in stages/tokenize/src/pretok.rs"
    )]
    UnknownPreTokenizer {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("{path}: {what}")]
    BadGgufTokenizer { path: PathBuf, what: String },
    #[error("tokenizer failed on row {row}: {message}")]
    Encode { row: usize, message: String },
    #[error("row {row}: assistant span {start}..{end} is outside the rendered text ({len} bytes)")]
    BadSpan {
        row: usize,
        start: u32,
        end: u32,
        len: usize,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("`max_len` must be at least 2, got {0}")]
    MaxLen(usize),
}

impl TokenizeError {
    /// What the user can do about it, when the message alone does not say.
    pub fn hint(&self) -> Option<String> {
        match self {
            TokenizeError::Model(e) => e.hint(),
            TokenizeError::UnknownPreTokenizer { .. } => Some(
                "a GGUF stores only the name of its pre-tokenizer; a Hugging Face folder's tokenizer.json has the exact rules"
                    .into(),
            ),
            _ => None,
        }
    }
}
