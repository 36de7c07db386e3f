//! Decoding on top of any next-token model: greedy or seeded
//! temperature/top-k/top-p sampling, stop on end-of-turn ids and stop
//! strings, batches; plus likelihood scoring and eval loss.
//!
//! The model is behind [`LogitsModel`] so the decoding rules are tested with a
//! scripted model; `pipe_train::infer::Generator` implements it (feature `model`).

use serde::{Deserialize, Serialize};

/// What decoding needs from a model: the train crate's `Generator` API.
pub trait LogitsModel {
    /// Prefill a batch of unpadded prompts; next-token logits per prompt.
    fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String>;
    /// One token per sequence; next-token logits per sequence.
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, String>;
    /// ln p(ids[i] | ids[..i]) for i in 1..len.
    fn token_logprobs(&mut self, ids: &[u32]) -> Result<Vec<f32>, String>;
}

#[cfg(feature = "model")]
impl LogitsModel for pipe_train::Generator {
    fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String> {
        pipe_train::Generator::start(self, prompts).map_err(|e| e.to_string())
    }
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, String> {
        pipe_train::Generator::step(self, tokens).map_err(|e| e.to_string())
    }
    fn token_logprobs(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
        pipe_train::Generator::token_logprobs(self, ids).map_err(|e| e.to_string())
    }
}

/// Decoding settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// 0 = greedy (default); otherwise the softmax temperature.
    #[serde(default)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    #[serde(default)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = all).
    #[serde(default = "Sampling::default_top_p")]
    pub top_p: f32,
}

impl Sampling {
    fn default_top_p() -> f32 {
        1.0
    }
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// An end-of-turn / EOS id.
    Stop,
    /// A stop string appeared (the text is cut before it).
    StopString,
    /// `max_new_tokens` reached.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub text: String,
    pub ids: Vec<u32>,
    pub finish: Finish,
}

/// splitmix64: small, seedable, and the same on every platform.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// First index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    if s.is_greedy() {
        return argmax(logits);
    }
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    // Stable order: by logit descending, then id, so ties never depend on sort internals.
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    if s.top_k > 0 {
        idx.truncate(s.top_k);
    }
    let max = logits[idx[0] as usize] as f64;
    let t = s.temperature as f64;
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i as usize] as f64 - max) / t).exp())
        .collect();
    let z: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= z;
    }
    if s.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= s.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let z: f64 = probs.iter().sum();
    let mut u = rng.uniform() * z;
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return idx[i];
        }
        u -= p;
    }
    *idx.last().expect("at least one candidate")
}

/// Settings of one generation run.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    /// Ids that end a sequence (EOS, end-of-turn); not part of the output.
    pub stop_ids: Vec<u32>,
    /// Strings that end a sequence; the output is cut before the first one.
    pub stop_strings: Vec<String>,
    pub batch_size: usize,
    /// Token fed to finished sequences while others continue.
    pub pad_id: u32,
}

/// Generates a continuation of each prompt. Sequence `i` samples from its own
/// stream seeded by `(seed, i)`, so outputs do not depend on batch size.
/// `decode` turns ids into text (for stop strings and the result);
/// `on_tokens` is told how many tokens each step produced (progress).
pub fn generate(
    model: &mut dyn LogitsModel,
    prompts: &[Vec<u32>],
    opts: &GenOptions,
    decode: &dyn Fn(&[u32]) -> String,
    on_tokens: &mut dyn FnMut(u64),
) -> Result<Vec<Generated>, String> {
    let mut out = Vec::with_capacity(prompts.len());
    let bs = opts.batch_size.max(1);
    for (chunk_i, chunk) in prompts.chunks(bs).enumerate() {
        let base = chunk_i * bs;
        let mut rngs: Vec<Rng> = (0..chunk.len())
            .map(|i| Rng(opts.seed ^ ((base + i) as u64).wrapping_mul(0xa076_1d64_78bd_642f)))
            .collect();
        let mut ids: Vec<Vec<u32>> = vec![Vec::new(); chunk.len()];
        let mut texts: Vec<String> = vec![String::new(); chunk.len()];
        let mut finish: Vec<Option<Finish>> = vec![None; chunk.len()];
        if opts.max_new_tokens == 0 {
            for _ in chunk {
                out.push(Generated {
                    text: String::new(),
                    ids: Vec::new(),
                    finish: Finish::Length,
                });
            }
            continue;
        }
        let mut logits = model.start(chunk)?;
        loop {
            let mut next = vec![opts.pad_id; chunk.len()];
            let mut produced = 0;
            for i in 0..chunk.len() {
                if finish[i].is_some() {
                    continue;
                }
                let tok = sample(&logits[i], &opts.sampling, &mut rngs[i]);
                produced += 1;
                if opts.stop_ids.contains(&tok) {
                    finish[i] = Some(Finish::Stop);
                    continue;
                }
                ids[i].push(tok);
                next[i] = tok;
                if !opts.stop_strings.is_empty() {
                    let text = decode(&ids[i]);
                    if let Some(cut) = opts
                        .stop_strings
                        .iter()
                        .filter_map(|s| text.find(s.as_str()))
                        .min()
                    {
                        texts[i] = text[..cut].to_owned();
                        finish[i] = Some(Finish::StopString);
                        continue;
                    }
                }
                if ids[i].len() >= opts.max_new_tokens {
                    finish[i] = Some(Finish::Length);
                }
            }
            on_tokens(produced);
            if finish.iter().all(Option::is_some) {
                break;
            }
            logits = model.step(&next)?;
        }
        for i in 0..chunk.len() {
            let f = finish[i].expect("loop ends when all finished");
            let text = if f == Finish::StopString {
                std::mem::take(&mut texts[i])
            } else {
                decode(&ids[i])
            };
            out.push(Generated {
                text,
                ids: std::mem::take(&mut ids[i]),
                finish: f,
            });
        }
    }
    Ok(out)
}

