//! BLEU exactly as sacrebleu 2.x computes it (`sacrebleu.metrics.BLEU`).
//!
//! The tokenizers replay sacrebleu's regular expressions pass by pass: each
//! pattern is one or two characters wide, so a left-to-right scan that
//! consumes a match and resumes after it is exactly Python's `re.sub`.
//! N-grams are counted on interned token ids packed into `u128` keys.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use super::text::{Interner, count_sorted, py_rstrip, py_split, py_strip};

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
                if line.contains('<') || line.contains('\n') || line.contains('&') {
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
                    tmp.push_str(&l);
                } else {
                    tmp.push_str(line);
                }
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
#[inline]
fn is_13a_punct(b: u8) -> bool {
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
    // 2. ([^0-9])([\.,]) -> '\1 \2 '
    pair_pass(
        &a,
        &mut b,
        |x| !x.is_ascii_digit(),
        |y| y == b'.' || y == b',',
        |o, x, y| o.extend_from_slice(&[x, b' ', y, b' ']),
    );
    a.clear();
    // 3. ([\.,])([^0-9]) -> ' \1 \2'
    pair_pass(
        &b,
        &mut a,
        |x| x == b'.' || x == b',',
        |y| !y.is_ascii_digit(),
        |o, x, y| o.extend_from_slice(&[b' ', x, b' ', y]),
    );
    b.clear();
    // 4. ([0-9])(-) -> '\1 \2 '
    pair_pass(
        &a,
        &mut b,
        |x| x.is_ascii_digit(),
        |y| y == b'-',
        |o, x, y| o.extend_from_slice(&[x, b' ', y, b' ']),
    );
    // The passes only insert ASCII spaces between whole characters.
    let s = String::from_utf8(b).expect("byte passes keep UTF-8 intact");
    line.clear();
    join_split(&s, out);
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
    ids: Vec<u32>,
    keys: Vec<u128>,
    hyp_counts: Vec<(u128, u32)>,
    ref_counts: Vec<(u128, u32)>,
    ref_all: Vec<(u128, u32)>,
    run: Vec<(u128, u32)>,
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
            ids: Vec::new(),
            keys: Vec::new(),
            hyp_counts: Vec::new(),
            ref_counts: Vec::new(),
            ref_all: Vec::new(),
            run: Vec::new(),
        }
    }

    /// sacrebleu's `_preprocess_segment` then token ids into `self.ids`.
    fn tokenize_ids(&mut self, line: &str) {
        let line = if self.cfg.lowercase {
            self.lower.clear();
            self.lower.push_str(&line.to_lowercase());
            py_rstrip(&self.lower)
        } else {
            py_rstrip(line)
        };
        // `line` may borrow self.lower; tokenize into buf via a local copy of the strings.
        let mut buf = std::mem::take(&mut self.buf);
        let mut tmp = std::mem::take(&mut self.tmp);
        self.cfg.tokenize.tokenize_into(line, &mut buf, &mut tmp);
        self.ids.clear();
        for t in py_split(&buf) {
            self.ids.push(self.interner.id(t));
        }
        self.buf = buf;
        self.tmp = tmp;
    }

    /// N-gram keys of order `n` of `self.ids`, counted into `out`.
    fn ngram_counts(ids: &[u32], n: usize, keys: &mut Vec<u128>, out: &mut Vec<(u128, u32)>) {
        keys.clear();
        if ids.len() >= n {
            for w in ids.windows(n) {
                let mut k = 0u128;
                for &id in w {
                    k = (k << 32) | id as u128;
                }
                keys.push(k);
            }
        }
        count_sorted(keys, out);
    }

    /// Statistics of one segment against its references (sacrebleu's
    /// `_extract_reference_info` + `_compute_segment_statistics`).
    pub fn segment_stats<S: AsRef<str>>(&mut self, hyp: &str, refs: &[S]) -> BleuStats {
        let max_order = self.cfg.max_order;
        let mut stats = BleuStats::default();
        // Reference ids, one list per reference.
        let mut ref_ids: Vec<Vec<u32>> = Vec::with_capacity(refs.len());
        let mut ref_lens = Vec::with_capacity(refs.len());
        for r in refs {
            self.tokenize_ids(r.as_ref());
            ref_lens.push(self.ids.len() as i64);
            ref_ids.push(self.ids.clone());
        }
        self.tokenize_ids(hyp);
        let hyp_len = self.ids.len() as i64;
        stats.sys_len = hyp_len as u64;
        // _get_closest_ref_len
        let (mut closest_diff, mut closest_len) = (-1i64, -1i64);
        for &rl in &ref_lens {
            let diff = (hyp_len - rl).abs();
            if closest_diff == -1 || diff < closest_diff {
                closest_diff = diff;
                closest_len = rl;
            } else if diff == closest_diff && rl < closest_len {
                closest_len = rl;
            }
        }
        stats.ref_len = closest_len.max(0) as u64;
        let hyp_ids = std::mem::take(&mut self.ids);
        for n in 1..=max_order {
            // Reference counts: the max over references of each n-gram's count.
            self.ref_all.clear();
            for ids in &ref_ids {
                Self::ngram_counts(ids, n, &mut self.keys, &mut self.run);
                self.ref_all.extend_from_slice(&self.run);
            }
            self.ref_all.sort_unstable();
            self.ref_counts.clear();
            for &(k, c) in &self.ref_all {
                match self.ref_counts.last_mut() {
                    Some((lk, lc)) if *lk == k => *lc = (*lc).max(c),
                    _ => self.ref_counts.push((k, c)),
                }
            }
            Self::ngram_counts(&hyp_ids, n, &mut self.keys, &mut self.hyp_counts);
            let (mut correct, mut total) = (0u64, 0u64);
            let mut j = 0;
            for &(k, c) in &self.hyp_counts {
                total += c as u64;
                while j < self.ref_counts.len() && self.ref_counts[j].0 < k {
                    j += 1;
                }
                if j < self.ref_counts.len() && self.ref_counts[j].0 == k {
                    correct += c.min(self.ref_counts[j].1) as u64;
                }
            }
            stats.correct[n - 1] = correct;
            stats.total[n - 1] = total;
        }
        self.ids = hyp_ids;
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
