//! Metric throughput (pairs/s, one thread) on 10,000 synthetic ~30-word pairs,
//! next to sacrebleu and rouge-score on the same pairs.
//!
//! ```text
//! /work/venv-eval/bin/python stages/eval/benches/metrics_ref.py > /tmp/metrics_ref.json
//! cargo run --release -p pipe-eval --no-default-features --example metrics_bench -- [--pairs N] [--repeats N] [--only KEY] [--ref /tmp/metrics_ref.json]
//! ```
//! The pair generator is the Python one's (same LCG), so checksums must agree:
//! the bench prints both and fails if they differ.

use std::time::Instant;

use pipe_eval::metrics::{Bleu, BleuConfig, Chrf, ChrfConfig, Rouge, RougeTokenizer, RougeType};

const WORDS: &str = "the a of to in on for with by at from and or but not is are was were be been has have had \
model data training evaluation metric score contract party agreement clause shall may must notice \
court judge ruling appeal law right obligation payment invoice due late fee interest rate month year \
quick slow large small good better best bad run runs running ran runner connect connected connection \
general generalize happy happily study studies studied student organize organization report result \
increase decrease system network server request response error memory token batch epoch loss accuracy \
precision recall Monday Friday 2024 12 30 100 3.5 1,000 it's don't can't we'll state-of-the-art \
fine-tuning e-mail tenant landlord premises lease rent deposit damages breach remedy termination \
warranty liability indemnity license software licensee licensor confidential information disclosure";
const PUNCT: [&str; 7] = [",", ".", ";", ":", "!", "?", "%"];

struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(2862933555777941757)
            .wrapping_add(3037000493))
    }
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn choice<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

/// Python's `str.capitalize()` for the ASCII words above.
fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

fn make_pairs(n: usize, seed: u64) -> (Vec<String>, Vec<String>) {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = Lcg::new(seed);
    let (mut hyps, mut refs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let length = 25 + rng.below(11);
        let mut r: Vec<String> = Vec::with_capacity(length);
        for i in 0..length {
            let mut w = rng.choice(&words).to_owned();
            if i == 0 || rng.below(15) == 0 {
                w = capitalize(&w);
            }
            if rng.below(8) == 0 {
                w.push_str(rng.choice(&PUNCT));
            }
            r.push(w);
        }
        let last = r.last_mut().expect("25+ words");
        *last = format!("{}.", last.trim_end_matches([',', ';', ':', '!', '?', '%']));
        let mut h: Vec<String> = Vec::new();
        for w in &r {
            let x = rng.below(20);
            if x < 3 {
                h.push(rng.choice(&words).to_owned());
            } else if x < 5 {
                continue;
            } else if x < 6 {
                h.push(w.clone());
                h.push(rng.choice(&words).to_owned());
            } else {
                h.push(w.clone());
            }
        }
        if h.len() > 4 && rng.below(2) == 0 {
            let i = rng.below(h.len() - 1);
            h.swap(i, i + 1);
        }
        hyps.push(h.join(" "));
        refs.push(r.join(" "));
    }
    (hyps, refs)
}

/// (key in the Python results, description, the timed work).
type Bench<'a> = (&'static str, &'static str, Box<dyn FnMut() -> f64 + 'a>);

fn best_of(repeats: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut val = 0.0;
    for _ in 0..repeats {
        let t0 = Instant::now();
        val = std::hint::black_box(f());
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (best, val)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--pairs")
        .map(|s| s.parse().expect("--pairs N"))
        .unwrap_or(10_000);
    let repeats: usize = arg("--repeats")
        .map(|s| s.parse().expect("--repeats N"))
        .unwrap_or(5);
    let reference: Option<serde_json::Value> = arg("--ref").map(|p| {
        serde_json::from_str(&std::fs::read_to_string(&p).expect("read --ref")).expect("--ref JSON")
    });
    // `--only KEY` runs one bench (for profiling one metric).
    let only = arg("--only");
    let (hyps, refs) = make_pairs(n, 12345);
    let refs1: Vec<Vec<&str>> = refs.iter().map(|r| vec![r.as_str()]).collect();

    let rouge = |stem: bool, types: Vec<RougeType>| {
        let (hyps, refs) = (&hyps, &refs);
        move || {
            // A fresh scorer per run: cold interner and stem cache, like a one-shot CLI call.
            let mut sc = Rouge::new(RougeTokenizer::Default, stem);
            sc.types = types.clone();
            let mut acc = 0.0;
            for (h, r) in hyps.iter().zip(refs) {
                let s = sc.score(r, h);
                let mut inner = 0.0;
                for t in &types {
                    inner += s.get(*t).fmeasure;
                }
                acc += inner;
            }
            acc
        }
    };
    let all4 = RougeType::ALL.to_vec();
    let benches: Vec<Bench<'_>> = vec![
        (
            "corpus_bleu",
            "corpus BLEU (13a, exp) over all pairs",
            Box::new(|| {
                Bleu::new(BleuConfig::default())
                    .corpus_score(&hyps, &refs1)
                    .score
            }),
        ),
        (
            "sentence_bleu",
            "sentence BLEU per pair (effective order)",
            Box::new(|| {
                let mut b = Bleu::new(BleuConfig::sentence());
                hyps.iter()
                    .zip(&refs1)
                    .map(|(h, r)| b.sentence_score(h, r).score)
                    .sum()
            }),
        ),
        (
            "corpus_chrf",
            "chrF2 corpus over all pairs",
            Box::new(|| Chrf::new(ChrfConfig::default()).corpus_score(&hyps, &refs1)),
        ),
        (
            "rouge4_nostem",
            "ROUGE 1+2+L+Lsum, no stemmer",
            Box::new(rouge(false, all4.clone())),
        ),
        (
            "rouge4_stem",
            "ROUGE 1+2+L+Lsum, Porter stemmer",
            Box::new(rouge(true, all4)),
        ),
        (
            "rougeL_nostem",
            "ROUGE-L only, no stemmer",
            Box::new(rouge(false, vec![RougeType::RougeL])),
        ),
    ];
    let words: usize = hyps
        .iter()
        .chain(&refs)
        .map(|s| s.split_whitespace().count())
        .sum();
    println!(
        "pairs={n} mean words/segment={:.1} repeats={repeats} (best), single thread",
        words as f64 / (2 * n) as f64
    );
    let mut mismatch = false;
    for (key, name, mut f) in benches {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let (secs, val) = best_of(repeats, &mut f);
        let rate = n as f64 / secs;
        let mut line = format!("{name:<44} {secs:>8.4} s {rate:>12.0} pairs/s  checksum {val:.6}");
        if let Some(r) = reference.as_ref().and_then(|r| r["results"].get(key)) {
            let py_rate = r["pairs_per_s"].as_f64().unwrap_or(0.0);
            let py_val = r["checksum"].as_f64().unwrap_or(f64::NAN);
            let same = (py_val - val).abs() <= 1e-6 * py_val.abs().max(1.0);
            mismatch |= !same;
            line.push_str(&format!(
                " | python {py_rate:>9.0} pairs/s, ratio {:>6.1}x, values {}",
                rate / py_rate,
                if same {
                    "identical".to_owned()
                } else {
                    format!("DIFFER (python {py_val})")
                }
            ));
        }
        println!("{line}");
    }
    if mismatch {
        eprintln!("error: a checksum differs from the Python reference");
        std::process::exit(1);
    }
}
