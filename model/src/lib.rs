//! Model references as a recipe writes them, resolved to files on disk.
//!
//! `model:` in a recipe is one of
//! - `builtin:tiny`: a small deterministic model with a byte-level tokenizer,
//!   generated in code (no files): for tests and the offline quick start;
//! - a path to a Hugging Face model folder (`config.json`, `*.safetensors`,
//!   `tokenizer.json`, `tokenizer_config.json`);
//! - a path to a `.gguf` file;
//! - a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) found in the local Hugging
//!   Face cache. Nothing is ever downloaded.
//!
//! This crate only finds files and reads metadata; tokenizers and tensors are
//! built by `pipe-tokenize` and `pipe-train`.

pub mod builtin;
pub mod gguf;
mod metadata;
mod resolve;

pub use metadata::{ModelMeta, gguf_meta, metadata, special_token};
pub use resolve::{ModelError, ResolvedModel, resolve};
