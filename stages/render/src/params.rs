//! The `render` stage's params, as written in a recipe.

use crate::rows::{OnPrefixMismatch, RowPrompt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bump when the rendered bytes would change for the same rows and params.
/// 2: `rendered.parquet` of more than one row group has ~1 MiB pages (pipe-rows writes group by group).
pub const RENDER_CODE_VERSION: u32 = 2;

/// `kind: render`: rows -> chat-template text with trained spans.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    /// The chat template: a project template (`chatml`, `llama3`, `mistral`,
    /// `qwen2`, `gemma`, `phi3`, `alpaca`, `smollm2`), `model` for the base
    /// model's own template (tokenizer_config.json or GGUF metadata), or a path
    /// to a `.jinja` file relative to the recipe.
    pub template: String,
    /// System prompt for rows that have none (counted in the stats as `system_added`).
    #[serde(default)]
    pub system: Option<String>,
    /// Task prompt for classification rows (`text` + `label`): a string with
    /// `{text}`, or a map from task name to prompt (with an optional `default`).
    #[serde(default)]
    pub prompt: Option<RowPrompt>,
    /// The date `strftime_now` returns (YYYY-MM-DD); fixed so that renderings
    /// and cache keys do not change with the calendar.
    #[serde(default = "default_date")]
    pub date: String,
    /// BOS token text passed to the template; default: the model's, else the
    /// project template's usual one, else empty.
    #[serde(default)]
    pub bos: Option<String>,
    /// EOS token text passed to the template; default: the model's, else the
    /// project template's usual one, else empty.
    #[serde(default)]
    pub eos: Option<String>,
    /// When a template rewrites earlier turns so that spans cannot be found by
    /// prefix: `error` (default) or `last_turn` (train only the final answer).
    #[serde(default)]
    pub on_prefix_mismatch: OnPrefixMismatch,
    /// Model whose template and tokens to use, overriding the recipe's `model:`.
    #[serde(default)]
    pub model: Option<String>,
}

fn default_date() -> String {
    crate::DEFAULT_DATE.to_owned()
}

impl RenderParams {
    /// Check what can be checked without files.
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::Date::parse(&self.date).map_err(|e| ("date".to_owned(), e.to_string()))?;
        if let Some(p) = &self.prompt {
            p.validate().map_err(|e| ("prompt".to_owned(), e))?;
        }
        Ok(())
    }
}
