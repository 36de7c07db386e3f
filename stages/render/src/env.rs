//! A compiled chat template and the Jinja environment transformers uses.
//!
//! transformers renders `chat_template` with an `ImmutableSandboxedEnvironment`
//! (`trim_blocks`, `lstrip_blocks`, the loop-controls extension, its own
//! `tojson`, `raise_exception`, `strftime_now`, TRL's `{% generation %}` tag).
//! This module sets minijinja up the same way, so that what is trained on is
//! byte for byte what the model is later served with. The environment has no
//! loader: a template cannot read files, environment variables or the clock.

use crate::date::Date;
use crate::error::RenderError;
use crate::pyjson;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, Rest};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};
use std::fmt;
use std::sync::Arc;

/// What a template sees besides the conversation.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    /// `bos_token` (`""` when the model has none, as transformers passes it).
    pub bos_token: String,
    /// `eos_token`.
    pub eos_token: String,
    /// The date `strftime_now` formats (never the wall clock).
    pub date: Date,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            bos_token: String::new(),
            eos_token: String::new(),
            date: Date::parse(crate::date::DEFAULT_DATE).expect("default date is valid"),
        }
    }
}

/// A chat template compiled once and rendered many times (cheap to share
/// between threads: rendering takes `&self`).
pub struct ChatTemplate {
    name: String,
    source: String,
    config: TemplateConfig,
    env: Environment<'static>,
    // The token texts as template values, made once (cheap to clone).
    bos: Value,
    eos: Value,
}

/// The variables transformers passes to a chat template. A struct rather than
/// a map: it is built for every rendering, and a lookup by name needs no hashing.
#[derive(Debug)]
struct RenderContext {
    messages: Value,
    tools: Value,
    add_generation_prompt: bool,
    bos_token: Value,
    eos_token: Value,
}

impl Object for RenderContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "messages" => self.messages.clone(),
            "tools" => self.tools.clone(),
            "documents" => Value::from(()),
            "add_generation_prompt" => Value::from(self.add_generation_prompt),
            "bos_token" => self.bos_token.clone(),
            "eos_token" => self.eos_token.clone(),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&[
            "messages",
            "tools",
            "documents",
            "add_generation_prompt",
            "bos_token",
            "eos_token",
        ])
    }
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Marks an error raised by the template's `raise_exception`, so that it is
/// reported as the template's own message rather than an engine failure.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

