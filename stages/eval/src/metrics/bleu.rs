//! BLEU exactly as sacrebleu 2.x computes it (`sacrebleu.metrics.BLEU`).
//!
//! The tokenizers replay sacrebleu's regular expressions pass by pass: each
//! pattern is one or two characters wide, so a left-to-right scan that
//! consumes a match and resumes after it is exactly Python's `re.sub`.
//! N-grams are counted on interned token ids packed into `u128` keys.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::OnceLock;

use super::text::{
    ClipCounter, Interner, py_isspace, py_isspace_byte, py_rstrip, py_split, py_strip,
};

/// sacrebleu's `tokenize=` choices that need no external model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum BleuTokenize {
    /// mteval-v13a, sacrebleu's default.
    #[default]
    #[serde(rename = "13a")]
    T13a,
    /// Chinese characters split one by one, the rest as 13a.
    #[serde(rename = "zh")]
    Zh,
    /// mteval-v14 international: Unicode punctuation and symbols.
    #[serde(rename = "intl")]
    Intl,
    /// Every character a token.
    #[serde(rename = "char")]
    Char,
    /// Whitespace only.
    #[serde(rename = "none")]
    None,
}

impl BleuTokenize {
    pub fn name(self) -> &'static str {
        match self {
            BleuTokenize::T13a => "13a",
            BleuTokenize::Zh => "zh",
            BleuTokenize::Intl => "intl",
            BleuTokenize::Char => "char",
            BleuTokenize::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "13a" => BleuTokenize::T13a,
            "zh" => BleuTokenize::Zh,
            "intl" => BleuTokenize::Intl,
            "char" => BleuTokenize::Char,
            "none" => BleuTokenize::None,
            _ => return None,
        })
    }

    /// The tokenized line (tokens joined by single spaces), as sacrebleu's tokenizer returns it.
    pub fn tokenize(self, line: &str) -> String {
        let mut a = String::new();
        let mut b = String::new();
        self.tokenize_into(line, &mut a, &mut b);
        a
    }

    /// Tokenize into `out` (space-joined tokens) using `tmp` as scratch.
    pub fn tokenize_into(self, line: &str, out: &mut String, tmp: &mut String) {
        out.clear();
        match self {
            BleuTokenize::T13a => {
                tmp.clear();
                tmp.push(' ');
                tmp.push_str(&unescape_13a(line));
                tmp.push(' ');
                regexp_post(tmp, out);
            }
            BleuTokenize::Zh => {
                tmp.clear();
                for c in py_strip(line).chars() {
                    if is_zh_char(c) {
                        tmp.push(' ');
                        tmp.push(c);
                        tmp.push(' ');
                    } else {
                        tmp.push(c);
                    }
                }
                regexp_post(tmp, out);
            }
            BleuTokenize::Intl => {
                let re = intl_regexes();
                let s1 = re[0].replace_all(line, "${1} ${2} ");
                let s2 = re[1].replace_all(&s1, " ${1} ${2}");
                let s3 = re[2].replace_all(&s2, " ${1} ");
                join_split(&s3, out);
            }
            BleuTokenize::Char => {
                for (i, c) in line.chars().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push(c);
                }
            }
            BleuTokenize::None => out.push_str(line),
        }
    }
}

/// 13a's steps before the regexps: drop `<skipped>`, join `-\n` hyphenation,
/// newlines to spaces, then the four entities.
fn unescape_13a(line: &str) -> Cow<'_, str> {
    if !(line.contains('<') || line.contains('\n') || line.contains('&')) {
        return Cow::Borrowed(line);
    }
    let mut l = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if l.contains('&') {
        l = l
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    Cow::Owned(l)
}

fn intl_regexes() -> &'static [Regex; 3] {
    static RE: OnceLock<[Regex; 3]> = OnceLock::new();
    RE.get_or_init(|| {
        [
            Regex::new(r"(\P{N})(\p{P})").expect("valid regex"),
            Regex::new(r"(\p{P})(\P{N})").expect("valid regex"),
            Regex::new(r"(\p{S})").expect("valid regex"),
        ]
    })
}

