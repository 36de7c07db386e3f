//! chrF and chrF++ exactly as sacrebleu 2.x computes them (`sacrebleu.metrics.CHRF`).
//!
//! Character n-grams (up to 6 characters of 21 bits) pack into one `u128`;
//! word n-grams use interned ids.

use serde::{Deserialize, Serialize};

use super::text::{ClipCounter, Interner, py_isspace, py_isspace_byte, py_split};

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

/// A reusable chrF scorer.
pub struct Chrf {
    pub cfg: ChrfConfig,
    interner: Interner,
    hyp: Units,
    reference: Units,
    ngrams: ClipCounter,
}

/// The characters and word ids of one preprocessed segment.
#[derive(Default)]
struct Units {
    chars: Vec<u32>,
    words: Vec<u32>,
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
            hyp: Units::default(),
            reference: Units::default(),
            ngrams: ClipCounter::default(),
        }
    }

    /// The characters (without whitespace unless configured) and, for chrF++,
    /// the word ids of a segment.
    fn units(&mut self, line: &str, out: &mut Units) {
        let lowered;
        let line = if self.cfg.lowercase {
            lowered = line.to_lowercase();
            &lowered
        } else {
            line
        };
        out.chars.clear();
        out.words.clear();
        if self.cfg.whitespace {
            out.chars.extend(line.chars().map(|c| c as u32));
        } else if line.is_ascii() {
            let bytes = line.bytes().filter(|&b| !py_isspace_byte(b));
            out.chars.extend(bytes.map(u32::from));
        } else {
            let chars = line.chars().filter(|&c| !py_isspace(c));
            out.chars.extend(chars.map(|c| c as u32));
        }
        if self.cfg.word_order > 0 {
            let mut words = Vec::new();
            remove_punctuation(line, &mut words);
            out.words.extend(words.iter().map(|w| self.interner.id(w)));
        }
    }

    /// Best statistics of one segment over its references (sacrebleu's `_compute_segment_statistics`).
    pub fn segment_stats<S: AsRef<str>>(&mut self, hyp: &str, refs: &[S]) -> ChrfStats {
        let (char_order, word_order) = (self.cfg.char_order, self.cfg.word_order);
        let mut h = std::mem::take(&mut self.hyp);
        let mut r = std::mem::take(&mut self.reference);
        self.units(hyp, &mut h);
        let mut best_stats = Vec::new();
        let mut best_f = -1.0;
        for reference in refs {
            self.units(reference.as_ref(), &mut r);
            let mut matched = [0u64; 10];
            let (char_matched, word_matched) = matched.split_at_mut(char_order);
            self.ngrams.reset(r.chars.len() * char_order);
            self.ngrams.add_ngrams(&r.chars, char_order, 21);
            self.ngrams
                .take_ngrams(&h.chars, char_order, 21, char_matched);
            if word_order > 0 {
                self.ngrams.reset(r.words.len() * word_order);
                self.ngrams.add_ngrams(&r.words, word_order, 32);
                self.ngrams
                    .take_ngrams(&h.words, word_order, 32, word_matched);
            }
            let mut stats = Vec::with_capacity(3 * (char_order + word_order));
            let orders = (0..char_order)
                .map(|n| (&h.chars, &r.chars, n))
                .chain((0..word_order).map(|n| (&h.words, &r.words, n)));
            for (i, (hyp_units, ref_units, n)) in orders.enumerate() {
                // n-grams of order n + 1 of a side of length len: len - n.
                let ref_total = ref_units.len().saturating_sub(n) as u64;
                let hyp_total = hyp_units.len().saturating_sub(n) as u64;
                stats.push(if ref_total == 0 { 0 } else { hyp_total });
                stats.push(ref_total);
                stats.push(matched[i]);
            }
            let f = chrf_f_score(&stats, &self.cfg);
            if f > best_f {
                best_f = f;
                best_stats = stats;
            }
        }
        self.hyp = h;
        self.reference = r;
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

    /// sacrebleu's `_get_match_statistics` the plain way, with n-gram maps.
    fn naive_stats(cfg: &ChrfConfig, hyp: &str, reference: &str) -> Vec<u64> {
        use std::collections::HashMap;
        let pre = |s: &str| {
            if cfg.lowercase {
                s.to_lowercase()
            } else {
                s.to_owned()
            }
        };
        let (hyp, reference) = (pre(hyp), pre(reference));
        let chars = |s: &str| -> Vec<String> {
            let s: String = if cfg.whitespace {
                s.to_owned()
            } else {
                py_split(s).collect()
            };
            s.chars().map(String::from).collect()
        };
        let words = |s: &str| -> Vec<String> {
            let mut v = Vec::new();
            remove_punctuation(s, &mut v);
            v.into_iter().map(str::to_owned).collect()
        };
        fn counts(t: &[String], n: usize) -> HashMap<&[String], u64> {
            let mut m: HashMap<&[String], u64> = HashMap::new();
            for w in t.windows(n) {
                *m.entry(w).or_default() += 1;
            }
            m
        }
        let mut stats = Vec::new();
        let sides = [
            (chars(&hyp), chars(&reference), cfg.char_order),
            (words(&hyp), words(&reference), cfg.word_order),
        ];
        for (h, r, max_order) in &sides {
            for n in 1..=*max_order {
                let (hc, rc) = (counts(h, n), counts(r, n));
                let ref_total: u64 = rc.values().sum();
                let hyp_total: u64 = hc.values().sum();
                let matched: u64 = hc
                    .iter()
                    .map(|(k, c)| (*c).min(rc.get(k).copied().unwrap_or(0)))
                    .sum();
                stats.extend([
                    if ref_total > 0 { hyp_total } else { 0 },
                    ref_total,
                    matched,
                ]);
            }
        }
        stats
    }

    #[test]
    fn segment_stats_match_plain_counting() {
        let lines = [
            "",
            "a",
            "the cat sat on the mat.",
            "The  cat, (sat) on\tthe mat!",
            "aaaaaaa aaaa a aaaaaaa",
            "caf\u{e9} na\u{ef}ve \u{4e2d}\u{6587}\u{3000}\u{1f600}!",
            "\u{10ffff}\u{10ffff}\u{10ffff}\u{10ffff}\u{10ffff}\u{10ffff}\u{10ffff}",
            "1,000.5 e.g. \"quoted\" ...",
        ];
        for word_order in [0, 2, 4] {
            for (lowercase, whitespace) in [(false, false), (true, false), (false, true)] {
                let cfg = ChrfConfig {
                    word_order,
                    lowercase,
                    whitespace,
                    ..ChrfConfig::default()
                };
                let mut chrf = Chrf::new(cfg);
                for hyp in lines {
                    for reference in lines {
                        let want = naive_stats(&cfg, hyp, reference);
                        let got = chrf.segment_stats(hyp, &[reference]);
                        assert_eq!(got.0, want, "{cfg:?} {hyp:?} {reference:?}");
                    }
                    // Several references: the statistics of the best one.
                    let got = chrf.segment_stats(hyp, &lines);
                    assert!(lines.iter().any(|r| naive_stats(&cfg, hyp, r) == got.0));
                }
            }
        }
    }

    #[test]
    fn punctuation_split() {
        let mut v = Vec::new();
        remove_punctuation("a. (b c, . ..", &mut v);
        assert_eq!(v, ["a", ".", "(", "b", "c", ",", ".", ".", "."]);
    }
}
