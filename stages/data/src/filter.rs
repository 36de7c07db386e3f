//! `filter`: independent quality rules. A row is dropped by the first rule
//! that fires (in the order of [`RULES`]); each dropped row goes to the
//! `dropped` table with its rule and a detail, and each rule counts its drops.
//!
//! Presets fill in every rule not set explicitly (explicit keys win):
//!
//! | preset | sets |
//! |---|---|
//! | `sft-en` | empty/placeholder responses, refusals, Gopher repetition (datatrove thresholds), control characters, symbol/word ratio <= 0.5, >= 50% of response words with a letter, response >= 50% Latin script, response <= 20,000 chars |
//! | `sft-zh` | as `sft-en`, but the script is Han (>= 30% of letters, leaving room for English terms and code) |
//! | `legal` | empty/placeholder responses, refusals, control characters, duplicated lines/paragraphs only (50%); no n-gram repetition, symbol, digit or letter-share rules, so statutes with section numbers, "§" and boilerplate terms stay; response <= 50,000 chars |

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use pipe_rows::Row;
use rayon::prelude::*;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::prehashed::{PrehashedMap, prehashed_map};
use crate::text::{
    Field, WordGrams, any_equal_hash, ascii_bigram_may_repeat, field_str, is_cjk, word_count, words,
};

/// 2: `rows.parquet` of more than one row group has ~1 MiB pages (pipe-rows writes group by group).
/// 3: a refusal names the leftmost phrase (before: the one that ended first).
pub const FILTER_CODE_VERSION: u32 = 3;

/// Named bundles of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Preset {
    #[serde(rename = "sft-en")]
    SftEn,
    #[serde(rename = "sft-zh")]
    SftZh,
    #[serde(rename = "legal")]
    Legal,
}

/// Length bounds for one side of the conversation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Fewest characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_chars: Option<usize>,
    /// Most characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// Fewest words (a CJK character counts as a word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_words: Option<usize>,
    /// Most words (a CJK character counts as a word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_words: Option<usize>,
}

impl Bounds {
    fn is_empty(&self) -> bool {
        *self == Bounds::default()
    }
}

/// Bounds on a token count.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRange {
    /// Fewest tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<usize>,
    /// Most tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

impl TokenRange {
    fn is_empty(&self) -> bool {
        *self == TokenRange::default()
    }
}

/// Length bounds in tokens of the model's tokenizer, for each side.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBounds {
    /// Tokens of the prompt side (user and tool turns, joined by newlines).
    #[serde(default, skip_serializing_if = "TokenRange::is_empty")]
    pub prompt: TokenRange,
    /// Tokens of the response side (assistant turns, joined by newlines).
    #[serde(default, skip_serializing_if = "TokenRange::is_empty")]
    pub response: TokenRange,
}

impl TokenBounds {
    /// Whether any bound is set (and so a tokenizer is needed).
    pub fn is_empty(&self) -> bool {
        self.prompt.is_empty() && self.response.is_empty()
    }
}

/// Counts the tokens of a text. `pipe-data` has no tokenizer of its own: the
/// caller builds one from the recipe's model (the `pipe` binary uses the
/// model's tokenizer, without BOS or other added tokens).
pub type TokenCounter<'a> = &'a (dyn Fn(&str) -> usize + Sync);

/// Gopher repetition thresholds (datatrove's `GopherRepetitionFilter` defaults), on the response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repetition {
    /// Largest share of lines that are duplicates of an earlier line.
    #[serde(default = "r_line")]
    pub dup_line_frac: f64,
    /// Largest share of paragraphs (split on blank lines) that are duplicates.
    #[serde(default = "r_line")]
    pub dup_para_frac: f64,
    /// Largest share of characters in duplicated lines.
    #[serde(default = "r_char")]
    pub dup_line_char_frac: f64,
    /// Largest share of characters in duplicated paragraphs.
    #[serde(default = "r_char")]
    pub dup_para_char_frac: f64,
    /// `[n, max share]`: characters covered by the most frequent n-gram.
    #[serde(default = "r_top")]
    pub top_n_grams: Vec<(usize, f64)>,
    /// `[n, max share]`: characters in n-grams that repeat an earlier one.
    #[serde(default = "r_dup")]
    pub dup_n_grams: Vec<(usize, f64)>,
}

fn r_line() -> f64 {
    0.3
}
fn r_char() -> f64 {
    0.2
}
fn r_top() -> Vec<(usize, f64)> {
    vec![(2, 0.2), (3, 0.18), (4, 0.16)]
}
fn r_dup() -> Vec<(usize, f64)> {
    vec![
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    ]
}

impl Default for Repetition {
    fn default() -> Self {
        Self {
            dup_line_frac: r_line(),
            dup_para_frac: r_line(),
            dup_line_char_frac: r_char(),
            dup_para_char_frac: r_char(),
            top_n_grams: r_top(),
            dup_n_grams: r_dup(),
        }
    }
}

/// What to do with rows that contain personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Drop the row.
    Drop,
    /// Replace each match with a tag such as `<EMAIL>` in every turn, keep the row.
    Redact,
    /// Only count.
    Keep,
}

/// Kinds of personal data.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Ip,
    /// 13-19 digits passing the Luhn check.
    CreditCard,
    /// Chinese resident ID (18 characters with a valid check digit).
    CnId,
}

impl PiiKind {
    fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Phone => "<PHONE>",
            PiiKind::Ip => "<IP>",
            PiiKind::CreditCard => "<CREDIT_CARD>",
            PiiKind::CnId => "<CN_ID>",
        }
    }
}

fn all_pii() -> Vec<PiiKind> {
    vec![
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ip,
        PiiKind::CreditCard,
        PiiKind::CnId,
    ]
}

/// PII detection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pii {
    /// drop, redact or keep (count only).
    pub action: PiiAction,
    /// Which kinds to look for (default: all).
    #[serde(default = "all_pii")]
    pub kinds: Vec<PiiKind>,
}

/// Writing systems for the script rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
pub enum Script {
    Latin,
    Han,
    Cyrillic,
    Greek,
    Arabic,
    Hebrew,
    Devanagari,
    Kana,
    Hangul,
    Thai,
}

impl Script {
    fn of(c: char) -> Option<Script> {
        let u = c as u32;
        Some(match u {
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
            0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
            0x400..=0x52F => Script::Cyrillic,
            0x590..=0x5FF => Script::Hebrew,
            0x600..=0x6FF | 0x750..=0x77F => Script::Arabic,
            0x900..=0x97F => Script::Devanagari,
            0xE00..=0xE7F => Script::Thai,
            0x3040..=0x30FF | 0x31F0..=0x31FF => Script::Kana,
            0xAC00..=0xD7AF | 0x1100..=0x11FF => Script::Hangul,
            _ if is_cjk(c) => Script::Han,
            _ => return None,
        })
    }
}