/// sacrebleu's `_UCODE_RANGES` for `zh`, as Python compares them. Two entries
/// are written `u'\u20000'`, which Python reads as U+2000 followed by `'0'`
/// (a two-character string); comparing a single character against such
/// bounds makes the effective ranges U+2001..=U+2A6D and U+2F81..=U+2FA1.
/// We keep that behaviour: it is what sacrebleu scores.
fn is_zh_char(c: char) -> bool {
    const RANGES: [(u32, u32); 22] = [
        (0x3400, 0x4db5),
        (0x4e00, 0x9fa5),
        (0x9fa6, 0x9fbb),
        (0xf900, 0xfa2d),
        (0xfa30, 0xfa6a),
        (0xfa70, 0xfad9),
        (0x2001, 0x2a6d),
        (0x2f81, 0x2fa1),
        (0xff00, 0xffef),
        (0x2e80, 0x2eff),
        (0x3000, 0x303f),
        (0x31c0, 0x31ef),
        (0x2f00, 0x2fdf),
        (0x2ff0, 0x2fff),
        (0x3100, 0x312f),
        (0x31a0, 0x31bf),
        (0xfe10, 0xfe1f),
        (0xfe30, 0xfe4f),
        (0x2600, 0x26ff),
        (0x2700, 0x27bf),
        (0x3200, 0x32ff),
        (0x3300, 0x33ff),
    ];
    let c = c as u32;
    c >= 0x2001 && RANGES.iter().any(|&(a, b)| a <= c && c <= b)
}