impl ChatTemplate {
    /// Compile `source` under `name` (used in every error message).
    pub fn new(
        name: impl Into<String>,
        source: &str,
        config: TemplateConfig,
    ) -> Result<ChatTemplate, RenderError> {
        let name = name.into();
        let env = environment(&name, source, &config)?;
        Ok(ChatTemplate {
            name,
            source: source.to_owned(),
            bos: Value::from(config.bos_token.as_str()),
            eos: Value::from(config.eos_token.as_str()),
            config,
            env,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template text as given (before the `{% generation %}` rewrite).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn config(&self) -> &TemplateConfig {
        &self.config
    }

    /// Render a conversation. `messages` is a list of maps (`role`, `content`,
    /// and whatever else the template reads, e.g. `tool_calls`); `tools` is
    /// the tool list or `None` (passed as `none`, as transformers does).
    pub fn render(
        &self,
        messages: &Value,
        tools: Option<&Value>,
        add_generation_prompt: bool,
    ) -> Result<String, RenderError> {
        let ctx = Value::from_object(RenderContext {
            messages: messages.clone(),
            tools: tools.cloned().unwrap_or(Value::from(())),
            add_generation_prompt,
            bos_token: self.bos.clone(),
            eos_token: self.eos.clone(),
        });
        let template = self
            .env
            .get_template(&self.name)
            .map_err(|e| self.error(e))?;
        template.render(ctx).map_err(|e| self.error(e))
    }

    /// Render from JSON text (`messages` a list, `tools` a list), keeping the
    /// key order of the JSON objects as Python does.
    pub fn render_json(
        &self,
        messages_json: &str,
        tools_json: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String, RenderError> {
        let messages = crate::json::parse(messages_json, "messages")?;
        if messages.kind() != minijinja::value::ValueKind::Seq {
            return Err(RenderError::Shape {
                what: "messages".to_owned(),
                expected: "a JSON list of {\"role\": ..., \"content\": ...} objects".to_owned(),
            });
        }
        let tools = tools_json
            .map(|t| crate::json::parse(t, "tools"))
            .transpose()?;
        self.render(&messages, tools.as_ref(), add_generation_prompt)
    }

    fn error(&self, err: Error) -> RenderError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = cause {
            if let Some(raised) = e.downcast_ref::<Raised>() {
                return RenderError::Raised {
                    template: self.name.clone(),
                    message: raised.0.clone(),
                };
            }
            cause = e.source();
        }
        RenderError::Render {
            template: self.name.clone(),
            detail: err.to_string(),
        }
    }
}

fn environment(
    name: &str,
    source: &str,
    config: &TemplateConfig,
) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| RenderError::Syntax {
            template: name.to_owned(),
            detail: e.to_string(),
        })?;
    env.set_syntax(syntax);
    // Chat templates produce plain text: never HTML-escape.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // `.strip()`, `.startswith()`, `.split()`, `dict.items()`, ...
    env.set_unknown_method_callback(python_methods);
    // Python prints `None`, `True`, `False` and its own float/list/dict repr.
    env.set_formatter(python_formatter);
    env.add_filter("tojson", pyjson::tojson_filter);
    env.add_filter("trim", python_trim);
    env.add_test("sequence", is_sequence);
    env.add_test("iterable", is_iterable);
    env.add_function("raise_exception", raise_exception);
    let date = config.date;
    env.add_function("strftime_now", move |format: &str| {
        date.strftime(format).map_err(|detail| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now: {detail}"),
            )
        })
    });
    env.add_template_owned(name.to_owned(), rewrite_generation_tags(source))
        .map_err(|e| RenderError::Syntax {
            template: name.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(env)
}

/// Python methods on values: minijinja-contrib's pycompat, except where its
/// Rust semantics differ from Python's: whitespace for `strip`/`split` (Python
/// counts U+001C..U+001F), and `str.title()` (a word starts after any
/// uncased character, so `"{\"temp\"` -> `{"Temp"`).
fn python_methods(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    use minijinja::value::{ValueKind, from_args};
    if let (ValueKind::String, Some(s)) = (value.kind(), value.as_str()) {
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<Value>,) = from_args(args)?;
                if chars.as_ref().is_none_or(|c| c.is_none()) {
                    return Ok(Value::from(match method {
                        "strip" => s.trim_matches(is_python_space),
                        "lstrip" => s.trim_start_matches(is_python_space),
                        _ => s.trim_end_matches(is_python_space),
                    }));
                }
            }
            "title" => {
                let () = from_args(args)?;
                let mut out = String::with_capacity(s.len());
                let mut previous_cased = false;
                for c in s.chars() {
                    if previous_cased {
                        out.extend(c.to_lowercase());
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    previous_cased = c.is_lowercase() || c.is_uppercase();
                }
                return Ok(Value::from(out));
            }
            "split" => {
                let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
                if sep.as_ref().is_none_or(|c| c.is_none()) {
                    let limit = maxsplit.filter(|m| *m >= 0).map(|m| m as usize);
                    let mut parts = Vec::new();
                    let mut rest = s.trim_start_matches(is_python_space);
                    while !rest.is_empty() {
                        if limit.is_some_and(|l| parts.len() == l) {
                            parts.push(Value::from(rest));
                            break;
                        }
                        let end = rest.find(is_python_space).unwrap_or(rest.len());
                        parts.push(Value::from(&rest[..end]));
                        rest = rest[end..].trim_start_matches(is_python_space);
                    }
                    return Ok(Value::from(parts));
                }
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    use minijinja::value::ValueKind;
    match value.kind() {
        // Plain text is written as is (no escaping, no `fmt` machinery): this
        // is most of a chat template's output.
        ValueKind::String => out
            .write_str(value.as_str().unwrap_or_default())
            .map_err(Error::from),
        ValueKind::Undefined => minijinja::escape_formatter(out, state, value),
        ValueKind::Number if value.is_integer() => minijinja::escape_formatter(out, state, value),
        _ => {
            let mut text = String::new();
            python_repr(value, &mut text);
            out.write_str(&text).map_err(Error::from)
        }
    }
}

/// Python's `str()` of a value (`repr` inside containers).
pub(crate) fn python_repr(value: &Value, out: &mut String) {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::None => out.push_str("None"),
        ValueKind::Undefined => {}
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&pyjson::python_float_repr(f, false)),
            Err(_) => out.push_str(&value.to_string()),
        },
        ValueKind::Seq => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_item_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_item_repr(&key, out);
                    out.push_str(": ");
                    python_item_repr(&value.get_item(&key).unwrap_or_default(), out);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
}

