//! ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as Google's `rouge-score` computes
//! them, plus two tokenizers for text that its tokenizer would erase (CJK).
//!
//! Tokens are interned to ids; the stemmer runs once per distinct word.

use serde::{Deserialize, Serialize};

use super::porter;
use super::text::{ClipCounter, FxMap, Interner, count_sorted};

/// How text becomes ROUGE tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RougeTokenizer {
    /// rouge-score's tokenizer: lowercase, every run of non-`[a-z0-9]` separates
    /// tokens (non-Latin text disappears).
    #[default]
    Default,
    /// Like `default`, but every CJK character (Han, kana, Hangul) is a token of
    /// its own and letters/digits of any script form words.
    Cjk,
    /// Chinese word segmentation with jieba (HMM on), as LLaMA-Factory reports ROUGE;
    /// whitespace tokens dropped.
    Jieba,
}

impl RougeTokenizer {
    pub fn name(self) -> &'static str {
        match self {
            RougeTokenizer::Default => "default",
            RougeTokenizer::Cjk => "cjk",
            RougeTokenizer::Jieba => "jieba",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" | "rouge-score" => RougeTokenizer::Default,
            "cjk" => RougeTokenizer::Cjk,
            "jieba" => RougeTokenizer::Jieba,
            _ => return None,
        })
    }
}

/// Precision, recall and F1 of one ROUGE type (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PRF {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl PRF {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// The four standard scores of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RougeScores {
    pub rouge1: PRF,
    pub rouge2: PRF,
    #[serde(rename = "rougeL")]
    pub rouge_l: PRF,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: PRF,
}

impl RougeScores {
    pub fn get(&self, t: RougeType) -> PRF {
        match t {
            RougeType::Rouge1 => self.rouge1,
            RougeType::Rouge2 => self.rouge2,
            RougeType::RougeL => self.rouge_l,
            RougeType::RougeLsum => self.rouge_lsum,
        }
    }
    fn set(&mut self, t: RougeType, v: PRF) {
        match t {
            RougeType::Rouge1 => self.rouge1 = v,
            RougeType::Rouge2 => self.rouge2 = v,
            RougeType::RougeL => self.rouge_l = v,
            RougeType::RougeLsum => self.rouge_lsum = v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RougeType {
    Rouge1,
    Rouge2,
    RougeL,
    RougeLsum,
}

impl RougeType {
    pub const ALL: [RougeType; 4] = [
        RougeType::Rouge1,
        RougeType::Rouge2,
        RougeType::RougeL,
        RougeType::RougeLsum,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RougeType::Rouge1 => "rouge1",
            RougeType::Rouge2 => "rouge2",
            RougeType::RougeL => "rougeL",
            RougeType::RougeLsum => "rougeLsum",
        }
    }
}

/// A reusable ROUGE scorer (rouge-score's `RougeScorer`).
pub struct Rouge {
    pub tokenizer: RougeTokenizer,
    pub use_stemmer: bool,
    /// Which types to compute (others stay zero).
    pub types: Vec<RougeType>,
    vocab: Vocab,
    word: String,
    target: Tokens,
    prediction: Tokens,
    ngrams: ClipCounter,
    lcs: BitLcs,
    #[cfg(feature = "jieba")]
    jieba: Option<jieba_rs::Jieba>,
}

/// Token ids of one text, and where its lines end.
#[derive(Default)]
struct Tokens {
    ids: Vec<u32>,
    /// The number of tokens before each newline.
    line_ends: Vec<usize>,
}

impl Tokens {
    /// The token ids of each line (rouge-score's sentences for ROUGE-Lsum),
    /// leaving out lines without tokens: they add nothing to the union LCS,
    /// the hit counts or the lengths.
    fn sentences(&self) -> impl Iterator<Item = &[u32]> {
        let ends = self.line_ends.iter().copied().chain([self.ids.len()]);
        let mut start = 0;
        ends.filter_map(move |end| {
            let line = &self.ids[start..end];
            start = end;
            (!line.is_empty()).then_some(line)
        })
    }
}

/// Token strings to ids; with the stemmer, each distinct word is stemmed once.
#[derive(Default)]
struct Vocab {
    ids: Interner,
    /// Words as written (before stemming), to find their stemmed id.
    raw: Interner,
    /// Per raw word id: the id of its stemmed form.
    stemmed: Vec<u32>,
}

impl Vocab {
    #[inline]
    fn word_id(&mut self, word: &str, use_stemmer: bool) -> u32 {
        if !use_stemmer {
            return self.ids.id(word);
        }
        let raw = self.raw.id(word) as usize;
        if raw == self.stemmed.len() {
            // rouge-score stems only words longer than 3 characters.
            let id = if word.chars().count() > 3 {
                self.ids.id(&porter::stem(word))
            } else {
                self.ids.id(word)
            };
            self.stemmed.push(id);
        }
        self.stemmed[raw]
    }
}

/// Bit of [`ASCII_WORD`]: a lowercase letter or a digit.
const LOWER_OR_DIGIT: u8 = 1;
/// Bit of [`ASCII_WORD`]: an uppercase letter (lowercased into the word).
const UPPER: u8 = 2;

/// Per byte: which of rouge-score's word characters it is (0: none, a separator).
const ASCII_WORD: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        class[b] = if byte.is_ascii_uppercase() {
            UPPER
        } else if byte.is_ascii_lowercase() || byte.is_ascii_digit() {
            LOWER_OR_DIGIT
        } else {
            0
        };
        b += 1;
    }
    class
};

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff      // Hiragana, Katakana
        | 0x3400..=0x4dbf    // CJK Extension A
        | 0x4e00..=0x9fff    // CJK Unified Ideographs
        | 0xac00..=0xd7af    // Hangul syllables
        | 0xf900..=0xfaff    // CJK Compatibility Ideographs
        | 0x20000..=0x2fa1f  // Extensions B.. and Compatibility Supplement
        | 0x30000..=0x323af) // Extensions G, H
}

