//! Inference for evaluation: batched generation with a KV cache, and token
//! log-probabilities for likelihood scoring.
//!
//! A GGUF model decodes from its quantized blocks ([`crate::packed`]); its
//! adapter stays unmerged on top (`x Wᵀ + scale x Aᵀ Bᵀ`). Other models have
//! the adapter folded in at load (`W + scale * B A`), so generation costs the
//! same as for the base model.

use std::path::Path;

use candle_core::{D, DType, Tensor};

use crate::error::{Result, TrainError};
use crate::llama::{Fwd, Inputs, KvCache, Llama, left_pad_mask, segment_mask};
use crate::loader::load_for_inference;
use crate::lora::{apply_adapter, load_adapter};

/// Prompt positions per prefill pass: attention scores of `[b, heads, 512, t]`.
pub const PREFILL_CHUNK: usize = 512;

/// A loaded model (plus adapter) ready to score and generate.
pub struct Generator {
    model: Llama,
    cache: KvCache,
    /// Left padding of each sequence of the current batch.
    pads: Vec<usize>,
    /// Positions held in the cache (padding included).
    cached: usize,
    /// Next position id of each sequence.
    next_pos: Vec<u32>,
    /// Most prompt positions one prefill forward pass takes (see [`Generator::start`]).
    prefill_chunk: usize,
    #[allow(dead_code)]
    seed: u64,
}

/// Fold an adapter into a model's weights (and drop the LoRA pairs).
pub fn fold_adapter(model: &mut Llama) -> Result<()> {
    for layer in &mut model.layers {
        for name in crate::llama::PROJECTIONS {
            let lin = layer.proj_mut(name);
            if lin.lora.is_some() {
                lin.weight = lin.merged_weight()?;
                lin.lora = None;
            }
        }
    }
    Ok(())
}

impl Generator {
    /// Load `model` with an optional PEFT adapter folder. `seed` is kept for
    /// sampling; greedy decoding and scoring do not draw from it, and the
    /// builtin model's weights do not depend on it.
    pub fn load(
        model: &pipe_model::ResolvedModel,
        adapter_dir: Option<&Path>,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let mut m = load_for_inference(model)?;
        if let Some(dir) = adapter_dir {
            let (spec, tensors) = load_adapter(dir)?;
            apply_adapter(&mut m, &spec, &tensors, dir)?;
            // Folding would discard the packed blocks' advantage: keep the
            // pairs beside them.
            if !m.has_packed() {
                fold_adapter(&mut m)?;
            }
        }
        Ok(Self::from_model(m, seed))
    }

    /// Wrap an already loaded model.
    pub fn from_model(model: Llama, seed: u64) -> Self {
        Generator {
            model,
            cache: KvCache::default(),
            pads: Vec::new(),
            cached: 0,
            next_pos: Vec::new(),
            prefill_chunk: PREFILL_CHUNK,
            seed,
        }
    }

    /// Prefill prompts in passes of at most `positions` (default [`PREFILL_CHUNK`]).
    pub fn with_prefill_chunk(mut self, positions: usize) -> Self {
        self.prefill_chunk = positions.max(1);
        self
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    pub fn vocab_size(&self) -> usize {
        self.model.cfg.vocab_size
    }

    fn rows_to_vecs(&self, logits: Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }

    /// Start a batch of prompts (unpadded token ids, any lengths; left-padded inside, KV cache kept).
    /// Returns next-token logits, one Vec<f32> of vocab_size per prompt.
    pub fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, TrainError> {
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            return Err(TrainError::param(
                "prompts",
                "give at least one prompt, each with at least one token",
            ));
        }
        let b = prompts.len();
        let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![0u32; b * t];
        let mut positions = vec![0u32; b * t];
        self.pads = prompts.iter().map(|p| t - p.len()).collect();
        for (r, p) in prompts.iter().enumerate() {
            let pad = self.pads[r];
            ids[r * t + pad..(r + 1) * t].copy_from_slice(p);
            for (i, pos) in positions[r * t + pad..(r + 1) * t].iter_mut().enumerate() {
                *pos = i as u32;
            }
        }
        self.next_pos = prompts.iter().map(|p| p.len() as u32).collect();
        self.cache = KvCache::default();
        // The prompt goes through in passes of `prefill_chunk` positions over
        // the growing KV cache: one pass over a batch of few-shot prompts would
        // hold `[b, heads, t, t]` attention scores, gigabytes at t = 2,000.
        let m = &self.model;
        let mut hidden = None;
        for start in (0..t).step_by(self.prefill_chunk) {
            let len = self.prefill_chunk.min(t - start);
            let chunk = |v: &[u32]| -> Vec<u32> {
                (0..b)
                    .flat_map(|r| v[r * t + start..r * t + start + len].iter().copied())
                    .collect()
            };
            let (chunk_ids, chunk_positions) = (chunk(&ids), chunk(&positions));
            let mask = left_pad_mask(b, len, start, &self.pads, m.dtype, &m.device)?;
            let inputs = Inputs {
                b,
                t: len,
                ids: &chunk_ids,
                positions: &chunk_positions,
                mask,
            };
            hidden = Some((
                m.forward_hidden(&inputs, Some(&mut self.cache), &mut Fwd::inference())?,
                len,
            ));
        }
        self.cached = t;
        let (hidden, len) = hidden.expect("t >= 1");
        let last: Vec<u32> = (0..b).map(|r| (r * len + len - 1) as u32).collect();
        let last = Tensor::from_vec(last, b, &m.device)?;
        let logits = m.logits(&hidden.index_select(&last, 0)?, false)?;
        self.rows_to_vecs(logits)
    }

    /// Append one token per sequence (same order as `start`), return next-token logits.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, TrainError> {
        if tokens.len() != self.pads.len() {
            return Err(TrainError::param(
                "tokens",
                format!(
                    "{} tokens for a batch of {} (call start first, one token per prompt)",
                    tokens.len(),
                    self.pads.len()
                ),
            ));
        }
        let b = tokens.len();
        let m = &self.model;
        let mask = left_pad_mask(b, 1, self.cached, &self.pads, m.dtype, &m.device)?;
        let positions = self.next_pos.clone();
        let inputs = Inputs {
            b,
            t: 1,
            ids: tokens,
            positions: &positions,
            mask,
        };
        let hidden = m.forward_hidden(&inputs, Some(&mut self.cache), &mut Fwd::decode())?;
        self.cached += 1;
        for p in &mut self.next_pos {
            *p += 1;
        }
        let logits = m.decode_logits(&hidden)?;
        self.rows_to_vecs(logits)
    }

    /// ln p(ids[i] | ids[..i]) for i in 1..ids.len() (likelihood scoring, eval loss).
    pub fn token_logprobs(&mut self, ids: &[u32]) -> Result<Vec<f32>, TrainError> {
        let t = ids.len();
        if t < 2 {
            return Ok(Vec::new());
        }
        let m = &self.model;
        let positions: Vec<u32> = (0..t as u32).collect();
        let mask = segment_mask(1, t, &vec![1; t], m.dtype, &m.device)?;
        let inputs = Inputs {
            b: 1,
            t,
            ids,
            positions: &positions,
            mask,
        };
        let hidden = m.forward_hidden(&inputs, None, &mut Fwd::inference())?;
        let hidden = hidden.narrow(0, 0, t - 1)?;
        let logp = candle_nn::ops::log_softmax(&m.logits(&hidden, false)?, D::Minus1)?;
        let targets = Tensor::from_slice(&ids[1..], (t - 1, 1), &m.device)?;
        let picked = logp.gather(&targets, 1)?.flatten_all()?;
        Ok(picked.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }
}