fn python_item_repr(value: &Value, out: &mut String) {
    match value.as_str() {
        Some(s) if value.kind() == minijinja::value::ValueKind::String => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        out.push_str(&format!("\\x{:02x}", c as u32));
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        }
        _ => python_repr(value, out),
    }
}

fn raise_exception(message: Rest<Value>) -> Result<Value, Error> {
    let text = message
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
}

/// Jinja2's `trim` is Python's `str.strip(chars)`: Python's whitespace set
/// (which, unlike Rust's, includes the separators U+001C..U+001F).
fn python_trim(value: &str, chars: Option<&str>, kwargs: Kwargs) -> Result<String, Error> {
    let chars = match chars {
        Some(c) => Some(c.to_owned()),
        None => kwargs.get::<Option<String>>("chars")?,
    };
    kwargs.assert_all_used()?;
    Ok(match chars {
        Some(set) => value.trim_matches(|c| set.contains(c)).to_owned(),
        None => value.trim_matches(is_python_space).to_owned(),
    })
}

pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Jinja2: anything with `len()` and `[]` is a sequence, strings and dicts included.
fn is_sequence(value: &Value) -> bool {
    use minijinja::value::ValueKind::*;
    matches!(value.kind(), Seq | Map | String | Undefined)
}

/// Jinja2: anything `iter()` accepts, strings and undefined included.
fn is_iterable(value: &Value) -> bool {
    use minijinja::value::ValueKind::*;
    matches!(value.kind(), String | Undefined) || value.try_iter().is_ok()
}

