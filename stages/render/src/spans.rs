//! Locating the assistant turns in a rendered conversation.
//!
//! A chat template is arbitrary code, so the trained spans are not found by
//! searching for the assistant's text (which may be trimmed, repeated or
//! escaped) but by rendering prefixes, the way inference sees them:
//!
//! - the span of assistant turn `i` starts where
//!   `render(messages[..i], add_generation_prompt=true)` ends: exactly what the
//!   model is given before it starts answering. That text must be a prefix of
//!   the full rendering (the *prefix property*);
//! - it ends where `render(messages[..=i])` ends, so it covers the content and
//!   the end-of-turn text (`<|im_end|>\n`, `<|eot_id|>`, `</s>`, ...) that
//!   teaches the model to stop; the final turn's span runs to the end of the
//!   text (Phi-3 closes a finished conversation with EOS there). When a
//!   template writes something only after the last message (Phi-3's EOS), the
//!   rendering up to a middle turn is not a prefix: the span then ends where
//!   that rendering and the full text diverge, moved back to the start of a
//!   special token it would otherwise cut (`<|user|>` vs `<|endoftext|>`
//!   share `<|`).
//!
//! Templates that rewrite earlier turns (dropping reasoning from old
//! assistant turns, moving the system prompt to the last user turn) break the
//! prefix property. That is an error naming the template and the row, or,
//! with [`OnPrefixMismatch::LastTurn`], only the final turn is trained when its
//! own prefix holds.

use crate::{ChatTemplate, RenderError};
use minijinja::Value;
use serde::{Deserialize, Serialize};

/// What to do when a template breaks the prefix property.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnPrefixMismatch {
    /// Fail, naming the template, the row and the turn.
    #[default]
    Error,
    /// Train only the final assistant turn (when its prompt is a prefix), and count the row.
    LastTurn,
}

/// A conversation rendered with its trained spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannedRender {
    /// The full conversation (`add_generation_prompt=false`).
    pub text: String,
    /// Byte ranges of `text` to train on, in order.
    pub spans: Vec<(usize, usize)>,
    /// The conversation before the final assistant turn with the generation
    /// prompt (the whole conversation when it does not end with an assistant turn).
    pub prompt: String,
    /// Whether earlier turns were dropped under [`OnPrefixMismatch::LastTurn`].
    pub last_turn_only: bool,
    /// Whether a middle turn's end came from the divergence rule (see the module doc).
    pub end_by_divergence: bool,
}

/// Why spans could not be found (turned into a [`RenderError`] by the caller, who knows the row).
#[derive(Debug)]
pub enum SpanError {
    Render(RenderError),
    /// Assistant turn `turn` (0-based among the assistant turns) breaks the prefix property.
    PrefixMismatch {
        turn: usize,
    },
}

impl From<RenderError> for SpanError {
    fn from(e: RenderError) -> Self {
        SpanError::Render(e)
    }
}

fn role(message: &Value) -> Option<String> {
    message
        .get_attr("role")
        .ok()
        .and_then(|r| r.as_str().map(str::to_owned))
}

/// Render `messages` (template maps with `role` and `content`) and find every
/// assistant turn's span.
pub fn render_with_spans(
    template: &ChatTemplate,
    messages: &[Value],
    tools: Option<&Value>,
    on_mismatch: OnPrefixMismatch,
) -> Result<SpannedRender, SpanError> {
    let render = |upto: usize, gen_prompt: bool| {
        template.render(&Value::from(messages[..upto].to_vec()), tools, gen_prompt)
    };
    let n = messages.len();
    let text = render(n, false)?;
    let assistant_turns: Vec<usize> = (0..n)
        .filter(|&i| role(&messages[i]).as_deref() == Some("assistant"))
        .collect();
    let ends_with_assistant = assistant_turns.last() == Some(&n.wrapping_sub(1));
    let prompt = if ends_with_assistant {
        render(n - 1, true)?
    } else {
        render(n, true)?
    };

    let mut spans = Vec::with_capacity(assistant_turns.len());
    let mut end_by_divergence = false;
    let mut mismatch = None;
    for (turn, &i) in assistant_turns.iter().enumerate() {
        let before = if i == n - 1 {
            prompt.clone()
        } else {
            render(i, true)?
        };
        if !text.starts_with(&before) {
            mismatch = Some(turn);
            break;
        }
        let start = before.len();
        let end = if i == n - 1 {
            text.len()
        } else {
            let upto = render(i + 1, false)?;
            if text.starts_with(&upto) {
                upto.len()
            } else {
                end_by_divergence = true;
                divergence(&text, &upto)
            }
        };
        if end < start {
            mismatch = Some(turn);
            break;
        }
        spans.push((start, end));
    }

    let mut last_turn_only = false;
    if let Some(turn) = mismatch {
        let last_ok = ends_with_assistant && text.starts_with(&prompt);
        if on_mismatch == OnPrefixMismatch::Error || !last_ok {
            return Err(SpanError::PrefixMismatch { turn });
        }
        spans = vec![(prompt.len(), text.len())];
        last_turn_only = true;
        end_by_divergence = false;
    }
    Ok(SpannedRender {
        text,
        spans,
        prompt,
        last_turn_only,
        end_by_divergence,
    })
}