/// The share of letters in the expected script(s).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    /// Accepted scripts, e.g. `[Han]` or `[Latin]`.
    pub expected: Vec<Script>,
    /// Least share of letters (characters with a known script) in them.
    #[serde(default = "half")]
    pub min_fraction: f64,
    /// Field checked (default: response).
    #[serde(default = "response_field")]
    pub field: Field,
}

fn half() -> f64 {
    0.5
}
fn response_field() -> Field {
    Field::Response
}

/// A regular expression on one field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// prompt, response, system, text or label.
    pub field: Field,
    /// Rust regex syntax (`(?i)` for case-insensitive).
    pub pattern: String,
}

/// Params of the `filter` stage. Every rule is off unless set here or by `preset`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    /// sft-en, sft-zh or legal: defaults for every rule not set explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Shorthand for `response.min_chars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_chars: Option<usize>,
    /// Shorthand for `response.max_chars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// Length bounds on the prompt side (user and tool turns).
    #[serde(default, skip_serializing_if = "Bounds::is_empty")]
    pub prompt: Bounds,
    /// Length bounds on the response side (assistant turns).
    #[serde(default, skip_serializing_if = "Bounds::is_empty")]
    pub response: Bounds,
    /// Least response/prompt length ratio (characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
    /// Largest response/prompt length ratio (characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    /// Drop empty or placeholder responses ("N/A", "...", whitespace, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_empty: Option<bool>,
    /// Gopher repetition rules on the response (`{}` = datatrove defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition: Option<Repetition>,
    /// Largest ratio of symbols (`#`, `...`, `…`) to words in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_symbol_word_ratio: Option<f64>,
    /// Least share of response words containing a letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_alpha_words: Option<f64>,
    /// Drop rows with control characters (other than tab, newline, carriage return) in any turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_control_chars: Option<bool>,
    /// Drop responses with refusal or boilerplate phrases ("As an AI language model", "作为一个AI语言模型", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_refusals: Option<bool>,
    /// More refusal phrases (case-insensitive), added to the built-in list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusal_phrases: Vec<String>,
    /// Personal data: emails, phones, IPs, credit cards, Chinese IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<Pii>,
    /// Expected script(s) of the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scripts: Option<Scripts>,
    /// Length bounds in tokens, e.g. `{prompt: {max: 1024}, response: {min: 8, max: 2048}}`;
    /// counted by the tokenizer of `model` (the recipe's model unless set here).
    #[serde(default, skip_serializing_if = "TokenBounds::is_empty")]
    pub tokens: TokenBounds,
    /// Model whose tokenizer counts `tokens` (default: the recipe's `model:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Keep only rows where every pattern matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Pattern>,
    /// Drop rows where any pattern matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Pattern>,
}

/// Rule names, in the order they are tried.
pub const RULES: [&str; 17] = [
    "empty_response",
    "control_chars",
    "prompt_length",
    "response_length",
    "prompt_tokens",
    "response_tokens",
    "ratio",
    "refusal",
    "repetition",
    "symbol_ratio",
    "alpha_words",
    "script",
    "pii",
    "include",
    "exclude",
    // not drops: rows changed (redact) or only counted (keep) by the PII rule
    "pii_redacted",
    "pii_kept",
];

/// Built-in refusal and boilerplate phrases (matched case-insensitively in the response).
pub const REFUSALS: &[&str] = &[
    "as an ai language model",
    "as a language model",
    "as an ai assistant, i",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm sorry, but i can't",
    "i cannot fulfill that request",
    "i cannot fulfill this request",
    "i'm unable to provide",
    "i am unable to provide",
    "i'm not able to provide",
    "my knowledge cutoff",
    "openai's policies",
    "作为一个ai语言模型",
    "作为一个人工智能语言模型",
    "作为ai语言模型",
    "作为一个ai助手",
    "作为人工智能",
    "我无法提供",
    "很抱歉，我无法",
    "抱歉，我不能",
];

/// Bytes of the longest text that can lowercase to a placeholder (lowercasing
/// can shrink a character, e.g. the Kelvin sign to `k`, by at most 3x).
const PLACEHOLDER_MAX_BYTES: usize = 40;

const PLACEHOLDERS: &[&str] = &[
    "n/a",
    "na",
    "...",
    "…",
    "-",
    "none",
    "null",
    "todo",
    "tbd",
    "<noinput>",
    "<nooutput>",
];

impl FilterParams {
    /// These params with the preset's defaults filled in where nothing was set.
    pub fn resolved(&self) -> FilterParams {
        let mut p = self.clone();
        if let Some(v) = p.min_chars.take() {
            p.response.min_chars.get_or_insert(v);
        }
        if let Some(v) = p.max_chars.take() {
            p.response.max_chars.get_or_insert(v);
        }
        let Some(preset) = p.preset else {
            return p;
        };
        p.drop_empty.get_or_insert(true);
        p.drop_refusals.get_or_insert(true);
        p.drop_control_chars.get_or_insert(true);
        match preset {
            Preset::SftEn | Preset::SftZh => {
                p.response.max_chars.get_or_insert(20_000);
                p.repetition.get_or_insert_with(Repetition::default);
                p.max_symbol_word_ratio.get_or_insert(0.5);
                p.min_alpha_words.get_or_insert(0.5);
                p.scripts.get_or_insert(Scripts {
                    expected: vec![if preset == Preset::SftEn {
                        Script::Latin
                    } else {
                        Script::Han
                    }],
                    min_fraction: if preset == Preset::SftEn { 0.5 } else { 0.3 },
                    field: Field::Response,
                });
            }
            Preset::Legal => {
                p.response.max_chars.get_or_insert(50_000);
                p.repetition.get_or_insert(Repetition {
                    dup_line_frac: 0.5,
                    dup_para_frac: 0.5,
                    dup_line_char_frac: 0.5,
                    dup_para_char_frac: 0.5,
                    top_n_grams: vec![],
                    dup_n_grams: vec![],
                });
            }
        }
        p
    }
}

/// A row set aside by a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    pub row: Row,
    pub rule: &'static str,
    pub detail: String,
}

/// The result of [`filter`].
#[derive(Debug, Clone, Default)]
pub struct FilterOutput {
    pub rows: Vec<Row>,
    pub dropped: Vec<Dropped>,
    pub rows_in: usize,
    /// Rows dropped (or, for `pii_redacted`, changed) per rule, in [`RULES`] order, zero counts left out.
    pub counts: Vec<(&'static str, usize)>,
}

struct Compiled<'t> {
    p: FilterParams,
    tokens: Option<TokenCounter<'t>>,
    refusals: Option<AhoCorasick>,
    include: Vec<(Field, Regex)>,
    exclude: Vec<(Field, Regex)>,
}