impl Rouge {
    pub fn new(tokenizer: RougeTokenizer, use_stemmer: bool) -> Self {
        Self {
            tokenizer,
            use_stemmer,
            types: RougeType::ALL.to_vec(),
            vocab: Vocab::default(),
            word: String::new(),
            target: Tokens::default(),
            prediction: Tokens::default(),
            ngrams: ClipCounter::default(),
            lcs: BitLcs::default(),
            #[cfg(feature = "jieba")]
            jieba: None,
        }
    }

    /// Whether this build can use `tokenizer`.
    pub fn supports(tokenizer: RougeTokenizer) -> bool {
        tokenizer != RougeTokenizer::Jieba || cfg!(feature = "jieba")
    }

    fn push_word(&mut self, out: &mut Vec<u32>) {
        if self.word.is_empty() {
            return;
        }
        out.push(self.vocab.word_id(&self.word, self.use_stemmer));
        self.word.clear();
    }

    /// Token ids of `text` (appended to `out`).
    pub fn tokenize(&mut self, text: &str, out: &mut Vec<u32>) {
        let mut line_ends = Vec::new();
        self.tokenize_lines(text, out, &mut line_ends);
    }

    /// Token ids of `text` (appended to `out`), and for the tokenizers that
    /// treat a newline as a separator, the number of tokens in `out` at each
    /// newline (appended to `line_ends`).
    fn tokenize_lines(&mut self, text: &str, out: &mut Vec<u32>, line_ends: &mut Vec<usize>) {
        self.word.clear();
        match self.tokenizer {
            RougeTokenizer::Default if text.is_ascii() => {
                // text.lower(), then [^a-z0-9]+ -> ' ', then split: the words are
                // the runs of ASCII letters and digits.
                let bytes = text.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if ASCII_WORD[bytes[i] as usize] == 0 {
                        if bytes[i] == b'\n' {
                            line_ends.push(out.len());
                        }
                        i += 1;
                        continue;
                    }
                    let start = i;
                    let mut classes = 0;
                    while i < bytes.len() && ASCII_WORD[bytes[i] as usize] != 0 {
                        classes |= ASCII_WORD[bytes[i] as usize];
                        i += 1;
                    }
                    let upper = classes & UPPER != 0;
                    let word = &text[start..i];
                    let id = if upper {
                        self.word.clear();
                        self.word.push_str(word);
                        self.word.make_ascii_lowercase();
                        self.vocab.word_id(&self.word, self.use_stemmer)
                    } else {
                        self.vocab.word_id(word, self.use_stemmer)
                    };
                    out.push(id);
                }
            }
            RougeTokenizer::Default => {
                // As above, character by character: lowercasing a character
                // can yield ASCII (e.g. KELVIN SIGN -> 'k').
                for c in text.chars() {
                    if c.is_ascii() {
                        let b = c.to_ascii_lowercase();
                        if b.is_ascii_alphanumeric() {
                            self.word.push(b);
                        } else {
                            self.push_word(out);
                            if c == '\n' {
                                line_ends.push(out.len());
                            }
                        }
                    } else {
                        for l in c.to_lowercase() {
                            if l.is_ascii_lowercase() || l.is_ascii_digit() {
                                self.word.push(l);
                            } else {
                                self.push_word(out);
                            }
                        }
                    }
                }
                self.push_word(out);
            }
            RougeTokenizer::Cjk => {
                for c in text.chars() {
                    if is_cjk(c) {
                        self.push_word(out);
                        let mut b = [0u8; 4];
                        out.push(self.vocab.ids.id(c.encode_utf8(&mut b)));
                    } else if c.is_alphanumeric() {
                        for l in c.to_lowercase() {
                            self.word.push(l);
                        }
                    } else {
                        self.push_word(out);
                        if c == '\n' {
                            line_ends.push(out.len());
                        }
                    }
                }
                self.push_word(out);
            }
            RougeTokenizer::Jieba => {
                #[cfg(feature = "jieba")]
                {
                    let jieba = self.jieba.get_or_insert_with(jieba_rs::Jieba::new);
                    let words: Vec<String> = jieba
                        .cut(text, true)
                        .into_iter()
                        .filter(|t| !t.word.trim().is_empty())
                        .map(|t| t.word.to_owned())
                        .collect();
                    for w in words {
                        out.push(self.vocab.ids.id(&w));
                    }
                }
                #[cfg(not(feature = "jieba"))]
                panic!(
                    "this build of pipe-eval has no jieba tokenizer; check Rouge::supports first"
                );
            }
        }
    }

    /// rouge-score's `score(target, prediction)`.
    pub fn score(&mut self, target: &str, prediction: &str) -> RougeScores {
        let mut out = RougeScores::default();
        // jieba segments a whole text differently from its lines, so ROUGE-Lsum
        // tokenizes each line as rouge-score does; the other tokenizers split
        // at newlines anyway, and one pass yields the lines' tokens too.
        let lines_from_text = self.tokenizer != RougeTokenizer::Jieba;
        let needs_tokens = self
            .types
            .iter()
            .any(|t| *t != RougeType::RougeLsum || lines_from_text);
        let mut t = std::mem::take(&mut self.target);
        let mut p = std::mem::take(&mut self.prediction);
        for (text, tokens) in [(target, &mut t), (prediction, &mut p)] {
            tokens.ids.clear();
            tokens.line_ends.clear();
            if needs_tokens {
                self.tokenize_lines(text, &mut tokens.ids, &mut tokens.line_ends);
            }
        }
        let mut lcs = None;
        for i in 0..self.types.len() {
            let ty = self.types[i];
            let v = match ty {
                RougeType::Rouge1 => self.ngram_prf(&t.ids, &p.ids, 1),
                RougeType::Rouge2 => self.ngram_prf(&t.ids, &p.ids, 2),
                RougeType::RougeL => *lcs.get_or_insert_with(|| self.lcs_prf(&t.ids, &p.ids)),
                RougeType::RougeLsum if lines_from_text => {
                    if t.sentences().nth(1).is_none() && p.sentences().nth(1).is_none() {
                        // At most one line with tokens on each side: the union LCS
                        // is that of the two lines, every token of a common
                        // subsequence is a hit, and the lines are the whole texts'
                        // tokens, so this is ROUGE-L.
                        *lcs.get_or_insert_with(|| self.lcs_prf(&t.ids, &p.ids))
                    } else {
                        let ts: Vec<&[u32]> = t.sentences().collect();
                        let ps: Vec<&[u32]> = p.sentences().collect();
                        summary_level_lcs(&ts, &ps)
                    }
                }
                RougeType::RougeLsum => {
                    let ts = self.sentences(target);
                    let ps = self.sentences(prediction);
                    summary_level_lcs(&ts, &ps)
                }
            };
            out.set(ty, v);
        }
        self.target = t;
        self.prediction = p;
        out
    }

    /// rouge-score's `_score_ngrams` on `_create_ngrams` (n = 1 or 2), with
    /// clipped counts from a reused table (the same values as [`score_ngrams`]).
    fn ngram_prf(&mut self, target: &[u32], prediction: &[u32], n: usize) -> PRF {
        let key = |w: &[u32]| w.iter().fold(0u128, |k, &id| (k << 32) | (id as u128 + 1));
        self.ngrams.reset(target.len());
        for w in target.windows(n) {
            self.ngrams.add(key(w));
        }
        let mut inter = 0u64;
        for w in prediction.windows(n) {
            inter += (self.ngrams.take(key(w)) == Some(true)) as u64;
        }
        let count = |tokens: &[u32]| (tokens.len() + 1).saturating_sub(n).max(1) as f64;
        PRF::new(
            inter as f64 / count(prediction),
            inter as f64 / count(target),
        )
    }

    /// rouge-score's `_score_lcs` with a bit-parallel LCS length (the same
    /// values as [`score_lcs`]).
    fn lcs_prf(&mut self, target: &[u32], prediction: &[u32]) -> PRF {
        if target.is_empty() || prediction.is_empty() {
            return PRF::default();
        }
        let l = self.lcs.len(target, prediction) as f64;
        PRF::new(l / prediction.len() as f64, l / target.len() as f64)
    }

    /// rouge-score's `score_multi`: per type, the target with the highest F (first on ties).
    pub fn score_multi<S: AsRef<str>>(&mut self, targets: &[S], prediction: &str) -> RougeScores {
        let all: Vec<RougeScores> = targets
            .iter()
            .map(|t| self.score(t.as_ref(), prediction))
            .collect();
        let mut out = RougeScores::default();
        for ty in self.types.clone() {
            let mut best: Option<PRF> = None;
            for s in &all {
                let v = s.get(ty);
                if best.is_none_or(|b| v.fmeasure > b.fmeasure) {
                    best = Some(v);
                }
            }
            out.set(ty, best.unwrap_or_default());
        }
        out
    }

    /// rouge-score's sentences: each non-empty line tokenized on its own.
    fn sentences(&mut self, text: &str) -> Vec<Vec<u32>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut v = Vec::new();
                self.tokenize(s, &mut v);
                v
            })
            .collect()
    }
}

