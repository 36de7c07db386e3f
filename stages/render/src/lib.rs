//! Chat-template rendering compatible with Hugging Face transformers (minijinja).
//!
//! What a model is fine-tuned on must be exactly what it is later served with,
//! so this crate renders `chat_template`s the way `transformers.apply_chat_template`
//! does (Jinja2 with `trim_blocks`, `lstrip_blocks`, loop controls, Python string
//! methods, Python's `json.dumps` as `tojson`, `raise_exception`, a fixed-date
//! `strftime_now`, TRL's `{% generation %}` markers), checked byte for byte
//! against reference renderings of 18 real templates.
//!
//! On top of that it renders canonical rows ([`pipe_rows::Row`]) into
//! [`pipe_rows::RenderedRow`]s: the full text, the byte spans of every assistant
//! turn (found by rendering prefixes, see [`rows`]), the generation prompt and
//! the reference answer; and it lints templates for the usual fine-tuning traps
//! ([`lint`]). Tokenization, caching and the stage registration are left to
//! `pipe-tokenize`, the engine and the `pipe` binary's adapter.
//!
//! ```
//! use pipe_render::{ChatTemplate, TemplateConfig};
//! let t = ChatTemplate::new(
//!     "chatml",
//!     pipe_render::builtin_template("chatml").unwrap(),
//!     TemplateConfig::default(),
//! )?;
//! let text = t.render_json(r#"[{"role": "user", "content": "Hi"}]"#, None, true)?;
//! assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! # Ok::<(), pipe_render::RenderError>(())
//! ```

pub mod date;
mod env;
mod error;
pub mod json;
pub mod lint;
pub mod params;
pub mod pyjson;
pub mod resolve;
pub mod rows;
pub mod spans;

pub use date::{DEFAULT_DATE, Date};
pub use env::{ChatTemplate, TemplateConfig};
pub use error::RenderError;
pub use lint::{LintWarning, lint_template};
pub use params::{RENDER_CODE_VERSION, RenderParams};
pub use resolve::{
    ModelTemplate, ResolvedTemplate, TEMPLATE_NAMES, TemplateSource, builtin_template,
    project_templates_dir, resolve_template, template_default_tokens,
    template_from_tokenizer_config,
};
pub use rows::{OnPrefixMismatch, RenderOptions, RenderStats, RowPrompt, render_row, render_rows};

/// Render one conversation given as JSON, as `pipe template render` prints it.
///
/// `name` labels errors; `source` is the template text; `messages_json` a JSON
/// list of `{"role", "content", ...}` objects; `tools_json` an optional JSON list
/// of tool schemas; `bos`/`eos` the model's tokens (`None` renders as `""`, as
/// transformers passes a missing token); `date` is `YYYY-MM-DD` for
/// `strftime_now` (default [`DEFAULT_DATE`]).
#[allow(clippy::too_many_arguments)]
pub fn render_conversation(
    name: &str,
    source: &str,
    messages_json: &str,
    add_generation_prompt: bool,
    tools_json: Option<&str>,
    bos: Option<&str>,
    eos: Option<&str>,
    date: Option<&str>,
) -> Result<String, RenderError> {
    let config = TemplateConfig {
        bos_token: bos.unwrap_or_default().to_owned(),
        eos_token: eos.unwrap_or_default().to_owned(),
        date: Date::parse(date.unwrap_or(DEFAULT_DATE))?,
    };
    ChatTemplate::new(name, source, config)?.render_json(
        messages_json,
        tools_json,
        add_generation_prompt,
    )
}