fn compile<'t>(
    p: &FilterParams,
    tokens: Option<TokenCounter<'t>>,
) -> Result<Compiled<'t>, DataError> {
    let p = p.resolved();
    let regexes = |list: &[Pattern], key: &str| -> Result<Vec<(Field, Regex)>, DataError> {
        list.iter()
            .enumerate()
            .map(|(i, pat)| {
                Regex::new(&pat.pattern)
                    .map(|r| (pat.field, r))
                    .map_err(|e| DataError::params(format!("{key}[{i}].pattern"), e.to_string()))
            })
            .collect()
    };
    let refusals = if p.drop_refusals == Some(true) {
        let mut phrases: Vec<String> = REFUSALS.iter().map(|s| s.to_string()).collect();
        phrases.extend(p.refusal_phrases.iter().map(|s| s.to_lowercase()));
        Some(
            // Case-sensitive over lowercased text (see `find_lowercased`), and
            // leftmost-first: that is what lets the matcher use its SIMD prefilter.
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&phrases)
                .map_err(|e| DataError::params("refusal_phrases", e.to_string()))?,
        )
    } else {
        None
    };
    for (key, v) in [("min_ratio", p.min_ratio), ("max_ratio", p.max_ratio)] {
        if v.is_some_and(|v| v < 0.0) {
            return Err(DataError::params(key, "must be >= 0"));
        }
    }
    for (key, r) in [
        ("tokens.prompt", &p.tokens.prompt),
        ("tokens.response", &p.tokens.response),
    ] {
        if let (Some(min), Some(max)) = (r.min, r.max)
            && min > max
        {
            return Err(DataError::params(key, format!("min {min} > max {max}")));
        }
    }
    Ok(Compiled {
        tokens,
        include: regexes(&p.include, "include")?,
        exclude: regexes(&p.exclude, "exclude")?,
        refusals,
        p,
    })
}

/// Check params without running (for planning).
pub fn validate(p: &FilterParams) -> Result<(), DataError> {
    compile(p, None).map(|_| ())
}