/// LCS length, bit-parallel (Allison and Dix 1986, in Hyyrö's 2004 form):
/// one bit per token of the shorter sequence, a row of bits per distinct
/// token, O(n * ceil(m / 64)) word operations. The match rows are indexed
/// through `row_of` by token id, stamped per call instead of cleared.
#[derive(Default)]
struct BitLcs {
    /// Per token id: (stamp of the call that set it, its row in `masks`).
    row_of: Vec<(u32, u32)>,
    stamp: u32,
    /// Per distinct token of the shorter sequence: the bits of its positions.
    masks: Vec<u64>,
    /// Hyyrö's V over the shorter sequence: after each token of the longer
    /// one, its zero bits count the LCS length of the prefixes read so far.
    v: Vec<u64>,
}

impl BitLcs {
    fn len(&mut self, a: &[u32], b: &[u32]) -> usize {
        let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        if a.is_empty() {
            return 0;
        }
        let words = a.len().div_ceil(64);
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.row_of.fill((0, 0));
            self.stamp = 1;
        }
        let max_id = a.iter().copied().max().expect("non-empty") as usize;
        if self.row_of.len() <= max_id {
            self.row_of.resize(max_id + 1, (0, 0));
        }
        self.masks.clear();
        let mut rows = 0;
        for (i, &t) in a.iter().enumerate() {
            let entry = &mut self.row_of[t as usize];
            if entry.0 != self.stamp {
                *entry = (self.stamp, rows);
                rows += 1;
                self.masks.resize(rows as usize * words, 0);
            }
            self.masks[entry.1 as usize * words + i / 64] |= 1 << (i % 64);
        }
        self.v.clear();
        self.v.resize(words, !0);
        let rows_of_b = b.iter().filter_map(|&t| match self.row_of.get(t as usize) {
            Some(&(stamp, row)) if stamp == self.stamp => Some(row as usize),
            // A token absent from `a` matches nothing and changes nothing.
            _ => None,
        });
        if words == 1 {
            let mut v = self.v[0];
            for row in rows_of_b {
                let m = self.masks[row];
                v = v.wrapping_add(v & m) | (v & !m);
            }
            self.v[0] = v;
        } else {
            for row in rows_of_b {
                let m = &self.masks[row * words..(row + 1) * words];
                let mut carry = false;
                for (v, &m) in self.v.iter_mut().zip(m) {
                    let (sum, c1) = v.overflowing_add(*v & m);
                    let (sum, c2) = sum.overflowing_add(carry as u64);
                    carry = c1 | c2;
                    *v = sum | (*v & !m);
                }
            }
        }
        // Bits above a.len() in the last word only ever receive carries.
        let mut zeros = 0;
        for (k, &v) in self.v.iter().enumerate() {
            let bits = (a.len() - 64 * k).min(64);
            let valid = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
            zeros += (!v & valid).count_ones() as usize;
        }
        zeros
    }
}

