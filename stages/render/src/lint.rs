//! A linter for chat templates: the mistakes that silently spoil a fine-tune.
//!
//! It renders probe conversations and checks the output, so it works on any
//! template, including a model's own:
//! - `double_bos`: the rendered text starts with BOS and the tokenizer adds
//!   one too (or the template itself writes it twice);
//! - `end_of_turn_not_trained`: nothing follows the assistant's content inside
//!   its trained span, so the model never learns to stop;
//! - `eos_not_trained`: the EOS token is nowhere in the trained span;
//! - `default_system_prompt`: the template injects its own system prompt when
//!   the conversation has none (it becomes part of every training example);
//! - `no_generation_prompt`: `add_generation_prompt` changes nothing, so at
//!   inference the model is not told that the assistant speaks next;
//! - `rejects_system` / `prefix_property`: the template refuses a system
//!   message, or rewrites earlier turns (multi-turn rows then fail).

use crate::ChatTemplate;
use crate::spans::{OnPrefixMismatch, SpanError, render_with_spans};
use minijinja::Value;
use serde::Serialize;

/// One finding, with a stable code for stats and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintWarning {
    pub code: &'static str,
    pub message: String,
}

const PROBE_SYSTEM: &str = "PIPE_LINT_SYSTEM_PROBE";

fn conversation(pairs: &[(&str, &str)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(r, c)| crate::json::map([("role", Value::from(*r)), ("content", Value::from(*c))]))
        .collect()
}