/// The rule that dropped a row (with a detail), and a PII note.
type Verdict = (Option<(&'static str, String)>, Option<&'static str>);

/// Apply the rules to `rows`, in order (without token bounds: see [`filter_with_tokens`]).
pub fn filter(params: &FilterParams, rows: Vec<Row>) -> Result<FilterOutput, DataError> {
    filter_with_tokens(params, rows, None)
}

/// [`filter`], with `count` to measure the `tokens` bounds; setting them without a counter is an error.
pub fn filter_with_tokens(
    params: &FilterParams,
    rows: Vec<Row>,
    count: Option<TokenCounter<'_>>,
) -> Result<FilterOutput, DataError> {
    if !params.tokens.is_empty() && count.is_none() {
        return Err(DataError::params(
            "tokens",
            "token bounds need a tokenizer: set `model:` in the recipe or on this stage",
        ));
    }
    let c = compile(params, count)?;
    let rows_in = rows.len();
    // Rules run on the rows in place (redaction edits them there); then one
    // pass moves the dropped rows out, so no second table is ever built.
    let mut rows = rows;
    let verdicts: Vec<Verdict> = rows
        .par_iter_mut()
        .map(|row| {
            let verdict = c.check(row);
            let mut note = None;
            if verdict.is_none()
                && let Some(pii) = &c.p.pii
            {
                match pii.action {
                    PiiAction::Redact => {
                        for m in &mut row.messages {
                            if let Some(new) = redact(&m.content, &pii.kinds) {
                                m.content = new;
                                note = Some("pii_redacted");
                            }
                        }
                    }
                    PiiAction::Keep => {
                        if row
                            .messages
                            .iter()
                            .any(|m| !pii_spans(&m.content, &pii.kinds).is_empty())
                        {
                            note = Some("pii_kept");
                        }
                    }
                    PiiAction::Drop => {}
                }
            }
            (verdict, note)
        })
        .collect();
    let mut counts = vec![0usize; RULES.len()];
    let rule_index = |rule: &str| RULES.iter().position(|r| *r == rule).expect("known rule");
    let mut dropped = Vec::new();
    let mut verdicts = verdicts.into_iter();
    rows.retain_mut(|row| {
        let (verdict, note) = verdicts.next().expect("one verdict per row");
        if let Some(note) = note {
            counts[rule_index(note)] += 1;
        }
        match verdict {
            None => true,
            Some((rule, detail)) => {
                counts[rule_index(rule)] += 1;
                dropped.push(Dropped {
                    row: std::mem::take(row),
                    rule,
                    detail,
                });
                false
            }
        }
    });
    let mut out = FilterOutput {
        rows,
        dropped,
        rows_in,
        ..FilterOutput::default()
    };
    out.counts = RULES
        .iter()
        .copied()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(out)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Length bounds on one side; `words` counts its words when a word bound is set.
fn check_bounds(
    b: &Bounds,
    text: &str,
    side: &str,
    words: impl FnOnce() -> usize,
) -> Option<String> {
    if b.is_empty() {
        return None;
    }
    let n = chars(text);
    if let Some(min) = b.min_chars
        && n < min
    {
        return Some(format!("{side} has {n} chars < min_chars {min}"));
    }
    if let Some(max) = b.max_chars
        && n > max
    {
        return Some(format!("{side} has {n} chars > max_chars {max}"));
    }
    if b.min_words.is_some() || b.max_words.is_some() {
        let w = words();
        if let Some(min) = b.min_words
            && w < min
        {
            return Some(format!("{side} has {w} words < min_words {min}"));
        }
        if let Some(max) = b.max_words
            && w > max
        {
            return Some(format!("{side} has {w} words > max_words {max}"));
        }
    }
    None
}

/// Words split on whitespace (as `split_whitespace`), and how many of them have a letter.
fn whitespace_words(text: &str) -> (usize, usize) {
    if !text.is_ascii() {
        let mut n = 0;
        let mut alpha = 0;
        for w in text.split_whitespace() {
            n += 1;
            alpha += w.chars().any(char::is_alphabetic) as usize;
        }
        return (n, alpha);
    }
    // ASCII: one pass over the bytes, whitespace as `char::is_whitespace` has
    // it, without a branch per byte (a word ends where whitespace follows
    // a non-space; the branchy loop mispredicted at every word boundary)
    let (mut n, mut alpha, mut in_word, mut letter) = (0, 0, false, false);
    for &b in text.as_bytes() {
        let space = matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        let ends = space & in_word;
        n += ends as usize;
        alpha += (ends & letter) as usize;
        letter = !space & (letter | b.is_ascii_alphabetic());
        in_word = !space;
    }
    if in_word {
        n += 1;
        alpha += letter as usize;
    }
    (n, alpha)
}

/// In ASCII text: the words split on whitespace (as `split_whitespace`), and
/// how many of them start with a letter (a lower bound on those that have one).
/// A word starts where a non-space follows a space or the start, so both are
/// counts over pairs of neighbouring bytes, which vectorize, where
/// [`whitespace_words`] has to carry a state from byte to byte.
fn ascii_word_starts(bytes: &[u8]) -> (usize, usize) {
    // the ASCII characters with Unicode White_Space (`char::is_whitespace`)
    let space = |b: u8| b == b' ' || b.wrapping_sub(b'\t') < 5;
    let Some(&first) = bytes.first() else {
        return (0, 0);
    };
    let (mut words, mut lettered) = (
        usize::from(!space(first)),
        usize::from(first.is_ascii_alphabetic()),
    );
    // byte counters over stretches of at most 255 pairs: wider ones would
    // widen every byte's flag to 64 bits and do a few bytes per instruction
    for (before, after) in bytes.chunks(255).zip(bytes[1..].chunks(255)) {
        let pairs = || before.iter().zip(after);
        words += usize::from(pairs().fold(0u8, |n, (&a, &b)| n + u8::from(space(a) & !space(b))));
        lettered += usize::from(pairs().fold(0u8, |n, (&a, &b)| {
            n + u8::from(space(a) & b.is_ascii_alphabetic())
        }));
    }
    (words, lettered)
}

/// Symbols for the symbol/word ratio: `#`, `...` (non-overlapping, as
/// `str::matches` counts them: a run of k dots holds k / 3) and `…`.
/// `#` is counted in one vectorized pass, dots by jumping from one to the next
/// (`str::find` of a `char` is a memchr), so a text with few dots costs little
/// more than the `#` count. Neither `#` nor `.` occurs inside a multi-byte
/// UTF-8 character, so bytes are enough for them.
fn symbol_count(text: &str) -> usize {
    let hashes = text.bytes().filter(|&b| b == b'#').count();
    let ellipses = if text.is_ascii() {
        0
    } else {
        text.matches('…').count()
    };
    let bytes = text.as_bytes();
    let (mut dots, mut at) = (0, 0);
    while let Some(found) = text[at..].find('.') {
        let start = at + found;
        let run = bytes[start..].iter().take_while(|&&b| b == b'.').count();
        dots += run / 3;
        at = start + run;
    }
    hashes + ellipses + dots
}

/// Token bounds on one side; `None` = within bounds.
fn check_tokens(r: &TokenRange, text: &str, side: &str, count: TokenCounter<'_>) -> Option<String> {
    if r.is_empty() {
        return None;
    }
    let n = count(text);
    if let Some(min) = r.min
        && n < min
    {
        return Some(format!("{side} has {n} tokens < min {min}"));
    }
    if let Some(max) = r.max
        && n > max
    {
        return Some(format!("{side} has {n} tokens > max {max}"));
    }
    None
}

impl Compiled<'_> {
    fn check(&self, row: &Row) -> Option<(&'static str, String)> {
        let p = &self.p;
        let response = field_str(row, Field::Response);
        let response: &str = &response;
        let prompt = field_str(row, Field::Prompt);
        let prompt: &str = &prompt;
        if p.drop_empty == Some(true) {
            // every assistant turn must have real content, not just the joined text
            for m in row.messages.iter().filter(|m| m.role == "assistant") {
                let t = m.content.trim();
                if t.is_empty() {
                    return Some(("empty_response", "an assistant turn is empty".into()));
                }
                // placeholders are short: a long turn cannot lowercase to one
                if t.len() <= PLACEHOLDER_MAX_BYTES
                    && PLACEHOLDERS.contains(&t.to_lowercase().as_str())
                {
                    return Some(("empty_response", format!("placeholder response `{t}`")));
                }
            }
        }
        if p.drop_control_chars == Some(true) {
            let all = row
                .messages
                .iter()
                .map(|m| m.content.as_str())
                .chain(row.system.as_deref());
            for t in all {
                // In ASCII text the control characters are the bytes below 0x20
                // and 0x7F: one pass without early exit (which vectorizes) finds
                // whether there is any such byte or any non-ASCII one.
                let unusual = t.bytes().fold(false, |seen, b| {
                    seen | (b >= 0x7F || (b < 0x20 && !matches!(b, b'\n' | b'\t' | b'\r')))
                });
                if !unusual {
                    continue;
                }
                if let Some(c) = t
                    .chars()
                    .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
                {
                    return Some((
                        "control_chars",
                        format!("control character U+{:04X}", c as u32),
                    ));
                }
            }
        }
        // the response's words, shared by the length and repetition rules
        let response_words = std::cell::OnceCell::new();
        let response_words = || response_words.get_or_init(|| WordGrams::new(response));
        if let Some(d) = check_bounds(&p.prompt, prompt, "prompt", || word_count(prompt)) {
            return Some(("prompt_length", d));
        }
        if let Some(d) = check_bounds(&p.response, response, "response", || response_words().len())
        {
            return Some(("response_length", d));
        }
        if let Some(count) = self.tokens {
            if let Some(d) = check_tokens(&p.tokens.prompt, prompt, "prompt", count) {
                return Some(("prompt_tokens", d));
            }
            if let Some(d) = check_tokens(&p.tokens.response, response, "response", count) {
                return Some(("response_tokens", d));
            }
        }
        if p.min_ratio.is_some() || p.max_ratio.is_some() {
            let ratio = chars(response) as f64 / chars(prompt).max(1) as f64;
            if p.min_ratio.is_some_and(|m| ratio < m) || p.max_ratio.is_some_and(|m| ratio > m) {
                return Some(("ratio", format!("response/prompt length ratio {ratio:.3}")));
            }
        }
        if let Some(ac) = &self.refusals
            && let Some(m) = find_lowercased(ac, response)
        {
            let phrase = if m.pattern().as_usize() < REFUSALS.len() {
                REFUSALS[m.pattern().as_usize()].to_owned()
            } else {
                p.refusal_phrases[m.pattern().as_usize() - REFUSALS.len()].clone()
            };
            return Some(("refusal", format!("contains `{phrase}`")));
        }
        if let Some(rep) = &p.repetition
            && let Some(d) = repetition_with(rep, response, response_words)
        {
            return Some(("repetition", d));
        }
        if p.max_symbol_word_ratio.is_some() || p.min_alpha_words.is_some() {
            // ASCII: a vectorized count, with a lower bound on the words with a
            // letter that settles the letter-share rule for nearly every text
            let (n_words, alpha_at_least) = if response.is_ascii() {
                ascii_word_starts(response.as_bytes())
            } else {
                whitespace_words(response)
            };
            if n_words > 0 {
                if let Some(max) = p.max_symbol_word_ratio {
                    let symbols = symbol_count(response);
                    let r = symbols as f64 / n_words as f64;
                    if r > max {
                        return Some(("symbol_ratio", format!("symbol/word ratio {r:.3} > {max}")));
                    }
                }
                if let Some(min) = p.min_alpha_words
                    && (alpha_at_least as f64 / n_words as f64) < min
                {
                    let alpha = whitespace_words(response).1;
                    let f = alpha as f64 / n_words as f64;
                    if f < min {
                        return Some((
                            "alpha_words",
                            format!("{f:.3} of words have a letter < {min}"),
                        ));
                    }
                }
            }
        }
        if let Some(s) = &p.scripts {
            let other;
            let text = match s.field {
                Field::Response => response,
                Field::Prompt => prompt,
                field => {
                    other = field_str(row, field);
                    &*other
                }
            };
            let (mut total, mut hit) = (0usize, 0usize);
            if text.is_ascii() {
                // the only script in ASCII is Latin: its letters
                total = text.bytes().filter(u8::is_ascii_alphabetic).count();
                if s.expected.contains(&Script::Latin) {
                    hit = total;
                }
            } else {
                for c in text.chars() {
                    if let Some(sc) = Script::of(c) {
                        total += 1;
                        hit += s.expected.contains(&sc) as usize;
                    }
                }
            }
            if total > 0 {
                let f = hit as f64 / total as f64;
                if f < s.min_fraction {
                    return Some((
                        "script",
                        format!("{f:.3} of letters in {:?} < {}", s.expected, s.min_fraction),
                    ));
                }
            }
        }
        if let Some(pii) = &p.pii
            && pii.action == PiiAction::Drop
        {
            for m in &row.messages {
                if let Some((kind, found)) = find_pii(&m.content, &pii.kinds).into_iter().next() {
                    return Some(("pii", format!("{kind:?} `{found}` in a {} turn", m.role)));
                }
            }
        }
        for (field, re) in &self.include {
            if !re.is_match(&field_str(row, *field)) {
                return Some((
                    "include",
                    format!("{} does not match `{}`", field.name(), re.as_str()),
                ));
            }
        }
        for (field, re) in &self.exclude {
            if let Some(m) = re.find(&field_str(row, *field)) {
                return Some((
                    "exclude",
                    format!(
                        "{} matches `{}` at `{}`",
                        field.name(),
                        re.as_str(),
                        m.as_str()
                    ),
                ));
            }
        }
        None
    }
}

/// The first phrase of `ac` (all lowercase) in `text` lowercased. An
/// ASCII-case-insensitive matcher would spare the copy, but it cannot use
/// the SIMD prefilter: lowercasing into a buffer and matching case-sensitively
/// is 4x faster on English responses (`data_bench`).
fn find_lowercased(ac: &AhoCorasick, text: &str) -> Option<aho_corasick::Match> {
    thread_local! {
        static LOWER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    if !text.is_ascii() {
        return ac.find(&text.to_lowercase());
    }
    LOWER.with_borrow_mut(|lower| {
        lower.clear();
        lower.push_str(text);
        lower.make_ascii_lowercase();
        ac.find(lower.as_str())
    })
}

/// Gopher repetition checks (datatrove `GopherRepetitionFilter`); `None` = passes.
pub fn repetition(r: &Repetition, text: &str) -> Option<String> {
    let ws = std::cell::OnceCell::new();
    repetition_with(r, text, || ws.get_or_init(|| WordGrams::new(text)))
}

/// Paragraphs split on blank lines.
static PARA: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\n\s*\n").expect("valid"));

/// Share of (trimmed, non-empty) parts that repeat an earlier part, and share of
/// the text's `total` characters in those repeats.
fn dup_stats<'t>(parts: impl Iterator<Item = &'t str>, total: usize) -> (f64, f64) {
    let mut seen = std::collections::HashSet::new();
    let (mut n, mut dup, mut dup_chars) = (0usize, 0usize, 0usize);
    for p in parts.map(str::trim).filter(|s| !s.is_empty()) {
        n += 1;
        if !seen.insert(p) {
            dup += 1;
            dup_chars += chars(p);
        }
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    (dup as f64 / n as f64, dup_chars as f64 / total as f64)
}

/// A 64-bit n-gram hash matched two different n-grams: recheck the text exactly.
struct Collision;

/// [`repetition`] with the text's words computed by the caller (shared with the length rules).
///
/// N-grams are compared by their [`WordGrams`] hash, and every hash match is
/// confirmed word by word; on a true collision the text is checked again with
/// [`ngram_repetition_exact`], so the verdict is always the exact one.
fn repetition_with<'w, 't: 'w>(
    r: &Repetition,
    text: &str,
    ws: impl FnOnce() -> &'w WordGrams<'t>,
) -> Option<String> {
    let total = chars(text);
    if total == 0 {
        return None;
    }
    // a text without a newline is one line and one paragraph: nothing repeats
    let (pf, pcf) = if text.contains('\n') {
        dup_stats(PARA.split(text), total)
    } else {
        (0.0, 0.0)
    };
    if pf > r.dup_para_frac {
        return Some(format!(
            "{pf:.3} of paragraphs are duplicates > {}",
            r.dup_para_frac
        ));
    }
    if pcf > r.dup_para_char_frac {
        return Some(format!(
            "{pcf:.3} of chars in duplicated paragraphs > {}",
            r.dup_para_char_frac
        ));
    }
    let (lf, lcf) = if text.contains('\n') {
        dup_stats(text.split('\n'), total)
    } else {
        (0.0, 0.0)
    };
    if lf > r.dup_line_frac {
        return Some(format!(
            "{lf:.3} of lines are duplicates > {}",
            r.dup_line_frac
        ));
    }
    if lcf > r.dup_line_char_frac {
        return Some(format!(
            "{lcf:.3} of chars in duplicated lines > {}",
            r.dup_line_char_frac
        ));
    }
    if r.top_n_grams.is_empty() && r.dup_n_grams.is_empty() {
        return None;
    }
    // Every n-gram rule here has n >= 2 and a share it may not exceed: where
    // no 2-gram repeats, every share is 0 and every rule passes.
    let rules = r.top_n_grams.iter().chain(&r.dup_n_grams);
    if text.is_ascii()
        && rules.clone().all(|&(n, max)| n >= 2 && max >= 0.0)
        && !ascii_bigram_may_repeat(text)
    {
        return None;
    }
    match ngram_repetition(r, ws(), total) {
        Ok(verdict) => verdict,
        Err(Collision) => ngram_repetition_exact(r, text, total),
    }
}

fn ngram_repetition(
    r: &Repetition,
    ws: &WordGrams<'_>,
    total: usize,
) -> Result<Option<String>, Collision> {
    let len = ws.len();
    // A repeated (n+1)-gram contains a repeated n-gram, so once some n has no
    // repeat, no larger n has one either: its share is 0 without looking.
    let mut none_from = usize::MAX;
    let mut grams: Vec<(u64, u32)> = Vec::with_capacity(len);
    for &(n, max) in &r.top_n_grams {
        if n == 0 || len < n {
            continue;
        }
        // the most frequent n-gram (ties: the longest), as in datatrove: its characters x count
        let mut top = 0usize;
        if n < none_from && !any_same_hash(ws, n) {
            // no two n-grams alike: none repeats, here or at any larger n
            none_from = n;
        } else if n < none_from {
            grams.clear();
            grams.extend((0..=len - n).map(|i| (ws.hash(i, n), i as u32)));
            grams.sort_unstable();
            let mut repeats = false;
            for run in grams
                .chunk_by(|a, b| a.0 == b.0)
                .filter(|run| run.len() > 1)
            {
                let first = run[0].1 as usize;
                if run[1..]
                    .iter()
                    .any(|&(_, j)| !ws.same(first, j as usize, n))
                {
                    return Err(Collision);
                }
                repeats = true;
                top = top.max(ws.chars(first, n) * run.len());
            }
            if !repeats {
                none_from = none_from.min(n);
            }
        }
        let f = top as f64 / total as f64;
        if f > max {
            return Ok(Some(format!("top {n}-gram covers {f:.3} of chars > {max}")));
        }
    }
    // built on first use: most texts have no repeated 2-gram, and then no dup rule looks
    let mut seen: Option<PrehashedMap<u64, u32>> = None;
    for &(n, max) in &r.dup_n_grams {
        if n == 0 || len < n {
            continue;
        }
        let mut dup_chars = 0usize;
        if n < none_from {
            let seen = seen.get_or_insert_with(|| prehashed_map(len));
            seen.clear();
            let (mut i, mut repeats) = (0, false);
            while i + n <= len {
                let h = ws.hash(i, n);
                match seen.get(&h) {
                    Some(&j) => {
                        if !ws.same(j as usize, i, n) {
                            return Err(Collision);
                        }
                        repeats = true;
                        dup_chars += ws.chars(i, n);
                        i += n;
                    }
                    None => {
                        seen.insert(h, i as u32);
                        i += 1;
                    }
                }
            }
            if !repeats {
                none_from = none_from.min(n);
            }
        }
        let f = dup_chars as f64 / total as f64;
        if f > max {
            return Ok(Some(format!(
                "duplicated {n}-grams cover {f:.3} of chars > {max}"
            )));
        }
    }
    Ok(None)
}

/// Whether two n-grams of `ws` have the same hash (the same words, or a
/// collision: the caller sorts them out).
fn any_same_hash(ws: &WordGrams<'_>, n: usize) -> bool {
    let count = ws.len() + 1 - n;
    any_equal_hash(count, (0..count).map(|i| ws.hash(i, n)))
}

/// The n-gram rules of [`repetition`] comparing word slices directly: the
/// reference the hashed version is tested against, and its fallback on a hash collision.
fn ngram_repetition_exact(r: &Repetition, text: &str, total: usize) -> Option<String> {
    let ws: Vec<&str> = words(text).collect();
    for &(n, max) in &r.top_n_grams {
        if n == 0 || ws.len() < n {
            continue;
        }
        let mut counts: std::collections::HashMap<&[&str], usize> =
            std::collections::HashMap::new();
        for g in ws.windows(n) {
            *counts.entry(g).or_default() += 1;
        }
        // the most frequent n-gram (ties: the longest), as in datatrove: its characters x count
        let top = counts
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(g, c)| g.iter().map(|w| chars(w)).sum::<usize>() * c)
            .max()
            .unwrap_or(0);
        let f = top as f64 / total as f64;
        if f > max {
            return Some(format!("top {n}-gram covers {f:.3} of chars > {max}"));
        }
    }
    for &(n, max) in &r.dup_n_grams {
        if n == 0 || ws.len() < n {
            continue;
        }
        let mut seen = std::collections::HashSet::new();
        let (mut i, mut dup_chars) = (0, 0usize);
        while i + n <= ws.len() {
            let g = &ws[i..i + n];
            if seen.contains(g) {
                dup_chars += g.iter().map(|w| chars(w)).sum::<usize>();
                i += n;
            } else {
                seen.insert(g);
                i += 1;
            }
        }
        let f = dup_chars as f64 / total as f64;
        if f > max {
            return Some(format!(
                "duplicated {n}-grams cover {f:.3} of chars > {max}"
            ));
        }
    }
    None
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").expect("valid")
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}|1[3-9]\d{9}|\+\d{1,3}[ .-]?\d{2,4}(?:[ .-]?\d{3,4}){2}")
        .expect("valid")
});
static IP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
        .expect("valid")
});
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d(?:[ -]?\d){12,18}").expect("valid"));
static CN_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{17}[\dXx]").expect("valid"));