/// `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: the characters 13a pads with spaces.
const fn is_13a_punct(b: u8) -> bool {
    matches!(b, b'{'..=b'~' | b'['..=b'`' | b' '..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/')
}

/// sacrebleu's `TokenizerRegexp`: four substitutions in order, then
/// `' '.join(line.split())`. Works on UTF-8 bytes: every pattern names ASCII
/// characters except `[^0-9]`, and a non-ASCII character can only match that
/// class, whose match then covers the same characters as Python's.
fn regexp_post(line: &mut String, out: &mut String) {
    let mut a: Vec<u8> = Vec::with_capacity(line.len() * 2);
    // 1. ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
    for &b in line.as_bytes() {
        if is_13a_punct(b) {
            a.extend_from_slice(&[b' ', b, b' ']);
        } else {
            a.push(b);
        }
    }
    let mut b: Vec<u8> = Vec::with_capacity(a.len() + 16);
    number_passes(&a, &mut b, &mut Vec::new());
    // The passes only insert ASCII spaces between whole characters.
    let s = String::from_utf8(b).expect("byte passes keep UTF-8 intact");
    line.clear();
    join_split(&s, out);
}

/// Substitutions 2..4 of 13a (the ones about `.`, `,` and `-` next to digits),
/// from `input` into `out`, with `tmp` as scratch.
fn number_passes(input: &[u8], out: &mut Vec<u8>, tmp: &mut Vec<u8>) {
    out.clear();
    tmp.clear();
    // 2. ([^0-9])([\.,]) -> '\1 \2 '
    pair_pass(
        input,
        tmp,
        |x| !x.is_ascii_digit(),
        |y| y == b'.' || y == b',',
        |o, x, y| o.extend_from_slice(&[x, b' ', y, b' ']),
    );
    // 3. ([\.,])([^0-9]) -> ' \1 \2'
    pair_pass(
        tmp,
        out,
        |x| x == b'.' || x == b',',
        |y| !y.is_ascii_digit(),
        |o, x, y| o.extend_from_slice(&[b' ', x, b' ', y]),
    );
    std::mem::swap(out, tmp);
    out.clear();
    // 4. ([0-9])(-) -> '\1 \2 '
    pair_pass(
        tmp,
        out,
        |x| x.is_ascii_digit(),
        |y| y == b'-',
        |o, x, y| o.extend_from_slice(&[x, b' ', y, b' ']),
    );
}

/// Scratch space of [`split_word_13a`].
#[derive(Default)]
struct Scratch13a {
    word: Vec<u8>,
    out: Vec<u8>,
    tmp: Vec<u8>,
}

/// The token ids of the 13a words that passes 2..4 change, by word: such
/// words ("end.", "1,000", "e-mail") recur all through a corpus, and a lookup
/// costs less than the passes and the interning of each piece.
#[derive(Default)]
struct WordCache13a {
    words: Interner,
    /// Per word id: its token ids in `ids`.
    spans: Vec<(usize, usize)>,
    ids: Vec<u32>,
    scratch: Scratch13a,
}

impl WordCache13a {
    /// Appends the token ids of one piece from [`tokens_13a`] to `out`.
    #[inline]
    fn push(&mut self, interner: &mut Interner, piece: &str, has_sep: bool, out: &mut Vec<u32>) {
        if !has_sep {
            out.push(interner.id(piece));
            return;
        }
        let word = self.words.id(piece) as usize;
        if word == self.spans.len() {
            let start = self.ids.len();
            let ids = &mut self.ids;
            split_word_13a(piece, &mut self.scratch, |t| ids.push(interner.id(t)));
            self.spans.push((start, self.ids.len()));
        }
        let (start, end) = self.spans[word];
        out.extend_from_slice(&self.ids[start..end]);
    }
}

/// What 13a does with an ASCII byte (see [`tokens_13a`]).
const WORD: u8 = 0;
/// Whitespace: ends a word.
const SPACE: u8 = 1;
/// In pass 1's class: a token of its own.
const PUNCT: u8 = 2;
/// `.`, `,` or `-`: part of a word, which then needs passes 2..4.
const NUMBER_SEP: u8 = 3;
/// Not ASCII: decode the character.
const MULTIBYTE: u8 = 4;

const CLASS_13A: [u8; 256] = {
    let mut class = [WORD; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        class[b] = if byte >= 0x80 {
            MULTIBYTE
        } else if py_isspace_byte(byte) {
            SPACE
        } else if is_13a_punct(byte) {
            PUNCT
        } else if matches!(byte, b'.' | b',' | b'-') {
            NUMBER_SEP
        } else {
            WORD
        };
        b += 1;
    }
    class
};

/// The tokens of 13a's regexp stage on `" " + line + " "`, without
/// building the padded and substituted line (the same tokens as
/// [`regexp_post`], which the tests check).
///
/// Why it is exact: pass 1 surrounds every character of its class with
/// spaces, so each such character is a token, and the rest of the line falls
/// into words: maximal runs of characters that are neither whitespace nor in
/// that class. Passes 2..4 match pairs of adjacent characters drawn from
/// `.`, `,`, `-`, digits and "anything but a digit". Every character next to
/// a word is whitespace or a space from pass 1: neither a digit, `.`, `,` nor
/// `-`, so it takes part in a match exactly as a space would; and when pass 3
/// consumes one after a word's final `.` or `,`, the next word loses nothing,
/// as no pattern of pass 3 starts at such a character. So each word is
/// substituted on its own as `" " + word + " "`, and a word with no `.`, `,`
/// or `-` comes out unchanged: `emit(piece, has_sep)` receives tokens
/// (`has_sep` false) and words for [`split_word_13a`] (`has_sep` true).
///
/// With `stop_at_escapes`, gives up at the first `<`, `&` or newline (the
/// characters of [`unescape_13a`]) and returns false, the caller discarding
/// what was emitted, so that a line needing no unescaping is scanned once.
fn tokens_13a(line: &str, stop_at_escapes: bool, mut emit: impl FnMut(&str, bool)) -> bool {
    let bytes = line.as_bytes();
    let mut word_start = 0;
    // Whether the current word holds `.`, `,` or `-`.
    let mut word_has_sep = false;
    let mut i = 0;
    while i < bytes.len() {
        match CLASS_13A[bytes[i] as usize] {
            WORD => i += 1,
            NUMBER_SEP => {
                word_has_sep = true;
                i += 1;
            }
            SPACE => {
                if stop_at_escapes && bytes[i] == b'\n' {
                    return false;
                }
                if word_start < i {
                    emit(&line[word_start..i], word_has_sep);
                }
                word_has_sep = false;
                i += 1;
                word_start = i;
            }
            PUNCT => {
                if stop_at_escapes && matches!(bytes[i], b'<' | b'&') {
                    return false;
                }
                if word_start < i {
                    emit(&line[word_start..i], word_has_sep);
                }
                word_has_sep = false;
                emit(&line[i..i + 1], false);
                i += 1;
                word_start = i;
            }
            _ => {
                let c = line[i..].chars().next().expect("inside the line");
                let len = c.len_utf8();
                if py_isspace(c) {
                    if word_start < i {
                        emit(&line[word_start..i], word_has_sep);
                    }
                    word_has_sep = false;
                    word_start = i + len;
                }
                i += len;
            }
        }
    }
    if word_start < bytes.len() {
        emit(&line[word_start..], word_has_sep);
    }
    true
}

/// The tokens of a word from [`tokens_13a`] that holds `.`, `,` or `-`, the
/// only characters passes 2..4 change inside a word.
fn split_word_13a(word: &str, scratch: &mut Scratch13a, mut emit: impl FnMut(&str)) {
    scratch.word.clear();
    scratch.word.push(b' ');
    scratch.word.extend_from_slice(word.as_bytes());
    scratch.word.push(b' ');
    number_passes(&scratch.word, &mut scratch.out, &mut scratch.tmp);
    let subst = std::str::from_utf8(&scratch.out).expect("the passes keep UTF-8 intact");
    // The word holds no whitespace, so the passes' ASCII spaces are the only separators.
    for token in subst.split(' ').filter(|t| !t.is_empty()) {
        emit(token);
    }
}

#[inline]
fn pair_pass(
    input: &[u8],
    out: &mut Vec<u8>,
    first: impl Fn(u8) -> bool,
    second: impl Fn(u8) -> bool,
    emit: impl Fn(&mut Vec<u8>, u8, u8),
) {
    let mut i = 0;
    let n = input.len();
    while i < n {
        let x = input[i];
        if i + 1 < n && first(x) && second(input[i + 1]) {
            emit(out, x, input[i + 1]);
            i += 2;
        } else {
            out.push(x);
            i += 1;
        }
    }
}

fn join_split(s: &str, out: &mut String) {
    for (i, t) in py_split(s).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(t);
    }
}

