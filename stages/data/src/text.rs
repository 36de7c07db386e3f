//! Text helpers shared by dedup, filter and split: the prompt/response views
//! of a row, normalization keys, CJK-aware tokenization.

use pipe_rows::Row;
use unicode_normalization::UnicodeNormalization;

/// Which parts of a row a dedup key or filter rule looks at.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Every user and tool turn (the prompt side), joined by newlines.
    Prompt,
    /// Every assistant turn, joined by newlines.
    Response,
    /// The system prompt.
    System,
    /// The classification input text.
    Text,
    /// The classification label.
    Label,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Prompt => "prompt",
            Field::Response => "response",
            Field::System => "system",
            Field::Text => "text",
            Field::Label => "label",
        }
    }
}

/// The prompt side of a row: user and tool turns, joined by newlines.
pub fn prompt_text(row: &Row) -> String {
    join_roles(row, |r| r != "assistant")
}

/// The response side of a row: assistant turns, joined by newlines.
pub fn response_text(row: &Row) -> String {
    join_roles(row, |r| r == "assistant")
}

fn join_roles(row: &Row, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for m in row.messages.iter().filter(|m| keep(&m.role)) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&m.content);
    }
    out
}

/// The text of one field of a row.
pub fn field_text(row: &Row, field: Field) -> String {
    match field {
        Field::Prompt => prompt_text(row),
        Field::Response => response_text(row),
        Field::System => row.system.clone().unwrap_or_default(),
        Field::Text => row.text.clone().unwrap_or_default(),
        Field::Label => row.label.clone().unwrap_or_default(),
    }
}

/// Normalize for exact comparison: Unicode NFKC, lowercase (Rust's full
/// lowercase mapping plus `ß` -> `ss`, close to casefold), runs of whitespace
/// collapsed to one space, ends trimmed; optionally punctuation and symbols removed.
/// ASCII text skips NFKC (it is a no-op there), which keeps the common case fast.
pub fn normalize(text: &str, strip_punctuation: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            return;
        }
        if strip_punctuation && is_punct(c) {
            return;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if c == 'ß' {
            out.push_str("ss");
        } else if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    };
    if text.is_ascii() {
        for c in text.chars() {
            push(c, &mut out);
        }
    } else {
        for c in text.nfkc() {
            push(c, &mut out);
        }
    }
    out
}

/// Punctuation or symbol (ASCII and the common CJK/Unicode ranges).
pub fn is_punct(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0x2000..=0x206F   // general punctuation
        | 0x3000..=0x303F // CJK symbols and punctuation
        | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 // fullwidth
        | 0x00A1..=0x00BF // Latin-1 punctuation and symbols
        | 0x2190..=0x2BFF // arrows, math, technical, box, shapes, dingbats
        | 0xFE30..=0xFE4F)
}

/// A Han, Hiragana, Katakana or Hangul character: one such character counts as a word.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF
        | 0x3040..=0x30FF | 0x31F0..=0x31FF | 0xAC00..=0xD7AF | 0x1100..=0x11FF)
}

/// Words for counting and shingling: maximal runs of alphanumeric characters,
/// except that every CJK character is a word of its own. Punctuation separates words.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    WordIter { text, pos: 0 }
}

struct WordIter<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for WordIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let rest = &self.text[self.pos..];
        let mut start = None;
        for (i, c) in rest.char_indices() {
            let cjk = is_cjk(c);
            let word = cjk || c.is_alphanumeric() || c == '_' || c == '\'';
            match start {
                None if cjk => {
                    let end = i + c.len_utf8();
                    self.pos += end;
                    return Some(&rest[i..end]);
                }
                None if word => start = Some(i),
                None => {}
                Some(s) if cjk || !word => {
                    self.pos += i;
                    return Some(&rest[s..i]);
                }
                Some(_) => {}
            }
        }
        self.pos = self.text.len();
        start.map(|s| &rest[s..])
    }
}

/// Number of words ([`words`]).
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

/// Share of non-whitespace characters that are CJK.
pub fn cjk_fraction(text: &str) -> f64 {
    let (mut cjk, mut total) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        total += 1;
        cjk += is_cjk(c) as usize;
    }
    if total == 0 {
        0.0
    } else {
        cjk as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_width_case_and_space() {
        assert_eq!(normalize("  Hello\t\r\n WORLD  ", false), "hello world");
        // fullwidth letters and digits fold under NFKC
        assert_eq!(normalize("ＡＢＣ１２３", false), "abc123");
        assert_eq!(normalize("Straße", false), "strasse");
        assert_eq!(normalize("Hello, world!", true), "hello world");
        assert_eq!(normalize("你好，世界。", true), "你好世界");
    }

    #[test]
    fn words_split_cjk_per_character() {
        let w: Vec<&str> = words("The court's ruling: 中华人民 v2.0").collect();
        assert_eq!(
            w,
            [
                "The", "court's", "ruling", "中", "华", "人", "民", "v2", "0"
            ]
        );
        assert_eq!(word_count("第十二条 Article 12"), 6);
        assert_eq!(word_count("  ,,, "), 0);
    }
}