/// A match must not continue a longer run of digits, letters or dots.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !glued(before) && !glued(after)
}

fn luhn(digits: &str) -> bool {
    let ds: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&ds.len()) {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn cn_id_valid(id: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    let sum: u32 = (0..17).map(|i| (b[i] - b'0') as u32 * W[i]).sum();
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

/// Every PII match of the given kinds: (kind, byte range), sorted, non-overlapping.
fn pii_spans(text: &str, kinds: &[PiiKind]) -> Vec<(PiiKind, usize, usize)> {
    let mut out: Vec<(PiiKind, usize, usize)> = Vec::new();
    // most specific first: an ID or card number also looks like a phone number
    for kind in [
        PiiKind::Email,
        PiiKind::CnId,
        PiiKind::CreditCard,
        PiiKind::Ip,
        PiiKind::Phone,
    ] {
        if !kinds.contains(&kind) {
            continue;
        }
        let re: &Regex = match kind {
            PiiKind::Email => &EMAIL,
            PiiKind::CnId => &CN_ID,
            PiiKind::CreditCard => &CARD,
            PiiKind::Ip => &IP,
            PiiKind::Phone => &PHONE,
        };
        for m in re.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if kind != PiiKind::Email && !bounded(text, s, e) {
                continue;
            }
            let ok = match kind {
                PiiKind::CnId => cn_id_valid(m.as_str()),
                PiiKind::CreditCard => luhn(m.as_str()),
                _ => true,
            };
            if ok && !out.iter().any(|&(_, a, b)| s < b && a < e) {
                out.push((kind, s, e));
            }
        }
    }
    out.sort_by_key(|x| x.1);
    out
}

/// PII found in `text`: (kind, matched text).
pub fn find_pii(text: &str, kinds: &[PiiKind]) -> Vec<(PiiKind, String)> {
    pii_spans(text, kinds)
        .into_iter()
        .map(|(k, s, e)| (k, text[s..e].to_owned()))
        .collect()
}

/// `text` with every PII match replaced by its tag, or `None` when there is none.
pub fn redact(text: &str, kinds: &[PiiKind]) -> Option<String> {
    let spans = pii_spans(text, kinds);
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (k, s, e) in spans {
        out.push_str(&text[last..s]);
        out.push_str(k.tag());
        last = e;
    }
    out.push_str(&text[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_rows::Message;

    fn row(prompt: &str, response: &str) -> Row {
        Row {
            messages: vec![
                Message::new("user", prompt),
                Message::new("assistant", response),
            ],
            source_file: "t".into(),
            ..Row::default()
        }
    }

    /// The rule that drops `(prompt, response)` under `p`, if any.
    fn verdict(p: &FilterParams, prompt: &str, response: &str) -> Option<&'static str> {
        let out = filter(p, vec![row(prompt, response)]).unwrap();
        out.dropped.first().map(|d| d.rule)
    }

    fn params(v: serde_json::Value) -> FilterParams {
        serde_json::from_value(v).unwrap()
    }

    const OK: &str = "A contract is an agreement that the law will enforce between the parties.";

    #[test]
    fn length_bounds_cjk_aware() {
        let p = params(serde_json::json!({"min_chars": 10, "prompt": {"max_words": 5}}));
        assert_eq!(verdict(&p, "hi", "too short"), Some("response_length"));
        assert_eq!(verdict(&p, "hi", "long enough"), None);
        // six CJK characters are six words
        assert_eq!(verdict(&p, "合同法的规定", OK), Some("prompt_length"));
        assert_eq!(verdict(&p, "合同法规定", OK), None);
    }

    #[test]
    fn token_bounds_need_a_counter() {
        let p = params(
            serde_json::json!({"tokens": {"prompt": {"max": 4}, "response": {"min": 3, "max": 10}}}),
        );
        let err = filter(&p, vec![row("q", OK)]).unwrap_err().to_string();
        assert!(
            err.starts_with("tokens: token bounds need a tokenizer"),
            "{err}"
        );
        // one token per byte, as a byte-level tokenizer without merges
        let bytes = |s: &str| s.len();
        let out = filter_with_tokens(
            &p,
            vec![
                row("abcd", "abc"),
                row("abcde", "abc"),
                row("q", "ab"),
                row("q", "abcdefghijk"),
                row("q", "abcdefghij"),
            ],
            Some(&bytes),
        )
        .unwrap();
        let rules: Vec<(u64, &str)> = out
            .dropped
            .iter()
            .map(|d| (d.row.messages[1].content.len() as u64, d.rule))
            .collect();
        assert_eq!(
            rules,
            [
                (3, "prompt_tokens"),
                (2, "response_tokens"),
                (11, "response_tokens")
            ]
        );
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.dropped[0].detail, "prompt has 5 tokens > max 4");
        assert!(
            validate(&params(
                serde_json::json!({"tokens": {"prompt": {"min": 5, "max": 4}}})
            ))
            .is_err()
        );
    }

    #[test]
    fn ratio_bounds() {
        let p = params(serde_json::json!({"max_ratio": 10.0, "min_ratio": 0.1}));
        assert_eq!(verdict(&p, "Why?", &"because ".repeat(10)), Some("ratio"));
        assert_eq!(verdict(&p, "Why is it so?", "Because of the law."), None);
        assert_eq!(
            verdict(&p, &"long question ".repeat(20), "No."),
            Some("ratio")
        );
    }

    #[test]
    fn empty_and_placeholder_responses() {
        let p = params(serde_json::json!({"drop_empty": true}));
        assert_eq!(verdict(&p, "q", "  \n "), Some("empty_response"));
        assert_eq!(verdict(&p, "q", "N/A"), Some("empty_response"));
        assert_eq!(verdict(&p, "q", "..."), Some("empty_response"));
        assert_eq!(verdict(&p, "q", "No."), None);
    }

    #[test]
    fn gopher_repetition() {
        let p = params(serde_json::json!({"repetition": {}}));
        let lines = "The court held for the plaintiff.\n".repeat(5);
        assert_eq!(verdict(&p, "q", &lines), Some("repetition"));
        let spam = "buy now ".repeat(30);
        assert_eq!(verdict(&p, "q", &spam), Some("repetition"));
        // a normal paragraph with a repeated phrase twice stays
        let fine = "The court held that the contract was void, and the defendant owed nothing because the agreement lacked consideration and was signed under duress by a minor.";
        assert_eq!(verdict(&p, "q", fine), None);
        // the legal preset keeps statute text with repeated boilerplate n-grams
        let statute = "(a) The Secretary shall issue regulations under this section. (b) The Secretary shall issue guidance under this section. (c) The Secretary shall report under this section.";
        assert_eq!(verdict(&p, "q", statute), Some("repetition"));
        assert_eq!(
            verdict(
                &params(serde_json::json!({"preset": "legal"})),
                "q",
                statute
            ),
            None
        );
    }

    #[test]
    fn hashed_repetition_matches_exact() {
        // texts over tiny vocabularies repeat n-grams of every size, texts over
        // the whole one (a third) mostly repeat nothing; thresholds from strict
        // to loose exercise every branch, including "no repeat at n"
        let large: Vec<String> = (0..400).map(|k| format!("w{k}")).collect();
        let mut vocab = vec!["law", "court", "法", "the", "a", "held", "x"];
        vocab.extend(large.iter().map(String::as_str));
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |m: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % m as u64) as usize
        };
        for case in 0..3000 {
            let k = if case % 3 == 0 {
                vocab.len()
            } else {
                2 + next(6)
            };
            let len = next(60);
            let text: Vec<&str> = (0..len).map(|_| vocab[next(k)]).collect();
            let text = text.join(if case % 7 == 0 { "\n" } else { " " });
            let t = [0.0, 0.05, 0.2, 0.5, 0.9][case % 5];
            let r = Repetition {
                top_n_grams: vec![(2, t), (3, t), (4, t), (12, t)],
                dup_n_grams: (5..=11).map(|n| (n, t)).chain([(20, t)]).collect(),
                ..Repetition::default()
            };
            let total = chars(&text);
            let fast = ngram_repetition(&r, &WordGrams::new(&text), total).ok();
            assert_eq!(
                fast,
                Some(ngram_repetition_exact(&r, &text, total)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn whitespace_words_ascii_matches_split_whitespace() {
        for t in [
            "",
            "  ",
            "a b",
            " 1 2 x3\t\x0b4 ;; ",
            "one\r\ntwo 3",
            "é 1 b",
        ] {
            let n = t.split_whitespace().count();
            let alpha = t
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphabetic))
                .count();
            assert_eq!(whitespace_words(t), (n, alpha), "{t:?}");
        }
    }

    #[test]
    fn symbol_count_matches_the_three_searches() {
        for t in [
            "",
            "#",
            "..",
            "...",
            "....",
            "......",
            ".......#...",
            "# heading ... more…… and ….. x",
            "中文……。。。...#",
            "a.b.c...d....e",
            "…...",
        ] {
            let searched =
                t.matches('#').count() + t.matches("...").count() + t.matches('…').count();
            assert_eq!(symbol_count(t), searched, "{t:?}");
        }
    }

    #[test]
    fn word_and_symbol_counts_match_the_general_way_on_random_text() {
        // the ASCII characters first: texts of them alone take the byte paths
        let alphabet = [
            " ", "\t", "\n", "\x0b", "\x0c", "\r", ".", ".", "#", "a", "Z", "7", "_", "-",
            "\u{a0}", "…", "é", "法",
        ];
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        for case in 0..5000 {
            let k = if case % 2 == 0 { 14 } else { alphabet.len() };
            let t: String = (0..case % 31)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    alphabet[(s % k as u64) as usize]
                })
                .collect();
            let n = t.split_whitespace().count();
            let alpha = t
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphabetic))
                .count();
            assert_eq!(whitespace_words(&t), (n, alpha), "{t:?}");
            if t.is_ascii() {
                let starting = t
                    .split_whitespace()
                    .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()))
                    .count();
                assert_eq!(ascii_word_starts(t.as_bytes()), (n, starting), "{t:?}");
            }
            let searched =
                t.matches('#').count() + t.matches("...").count() + t.matches('…').count();
            assert_eq!(symbol_count(&t), searched, "{t:?}");
        }
    }

    #[test]
    fn symbols_letters_and_control_chars() {
        let p = params(
            serde_json::json!({"max_symbol_word_ratio": 0.1, "min_alpha_words": 0.8, "drop_control_chars": true}),
        );
        assert_eq!(
            verdict(&p, "q", "# # # heading ... more"),
            Some("symbol_ratio")
        );
        assert_eq!(verdict(&p, "q", "1 2 3 4 5 six"), Some("alpha_words"));
        assert_eq!(verdict(&p, "q", "one two three four five 6"), None);
        // fewer than 80% of the words start with a letter, but all have one
        assert_eq!(verdict(&p, "q", "(one) (two) three four five"), None);
        assert_eq!(verdict(&p, "q", "bell\u{7} here"), Some("control_chars"));
        assert_eq!(verdict(&p, "q", "tab\tand\r\nnewline fine"), None);
        assert_eq!(verdict(&p, "q", "del\u{7f} here"), Some("control_chars"));
        assert_eq!(verdict(&p, "q", "naïve\u{85} here"), Some("control_chars"));
        assert_eq!(verdict(&p, "q", "naïve and fine"), None);
        // legal preset: section numbers and § are fine
        let legal = params(serde_json::json!({"preset": "legal"}));
        assert_eq!(
            verdict(&legal, "q", "§ 12(b)(3) 1 2 3 4 5 6 7 8 9 10"),
            None
        );
    }

    #[test]
    fn refusals_builtin_and_user_phrases() {
        let p = params(
            serde_json::json!({"drop_refusals": true, "refusal_phrases": ["Consult A Lawyer"]}),
        );
        assert_eq!(
            verdict(&p, "q", "As an AI language model, I cannot give advice."),
            Some("refusal")
        );
        assert_eq!(
            verdict(&p, "q", "作为一个AI语言模型，我不能回答。"),
            Some("refusal")
        );
        assert_eq!(
            verdict(&p, "q", "You should consult a lawyer."),
            Some("refusal")
        );
        assert_eq!(
            verdict(&p, "q", "A language model is a statistical model of text."),
            None
        );
    }

    #[test]
    fn pii_drop_redact_keep() {
        let text = "Mail jane.doe@example.com or call +1 415-555-0134; card 4111 1111 1111 1111; id 11010519491231002X; host 192.168.1.20";
        let found: Vec<PiiKind> = find_pii(text, &all_pii())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            found,
            [
                PiiKind::Email,
                PiiKind::Phone,
                PiiKind::CreditCard,
                PiiKind::CnId,
                PiiKind::Ip
            ]
        );
        assert_eq!(
            redact(text, &all_pii()).unwrap(),
            "Mail <EMAIL> or call <PHONE>; card <CREDIT_CARD>; id <CN_ID>; host <IP>"
        );
        // near misses: a failing Luhn number, a bad ID check digit, a statute number, a version string
        let miss = "card 4111 1111 1111 1112; id 110105194912310021; see 42 U.S.C. 1983; v1.2.3";
        assert!(
            find_pii(miss, &all_pii()).is_empty(),
            "{:?}",
            find_pii(miss, &all_pii())
        );
        let drop = params(serde_json::json!({"pii": {"action": "drop"}}));
        assert_eq!(verdict(&drop, "q", text), Some("pii"));
        assert_eq!(verdict(&drop, "q", miss), None);
        let red = filter(
            &params(serde_json::json!({"pii": {"action": "redact", "kinds": ["email"]}})),
            vec![row("q", text)],
        )
        .unwrap();
        assert!(
            red.rows[0].messages[1]
                .content
                .starts_with("Mail <EMAIL> or call +1")
        );
        assert_eq!(red.counts, [("pii_redacted", 1)]);
        let keep = filter(
            &params(serde_json::json!({"pii": {"action": "keep"}})),
            vec![row("q", text), row("q", miss)],
        )
        .unwrap();
        assert_eq!(
            (keep.rows.len(), keep.counts.clone()),
            (2, vec![("pii_kept", 1)])
        );
    }

    #[test]
    fn scripts_and_regexes() {
        let p = params(serde_json::json!({"scripts": {"expected": ["Han"], "min_fraction": 0.5}}));
        assert_eq!(
            verdict(&p, "q", "This answer is in English."),
            Some("script")
        );
        // ASCII and non-ASCII texts count Latin letters alike
        let latin =
            params(serde_json::json!({"scripts": {"expected": ["Latin"], "min_fraction": 0.8}}));
        assert_eq!(verdict(&latin, "q", "abcd 1234 法"), None);
        assert_eq!(verdict(&latin, "q", "abc 1234 法"), Some("script"));
        assert_eq!(verdict(&latin, "q", "1234 ..."), None);
        assert_eq!(
            verdict(&p, "q", "根据《民法典》第465条 (Civil Code), 合同成立。"),
            None
        );
        let p = params(serde_json::json!({
            "include": [{"field": "prompt", "pattern": "(?i)contract"}],
            "exclude": [{"field": "response", "pattern": "lorem"}]
        }));
        assert_eq!(verdict(&p, "What is a tort?", "x"), Some("include"));
        assert_eq!(
            verdict(&p, "What is a Contract?", "lorem ipsum"),
            Some("exclude")
        );
        assert_eq!(verdict(&p, "What is a Contract?", "An agreement."), None);
        assert!(
            validate(&params(
                serde_json::json!({"exclude": [{"field": "text", "pattern": "("}]})
            ))
            .is_err()
        );
    }

    #[test]
    fn counts_and_presets_resolve() {
        let p = params(serde_json::json!({"preset": "sft-en", "response": {"max_chars": 100}}));
        let r = p.resolved();
        assert_eq!(r.response.max_chars, Some(100)); // explicit wins
        assert_eq!(r.drop_refusals, Some(true));
        assert!(r.repetition.is_some());
        let out = filter(
            &p,
            vec![
                row("q", OK),
                row("q", "N/A"),
                row("q", "As an AI language model, no."),
                row(
                    "q",
                    "Je suis très content de répondre à cette question aujourd'hui.",
                ),
            ],
        )
        .unwrap();
        assert_eq!(out.rows.len(), 2); // French is Latin script
        assert_eq!(out.counts, [("empty_response", 1), ("refusal", 1)]);
        let zh = params(serde_json::json!({"preset": "sft-zh"}));
        assert_eq!(verdict(&zh, "q", OK), Some("script"));
        assert_eq!(
            verdict(
                &zh,
                "q",
                "合同是当事人之间设立、变更、终止民事法律关系的协议。"
            ),
            None
        );
    }
}
