//! Canonical rows -> rendered rows.
//!
//! Each [`Row`] becomes a conversation (its system prompt, or the one from the
//! params when it has none; for classification rows, the task prompt around
//! `text` and the label as the answer), rendered with its trained spans (see
//! [`crate::spans`]), the generation prompt and the reference answer that
//! evaluation compares against.

use crate::spans::{SpanError, render_with_spans};
use crate::{ChatTemplate, RenderError};
use minijinja::Value;
use pipe_rows::{RenderedRow, Row};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::spans::OnPrefixMismatch;

/// The task prompt for classification rows: one text with `{text}`, or one
/// per task (`Row::task`), with an optional `default` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RowPrompt {
    Single(String),
    PerTask(BTreeMap<String, String>),
}

impl RowPrompt {
    /// Check that every prompt has a `{text}` slot.
    pub fn validate(&self) -> Result<(), String> {
        let check = |key: &str, p: &str| {
            if p.contains("{text}") {
                Ok(())
            } else {
                Err(format!(
                    "prompt{key} has no `{{text}}` slot for the row's text"
                ))
            }
        };
        match self {
            RowPrompt::Single(p) => check("", p),
            RowPrompt::PerTask(map) => {
                if map.is_empty() {
                    return Err("prompt map is empty: give one prompt per task".to_owned());
                }
                map.iter()
                    .try_for_each(|(k, p)| check(&format!(" for task `{k}`"), p))
            }
        }
    }

    fn for_task(&self, task: Option<&str>) -> Result<&str, String> {
        match self {
            RowPrompt::Single(p) => Ok(p),
            RowPrompt::PerTask(map) => task
                .and_then(|t| map.get(t))
                .or_else(|| map.get("default"))
                .map(String::as_str)
                .ok_or_else(|| {
                    format!(
                        "no prompt for task {} (prompts are given for: {}); add it or a `default` entry",
                        task.map_or("(none)".to_owned(), |t| format!("`{t}`")),
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }),
        }
    }
}

/// How rows become conversations.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// System prompt for rows that have none.
    pub system: Option<String>,
    /// Task prompt for classification rows (`text` + `label`).
    pub prompt: Option<RowPrompt>,
    pub on_prefix_mismatch: OnPrefixMismatch,
}

/// Counters for the stage's stats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderStats {
    pub rows: u64,
    /// Rows that got the params' system prompt because they had none.
    pub system_added: u64,
    /// Rows rendered through the task prompt.
    pub classification_rows: u64,
    pub assistant_turns: u64,
    /// Rows whose earlier turns were not trained (`on_prefix_mismatch: last_turn`).
    pub last_turn_only: u64,
    /// Rows where a middle turn's end was found by divergence (see `spans`).
    pub end_by_divergence: u64,
    /// Rows with no assistant turn to train on.
    pub rows_without_answer: u64,
    pub rendered_bytes: u64,
    pub trained_bytes: u64,
}

impl RenderStats {
    fn add(&mut self, other: &RenderStats) {
        self.rows += other.rows;
        self.system_added += other.system_added;
        self.classification_rows += other.classification_rows;
        self.assistant_turns += other.assistant_turns;
        self.last_turn_only += other.last_turn_only;
        self.end_by_divergence += other.end_by_divergence;
        self.rows_without_answer += other.rows_without_answer;
        self.rendered_bytes += other.rendered_bytes;
        self.trained_bytes += other.trained_bytes;
    }
}

fn row_id(row: &Row) -> String {
    format!("{}:{}", row.source_file, row.source_row)
}

fn message(role: &str, content: &str) -> Value {
    crate::json::map([
        ("role", Value::from(role)),
        ("content", Value::from(content)),
    ])
}

