//! Text helpers shared by dedup, filter and split: the prompt/response views
//! of a row, normalization keys, CJK-aware tokenization.

use std::borrow::Cow;

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
    field_str(row, field).into_owned()
}

/// [`field_text`], borrowed from the row when the field is one turn or one
/// column (the common case), so per-row rules and keys copy nothing.
pub fn field_str(row: &Row, field: Field) -> Cow<'_, str> {
    let side = |keep: fn(&str) -> bool| {
        let mut turns = row.messages.iter().filter(|m| keep(&m.role));
        match (turns.next(), turns.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(only), None) => Cow::Borrowed(only.content.as_str()),
            _ => Cow::Owned(join_roles(row, keep)),
        }
    };
    match field {
        Field::Prompt => side(|r| r != "assistant"),
        Field::Response => side(|r| r == "assistant"),
        Field::System => Cow::Borrowed(row.system.as_deref().unwrap_or_default()),
        Field::Text => Cow::Borrowed(row.text.as_deref().unwrap_or_default()),
        Field::Label => Cow::Borrowed(row.label.as_deref().unwrap_or_default()),
    }
}

/// Normalize for exact comparison: Unicode NFKC, lowercase (Rust's full
/// lowercase mapping plus `ß` -> `ss`, close to casefold), runs of whitespace
/// collapsed to one space, ends trimmed; optionally punctuation and symbols removed.
/// ASCII text skips NFKC (it is a no-op there), which keeps the common case fast.
pub fn normalize(text: &str, strip_punctuation: bool) -> String {
    let mut out = Vec::with_capacity(text.len());
    normalize_append(text, strip_punctuation, &mut out);
    String::from_utf8(out).expect("normalized text is UTF-8")
}

/// [`normalize`], appended to `out` as UTF-8 bytes (for keys built of several fields).
pub fn normalize_append(text: &str, strip_punctuation: bool, out: &mut Vec<u8>) {
    if text.is_ascii() {
        normalize_ascii(text.as_bytes(), strip_punctuation, out)
    } else {
        normalize_chars(text.nfkc(), strip_punctuation, out)
    }
}