/// Where `partial` stops being a prefix of `text`, moved back to the start of
/// a special-token-like markup (`<...>`, `[...]`) left open at that point.
fn divergence(text: &str, partial: &str) -> usize {
    let mut common = text
        .char_indices()
        .zip(partial.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| text.len().min(partial.len()));
    while !text.is_char_boundary(common) {
        common -= 1;
    }
    let head = &text[..common];
    for (open, close) in [('<', '>'), ('[', ']')] {
        // Only a short unclosed tail is a cut special token; an old `[` in
        // the content is not.
        if let Some(o) = head.rfind(open)
            && common - o <= 16
            && head[o..].find(close).is_none()
        {
            return o;
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TemplateConfig, builtin_template};

    fn msgs(pairs: &[(&str, &str)]) -> Vec<Value> {
        pairs
            .iter()
            .map(|(r, c)| {
                crate::json::map([("role", Value::from(*r)), ("content", Value::from(*c))])
            })
            .collect()
    }

    fn template(name: &str, bos: &str, eos: &str) -> ChatTemplate {
        let cfg = TemplateConfig {
            bos_token: bos.into(),
            eos_token: eos.into(),
            ..TemplateConfig::default()
        };
        ChatTemplate::new(name, builtin_template(name).unwrap(), cfg).unwrap()
    }

    fn spanned(r: &SpannedRender) -> Vec<&str> {
        r.spans.iter().map(|&(s, e)| &r.text[s..e]).collect()
    }

    #[test]
    fn chatml_multi_turn_spans_include_end_of_turn() {
        let t = template("chatml", "", "<|im_end|>");
        let m = msgs(&[
            ("system", "S"),
            ("user", "Q1"),
            ("assistant", "A1"),
            ("user", "Q2"),
            ("assistant", "A2"),
        ]);
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap();
        assert_eq!(spanned(&r), ["A1<|im_end|>\n", "A2<|im_end|>\n"]);
        assert!(r.prompt.ends_with("Q2<|im_end|>\n<|im_start|>assistant\n"));
        assert!(!r.end_by_divergence);
    }

    #[test]
    fn phi3_final_eos_is_trained_and_middle_turns_stop_before_the_next_header() {
        let t = template("phi3", "<s>", "<|endoftext|>");
        let m = msgs(&[
            ("user", "Q1"),
            ("assistant", "A1"),
            ("user", "Q2"),
            ("assistant", "A2"),
        ]);
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap();
        assert_eq!(spanned(&r), ["A1<|end|>\n", "A2<|end|>\n<|endoftext|>"]);
        assert!(r.end_by_divergence);
    }

    #[test]
    fn llama3_trimmed_content() {
        let t = template("llama3", "<|begin_of_text|>", "<|eot_id|>");
        let m = msgs(&[("user", "Q"), ("assistant", "  A  ")]);
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap();
        assert_eq!(spanned(&r), ["A<|eot_id|>"]);
    }

    #[test]
    fn mistral_system_breaks_the_prefix_property() {
        // v0.3 moves the system prompt into the last user turn only when that
        // turn ends the conversation: the prompt and the training text differ.
        let t = template("mistral", "<s>", "</s>");
        let m = msgs(&[("system", "S"), ("user", "Q"), ("assistant", "A")]);
        let err = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap_err();
        assert!(matches!(err, SpanError::PrefixMismatch { turn: 0 }));
        // Without a system message the property holds.
        let m = msgs(&[
            ("user", "Q1"),
            ("assistant", "A1"),
            ("user", "Q2"),
            ("assistant", "A2"),
        ]);
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap();
        assert_eq!(spanned(&r), [" A1</s>", " A2</s>"]);
    }

    #[test]
    fn last_turn_fallback() {
        // A template that rewrites earlier assistant turns (as reasoning
        // templates drop old thoughts): only the final turn can be trained.
        let src = "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}[old]{% else %}<{{ m.role }}>{{ m.content }}</>{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
        let t = ChatTemplate::new("rewriter", src, TemplateConfig::default()).unwrap();
        let m = msgs(&[
            ("user", "Q1"),
            ("assistant", "A1"),
            ("user", "Q2"),
            ("assistant", "A2"),
        ]);
        assert!(matches!(
            render_with_spans(&t, &m, None, OnPrefixMismatch::Error),
            Err(SpanError::PrefixMismatch { turn: 0 })
        ));
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::LastTurn).unwrap();
        assert!(r.last_turn_only);
        assert_eq!(spanned(&r), ["A2</>"]);
    }

    #[test]
    fn conversation_ending_with_user() {
        let t = template("chatml", "", "<|im_end|>");
        let m = msgs(&[("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]);
        let r = render_with_spans(&t, &m, None, OnPrefixMismatch::Error).unwrap();
        assert_eq!(spanned(&r), ["A1<|im_end|>\n"]);
        assert!(r.prompt.ends_with("Q2<|im_end|>\n<|im_start|>assistant\n"));
    }
}