/// sacrebleu's `smooth_method` with its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smooth {
    /// NIST geometric sequence (sacrebleu default).
    Exp,
    /// Zero precisions become `value / total` (default value 0.1).
    Floor(f64),
    /// Add `value` to counts and totals of orders above 1 (default value 1).
    AddK(f64),
    None,
}

impl Smooth {
    /// `method` as sacrebleu names it, with sacrebleu's default value when `value` is None.
    pub fn parse(method: &str, value: Option<f64>) -> Option<Self> {
        Some(match method {
            "exp" => Smooth::Exp,
            "floor" => Smooth::Floor(value.unwrap_or(0.1)),
            "add-k" => Smooth::AddK(value.unwrap_or(1.0)),
            "none" => Smooth::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Smooth::Exp => "exp",
            Smooth::Floor(_) => "floor",
            Smooth::AddK(_) => "add-k",
            Smooth::None => "none",
        }
    }
}

/// Settings of one BLEU computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuConfig {
    pub tokenize: BleuTokenize,
    pub smooth: Smooth,
    pub lowercase: bool,
    /// Highest n-gram order, 1..=4.
    pub max_order: usize,
    /// Drop orders with no n-grams from the geometric mean (sentence BLEU).
    pub effective_order: bool,
}

impl Default for BleuConfig {
    fn default() -> Self {
        Self {
            tokenize: BleuTokenize::T13a,
            smooth: Smooth::Exp,
            lowercase: false,
            max_order: 4,
            effective_order: false,
        }
    }
}

