//! ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as Google's `rouge-score` computes
//! them, plus two tokenizers for text that its tokenizer would erase (CJK).
//!
//! Tokens are interned to ids; the stemmer runs once per distinct word.

use serde::{Deserialize, Serialize};

use super::porter;
use super::text::{FxMap, Interner, count_sorted};

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
    interner: Interner,
    /// Raw token -> final (stemmed) id, so each distinct word is stemmed once.
    stem_cache: FxMap<String, u32>,
    word: String,
    #[cfg(feature = "jieba")]
    jieba: Option<jieba_rs::Jieba>,
}

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
            interner: Interner::default(),
            stem_cache: FxMap::default(),
            word: String::new(),
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
        let id = if self.use_stemmer && self.word.chars().count() > 3 {
            if let Some(&id) = self.stem_cache.get(self.word.as_str()) {
                id
            } else {
                let stemmed = porter::stem(&self.word);
                let id = self.interner.id(&stemmed);
                self.stem_cache.insert(self.word.clone(), id);
                id
            }
        } else {
            self.interner.id(&self.word)
        };
        out.push(id);
        self.word.clear();
    }

    /// Token ids of `text` (appended to `out`).
    pub fn tokenize(&mut self, text: &str, out: &mut Vec<u32>) {
        self.word.clear();
        match self.tokenizer {
            RougeTokenizer::Default => {
                // text.lower(), then [^a-z0-9]+ -> ' ', then split. Lowercasing
                // a character can yield ASCII (e.g. KELVIN SIGN -> 'k').
                for c in text.chars() {
                    if c.is_ascii() {
                        let b = c.to_ascii_lowercase();
                        if b.is_ascii_alphanumeric() {
                            self.word.push(b);
                        } else {
                            self.push_word(out);
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
                        out.push(self.interner.id(c.encode_utf8(&mut b)));
                    } else if c.is_alphanumeric() {
                        for l in c.to_lowercase() {
                            self.word.push(l);
                        }
                    } else {
                        self.push_word(out);
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
                        out.push(self.interner.id(&w));
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
        let needs_tokens = self.types.iter().any(|t| *t != RougeType::RougeLsum);
        let (mut t, mut p) = (Vec::new(), Vec::new());
        if needs_tokens {
            self.tokenize(target, &mut t);
            self.tokenize(prediction, &mut p);
        }
        for ty in self.types.clone() {
            let v = match ty {
                RougeType::Rouge1 => score_ngrams(&t, &p, 1),
                RougeType::Rouge2 => score_ngrams(&t, &p, 2),
                RougeType::RougeL => score_lcs(&t, &p),
                RougeType::RougeLsum => {
                    let ts = self.sentences(target);
                    let ps = self.sentences(prediction);
                    summary_level_lcs(&ts, &ps)
                }
            };
            out.set(ty, v);
        }
        out
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
pub fn summary_level_lcs(ref_sents: &[Vec<u32>], can_sents: &[Vec<u32>]) -> PRF {
    if ref_sents.is_empty() || can_sents.is_empty() {
        return PRF::default();
    }
    let m: usize = ref_sents.iter().map(Vec::len).sum();
    let n: usize = can_sents.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return PRF::default();
    }
    let mut cnt_r: FxMap<u32, i64> = FxMap::default();
    let mut cnt_c: FxMap<u32, i64> = FxMap::default();
    for s in ref_sents {
        for &t in s {
            *cnt_r.entry(t).or_default() += 1;
        }
    }
    for s in can_sents {
        for &t in s {
            *cnt_c.entry(t).or_default() += 1;
        }
    }
    let mut hits = 0u64;
    let mut union = Vec::new();
    for r in ref_sents {
        union.clear();
        for c in can_sents {
            lcs_ind(r, c, &mut union);
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

    #[test]
    fn cjk_tokens() {
        let mut r = Rouge::new(RougeTokenizer::Cjk, false);
        let mut v = Vec::new();
        r.tokenize("合同 Party A的", &mut v);
        assert_eq!(v.len(), 5);
    }
}
