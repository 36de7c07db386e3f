//! chrF and chrF++ exactly as sacrebleu 2.x computes them (`sacrebleu.metrics.CHRF`).
//!
//! Character n-grams (up to 6 characters of 21 bits) pack into one `u128`;
//! word n-grams use interned ids.

use serde::{Deserialize, Serialize};

use super::text::{Interner, count_sorted, py_split};

/// Settings of chrF (`word_order: 2` is chrF++).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChrfConfig {
    /// Character n-gram order, 1..=6.
    pub char_order: usize,
    /// Word n-gram order, 0..=4 (2 = chrF++).
    pub word_order: usize,
    pub beta: u32,
    pub lowercase: bool,
    /// Keep whitespace inside character n-grams.
    pub whitespace: bool,
    pub eps_smoothing: bool,
}

impl Default for ChrfConfig {
    fn default() -> Self {
        Self {
            char_order: 6,
            word_order: 0,
            beta: 2,
            lowercase: false,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

impl ChrfConfig {
    /// chrF++ (word bigrams).
    pub fn plus_plus() -> Self {
        Self {
            word_order: 2,
            ..Self::default()
        }
    }

    pub fn name(&self) -> String {
        format!("chrF{}{}", self.beta, "+".repeat(self.word_order))
    }
}

/// `[hyp, ref, match]` counts per order (char orders, then word orders).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChrfStats(pub Vec<u64>);

impl ChrfStats {
    pub fn add(&mut self, other: &ChrfStats) {
        if self.0.is_empty() {
            self.0 = vec![0; other.0.len()];
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }
}

const PUNCTS: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

fn is_punct(c: char) -> bool {
    c.is_ascii() && PUNCTS.contains(&(c as u8))
}

/// sacrebleu's `CHRF._remove_punctuation`.
fn remove_punctuation<'a>(sent: &'a str, out: &mut Vec<&'a str>) {
    out.clear();
    for w in py_split(sent) {
        let mut chars = w.chars();
        let first = chars.next().expect("split tokens are non-empty");
        let Some(last) = chars.next_back() else {
            out.push(w);
            continue;
        };
        if is_punct(last) {
            let cut = w.len() - last.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else if is_punct(first) {
            let cut = first.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else {
            out.push(w);
        }
    }
}

/// sacrebleu's `CHRF._compute_f_score`.
pub fn chrf_f_score(stats: &[u64], cfg: &ChrfConfig) -> f64 {
    let eps = 1e-16;
    let mut score = 0.0;
    let mut effective_order = 0u32;
    let factor = (cfg.beta * cfg.beta) as f64;
    let (mut avg_prec, mut avg_rec) = (0.0, 0.0);
    let order = cfg.char_order + cfg.word_order;
    for i in 0..order {
        let (n_hyp, n_ref, n_match) = (stats[3 * i], stats[3 * i + 1], stats[3 * i + 2]);
        let prec = if n_hyp > 0 {
            n_match as f64 / n_hyp as f64
        } else {
            eps
        };
        let rec = if n_ref > 0 {
            n_match as f64 / n_ref as f64
        } else {
            eps
        };
        let denom = factor * prec + rec;
        score += if denom > 0.0 {
            (1.0 + factor) * prec * rec / denom
        } else {
            eps
        };
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += prec;
            avg_rec += rec;
            effective_order += 1;
        }
    }
    if cfg.eps_smoothing {
        return 100.0 * score / order as f64;
    }
    if effective_order == 0 {
        avg_prec = 0.0;
        avg_rec = 0.0;
    } else {
        avg_prec /= effective_order as f64;
        avg_rec /= effective_order as f64;
    }
    if avg_prec + avg_rec != 0.0 {
        let mut score = (1.0 + factor) * avg_prec * avg_rec;
        score /= (factor * avg_prec) + avg_rec;
        100.0 * score
    } else {
        0.0
    }
}

type Counts = Vec<(u128, u32)>;

/// A reusable chrF scorer.
pub struct Chrf {
    pub cfg: ChrfConfig,
    interner: Interner,
    keys: Vec<u128>,
    chars: Vec<u32>,
    ids: Vec<u32>,
}

impl Chrf {
    pub fn new(cfg: ChrfConfig) -> Self {
        assert!(
            (1..=6).contains(&cfg.char_order),
            "chrF char order must be 1..=6"
        );
        assert!(cfg.word_order <= 4, "chrF word order must be 0..=4");
        Self {
            cfg,
            interner: Interner::default(),
            keys: Vec::new(),
            chars: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// All n-gram counters of a (preprocessed) segment: char orders then word orders.
    fn ngrams(&mut self, line: &str) -> Vec<Counts> {
        let mut out = Vec::with_capacity(self.cfg.char_order + self.cfg.word_order);
        self.chars.clear();
        if self.cfg.whitespace {
            self.chars.extend(line.chars().map(|c| c as u32));
        } else {
            for w in py_split(line) {
                self.chars.extend(w.chars().map(|c| c as u32));
            }
        }
        for n in 1..=self.cfg.char_order {
            self.keys.clear();
            if self.chars.len() >= n {
                for w in self.chars.windows(n) {
                    let mut k = 0u128;
                    for &c in w {
                        k = (k << 21) | c as u128;
                    }
                    self.keys.push(k);
                }
            }
            let mut counts = Vec::new();
            count_sorted(&mut self.keys, &mut counts);
            out.push(counts);
        }
        if self.cfg.word_order > 0 {
            let mut words = Vec::new();
            remove_punctuation(line, &mut words);
            self.ids.clear();
            for w in &words {
                self.ids.push(self.interner.id(w));
            }
            for n in 1..=self.cfg.word_order {
                self.keys.clear();
                if self.ids.len() >= n {
                    for w in self.ids.windows(n) {
                        let mut k = 0u128;
                        for &c in w {
                            k = (k << 32) | c as u128;
                        }
                        self.keys.push(k);
                    }
                }
                let mut counts = Vec::new();
                count_sorted(&mut self.keys, &mut counts);
                out.push(counts);
            }
        }
        out
    }

    /// Best statistics of one segment over its references (sacrebleu's `_compute_segment_statistics`).
    pub fn segment_stats<S: AsRef<str>>(&mut self, hyp: &str, refs: &[S]) -> ChrfStats {
        let pre = |s: &str, lc: bool| if lc { s.to_lowercase() } else { s.to_owned() };
        let hyp_ngrams = self.ngrams(&pre(hyp, self.cfg.lowercase));
        let mut best_stats = Vec::new();
        let mut best_f = -1.0;
        for r in refs {
            let ref_ngrams = self.ngrams(&pre(r.as_ref(), self.cfg.lowercase));
            let mut stats = Vec::with_capacity(3 * hyp_ngrams.len());
            for (h, r) in hyp_ngrams.iter().zip(&ref_ngrams) {
                let (mut matched, mut hyp_count) = (0u64, 0u64);
                let mut j = 0;
                for &(k, c) in h {
                    hyp_count += c as u64;
                    while j < r.len() && r[j].0 < k {
                        j += 1;
                    }
                    if j < r.len() && r[j].0 == k {
                        matched += c.min(r[j].1) as u64;
                    }
                }
                let ref_total: u64 = r.iter().map(|&(_, c)| c as u64).sum();
                stats.push(if r.is_empty() { 0 } else { hyp_count });
                stats.push(ref_total);
                stats.push(matched);
            }
            let f = chrf_f_score(&stats, &self.cfg);
            if f > best_f {
                best_f = f;
                best_stats = stats;
            }
        }
        ChrfStats(best_stats)
    }

    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &mut self,
        hyps: &[H],
        refs: &[Vec<R>],
    ) -> f64 {
        let mut total = ChrfStats::default();
        for (h, r) in hyps.iter().zip(refs) {
            let s = self.segment_stats(h.as_ref(), r);
            total.add(&s);
        }
        if total.0.is_empty() {
            return 0.0;
        }
        chrf_f_score(&total.0, &self.cfg)
    }

    pub fn sentence_score<R: AsRef<str>>(&mut self, hyp: &str, refs: &[R]) -> f64 {
        let s = self.segment_stats(hyp, refs);
        if s.0.is_empty() {
            return 0.0;
        }
        chrf_f_score(&s.0, &self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100() {
        let mut c = Chrf::new(ChrfConfig::plus_plus());
        assert!((c.sentence_score("the cat sat.", &["the cat sat."]) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn punctuation_split() {
        let mut v = Vec::new();
        remove_punctuation("a. (b c, . ..", &mut v);
        assert_eq!(v, ["a", ".", "(", "b", "c", ",", ".", ".", "."]);
    }
}