fn ngram_keys(tokens: &[u32], n: usize) -> Vec<(u64, u32)> {
    let mut keys: Vec<u64> = if n == 1 {
        tokens.iter().map(|&t| t as u64).collect()
    } else {
        tokens
            .windows(2)
            .map(|w| ((w[0] as u64) << 32) | w[1] as u64)
            .collect()
    };
    let mut out = Vec::new();
    count_sorted(&mut keys, &mut out);
    out
}

/// rouge-score's `_score_ngrams` on `_create_ngrams` (n = 1 or 2).
pub fn score_ngrams(target: &[u32], prediction: &[u32], n: usize) -> PRF {
    assert!(n == 1 || n == 2);
    let t = ngram_keys(target, n);
    let p = ngram_keys(prediction, n);
    let mut inter = 0u64;
    let mut j = 0;
    for &(k, c) in &t {
        while j < p.len() && p[j].0 < k {
            j += 1;
        }
        if j < p.len() && p[j].0 == k {
            inter += c.min(p[j].1) as u64;
        }
    }
    let tc: u64 = t.iter().map(|&(_, c)| c as u64).sum();
    let pc: u64 = p.iter().map(|&(_, c)| c as u64).sum();
    PRF::new(
        inter as f64 / pc.max(1) as f64,
        inter as f64 / tc.max(1) as f64,
    )
}

