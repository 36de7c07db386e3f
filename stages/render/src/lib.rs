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

/// Compile the template a `--template`/`template:` value names, with the
/// token texts resolved as the render stage does: explicit `bos`/`eos`, else
/// the model's when a model is given (none if it has none), else the project
/// template's usual ones, else empty.
///
/// `spec` is a project template name, a `.jinja` path (relative to
/// `base_dir`) or `model`; `model` carries the model's template and tokens
/// (from `pipe_model::metadata`) when one is known.
pub fn load_template(
    spec: &str,
    base_dir: &std::path::Path,
    model: Option<&ModelTemplate>,
    bos: Option<&str>,
    eos: Option<&str>,
    date: Option<&str>,
) -> Result<ChatTemplate, RenderError> {
    let resolved = resolve_template(spec, base_dir, &project_templates_dir(), model)?;
    let (default_bos, default_eos) = template_default_tokens(spec);
    // A known model's tokens are the truth (a model without BOS has none).
    let pick =
        |given: Option<&str>, from_model: Option<Option<&String>>, default: Option<&str>| match (
            given, from_model,
        ) {
            (Some(g), _) => g.to_owned(),
            (None, Some(m)) => m.cloned().unwrap_or_default(),
            (None, None) => default.unwrap_or_default().to_owned(),
        };
    let config = TemplateConfig {
        bos_token: pick(bos, model.map(|m| m.bos_token.as_ref()), default_bos),
        eos_token: pick(eos, model.map(|m| m.eos_token.as_ref()), default_eos),
        date: Date::parse(date.unwrap_or(DEFAULT_DATE))?,
    };
    ChatTemplate::new(resolved.name, &resolved.source, config)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_template_resolves_tokens_in_order() {
        let dir = std::path::Path::new(".");
        let one = r#"[{"role": "user", "content": "Q"}]"#;
        // The project template's usual BOS when nothing else is known.
        let t = load_template("llama3", dir, None, None, None, None).unwrap();
        assert!(
            t.render_json(one, None, false)
                .unwrap()
                .starts_with("<|begin_of_text|>")
        );
        // The model's tokens win over the defaults; explicit ones over both.
        let model = ModelTemplate {
            chat_template: Some("{{ bos_token }}|{{ eos_token }}".into()),
            bos_token: Some("<m>".into()),
            eos_token: Some("</m>".into()),
        };
        let t = load_template("model", dir, Some(&model), None, Some("<e>"), None).unwrap();
        assert_eq!(t.render_json(one, None, false).unwrap(), "<m>|<e>");
        assert!(load_template("chatml", dir, None, None, None, Some("2024-02-30")).is_err());
    }

    #[test]
    fn render_conversation_for_the_cli() {
        let out = render_conversation(
            "t",
            "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}>{% endif %}",
            r#"[{"role": "user", "content": "hi"}]"#,
            true,
            Some(r#"[{"name": "f", "a": 1}]"#),
            Some("<s>"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(out, r#"<s>hi[{"name": "f", "a": 1}]>"#);
    }
}