impl BleuConfig {
    /// sacrebleu's `sentence_bleu()` defaults: effective order on.
    pub fn sentence() -> Self {
        Self {
            effective_order: true,
            ..Self::default()
        }
    }

    /// sacrebleu's signature string, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub fn signature(&self, nrefs: &str) -> String {
        let smooth = match self.smooth {
            Smooth::Floor(v) | Smooth::AddK(v) => format!("{}[{v:.2}]", self.smooth.name()),
            s => s.name().to_owned(),
        };
        format!(
            "nrefs:{nrefs}|case:{}|eff:{}|tok:{}|smooth:{smooth}|version:2.6.0",
            if self.lowercase { "lc" } else { "mixed" },
            if self.effective_order { "yes" } else { "no" },
            self.tokenize.name()
        )
    }
}

/// Sufficient statistics of one segment or a corpus (sacrebleu's stats list).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BleuStats {
    pub sys_len: u64,
    pub ref_len: u64,
    pub correct: [u64; 4],
    pub total: [u64; 4],
}

impl BleuStats {
    pub fn add(&mut self, other: &BleuStats) {
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
        for n in 0..4 {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }
}

/// A BLEU score on sacrebleu's 0..100 scale, with its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BleuScore {
    pub score: f64,
    pub precisions: Vec<f64>,
    pub bp: f64,
    pub sys_len: u64,
    pub ref_len: u64,
    pub counts: Vec<f64>,
    pub totals: Vec<f64>,
}

/// sacrebleu's `BLEU.compute_bleu`, operation for operation.
pub fn compute_bleu(stats: &BleuStats, cfg: &BleuConfig) -> BleuScore {
    let max_order = cfg.max_order;
    let mut correct: Vec<f64> = stats.correct[..max_order]
        .iter()
        .map(|&c| c as f64)
        .collect();
    let mut total: Vec<f64> = stats.total[..max_order].iter().map(|&c| c as f64).collect();
    let (sys_len, ref_len) = (stats.sys_len, stats.ref_len);
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
    }
    let mut precisions = vec![0.0; max_order];
    if correct.iter().all(|&c| c == 0.0) {
        return BleuScore {
            score: 0.0,
            precisions,
            bp,
            sys_len,
            ref_len,
            counts: correct,
            totals: total,
        };
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = max_order;
    for n in 1..=max_order {
        if let Smooth::AddK(k) = cfg.smooth
            && n > 1
        {
            correct[n - 1] += k;
            total[n - 1] += k;
        }
        if total[n - 1] == 0.0 {
            break;
        }
        if cfg.effective_order {
            eff_order = n;
        }
        if correct[n - 1] == 0.0 {
            match cfg.smooth {
                Smooth::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                }
                Smooth::Floor(v) => precisions[n - 1] = 100.0 * v / total[n - 1],
                _ => {}
            }
        } else {
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
        }
    }
    let mut log_sum = 0.0;
    for &p in &precisions[..eff_order] {
        log_sum += if p == 0.0 { -9999999999.0 } else { p.ln() };
    }
    let score = bp * (log_sum / eff_order as f64).exp();
    BleuScore {
        score,
        precisions,
        bp,
        sys_len,
        ref_len,
        counts: correct,
        totals: total,
    }
}

/// A reusable BLEU scorer: keeps the token interner and buffers across segments.
pub struct Bleu {
    pub cfg: BleuConfig,
    interner: Interner,
    buf: String,
    tmp: String,
    lower: String,
    words_13a: WordCache13a,
    /// Token ids of the references of the current segment, back to back.
    ref_ids: Vec<u32>,
    /// End of each reference in `ref_ids`.
    ref_ends: Vec<usize>,
    hyp_ids: Vec<u32>,
    /// The references' n-grams, each with its highest count over references.
    ref_ngrams: ClipCounter,
    /// One reference's n-grams, when there are several to take the max over.
    one_ref: ClipCounter,
}