/// Length of the longest common subsequence (one row of the table).
fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let mut row = vec![0u32; b.len() + 1];
    for &x in a {
        let mut diag = 0;
        for j in 1..=b.len() {
            let up = row[j];
            row[j] = if x == b[j - 1] {
                diag + 1
            } else {
                up.max(row[j - 1])
            };
            diag = up;
        }
    }
    row[b.len()] as usize
}

/// rouge-score's `_score_lcs`.
pub fn score_lcs(target: &[u32], prediction: &[u32]) -> PRF {
    if target.is_empty() || prediction.is_empty() {
        return PRF::default();
    }
    let l = lcs_len(target, prediction) as f64;
    PRF::new(l / prediction.len() as f64, l / target.len() as f64)
}

/// rouge-score's `lcs_ind`: `_lcs_table` then `_backtrack_norec`, the indices into `r`.
fn lcs_ind(r: &[u32], c: &[u32], out: &mut Vec<usize>) {
    let cols = c.len() + 1;
    let mut t = vec![0u32; (r.len() + 1) * cols];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i * cols + j] = if r[i - 1] == c[j - 1] {
                t[(i - 1) * cols + j - 1] + 1
            } else {
                t[(i - 1) * cols + j].max(t[i * cols + j - 1])
            };
        }
    }
    let (mut i, mut j) = (r.len(), c.len());
    let start = out.len();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i * cols + j - 1] > t[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out[start..].reverse();
}

