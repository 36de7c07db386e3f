//! Which template text a recipe's `template:` means.
//!
//! - a project template name (`chatml`, `llama3`, ...): `templates/NAME.jinja`
//!   of the source tree (the file is hashed into the cache key); the same
//!   files are compiled into the crate, so an installed binary without the
//!   source tree still knows them;
//! - a path to a `.jinja` file, relative to the recipe folder;
//! - `model`: the base model's own template (`tokenizer_config.json`
//!   `chat_template`, or GGUF `tokenizer.chat_template`, found by the caller).

use crate::RenderError;
use std::path::{Path, PathBuf};

/// The project's templates, in `templates/` and compiled in.
pub const TEMPLATE_NAMES: [&str; 8] = [
    "alpaca", "chatml", "gemma", "llama3", "mistral", "phi3", "qwen2", "smollm2",
];

/// The text of a project template, as compiled into this crate.
pub fn builtin_template(name: &str) -> Option<&'static str> {
    Some(match name {
        "alpaca" => include_str!("../../../templates/alpaca.jinja"),
        "chatml" => include_str!("../../../templates/chatml.jinja"),
        "gemma" => include_str!("../../../templates/gemma.jinja"),
        "llama3" => include_str!("../../../templates/llama3.jinja"),
        "mistral" => include_str!("../../../templates/mistral.jinja"),
        "phi3" => include_str!("../../../templates/phi3.jinja"),
        "qwen2" => include_str!("../../../templates/qwen2.jinja"),
        "smollm2" => include_str!("../../../templates/smollm2.jinja"),
        _ => return None,
    })
}

/// The BOS and EOS texts of the models each project template comes from,
/// used when neither the params nor the model give them (a template rendered
/// with an empty BOS would not be the model's format).
pub fn template_default_tokens(name: &str) -> (Option<&'static str>, Option<&'static str>) {
    match name {
        "chatml" | "qwen2" => (None, Some("<|im_end|>")),
        "smollm2" => (Some("<|im_start|>"), Some("<|im_end|>")),
        "llama3" => (Some("<|begin_of_text|>"), Some("<|eot_id|>")),
        "mistral" => (Some("<s>"), Some("</s>")),
        "gemma" => (Some("<bos>"), Some("<eos>")),
        "phi3" => (Some("<s>"), Some("<|endoftext|>")),
        _ => (None, None),
    }
}

/// The source tree's `templates/` folder (where the compiled-in files came from).
pub fn project_templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

/// What a model says about chat formatting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTemplate {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// A `template:` value, classified (before any file is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// A project template; `path` is its file when the templates folder has it.
    Project { name: String, path: Option<PathBuf> },
    /// A `.jinja` file (absolute, or joined to the recipe folder).
    File { path: PathBuf },
    /// The base model's own template.
    Model,
}

impl TemplateSource {
    /// Classify `spec`. `templates_dir` is where project templates live
    /// (usually [`project_templates_dir`]).
    pub fn parse(
        spec: &str,
        recipe_dir: &Path,
        templates_dir: &Path,
    ) -> Result<TemplateSource, RenderError> {
        if spec == "model" {
            return Ok(TemplateSource::Model);
        }
        let looks_like_path = spec.ends_with(".jinja")
            || spec.contains('/')
            || spec.contains(std::path::MAIN_SEPARATOR);
        if looks_like_path {
            let path = recipe_dir.join(spec);
            if !path.is_file() {
                return Err(RenderError::Read {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "template file not found",
                    ),
                });
            }
            return Ok(TemplateSource::File { path });
        }
        let file = templates_dir.join(format!("{spec}.jinja"));
        if file.is_file() {
            return Ok(TemplateSource::Project {
                name: spec.to_owned(),
                path: Some(file),
            });
        }
        if builtin_template(spec).is_some() {
            return Ok(TemplateSource::Project {
                name: spec.to_owned(),
                path: None,
            });
        }
        Err(RenderError::UnknownTemplate {
            name: spec.to_owned(),
            available: TEMPLATE_NAMES.join(", "),
        })
    }

    /// The file whose content decides the rendering, to hash into the cache key.
    pub fn file(&self) -> Option<&Path> {
        match self {
            TemplateSource::Project { path, .. } => path.as_deref(),
            TemplateSource::File { path } => Some(path),
            TemplateSource::Model => None,
        }
    }
}