impl Bleu {
    pub fn new(cfg: BleuConfig) -> Self {
        assert!(
            (1..=4).contains(&cfg.max_order),
            "BLEU max order must be 1..=4"
        );
        Self {
            cfg,
            interner: Interner::default(),
            buf: String::new(),
            tmp: String::new(),
            lower: String::new(),
            words_13a: WordCache13a::default(),
            ref_ids: Vec::new(),
            ref_ends: Vec::new(),
            hyp_ids: Vec::new(),
            ref_ngrams: ClipCounter::default(),
            one_ref: ClipCounter::default(),
        }
    }

    /// sacrebleu's `_preprocess_segment`, then the token ids appended to `ids`.
    fn tokenize_ids(&mut self, line: &str, ids: &mut Vec<u32>) {
        let line = if self.cfg.lowercase {
            self.lower.clear();
            self.lower.push_str(&line.to_lowercase());
            py_rstrip(&self.lower)
        } else {
            py_rstrip(line)
        };
        let interner = &mut self.interner;
        if self.cfg.tokenize == BleuTokenize::T13a {
            let cache = &mut self.words_13a;
            let start = ids.len();
            if !tokens_13a(line, true, |piece, has_sep| {
                cache.push(interner, piece, has_sep, ids)
            }) {
                ids.truncate(start);
                tokens_13a(&unescape_13a(line), false, |piece, has_sep| {
                    cache.push(interner, piece, has_sep, ids)
                });
            }
            return;
        }
        self.cfg
            .tokenize
            .tokenize_into(line, &mut self.buf, &mut self.tmp);
        ids.extend(py_split(&self.buf).map(|t| interner.id(t)));
    }

    /// Statistics of one segment against its references (sacrebleu's
    /// `_extract_reference_info` + `_compute_segment_statistics`).
    pub fn segment_stats<S: AsRef<str>>(&mut self, hyp: &str, refs: &[S]) -> BleuStats {
        let max_order = self.cfg.max_order;
        let mut stats = BleuStats::default();
        let mut ref_ids = std::mem::take(&mut self.ref_ids);
        let mut hyp_ids = std::mem::take(&mut self.hyp_ids);
        ref_ids.clear();
        hyp_ids.clear();
        self.ref_ends.clear();
        for r in refs {
            self.tokenize_ids(r.as_ref(), &mut ref_ids);
            self.ref_ends.push(ref_ids.len());
        }
        self.tokenize_ids(hyp, &mut hyp_ids);
        let hyp_len = hyp_ids.len() as i64;
        stats.sys_len = hyp_len as u64;
        // _get_closest_ref_len
        let (mut closest_diff, mut closest_len) = (-1i64, -1i64);
        let mut ref_start = 0;
        for &end in &self.ref_ends {
            let rl = (end - ref_start) as i64;
            ref_start = end;
            let diff = (hyp_len - rl).abs();
            if closest_diff == -1 || diff < closest_diff {
                closest_diff = diff;
                closest_len = rl;
            } else if diff == closest_diff && rl < closest_len {
                closest_len = rl;
            }
        }
        stats.ref_len = closest_len.max(0) as u64;
        // Reference counts: the max over references of each n-gram's count.
        self.ref_ngrams.reset(ref_ids.len() * max_order);
        if let [_] = self.ref_ends[..] {
            self.ref_ngrams.add_ngrams(&ref_ids, max_order, 32);
        } else {
            let mut ref_start = 0;
            for &end in &self.ref_ends {
                let ids = &ref_ids[ref_start..end];
                ref_start = end;
                self.one_ref.reset(ids.len() * max_order);
                self.one_ref.add_ngrams(ids, max_order, 32);
                for (key, count) in self.one_ref.entries() {
                    self.ref_ngrams.raise(key, count);
                }
            }
        }
        self.ref_ngrams
            .take_ngrams(&hyp_ids, max_order, 32, &mut stats.correct);
        for (order, total) in stats.total[..max_order].iter_mut().enumerate() {
            *total = hyp_ids.len().saturating_sub(order) as u64;
        }
        self.ref_ids = ref_ids;
        self.hyp_ids = hyp_ids;
        stats
    }