/// rouge-score's `_summary_level_lcs` (ROUGE-Lsum with the union LCS).
pub fn summary_level_lcs<S: AsRef<[u32]>>(ref_sents: &[S], can_sents: &[S]) -> PRF {
    if ref_sents.is_empty() || can_sents.is_empty() {
        return PRF::default();
    }
    let m: usize = ref_sents.iter().map(|s| s.as_ref().len()).sum();
    let n: usize = can_sents.iter().map(|s| s.as_ref().len()).sum();
    if m == 0 || n == 0 {
        return PRF::default();
    }
    let mut cnt_r: FxMap<u32, i64> = FxMap::default();
    let mut cnt_c: FxMap<u32, i64> = FxMap::default();
    for s in ref_sents {
        for &t in s.as_ref() {
            *cnt_r.entry(t).or_default() += 1;
        }
    }
    for s in can_sents {
        for &t in s.as_ref() {
            *cnt_c.entry(t).or_default() += 1;
        }
    }
    let mut hits = 0u64;
    let mut union = Vec::new();
    for r in ref_sents {
        let r = r.as_ref();
        union.clear();
        for c in can_sents {
            lcs_ind(r, c.as_ref(), &mut union);
        }
        union.sort_unstable();
        union.dedup();
        for &i in &union {
            let t = r[i];
            let (cc, cr) = (
                cnt_c.get(&t).copied().unwrap_or(0),
                cnt_r.get(&t).copied().unwrap_or(0),
            );
            if cc > 0 && cr > 0 {
                hits += 1;
                *cnt_c.get_mut(&t).expect("counted") -= 1;
                *cnt_r.get_mut(&t).expect("counted") -= 1;
            }
        }
    }
    PRF::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Mean of each score over pairs (how rouge-score users usually aggregate; no bootstrap).
pub fn mean_scores(scores: &[RougeScores]) -> RougeScores {
    let mut out = RougeScores::default();
    if scores.is_empty() {
        return out;
    }
    let k = scores.len() as f64;
    for ty in RougeType::ALL {
        let (mut p, mut r, mut f) = (0.0, 0.0, 0.0);
        for s in scores {
            let v = s.get(ty);
            p += v.precision;
            r += v.recall;
            f += v.fmeasure;
        }
        out.set(
            ty,
            PRF {
                precision: p / k,
                recall: r / k,
                fmeasure: f / k,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_example() {
        // rouge-score README: score('The quick brown fox jumps over the lazy dog',
        //                           'The quick brown dog jumps on the log.')
        let mut r = Rouge::new(RougeTokenizer::Default, false);
        let s = r.score(
            "The quick brown fox jumps over the lazy dog",
            "The quick brown dog jumps on the log.",
        );
        assert!((s.rouge1.precision - 0.75).abs() < 1e-12);
        assert!((s.rouge1.recall - 0.6666666666666666).abs() < 1e-12);
        assert!((s.rouge_l.fmeasure - 0.5882352941176471).abs() < 1e-12);
    }

    /// Token lists with many repeats (small alphabet), lengths across word boundaries.
    fn sequences() -> Vec<Vec<u32>> {
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut out = vec![vec![], vec![3], vec![3, 3, 3]];
        for len in [1, 2, 5, 30, 63, 64, 65, 127, 128, 129, 200] {
            for alphabet in [2, 5, 40] {
                out.push((0..len).map(|_| next(alphabet) as u32 * 1000).collect());
            }
        }
        out
    }

    #[test]
    fn bit_parallel_lcs_matches_the_table() {
        let mut lcs = BitLcs::default();
        let seqs = sequences();
        for a in &seqs {
            for b in &seqs {
                assert_eq!(lcs.len(a, b), lcs_len(a, b), "{a:?} {b:?}");
            }
        }
    }

    /// The texts where the scorer's shortcuts (one tokenization for all types,
    /// the single-line ROUGE-Lsum, the clipped-count table, the ASCII scan)
    /// could part from rouge-score's plain computation.
    const TRICKY: &[&str] = &[
        "",
        " ",
        "\n\n",
        "...",
        "The quick brown fox jumps over the lazy dog",
        "the the the the the dog dog the",
        "THE Quick, brown-fox's 3.5% (jumps)!",
        "first sentence here.\nsecond sentence is here\n\nthird one",
        "a b c\nd e f\na b",
        "one line\n",
        "\nonly the second line",
        "\u{2e}!\n\nstill one line with tokens\n?",
        "Caf\u{e9} na\u{ef}ve \u{212a}elvin \u{130}stanbul r\u{e9}sum\u{e9}s\nrunning runners ran",
        "\u{4e2d}\u{6587} text \u{4e2d}\u{6587}",
        "studies studied studying generalization happily connection",
    ];

    #[test]
    fn scorer_matches_the_plain_computation() {
        for tokenizer in [RougeTokenizer::Default, RougeTokenizer::Cjk] {
            for stem in [false, true] {
                let mut fast = Rouge::new(tokenizer, stem);
                let mut plain = Rouge::new(tokenizer, stem);
                for target in TRICKY {
                    for prediction in TRICKY {
                        let got = fast.score(target, prediction);
                        let (mut t, mut p) = (Vec::new(), Vec::new());
                        plain.tokenize(target, &mut t);
                        plain.tokenize(prediction, &mut p);
                        let ts = plain.sentences(target);
                        let ps = plain.sentences(prediction);
                        let want = RougeScores {
                            rouge1: score_ngrams(&t, &p, 1),
                            rouge2: score_ngrams(&t, &p, 2),
                            rouge_l: score_lcs(&t, &p),
                            rouge_lsum: summary_level_lcs(&ts, &ps),
                        };
                        assert_eq!(
                            got, want,
                            "{tokenizer:?} stem={stem} {target:?} {prediction:?}"
                        );
                        // Only ROUGE-Lsum: tokenized the same way.
                        fast.types = vec![RougeType::RougeLsum];
                        assert_eq!(fast.score(target, prediction).rouge_lsum, want.rouge_lsum);
                        fast.types = RougeType::ALL.to_vec();
                    }
                }
            }
        }
    }

    #[test]
    fn ascii_scan_matches_the_character_path() {
        // The same words with one non-ASCII character appended take the
        // character-by-character path; the ids must agree.
        let mut r = Rouge::new(RougeTokenizer::Default, true);
        for text in TRICKY.iter().filter(|t| t.is_ascii()) {
            let (mut ascii, mut chars) = (Vec::new(), Vec::new());
            r.tokenize(text, &mut ascii);
            r.tokenize(&format!("{text} \u{e9}"), &mut chars);
            assert_eq!(ascii, chars, "{text:?}");
        }
    }

    #[test]
    fn cjk_tokens() {
        let mut r = Rouge::new(RougeTokenizer::Cjk, false);
        let mut v = Vec::new();
        r.tokenize("合同 Party A的", &mut v);
        assert_eq!(v.len(), 5);
    }
}