/// TRL marks the trained part of assistant turns with
/// `{% generation %}...{% endgeneration %}` (a transformers extension). minijinja
/// has no custom tags, so each marker becomes an equivalent no-op block
/// (`{% if true %}` / `{% endif %}`) with the same whitespace-control
/// characters: trim_blocks/lstrip_blocks then treat the text around it exactly
/// as Jinja2 treats the original tag. Spans are found by prefix rendering
/// instead of these markers.
pub(crate) fn rewrite_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_owned();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((len, replacement)) => {
                out.push_str(&replacement);
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `tag` starts with `{%[-+]? (end)?generation [-+]?%}`, its length and replacement.
fn parse_generation_tag(tag: &str) -> Option<(usize, String)> {
    let body = &tag[2..];
    let (open_ctl, body) = match body.chars().next() {
        Some(c @ ('-' | '+')) => (c.to_string(), &body[1..]),
        _ => (String::new(), body),
    };
    let trimmed = body.trim_start();
    let (word, after) = if let Some(a) = trimmed.strip_prefix("endgeneration") {
        ("endif", a)
    } else if let Some(a) = trimmed.strip_prefix("generation") {
        ("if true", a)
    } else {
        return None;
    };
    let after_ws = after.trim_start();
    if after_ws.len() == after.len() && !after.starts_with(['-', '+', '%']) {
        return None; // `generationfoo`: a different word
    }
    let (close_ctl, after_ctl) = match after_ws.chars().next() {
        Some(c @ ('-' | '+')) => (c.to_string(), &after_ws[1..]),
        _ => (String::new(), after_ws),
    };
    let after_close = after_ctl.strip_prefix("%}")?;
    let len = tag.len() - after_close.len();
    Some((len, format!("{{%{open_ctl} {word} {close_ctl}%}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &str) -> Result<String, RenderError> {
        ChatTemplate::new("t", source, TemplateConfig::default())?
            .render_json(messages, None, false)
    }

    #[test]
    fn generation_tags_become_noop_blocks() {
        assert_eq!(
            &*rewrite_generation_tags("a{%- generation -%}b{% endgeneration %}c{%generationx%}"),
            "a{%- if true -%}b{% endif %}c{%generationx%}"
        );
        let src = "{% for m in messages %}{% if m.role == 'assistant' %}\n{% generation %}\n{{ m.content }}{% endgeneration %}\n{% else %}{{ m.content }}{% endif %}{% endfor %}";
        let out = render(
            src,
            r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]"#,
        )
        .unwrap();
        assert_eq!(out, "hiyo");
    }

    #[test]
    fn raise_exception_keeps_the_message() {
        let err = render("{{ raise_exception('No system role') }}", "[]").unwrap_err();
        assert_eq!(err.raised_message(), Some("No system role"));
        assert!(err.to_string().contains("`t`"), "{err}");
    }

    #[test]
    fn tojson_matches_python() {
        let src = "{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}";
        let out = render(src, r#"[{"z":"<a&b>'","a":[1,2.5,null,true],"é":{}}]"#).unwrap();
        assert_eq!(
            out,
            "{\"z\": \"<a&b>'\", \"a\": [1, 2.5, null, true], \"é\": {}}|{\n  \"z\": \"<a&b>'\",\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"é\": {}\n}|[]"
        );
    }

    #[test]
    fn python_methods_namespace_and_loop_controls() {
        let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% if loop.index0 == 2 %}{% break %}{% endif %}{% set ns.n = ns.n + 1 %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}{{ ns.n }}{{ 'a,b'.split(',') | length }}";
        let out = render(
            src,
            r#"[{"role":"user","content":" a "},{"role":"user","content":"b"},{"role":"user","content":"c"}]"#,
        )
        .unwrap();
        assert_eq!(out, "A!B22");
    }

    #[test]
    fn strftime_uses_the_configured_date() {
        let cfg = TemplateConfig {
            date: Date::parse("2025-01-02").unwrap(),
            ..TemplateConfig::default()
        };
        let t = ChatTemplate::new("t", "{{ strftime_now('%d %b %Y') }}", cfg).unwrap();
        assert_eq!(t.render_json("[]", None, false).unwrap(), "02 Jan 2025");
    }

    #[test]
    fn whitespace_control_matches_jinja2() {
        // trim_blocks eats the newline after a block tag; lstrip_blocks the
        // indentation before it; the template's single trailing newline goes.
        let src = "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let out = render(src, r#"[{"role":"user","content":"x"}]"#).unwrap();
        assert_eq!(out, "[x]\n");
    }

    #[test]
    fn no_file_access() {
        let err = render("{% include 'etc/passwd' %}", "[]").unwrap_err();
        assert!(matches!(err, RenderError::Render { .. }), "{err}");
    }

    #[test]
    fn jinja2_type_tests() {
        let out = render(
            "{{ 'a' is sequence }}{{ 'a' is iterable }}{{ {} is sequence }}{{ 1 is iterable }}",
            "[]",
        )
        .unwrap();
        assert_eq!(out, "TrueTrueTrueFalse");
        let out = render(
            "{{ none }}|{{ [1, 'a', none, 2.0] }}|{{ {'k': \"it's\"} }}",
            "[]",
        )
        .unwrap();
        assert_eq!(out, "None|[1, 'a', None, 2.0]|{'k': \"it's\"}");
    }
}
