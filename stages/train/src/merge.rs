//! `W + scale * B A` folded into a full Hugging Face model folder.

use std::path::Path;

use candle_core::{DType, Device};
use pipe_model::ResolvedModel;

use crate::error::{Result, TrainError};
use crate::infer::fold_adapter;
use crate::loader::load_model;
use crate::lora::{apply_adapter, load_adapter, write_atomic, write_safetensors};

/// Files copied as they are from a Hugging Face base folder.
const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "vocab.json",
];

/// Write `out_dir/{config.json, model.safetensors, tokenizer files}` for base + adapter.
/// Returns the names of the files written. A GGUF or builtin base has no
/// Hugging Face tokenizer files to copy; the caller is told by their absence.
pub fn merge_to_hf(
    model: &ResolvedModel,
    adapter_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<String>> {
    let mut m = load_model(model, DType::F32, &Device::Cpu)?;
    let (spec, tensors) = load_adapter(adapter_dir)?;
    apply_adapter(&mut m, &spec, &tensors, adapter_dir)?;
    fold_adapter(&mut m)?;
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::io(out_dir, e))?;
    let weights = m.merged_weights()?;
    write_safetensors(&out_dir.join("model.safetensors"), &weights)?;
    let config = serde_json::to_string_pretty(&m.cfg.to_hf_json()).expect("json");
    write_atomic(&out_dir.join("config.json"), config.as_bytes())?;
    let mut written = vec!["config.json".to_owned(), "model.safetensors".to_owned()];
    if let ResolvedModel::HfFolder { dir, .. } = model {
        for name in TOKENIZER_FILES {
            let src = dir.join(name);
            if src.is_file() {
                let dst = out_dir.join(name);
                std::fs::copy(&src, &dst).map_err(|e| TrainError::io(&dst, e))?;
                written.push(name.to_owned());
            }
        }
    }
    Ok(written)
}