/// Sum of ln p(continuation | prompt) over the continuation's tokens.
pub fn continuation_logprob(
    model: &mut dyn LogitsModel,
    prompt: &[u32],
    continuation: &[u32],
) -> Result<f64, String> {
    if continuation.is_empty() {
        return Ok(0.0);
    }
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(continuation);
    let lp = model.token_logprobs(&ids)?;
    // lp[j] scores ids[j + 1]; the continuation starts at ids[prompt.len()].
    let start = prompt.len().saturating_sub(1);
    Ok(lp[start..].iter().map(|&x| x as f64).sum())
}

/// The label whose tokens are most likely after the prompt (sum of log-probabilities,
/// first label on ties). Returns the index into `labels`.
pub fn likelihood_label(
    model: &mut dyn LogitsModel,
    prompt: &[u32],
    labels: &[Vec<u32>],
) -> Result<usize, String> {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, l) in labels.iter().enumerate() {
        let s = continuation_logprob(model, prompt, l)?;
        if s > best.1 {
            best = (i, s);
        }
    }
    Ok(best.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that plays back a script: the logits favour `script[seq][pos]`.
    struct Scripted {
        script: Vec<Vec<u32>>,
        pos: Vec<usize>,
        vocab: usize,
        batches: usize,
        /// Script index of each sequence of the current batch.
        active: Vec<usize>,
    }

    impl Scripted {
        fn logits(&self, seq: usize) -> Vec<f32> {
            let mut v = vec![0.0; self.vocab];
            let tok = self.script[seq].get(self.pos[seq]).copied().unwrap_or(0);
            v[tok as usize] = 5.0;
            v[(tok as usize + 1) % self.vocab] = 4.0;
            v
        }
    }

    impl LogitsModel for Scripted {
        fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String> {
            // The prompt's first token picks the script.
            self.batches += 1;
            self.pos = vec![0; self.script.len()];
            let seqs: Vec<usize> = prompts.iter().map(|p| p[0] as usize).collect();
            self.active = seqs.clone();
            Ok(seqs.iter().map(|&s| self.logits(s)).collect())
        }
        fn step(&mut self, _tokens: &[u32]) -> Result<Vec<Vec<f32>>, String> {
            let seqs = self.active.clone();
            for &s in &seqs {
                self.pos[s] += 1;
            }
            Ok(seqs.iter().map(|&s| self.logits(s)).collect())
        }
        fn token_logprobs(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
            // ln p = -(token id) / 10: small ids are likely.
            Ok(ids[1..].iter().map(|&t| -(t as f32) / 10.0).collect())
        }
    }

    impl Scripted {
        fn new(script: Vec<Vec<u32>>) -> Self {
            Scripted {
                pos: vec![0; script.len()],
                script,
                vocab: 128,
                batches: 0,
                active: Vec::new(),
            }
        }
    }

    fn opts() -> GenOptions {
        GenOptions {
            max_new_tokens: 10,
            sampling: Sampling::default(),
            seed: 1,
            stop_ids: vec![2],
            stop_strings: vec![],
            batch_size: 2,
            pad_id: 0,
        }
    }

    fn decode(ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| (b'a' + (i as u8 % 26)) as char)
            .collect()
    }

    #[test]
    fn greedy_stops_and_batches() {
        // seq 0: 10 11 2 (stop id), seq 1: 12 x 20 (length), seq 2: 13 14 15 16 ("nop..." stop string "p")
        let mut m = Scripted::new(vec![
            vec![10, 11, 2, 9],
            vec![12; 20],
            vec![13, 14, 15, 16, 2],
        ]);
        let prompts = vec![vec![0], vec![1], vec![2]];
        let mut o = opts();
        o.stop_strings = vec!["p".into()];
        let mut produced = 0;
        let g = generate(&mut m, &prompts, &o, &decode, &mut |n| produced += n).unwrap();
        assert_eq!(g[0].ids, [10, 11]);
        assert_eq!(g[0].finish, Finish::Stop);
        assert_eq!(g[1].ids.len(), 10);
        assert_eq!(g[1].finish, Finish::Length);
        assert_eq!(g[2].text, "no", "cut before the stop string");
        assert_eq!(g[2].finish, Finish::StopString);
        assert_eq!(
            m.batches, 2,
            "batch size 2 -> two batches for three prompts"
        );
        assert!(produced >= 3 + 10);
    }

    #[test]
    fn sampling_is_seeded() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
        };
        let logits = vec![0.0, 1.0, 1.0, 3.0];
        let draw = |seed| {
            let mut r = Rng(seed);
            (0..50)
                .map(|_| sample(&logits, &s, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let d = draw(7);
        assert!(
            d.iter().all(|&t| t == 3 || t == 1),
            "top-k 2 keeps ids 3 and 1 (ties by id)"
        );
        assert!(d.contains(&1) && d.contains(&3));
        let p = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        let mut r = Rng(3);
        assert!(
            (0..50).all(|_| sample(&logits, &p, &mut r) == 3),
            "top-p 0.5 keeps the 0.7-probability token only"
        );
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn likelihood() {
        let mut m = Scripted::new(vec![vec![1]]);
        let labels = vec![vec![30, 31], vec![3], vec![5, 1]];
        // sums: -6.1, -0.3, -0.6
        assert_eq!(likelihood_label(&mut m, &[1, 2, 3], &labels).unwrap(), 1);
        let lp = continuation_logprob(&mut m, &[1, 2], &[10, 20]).unwrap();
        assert!((lp + 3.0).abs() < 1e-5);
    }
}