/// Render one row; its counters go to `stats`.
pub fn render_row(
    template: &ChatTemplate,
    row: &Row,
    options: &RenderOptions,
    stats: &mut RenderStats,
) -> Result<RenderedRow, RenderError> {
    let bad = |detail: String| RenderError::BadRow {
        row: row_id(row),
        detail,
    };
    let mut messages: Vec<Value> = Vec::with_capacity(row.messages.len() + 1);
    let system = match (&row.system, &options.system) {
        (Some(s), _) => Some(s.as_str()),
        (None, Some(s)) => {
            stats.system_added += 1;
            Some(s.as_str())
        }
        (None, None) => None,
    };
    if let Some(s) = system {
        messages.push(message("system", s));
    }
    let mut reference = None;
    match (&row.text, &options.prompt) {
        (Some(text), Some(prompt)) => {
            stats.classification_rows += 1;
            let prompt = prompt.for_task(row.task.as_deref()).map_err(bad)?;
            messages.push(message("user", &prompt.replace("{text}", text)));
            if let Some(label) = &row.label {
                messages.push(message("assistant", label));
                reference = Some(label.clone());
            }
        }
        _ => {
            for m in &row.messages {
                messages.push(message(&m.role, &m.content));
            }
            if let Some(last) = row.messages.last()
                && last.role == "assistant"
            {
                reference = Some(last.content.clone());
            }
        }
    }
    if messages.iter().all(|m| {
        m.get_attr("role")
            .is_ok_and(|r| r.as_str() == Some("system"))
    }) {
        return Err(bad(
            "the row has no conversation (no messages, or a `text` without a `prompt:` param)"
                .to_owned(),
        ));
    }
    let tools = row
        .tools
        .as_deref()
        .map(|t| crate::json::parse(t, "tools"))
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let rendered = render_with_spans(
        template,
        &messages,
        tools.as_ref(),
        options.on_prefix_mismatch,
    )
    .map_err(|e| match e {
        SpanError::Render(source) => RenderError::Row {
            row: row_id(row),
            source: Box::new(source),
        },
        SpanError::PrefixMismatch { turn } => RenderError::PrefixMismatch {
            template: template.name().to_owned(),
            row: row_id(row),
            turn,
        },
    })?;
    stats.rows += 1;
    stats.assistant_turns += rendered.spans.len() as u64;
    stats.last_turn_only += u64::from(rendered.last_turn_only);
    stats.end_by_divergence += u64::from(rendered.end_by_divergence);
    stats.rows_without_answer += u64::from(rendered.spans.is_empty());
    stats.rendered_bytes += rendered.text.len() as u64;
    stats.trained_bytes += rendered
        .spans
        .iter()
        .map(|(s, e)| (e - s) as u64)
        .sum::<u64>();
    let spans = rendered
        .spans
        .iter()
        .map(|&(s, e)| {
            Ok((
                u32::try_from(s).map_err(|_| bad("rendered text over 4 GiB".to_owned()))?,
                u32::try_from(e).map_err(|_| bad("rendered text over 4 GiB".to_owned()))?,
            ))
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    Ok(RenderedRow {
        row: row.clone(),
        rendered: rendered.text,
        spans,
        prompt: rendered.prompt,
        reference: reference.unwrap_or_default(),
    })
}

/// Render rows in parallel (rayon), keeping their order. The first failing
/// row (in row order) is the error.
pub fn render_rows(
    template: &ChatTemplate,
    rows: &[Row],
    options: &RenderOptions,
) -> Result<(Vec<RenderedRow>, RenderStats), RenderError> {
    const CHUNK: usize = 256;
    let chunks: Vec<Result<(Vec<RenderedRow>, RenderStats), RenderError>> = rows
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut stats = RenderStats::default();
            let out = chunk
                .iter()
                .map(|row| render_row(template, row, options, &mut stats))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((out, stats))
        })
        .collect();
    let mut all = Vec::with_capacity(rows.len());
    let mut stats = RenderStats::default();
    for chunk in chunks {
        let (out, s) = chunk?;
        all.extend(out);
        stats.add(&s);
    }
    Ok((all, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TemplateConfig, builtin_template};
    use pipe_rows::Message;

    fn chatml() -> ChatTemplate {
        let cfg = TemplateConfig {
            eos_token: "<|im_end|>".into(),
            ..TemplateConfig::default()
        };
        ChatTemplate::new("chatml", builtin_template("chatml").unwrap(), cfg).unwrap()
    }

    fn row(messages: &[(&str, &str)]) -> Row {
        Row {
            messages: messages
                .iter()
                .map(|(r, c)| Message {
                    role: (*r).into(),
                    content: (*c).into(),
                })
                .collect(),
            system: None,
            tools: None,
            text: None,
            label: None,
            task: None,
            source_file: "data.jsonl".into(),
            source_row: 7,
        }
    }

    #[test]
    fn adds_the_system_prompt_and_counts_it() {
        let options = RenderOptions {
            system: Some("Be careful.".into()),
            ..RenderOptions::default()
        };
        let mut with_own = row(&[("user", "Q"), ("assistant", "A")]);
        with_own.system = Some("Own.".into());
        let rows = vec![row(&[("user", "Q"), ("assistant", "A")]), with_own];
        let (out, stats) = render_rows(&chatml(), &rows, &options).unwrap();
        assert_eq!(stats.system_added, 1);
        assert_eq!(
            out[0].rendered,
            "<|im_start|>system\nBe careful.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        );
        assert!(
            out[1]
                .rendered
                .starts_with("<|im_start|>system\nOwn.<|im_end|>")
        );
        let (s, e) = out[0].spans[0];
        assert_eq!(&out[0].rendered[s as usize..e as usize], "A<|im_end|>\n");
        assert_eq!(out[0].reference, "A");
        assert_eq!(
            out[0].prompt,
            "<|im_start|>system\nBe careful.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn classification_rows_use_the_task_prompt() {
        let mut r = row(&[]);
        r.text = Some("The seller warrants the goods.".into());
        r.label = Some("Yes".into());
        r.task = Some("warranty".into());
        let mut prompts = BTreeMap::new();
        prompts.insert(
            "warranty".to_owned(),
            "Is this a warranty? Answer Yes or No.\n\n{text}".to_owned(),
        );
        let options = RenderOptions {
            prompt: Some(RowPrompt::PerTask(prompts)),
            ..RenderOptions::default()
        };
        let mut stats = RenderStats::default();
        let out = render_row(&chatml(), &r, &options, &mut stats).unwrap();
        assert_eq!(stats.classification_rows, 1);
        assert!(
            out.prompt
                .contains("Answer Yes or No.\n\nThe seller warrants the goods.<|im_end|>")
        );
        assert_eq!(out.reference, "Yes");
        let (s, e) = out.spans[0];
        assert_eq!(&out.rendered[s as usize..e as usize], "Yes<|im_end|>\n");
        // A task without a prompt is named in the error.
        r.task = Some("other".into());
        let err = render_row(&chatml(), &r, &options, &mut stats).unwrap_err();
        assert!(
            err.to_string().contains("`other`") && err.to_string().contains("data.jsonl:7"),
            "{err}"
        );
    }

    #[test]
    fn failures_name_the_template_and_the_row() {
        let cfg = TemplateConfig {
            bos_token: "<bos>".into(),
            eos_token: "<eos>".into(),
            ..TemplateConfig::default()
        };
        let gemma = ChatTemplate::new("gemma", builtin_template("gemma").unwrap(), cfg).unwrap();
        let options = RenderOptions {
            system: Some("S".into()),
            ..RenderOptions::default()
        };
        let rows = vec![row(&[("user", "Q"), ("assistant", "A")])];
        let err = render_rows(&gemma, &rows, &options).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("data.jsonl:7")
                && text.contains("gemma")
                && text.contains("System role not supported"),
            "{text}"
        );

        let mistral = ChatTemplate::new(
            "mistral",
            builtin_template("mistral").unwrap(),
            TemplateConfig::default(),
        )
        .unwrap();
        let err = render_rows(&mistral, &rows, &options).unwrap_err();
        assert!(matches!(err, RenderError::PrefixMismatch { .. }), "{err}");
        assert!(err.to_string().contains("mistral") && err.to_string().contains("data.jsonl:7"));
    }

    #[test]
    fn parallel_rendering_keeps_order() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| {
                let mut r = row(&[("user", &format!("Q{i}")), ("assistant", &format!("A{i}"))]);
                r.source_row = i;
                r
            })
            .collect();
        let (out, stats) = render_rows(&chatml(), &rows, &RenderOptions::default()).unwrap();
        assert_eq!(stats.rows, 1000);
        assert_eq!(stats.assistant_turns, 1000);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.reference, format!("A{i}"));
        }
    }
}