/// Lint `template`. `tokenizer_adds_bos`: whether tokenization adds a BOS token
/// by itself (the tokenizer's `add_bos_token`); `None` when unknown.
pub fn lint_template(
    template: &ChatTemplate,
    tokenizer_adds_bos: Option<bool>,
) -> Vec<LintWarning> {
    let mut warnings = Vec::new();
    let name = template.name();
    let bos = template.config().bos_token.as_str();
    let eos = template.config().eos_token.as_str();
    let warn = |warnings: &mut Vec<LintWarning>, code, message: String| {
        warnings.push(LintWarning { code, message });
    };

    let single = conversation(&[("user", "Hello?"), ("assistant", "Hi there.")]);
    let rendered = match render_with_spans(template, &single, None, OnPrefixMismatch::Error) {
        Ok(r) => Some(r),
        Err(SpanError::Render(e)) => {
            warn(
                &mut warnings,
                "render_failed",
                format!("template `{name}` cannot render a plain user/assistant exchange: {e}"),
            );
            None
        }
        Err(SpanError::PrefixMismatch { .. }) => {
            warn(
                &mut warnings,
                "prefix_property",
                format!(
                    "template `{name}`: the generation prompt is not a prefix of the rendered conversation, so the trained text differs from what the model sees at inference"
                ),
            );
            None
        }
    };

    if let Some(r) = &rendered {
        if !bos.is_empty() && r.text.starts_with(bos) {
            if r.text[bos.len()..].starts_with(bos) {
                warn(
                    &mut warnings,
                    "double_bos",
                    format!("template `{name}` writes BOS `{bos}` twice at the start"),
                );
            } else if tokenizer_adds_bos == Some(true) {
                warn(
                    &mut warnings,
                    "double_bos",
                    format!(
                        "template `{name}` already starts with BOS `{bos}` and the tokenizer adds one: tokenization must not add another"
                    ),
                );
            }
        }
        if let Some(&(start, end)) = r.spans.first() {
            let span = &r.text[start..end];
            let after_content = span.strip_prefix("Hi there.").unwrap_or(span);
            if after_content.trim().is_empty() {
                warn(
                    &mut warnings,
                    "end_of_turn_not_trained",
                    format!(
                        "template `{name}`: nothing follows the assistant's answer in its trained span (no end-of-turn or EOS text), so the model would never learn to stop"
                    ),
                );
            } else if !eos.is_empty() && !span.contains(eos) {
                warn(
                    &mut warnings,
                    "eos_not_trained",
                    format!(
                        "template `{name}`: EOS `{eos}` is not in the assistant's trained span (it ends with {after_content:?}); make sure generation stops on that text"
                    ),
                );
            }
        }
    }

    // Default system prompt: compare a conversation without a system message
    // with one whose system message is a probe. The probe's surroundings
    // (`pre`, `post`) are the system turn's scaffolding; whatever the template
    // writes between them on its own is an injected prompt.
    let with_system = conversation(&[
        ("system", PROBE_SYSTEM),
        ("user", "Hello?"),
        ("assistant", "Hi there."),
    ]);
    match template.render(&Value::from(with_system), None, false) {
        Ok(w) => {
            if let (Some(pos), Some(r)) = (w.find(PROBE_SYSTEM), &rendered) {
                let pre = &w[..pos];
                let post = &w[pos + PROBE_SYSTEM.len()..];
                let without = &r.text;
                if let Some(rest) = without.strip_prefix(pre)
                    && let Some(injected) = rest.strip_suffix(post)
                    && !injected.trim().is_empty()
                {
                    warn(
                        &mut warnings,
                        "default_system_prompt",
                        format!(
                            "template `{name}` injects a default system prompt when a row has none: {injected:?}; set `system:` to choose it explicitly"
                        ),
                    );
                }
            }
        }
        Err(e) => {
            if let Some(message) = e.raised_message() {
                warn(
                    &mut warnings,
                    "rejects_system",
                    format!(
                        "template `{name}` rejects a system message ({message}): rows with a system prompt (or a `system:` param) will fail"
                    ),
                );
            }
        }
    }

    let user_only = Value::from(conversation(&[("user", "Hello?")]));
    if let (Ok(plain), Ok(prompted)) = (
        template.render(&user_only, None, false),
        template.render(&user_only, None, true),
    ) && plain == prompted
    {
        warn(
            &mut warnings,
            "no_generation_prompt",
            format!(
                "template `{name}` has no generation prompt: add_generation_prompt changes nothing, so at inference the model is not cued to answer"
            ),
        );
    }

    let multi = conversation(&[
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
    ]);
    if let Err(SpanError::PrefixMismatch { turn }) =
        render_with_spans(template, &multi, None, OnPrefixMismatch::Error)
        && rendered.is_some()
    {
        warn(
            &mut warnings,
            "prefix_property",
            format!(
                "template `{name}` rewrites earlier turns (assistant turn {turn} of a multi-turn conversation breaks the prefix property): multi-turn rows need `on_prefix_mismatch: last_turn`"
            ),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TemplateConfig, builtin_template};

    fn codes(name: &str, bos: &str, eos: &str, adds_bos: Option<bool>) -> Vec<&'static str> {
        let cfg = TemplateConfig {
            bos_token: bos.into(),
            eos_token: eos.into(),
            ..TemplateConfig::default()
        };
        let t = ChatTemplate::new(name, builtin_template(name).unwrap(), cfg).unwrap();
        lint_template(&t, adds_bos)
            .into_iter()
            .map(|w| w.code)
            .collect()
    }

    #[test]
    fn project_templates() {
        assert_eq!(
            codes("chatml", "", "<|im_end|>", Some(false)),
            Vec::<&str>::new()
        );
        assert_eq!(
            codes("llama3", "<|begin_of_text|>", "<|eot_id|>", Some(true)),
            ["double_bos"]
        );
        assert_eq!(
            codes("llama3", "<|begin_of_text|>", "<|eot_id|>", Some(false)),
            Vec::<&str>::new()
        );
        assert_eq!(
            codes("qwen2", "", "<|im_end|>", None),
            ["default_system_prompt"]
        );
        assert_eq!(
            codes("smollm2", "", "<|im_end|>", None),
            ["default_system_prompt"]
        );
        assert_eq!(
            codes("gemma", "<bos>", "<eos>", Some(true)),
            ["double_bos", "eos_not_trained", "rejects_system"]
        );
        // Alpaca without an EOS token: the answer is not followed by anything.
        assert_eq!(codes("alpaca", "", "", None), ["end_of_turn_not_trained"]);
        assert_eq!(codes("alpaca", "", "</s>", None), Vec::<&str>::new());
        assert_eq!(
            codes("phi3", "<s>", "<|endoftext|>", Some(false)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn no_generation_prompt_and_double_bos_in_template() {
        let src =
            "{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m.content }}\n{% endfor %}";
        let cfg = TemplateConfig {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            ..TemplateConfig::default()
        };
        let t = ChatTemplate::new("bad", src, cfg).unwrap();
        let found: Vec<_> = lint_template(&t, None)
            .into_iter()
            .map(|w| w.code)
            .collect();
        assert!(found.contains(&"double_bos"), "{found:?}");
        assert!(found.contains(&"no_generation_prompt"), "{found:?}");
        assert!(found.contains(&"end_of_turn_not_trained"), "{found:?}");
    }
}