/// [`normalize`] after NFKC: case, whitespace and punctuation, character by character.
fn normalize_chars(chars: impl Iterator<Item = char>, strip_punctuation: bool, out: &mut Vec<u8>) {
    let start = out.len();
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = out.len() > start;
            continue;
        }
        if strip_punctuation && is_punct(c) {
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        if c == 'ß' {
            out.extend_from_slice(b"ss");
        } else if c.is_ascii() {
            out.push(c.to_ascii_lowercase() as u8);
        } else {
            for l in c.to_lowercase() {
                out.extend_from_slice(l.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
    }
}

/// Byte classes of [`normalize_ascii`].
const ASCII_SPACE: u8 = 1;
const ASCII_PUNCT: u8 = 2;

/// For each ASCII byte: what [`normalize_ascii`] writes for it (lowercase
/// letters, a space for whitespace) and its class bits.
static ASCII_NORM: [(u8, u8); 128] = {
    let mut t = [(0u8, 0u8); 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        // the ASCII characters with Unicode White_Space (`char::is_whitespace`)
        t[b] = if matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            (b' ', ASCII_SPACE)
        } else if c.is_ascii_punctuation() {
            (c, ASCII_PUNCT)
        } else {
            (c.to_ascii_lowercase(), 0)
        };
        b += 1;
    }
    t
};

/// [`normalize`] of ASCII text (the common case of dedup and split keys),
/// without a branch per byte: every byte is written at the end of the output
/// and the end moves on only when the byte stays (not a dropped punctuation
/// mark, not a space that would lead, trail or double another one). The
/// branchy loop this replaces spent ~15 cycles a byte on mispredicted spaces.
fn normalize_ascii(text: &[u8], strip_punctuation: bool, out: &mut Vec<u8>) {
    if !strip_punctuation {
        return normalize_ascii_spaces(text, out);
    }
    let start = out.len();
    out.resize(start + text.len(), 0);
    let buf = &mut out[start..];
    let drop_punct = if strip_punctuation { ASCII_PUNCT } else { 0 };
    let mut len = 0;
    // nothing written yet, or a space last: another space now would lead or double
    let mut after_space = true;
    for &b in text {
        // (the text is ASCII: the mask only spares a bounds check)
        let (to, class) = ASCII_NORM[(b & 0x7F) as usize];
        buf[len] = to;
        let space = class & ASCII_SPACE != 0;
        let keep = (class & drop_punct == 0) & !(space & after_space);
        len += keep as usize;
        after_space = if keep { space } else { after_space };
    }
    // a trailing space (there is at most one)
    if len > 0 && after_space {
        len -= 1;
    }
    out.truncate(start + len);
}

/// [`normalize_ascii`] without punctuation stripping: the text between
/// irregular whitespace is copied as it is and lowercased in bulk, which
/// vectorizes; only the whitespace runs are looked at byte by byte. Most
/// keys have few of them (the line break between instruction and input).
fn normalize_ascii_spaces(text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let leading = text.iter().position(|&b| !is_ascii_space(b));
    let mut rest = &text[leading.unwrap_or(text.len())..];
    while !rest.is_empty() {
        let odd = irregular_space(rest);
        out.extend_from_slice(&rest[..odd]);
        let after_run = rest[odd..]
            .iter()
            .position(|&b| !is_ascii_space(b))
            .map_or(rest.len(), |p| odd + p);
        // A run at the end is dropped; elsewhere it is one space: the space
        // just copied, where the run began with one.
        let space_copied = odd > 0 && rest[odd - 1] == b' ';
        if after_run == rest.len() {
            if space_copied {
                out.pop();
            }
        } else if !space_copied {
            out.push(b' ');
        }
        rest = &rest[after_run..];
    }
    out[start..].make_ascii_lowercase();
}

/// The ASCII characters with Unicode White_Space (`char::is_whitespace`).
fn is_ascii_space(b: u8) -> bool {
    b == b' ' || b.wrapping_sub(b'\t') < 5
}

/// Index of the first byte of `text` that is whitespace other than a single
/// space: a tab, line break, vertical tab, form feed or carriage return, or
/// a space after a space; `text.len()` where there is none. Looked for 32
/// bytes at a time, without an early exit inside a block, so it vectorizes.
fn irregular_space(text: &[u8]) -> usize {
    const BLOCK: usize = 32;
    // whitespace other than the space: \t \n \x0b \x0c \r
    let other_space = |b: u8| b.wrapping_sub(b'\t') < 5;
    let odd_at =
        |i: usize| other_space(text[i]) || (i > 0 && text[i] == b' ' && text[i - 1] == b' ');
    if text.first().is_some_and(|&b| other_space(b)) {
        return 0;
    }
    // blocks of fixed size, each byte beside the one before it
    let mut at = 1;
    while at + BLOCK <= text.len() {
        let block: &[u8; BLOCK] = text[at..at + BLOCK].try_into().expect("a block");
        let before: &[u8; BLOCK] = text[at - 1..at - 1 + BLOCK].try_into().expect("a block");
        let mut odd = 0u8;
        for (&b, &prev) in block.iter().zip(before) {
            odd |= u8::from(other_space(b)) | (u8::from(b == b' ') & u8::from(prev == b' '));
        }
        if odd != 0 {
            break;
        }
        at += BLOCK;
    }
    (at..text.len()).find(|&i| odd_at(i)).unwrap_or(text.len())
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
        // ASCII fast path: skip separators, then take a word that ends at an
        // ASCII byte (or the end); anything else goes the char-by-char way below
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        while i < bytes.len() && bytes[i].is_ascii() && !ascii_word_byte(bytes[i]) {
            i += 1;
        }
        self.pos = i;
        if i < bytes.len() && bytes[i].is_ascii() {
            let start = i;
            while i < bytes.len() && ascii_word_byte(bytes[i]) {
                i += 1;
            }
            if i == bytes.len() || bytes[i].is_ascii() {
                self.pos = i;
                return Some(&self.text[start..i]);
            }
        }
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

/// The [`words`] of one text with what the repetition rules need, computed
/// once per text: a hash per word, prefix sums of word lengths in characters,
/// and prefix hashes so any n-gram's hash is O(1) and nothing is allocated per n-gram.
pub struct WordGrams<'a> {
    pub words: Vec<&'a str>,
    /// `chars[i]` = characters in the first `i` words.
    chars: Vec<usize>,
    /// Polynomial prefix hashes of the word hashes (wrapping, base [`GRAM_BASE`]).
    prefix: Vec<u64>,
    /// `GRAM_BASE^n` for n-grams up to [`WordGrams::MAX_N`]; longer n-grams are computed on demand.
    powers: [u64; WordGrams::MAX_N + 1],
}

/// Odd base of the n-gram polynomial hash.
const GRAM_BASE: u64 = 0x9E37_79B9_7F4A_7C15;

/// A word's hash for the n-gram polynomial. Most words fit in 8 bytes: they
/// are read as one number (two overlapping 4-byte reads, or three single
/// bytes, which cover a word of a given length exactly; the length is mixed
/// in) and mixed by one wide multiplication, several times cheaper than
/// xxh3. (Copying the word into an 8-byte buffer instead costs a memcpy call
/// and a stalled load.) A collision only costs time: n-grams with equal
/// hashes are compared word by word ([`WordGrams::same`]).
#[inline]
fn word_hash(word: &[u8]) -> u64 {
    let len = word.len();
    let read4 = |at: usize| {
        u64::from(u32::from_le_bytes(
            word[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let x = match len {
        0 => 0,
        1..=3 => {
            u64::from(word[0]) | u64::from(word[len / 2]) << 8 | u64::from(word[len - 1]) << 16
        }
        4..=8 => read4(0) | read4(len - 4) << 32,
        _ => return xxhash_rust::xxh3::xxh3_64(word),
    };
    let x = x ^ (len as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let wide = u128::from(x) * u128::from(0x9E37_79B9_7F4A_7C15u64 ^ 0x2D35_8DCC_AA6C_78A5);
    (wide as u64) ^ ((wide >> 64) as u64)
}

impl<'a> WordGrams<'a> {
    const MAX_N: usize = 16;

    pub fn new(text: &'a str) -> Self {
        let mut powers = [1u64; Self::MAX_N + 1];
        for i in 1..powers.len() {
            powers[i] = powers[i - 1].wrapping_mul(GRAM_BASE);
        }
        // room for the words of typical text (one per 4 bytes or more), so
        // the vectors do not grow step by step from 4
        let room = text.len() / 4 + 8;
        let mut grams = Self {
            words: Vec::with_capacity(room),
            chars: Vec::with_capacity(room + 1),
            prefix: Vec::with_capacity(room + 1),
            powers,
        };
        grams.chars.push(0);
        grams.prefix.push(0);
        if text.is_ascii() {
            ascii_word_spans(text.as_bytes(), |start, end| {
                grams.push(&text[start..end], end - start)
            });
        } else {
            for w in words(text) {
                grams.push(w, w.chars().count());
            }
        }
        grams
    }

    /// Add the next word, of `chars` characters.
    fn push(&mut self, word: &'a str, chars: usize) {
        // the vectors start with one entry and grow together: both have a last one
        let (c, h) = (
            *self.chars.last().unwrap_or(&0),
            *self.prefix.last().unwrap_or(&0),
        );
        self.words.push(word);
        self.chars.push(c + chars);
        self.prefix.push(
            h.wrapping_mul(GRAM_BASE)
                .wrapping_add(word_hash(word.as_bytes())),
        );
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Hash of the n-gram starting at word `i`. Equal n-grams have equal hashes;
    /// unequal ones almost never do (check with [`WordGrams::same`]).
    pub fn hash(&self, i: usize, n: usize) -> u64 {
        let pow = match self.powers.get(n) {
            Some(&p) => p,
            None => (0..n).fold(1u64, |p, _| p.wrapping_mul(GRAM_BASE)),
        };
        self.prefix[i + n].wrapping_sub(self.prefix[i].wrapping_mul(pow))
    }

    /// Characters in the n-gram starting at word `i`.
    pub fn chars(&self, i: usize, n: usize) -> usize {
        self.chars[i + n] - self.chars[i]
    }

    /// Whether the n-grams at `i` and `j` have the same words.
    pub fn same(&self, i: usize, j: usize, n: usize) -> bool {
        self.words[i..i + n] == self.words[j..j + n]
    }
}

/// Whether two 2-grams (pairs of neighbouring [`words`]) of ASCII `text` may
/// be the same: `false` means none repeats, and then no longer n-gram does
/// either. Most texts repeat no 2-gram, and this settles them in one pass
/// over the words, without the vectors of [`WordGrams`]; `true` (a repeat,
/// or equal hashes) leaves the question to [`WordGrams`].
pub fn ascii_bigram_may_repeat(text: &str) -> bool {
    thread_local! {
        /// The text's 2-gram hashes.
        static GRAMS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    debug_assert!(text.is_ascii());
    let bytes = text.as_bytes();
    GRAMS.with_borrow_mut(|grams| {
        grams.clear();
        let mut before: Option<u64> = None;
        ascii_word_spans(bytes, |start, end| {
            let h = word_hash(&bytes[start..end]);
            // the 2-gram hash of the WordGrams polynomial: w_i * base + w_{i+1}
            if let Some(b) = before {
                grams.push(b.wrapping_mul(GRAM_BASE).wrapping_add(h));
            }
            before = Some(h);
        });
        any_equal_hash(grams.len(), grams.iter().copied())
    })
}

/// Whether two of `hashes` (`count` of them) are equal, or one is 0 (which
/// marks an empty slot, so it answers "maybe": the caller looks closer).
/// An open-addressing set in a buffer each thread reuses: for the few dozen
/// hashes of one text, that costs less than sorting them.
pub fn any_equal_hash(count: usize, hashes: impl IntoIterator<Item = u64>) -> bool {
    thread_local! {
        /// All zeros between calls.
        static SLOTS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let size = (2 * count).next_power_of_two().max(16);
    SLOTS.with_borrow_mut(|slots| {
        if slots.len() < size {
            slots.resize(size, 0);
        }
        let table = &mut slots[..size];
        let mask = size - 1;
        let mut equal = false;
        'hashes: for h in hashes {
            if h == 0 {
                equal = true;
                break;
            }
            // the high bits of a multiplicative hash spread the slots best
            let mut at = (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask;
            loop {
                match table[at] {
                    0 => {
                        table[at] = h;
                        break;
                    }
                    x if x == h => {
                        equal = true;
                        break 'hashes;
                    }
                    _ => at = (at + 1) & mask,
                }
            }
        }
        table.fill(0);
        equal
    })
}

/// The [`words`] of ASCII text as byte ranges, found 64 bytes at a time: a
/// mask of each block's word bytes, whose edges (bits that differ from the bit
/// before) are where words start and end. The loop runs once per word, not
/// once per byte with a mispredicted branch at every word boundary as in
/// [`words`].
#[inline]
fn ascii_word_spans(bytes: &[u8], mut each: impl FnMut(usize, usize)) {
    // where the word running on from the last block started
    let mut open: Option<usize> = None;
    for (i, chunk) in bytes.chunks(64).enumerate() {
        // a short last block is padded with separators
        let mut block = [0u8; 64];
        block[..chunk.len()].copy_from_slice(chunk);
        // one 0/1 byte per byte (this vectorizes), then each 8 of them
        // gathered into 8 bits by one multiplication: byte i of `x` lands on
        // bit 56 + i of the product, and no two bytes' bits meet
        let mut flags = [0u8; 64];
        for (f, &b) in flags.iter_mut().zip(&block) {
            *f = u8::from(ascii_word_byte(b));
        }
        let mask = flags
            .chunks_exact(8)
            .enumerate()
            .fold(0u64, |m, (k, eight)| {
                let x = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
                m | ((x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k))
            });
        let mut edges = mask ^ ((mask << 1) | u64::from(open.is_some()));
        while edges != 0 {
            let at = i * 64 + edges.trailing_zeros() as usize;
            edges &= edges - 1;
            match open.take() {
                None => open = Some(at),
                Some(start) => each(start, at),
            }
        }
    }
    if let Some(start) = open {
        each(start, bytes.len());
    }
}

/// An ASCII byte that is part of a word (see [`words`]).
fn ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'\''
}

/// Number of words ([`words`]).
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

/// Share of non-whitespace characters that are CJK.
pub fn cjk_fraction(text: &str) -> f64 {
    if text.is_ascii() {
        return 0.0;
    }
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
    fn borrowed_fields_equal_the_joined_text() {
        use pipe_rows::Message;
        let turns: [&[(&str, &str)]; 6] = [
            &[],
            &[("user", "问题：合同？"), ("assistant", "")],
            &[("user", ""), ("user", "b"), ("assistant", "x")],
            &[
                ("user", "a"),
                ("assistant", "é"),
                ("user", ""),
                ("assistant", ""),
            ],
            &[
                ("tool", "{}"),
                ("assistant", "y"),
                ("user", "z"),
                ("assistant", "w"),
            ],
            &[("assistant", ""), ("assistant", ""), ("assistant", "last")],
        ];
        for t in turns {
            let row = Row {
                messages: t.iter().map(|(r, c)| Message::new(*r, *c)).collect(),
                system: Some("sys".into()),
                ..Row::default()
            };
            for f in [Field::Prompt, Field::Response, Field::System, Field::Text] {
                let general = match f {
                    Field::Prompt => join_roles(&row, |r| r != "assistant"),
                    Field::Response => join_roles(&row, |r| r == "assistant"),
                    Field::System => "sys".to_owned(),
                    _ => String::new(),
                };
                assert_eq!(field_str(&row, f), general, "{f:?} of {t:?}");
            }
        }
    }

    #[test]
    fn bigram_repeats_are_found_exactly_where_there_are_some() {
        let vocab = [
            "a",
            "to",
            "the",
            "cat",
            "sat",
            "on",
            "mat",
            "antidisestablishment",
            "x9",
        ];
        let seps = [" ", "  ", ", ", ".\n", "\t"];
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        let (mut with, mut without) = (0, 0);
        for case in 0..3000 {
            // a small vocabulary for some texts (repeats likely), all of it for others
            let k = if case % 2 == 0 { 3 } else { vocab.len() };
            let text: String = (0..case % 40)
                .map(|_| format!("{}{}", vocab[next(k)], seps[next(seps.len())]))
                .collect();
            let ws = WordGrams::new(&text);
            let pairs: Vec<&[&str]> = ws.words.windows(2).collect();
            let repeats = (0..pairs.len()).any(|i| pairs[..i].contains(&pairs[i]));
            assert_eq!(ascii_bigram_may_repeat(&text), repeats, "{text:?}");
            if repeats { with += 1 } else { without += 1 }
        }
        assert!(with > 500 && without > 500, "{with} / {without}");
    }

    #[test]
    fn short_words_hash_apart() {
        // every word of 1 to 3 letters, and of 4 to 9 built from them: the
        // byte-reading cases and the xxh3 one
        let letters: Vec<String> = (b'a'..=b'z').map(|c| (c as char).to_string()).collect();
        let mut words: Vec<String> = letters.clone();
        for len in 2..=3 {
            let longer: Vec<String> = words
                .iter()
                .filter(|w| w.len() == len - 1)
                .flat_map(|w| letters.iter().map(move |l| format!("{w}{l}")))
                .collect();
            words.extend(longer);
        }
        let short = words.len();
        for (i, w) in words[..short].to_vec().iter().enumerate().step_by(7) {
            words.push(format!("{w}{}", words[(i * 31) % short]).repeat(1 + i % 3));
        }
        words.sort();
        words.dedup();
        let mut hashes: Vec<u64> = words.iter().map(|w| word_hash(w.as_bytes())).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), words.len());
    }

    #[test]
    fn word_grams_hash_equal_ngrams_equally() {
        let g = WordGrams::new("the cat sat, the cat sat on the mat 猫猫");
        assert_eq!(g.len(), 11);
        assert_eq!(g.hash(0, 3), g.hash(3, 3));
        assert!(g.same(0, 3, 3));
        assert_ne!(g.hash(0, 3), g.hash(1, 3));
        assert_eq!(g.hash(9, 1), g.hash(10, 1));
        assert_eq!(g.chars(0, 3), 9);
        assert_eq!(g.chars(8, 3), 5);
        // beyond the precomputed powers
        let long = "a b c d e f g h i j k l m n o p q r s t ".repeat(2);
        let g = WordGrams::new(&long);
        assert_eq!(g.hash(0, 20), g.hash(20, 20));
        assert_ne!(g.hash(0, 20), g.hash(1, 20));
    }

    #[test]
    fn ascii_fast_path_matches_the_char_path() {
        for strip in [false, true] {
            for t in [
                "  Hello,\t\x0b\x0c WORLD!\r\n ",
                "a\x1fb\x7f c--d",
                "",
                " \n ",
                "Mixed CASE   spacing...",
                "Already Single Spaced.",
                "x",
                " leading",
                "trailing ",
            ] {
                let (mut fast, mut general) = (Vec::new(), Vec::new());
                normalize_ascii(t.as_bytes(), strip, &mut fast);
                normalize_chars(t.chars(), strip, &mut general);
                assert_eq!(fast, general, "{t:?}");
            }
        }
        // irregular whitespace is found where it is, in and across blocks
        assert_eq!(irregular_space(b"Already Single Spaced."), 22);
        let long = "word ".repeat(20);
        for (i, c) in [
            (3, ' '),
            (31, '\n'),
            (32, ' '),
            (33, '\x0b'),
            (64, ' '),
            (99, '\r'),
        ] {
            let mut t = long.clone().into_bytes();
            // a space before a space, or the other whitespace byte itself
            t[i] = c as u8;
            let want = if c == ' ' {
                (i..t.len()).find(|&k| t[k] == b' ' && t[k - 1] == b' ')
            } else {
                Some(i)
            };
            assert_eq!(
                Some(irregular_space(&t)),
                want.or(Some(t.len())),
                "{i} {c:?}"
            );
        }
        // random ASCII over every class, appended after earlier text as dedup
        // keys are; a third of it over letters and spaces only, which is
        // often already single-spaced
        let alphabet = b"aZ9 Qq.\t\n\x0b\x0c\r _-!~\x00\x1f\x7f";
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for case in 0..5000 {
            // across the 32-byte blocks of `irregular_space`
            let len = case % 97;
            let t: String = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let k = if case % 3 == 0 { 6 } else { alphabet.len() };
                    alphabet[(s % k as u64) as usize] as char
                })
                .collect();
            let strip = case % 2 == 0;
            let (mut fast, mut general) = (b"key ".to_vec(), b"key ".to_vec());
            normalize_ascii(t.as_bytes(), strip, &mut fast);
            normalize_chars(t.chars(), strip, &mut general);
            assert_eq!(fast, general, "{t:?}");
        }
    }

    #[test]
    fn ascii_word_spans_match_words() {
        // separators and word bytes, words across and along 64-byte blocks
        let alphabet = [" ", "a", "Z", "9", "_", "'", ".", "-", "\n", "\x7f"];
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for case in 0..3000 {
            let len = [0, 1, 63, 64, 65, 127, 128, 129, 200][case % 9] + case % 3;
            // long runs of one kind: words longer than a block
            let run = 1 + case % 70;
            let mut t = String::new();
            while t.len() < len {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let piece = alphabet[(s % alphabet.len() as u64) as usize];
                t.push_str(&piece.repeat(run.min(len - t.len())));
            }
            let mut spans = Vec::new();
            ascii_word_spans(t.as_bytes(), |a, b| spans.push(&t[a..b]));
            assert_eq!(spans, words(&t).collect::<Vec<_>>(), "{t:?}");
        }
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
        // ASCII words running into non-ASCII letters stay whole; CJK splits them
        let w: Vec<&str> = words("café's naïve-x résumé 法a b法 é").collect();
        assert_eq!(
            w,
            ["café's", "naïve", "x", "résumé", "法", "a", "b", "法", "é"]
        );
    }
}