/// A template ready to compile: a display name for errors and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTemplate {
    pub name: String,
    pub source: String,
}

/// Resolve `spec` to template text. `model` is consulted for `template: model`.
pub fn resolve_template(
    spec: &str,
    recipe_dir: &Path,
    templates_dir: &Path,
    model: Option<&ModelTemplate>,
) -> Result<ResolvedTemplate, RenderError> {
    match TemplateSource::parse(spec, recipe_dir, templates_dir)? {
        TemplateSource::Project { name, path } => {
            let source = match path {
                Some(p) => read(&p)?,
                None => builtin_template(&name)
                    .expect("parse only returns known names")
                    .to_owned(),
            };
            Ok(ResolvedTemplate { name, source })
        }
        TemplateSource::File { path } => Ok(ResolvedTemplate {
            name: path.display().to_string(),
            source: read(&path)?,
        }),
        TemplateSource::Model => {
            let source = model.and_then(|m| m.chat_template.clone()).ok_or_else(|| {
                RenderError::UnknownTemplate {
                    name: "model (the model has no chat template; name one of the project templates or a .jinja file)".to_owned(),
                    available: TEMPLATE_NAMES.join(", "),
                }
            })?;
            Ok(ResolvedTemplate {
                name: "model".to_owned(),
                source,
            })
        }
    }
}

fn read(path: &Path) -> Result<String, RenderError> {
    std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Read `chat_template`, `bos_token` and `eos_token` from a Hugging Face
/// `tokenizer_config.json`. `chat_template` may be a string or a list of
/// `{name, template}` (the `default` one is used); tokens may be strings or
/// `AddedToken` objects (`{"content": ...}`).
pub fn template_from_tokenizer_config(path: &Path) -> Result<ModelTemplate, RenderError> {
    let text = read(path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RenderError::TokenizerConfig {
            path: path.to_owned(),
            detail: format!("not valid JSON: {e}"),
        })?;
    let token = |key: &str| -> Option<String> {
        match json.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
            _ => None,
        }
    };
    let chat_template = match json.get("chat_template") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(list)) => {
            let named = |n: &str| {
                list.iter()
                    .find(|e| e.get("name").and_then(|v| v.as_str()) == Some(n))
                    .and_then(|e| e.get("template")?.as_str().map(str::to_owned))
            };
            Some(
                named("default").ok_or_else(|| RenderError::TokenizerConfig {
                    path: path.to_owned(),
                    detail: "`chat_template` is a list without a `default` entry".to_owned(),
                })?,
            )
        }
        Some(_) => {
            return Err(RenderError::TokenizerConfig {
                path: path.to_owned(),
                detail: "`chat_template` must be a string or a list of {name, template}".to_owned(),
            });
        }
    };
    Ok(ModelTemplate {
        chat_template,
        bos_token: token("bos_token"),
        eos_token: token("eos_token"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_paths_and_model() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.jinja"), "{{ messages | length }}").unwrap();
        let templates = project_templates_dir();
        let r = resolve_template("mine.jinja", dir.path(), &templates, None).unwrap();
        assert_eq!(r.source, "{{ messages | length }}");
        let r = resolve_template("chatml", dir.path(), &templates, None).unwrap();
        assert_eq!(r.source, builtin_template("chatml").unwrap());
        // A templates folder without the file falls back to the compiled-in copy.
        let r = resolve_template("llama3", dir.path(), dir.path(), None).unwrap();
        assert_eq!(r.source, builtin_template("llama3").unwrap());
        let err = resolve_template("chatlm", dir.path(), &templates, None).unwrap_err();
        assert!(err.to_string().contains("chatml"), "{err}");
        assert!(resolve_template("model", dir.path(), &templates, None).is_err());
        let m = ModelTemplate {
            chat_template: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_template("model", dir.path(), &templates, Some(&m))
                .unwrap()
                .source,
            "x"
        );
        assert!(resolve_template("nope.jinja", dir.path(), &templates, None).is_err());
    }

    #[test]
    fn reads_tokenizer_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &path,
            r#"{"bos_token": {"content": "<bos>", "lstrip": false}, "eos_token": "<eos>",
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        let m = template_from_tokenizer_config(&path).unwrap();
        assert_eq!(m.chat_template.as_deref(), Some("D"));
        assert_eq!(m.bos_token.as_deref(), Some("<bos>"));
        assert_eq!(m.eos_token.as_deref(), Some("<eos>"));
    }
}