    /// Corpus BLEU: statistics summed over segments, then one score.
    /// `refs[i]` holds the references of segment `i`.
    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &mut self,
        hyps: &[H],
        refs: &[Vec<R>],
    ) -> BleuScore {
        let mut total = BleuStats::default();
        for (h, r) in hyps.iter().zip(refs) {
            let s = self.segment_stats(h.as_ref(), r);
            total.add(&s);
        }
        compute_bleu(&total, &self.cfg)
    }

    /// Sentence BLEU with this scorer's settings (use [`BleuConfig::sentence`] for sacrebleu's `sentence_bleu`).
    pub fn sentence_score<R: AsRef<str>>(&mut self, hyp: &str, refs: &[R]) -> BleuScore {
        let s = self.segment_stats(hyp, refs);
        compute_bleu(&s, &self.cfg)
    }
}

/// One-shot corpus BLEU with sacrebleu's defaults.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[Vec<R>]) -> BleuScore {
    Bleu::new(BleuConfig::default()).corpus_score(hyps, refs)
}

/// One-shot sentence BLEU with sacrebleu's `sentence_bleu` defaults.
pub fn sentence_bleu<R: AsRef<str>>(hyp: &str, refs: &[R]) -> BleuScore {
    Bleu::new(BleuConfig::sentence()).sentence_score(hyp, refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_13a_numbers() {
        let t = BleuTokenize::T13a;
        assert_eq!(t.tokenize("Hello, world."), "Hello , world .");
        assert_eq!(
            t.tokenize("It costs 2.5 dollars, 1,000 total."),
            "It costs 2.5 dollars , 1,000 total ."
        );
        assert_eq!(t.tokenize("&amp;quot; a-b 3-4"), "& quot ; a-b 3 - 4");
    }

    /// Lines where the token-by-token 13a scan could part from the padded passes.
    const TRICKY_13A: &[&str] = &[
        "",
        " ",
        "a",
        "Hello, world.",
        "It costs 2.5 dollars, 1,000 total.",
        "&amp;quot; a-b 3-4 &lt;tag&gt; <skipped> x",
        "line one\nline two-\nthree and 3-4",
        "..,,.. 1..2 ,1, .5 5. -5 5- 5-- --5 a.-b 1.-2 1-.2 ,.,",
        "e.g. U.S.A. 1,000.50 -3,5 3,5- x-1 1-x 12-34-56",
        "\tA\x0bb\x0c c\r\x1cd\x1fe\x01f\x7fg  ",
        "caf\u{e9}, na\u{ef}ve. \u{201c}quoted\u{201d} 3\u{a0}000 a\u{2003}b \u{3000}x\u{85}y",
        "\u{4e2d}\u{6587}\u{ff0c}\u{6d4b}\u{8bd5}. 1\u{ff0e}5 \u{1f600}-\u{1f600}",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "don't can't state-of-the-art e-mail 3.5% $100 (a) [b] {c}",
    ];

    #[test]
    fn token_scan_matches_regexp_passes() {
        let mut scratch = Scratch13a::default();
        let mut tokens = |line: &str, stop: bool, got: &mut Vec<String>| {
            tokens_13a(line, stop, |piece, has_sep| {
                if has_sep {
                    split_word_13a(piece, &mut scratch, |t| got.push(t.to_owned()));
                } else {
                    got.push(piece.to_owned());
                }
            })
        };
        for line in TRICKY_13A {
            for stop in [false, true] {
                let mut got = Vec::new();
                // Without `stop`, the caller has unescaped the line already.
                let input = if stop {
                    Cow::Borrowed(*line)
                } else {
                    unescape_13a(line)
                };
                if !tokens(&input, stop, &mut got) {
                    assert!(stop && line.contains(['<', '&', '\n']), "{line:?}");
                    got.clear();
                    tokens(&unescape_13a(line), false, &mut got);
                }
                let want = BleuTokenize::T13a.tokenize(line);
                assert_eq!(got.join(" "), want, "{line:?}");
            }
        }
    }

    /// sacrebleu's segment statistics the plain way: tokenized strings, n-gram maps.
    fn naive_stats(cfg: &BleuConfig, hyp: &str, refs: &[&str]) -> BleuStats {
        use std::collections::HashMap;
        let tokens = |s: &str| -> Vec<String> {
            let s = if cfg.lowercase {
                s.to_lowercase()
            } else {
                s.to_owned()
            };
            let t = cfg.tokenize.tokenize(py_rstrip(&s));
            py_split(&t).map(str::to_owned).collect()
        };
        let counts = |t: &[String], n: usize| {
            let mut m: HashMap<Vec<String>, u64> = HashMap::new();
            for w in t.windows(n) {
                *m.entry(w.to_vec()).or_default() += 1;
            }
            m
        };
        let h = tokens(hyp);
        let rs: Vec<Vec<String>> = refs.iter().map(|r| tokens(r)).collect();
        let mut stats = BleuStats {
            sys_len: h.len() as u64,
            ..Default::default()
        };
        let mut best: Option<(i64, i64)> = None;
        for r in &rs {
            let cand = ((h.len() as i64 - r.len() as i64).abs(), r.len() as i64);
            best = Some(best.map_or(cand, |b| b.min(cand)));
        }
        stats.ref_len = best.map_or(0, |b| b.1) as u64;
        for n in 1..=cfg.max_order {
            let mut ref_max: HashMap<Vec<String>, u64> = HashMap::new();
            for r in &rs {
                for (k, c) in counts(r, n) {
                    let e = ref_max.entry(k).or_default();
                    *e = (*e).max(c);
                }
            }
            for (k, c) in counts(&h, n) {
                stats.correct[n - 1] += c.min(ref_max.get(&k).copied().unwrap_or(0));
                stats.total[n - 1] += c;
            }
        }
        stats
    }

    #[test]
    fn segment_stats_match_plain_counting() {
        let cases: &[(&str, &[&str])] = &[
            (
                "the the the the cat",
                &["the cat the", "the the the cat the the"],
            ),
            ("a b a b a b", &["a b a b", "b a b a b a b", "a"]),
            ("", &["x y"]),
            ("x y", &[""]),
            ("x y z", &[]),
            (
                "Hello, World. 3-4 e.g. caf\u{e9}",
                &["hello , world . 3 - 4", "HELLO, world."],
            ),
        ];
        for tokenize in [BleuTokenize::T13a, BleuTokenize::Char, BleuTokenize::None] {
            for lowercase in [false, true] {
                for max_order in [1, 2, 4] {
                    let cfg = BleuConfig {
                        tokenize,
                        lowercase,
                        max_order,
                        ..BleuConfig::default()
                    };
                    let mut bleu = Bleu::new(cfg);
                    let lines = TRICKY_13A.iter().zip(TRICKY_13A.iter().rev().skip(1));
                    let extra: Vec<(&str, Vec<&str>)> =
                        lines.map(|(h, r)| (*h, vec![*r, *h])).collect();
                    for (hyp, refs) in cases.iter().map(|(h, r)| (*h, r.to_vec())).chain(extra) {
                        assert_eq!(
                            bleu.segment_stats(hyp, &refs),
                            naive_stats(&cfg, hyp, &refs),
                            "{cfg:?} {hyp:?} {refs:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn zh_range_quirk() {
        assert!(!is_zh_char('\u{2000}'));
        assert!(is_zh_char('\u{2001}'));
        assert!(is_zh_char('\u{201c}'));
        assert!(is_zh_char('中'));
        assert!(!is_zh_char('a'));
    }

    #[test]
    fn identical_is_100() {
        let s = sentence_bleu("the cat sat on the mat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9);
    }
}
