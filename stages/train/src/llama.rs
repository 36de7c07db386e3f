//! A Llama-family decoder written for LoRA training (Llama 2/3, Mistral, Qwen2, SmolLM2).
//!
//! Paper: <https://arxiv.org/abs/2302.13971>; reference code: Hugging Face
//! `transformers/models/llama/modeling_llama.py`.
//!
//! Every op on the path from a LoRA weight to the loss must have a backward in
//! candle. Several fast candle kernels do not (`candle_nn::ops::rms_norm`,
//! `rotary_emb::rope*`, `softmax_last_dim`, `sdpa`, `QMatMul`): their result is
//! silently treated as a constant. So RMSNorm, rotary and softmax are written
//! here from primitive ops, and `every_lora_variable_gets_a_gradient` guards it.
//!
//! Activations travel as `[batch * seq, hidden]`; attention reshapes to heads.
//! Grouped-query attention folds the query heads of one KV head into the
//! sequence axis (`[b, kv_heads, rep * t, d]`) instead of copying K and V.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor, Var};

use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::frozen::FrozenLinear;
use crate::fused;
use crate::lora_linear::LoraLinear;
use crate::packed::{MAX_PACKED_ROWS, PackedWeight};
use crate::rng::Rng;

/// The projections LoRA may target, in PEFT's module names and in a fixed order.
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Module path of a projection inside a decoder layer (`self_attn.q_proj`).
pub fn module_path(projection: &str) -> String {
    match projection {
        "q_proj" | "k_proj" | "v_proj" | "o_proj" => format!("self_attn.{projection}"),
        _ => format!("mlp.{projection}"),
    }
}

/// A LoRA pair on one projection: `y += scale * dropout(x) Aᵀ Bᵀ`.
pub struct LoraPair {
    /// `[rank, in]`.
    pub a: Var,
    /// `[out, rank]`.
    pub b: Var,
    pub scale: f64,
    pub dropout: f64,
}

/// A frozen projection with an optional bias and an optional LoRA pair.
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraPair>,
    /// The same weight in its GGUF blocks, for decode steps (see [`crate::packed`]).
    pub packed: Option<Arc<PackedWeight>>,
}

/// Per-forward switches.
pub struct Fwd<'a> {
    /// Dropout stream; `None` disables LoRA dropout (evaluation, inference).
    pub dropout: Option<&'a mut Rng>,
    /// Use the frozen-weight op that skips the base weight's gradient.
    pub skip_frozen_grads: bool,
    /// Use the fused kernels of [`crate::fused`] (f32 on the CPU only).
    pub fused: bool,
    /// No backward follows: LoRA weights enter as constants, so no graph is recorded.
    pub no_grad: bool,
    /// A decode step: packed weights ([`crate::packed`]) serve inputs of a few rows.
    pub decode: bool,
}

impl Fwd<'_> {
    /// No dropout; a backward may follow (tests compare gradients with it).
    pub fn eval() -> Fwd<'static> {
        Fwd {
            dropout: None,
            skip_frozen_grads: true,
            fused: true,
            no_grad: false,
            decode: false,
        }
    }

    /// No dropout and no backward to follow (prefill, scoring, validation).
    pub fn inference() -> Fwd<'static> {
        Fwd {
            no_grad: true,
            ..Fwd::eval()
        }
    }

    /// A decode step of generation: [`Fwd::inference`] plus packed weights.
    pub fn decode() -> Fwd<'static> {
        Fwd {
            decode: true,
            ..Fwd::inference()
        }
    }
}

fn frozen_matmul(x: &Tensor, w: &Tensor, skip_frozen_grads: bool) -> Result<Tensor> {
    // Only a tensor that is part of a graph needs the custom op; the plain
    // matmul is cheaper (no copies) for everything else.
    if skip_frozen_grads && x.track_op() && x.device().is_cpu() {
        Ok(x.contiguous()?
            .apply_op1(FrozenLinear { weight: w.clone() })?)
    } else {
        Ok(x.matmul(&w.t()?)?)
    }
}

/// Whether a packed weight should serve `x`: a decode step's few rows,
/// outside any graph.
fn use_packed(x: &Tensor, decode: bool) -> Result<bool> {
    Ok(decode
        && !x.track_op()
        && x.device().is_cpu()
        && x.dims()
            .first()
            .is_some_and(|&rows| rows <= MAX_PACKED_ROWS))
}

impl Linear {
    /// `x: [rows, in] -> [rows, out]`.
    pub fn forward(&self, x: &Tensor, fwd: &mut Fwd<'_>) -> Result<Tensor> {
        if let Some(lora) = &self.lora
            && fwd.fused
            && fwd.skip_frozen_grads
            && x.dtype() == DType::F32
            && x.device().is_cpu()
            && !(self.packed.is_some() && use_packed(x, fwd.decode)?)
        {
            return self.forward_fused(x, lora, fwd);
        }
        let mut y = match &self.packed {
            Some(p) if use_packed(x, fwd.decode)? => p.forward(x)?,
            _ => frozen_matmul(x, &self.weight, fwd.skip_frozen_grads)?,
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(lora) = &self.lora {
            let xd = match fwd.dropout.as_deref_mut() {
                Some(rng) if lora.dropout > 0.0 => {
                    let mask = dropout_mask(x.elem_count(), lora.dropout, rng);
                    let mask =
                        Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
                    (x * mask)?
                }
                _ => x.clone(),
            };
            let (a, b) = lora_weights(lora, fwd.no_grad);
            let low = xd.matmul(&a.t()?)?;
            let up = low.matmul(&b.t()?)?;
            y = (y + up.affine(lora.scale, 0.0)?)?;
        }
        Ok(y)
    }

    /// The projection and its adapter in one op ([`LoraLinear`]): one output
    /// buffer in the graph instead of four.
    fn forward_fused(&self, x: &Tensor, lora: &LoraPair, fwd: &mut Fwd<'_>) -> Result<Tensor> {
        let mask = match fwd.dropout.as_deref_mut() {
            Some(rng) if lora.dropout > 0.0 => {
                Some(Arc::new(dropout_mask(x.elem_count(), lora.dropout, rng)))
            }
            _ => None,
        };
        let (a, b) = lora_weights(lora, fwd.no_grad);
        let op = LoraLinear {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            scale: lora.scale as f32,
            mask,
        };
        Ok(x.contiguous()?.apply_op3(&a, &b, op)?)
    }

    /// `W + scale * B A` (merge export, inference with an adapter).
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.weight.clone()),
            Some(l) => {
                let delta = l.b.as_tensor().matmul(l.a.as_tensor())?;
                Ok((&self.weight + delta.affine(l.scale, 0.0)?)?)
            }
        }
    }
}

/// A and B, detached when no backward follows (so no graph is recorded).
fn lora_weights(lora: &LoraPair, no_grad: bool) -> (Tensor, Tensor) {
    if no_grad {
        (lora.a.as_tensor().detach(), lora.b.as_tensor().detach())
    } else {
        (lora.a.as_tensor().clone(), lora.b.as_tensor().clone())
    }
}

/// Inverted dropout: `0` with probability `p`, else `1 / (1 - p)`.
fn dropout_mask(elems: usize, p: f64, rng: &mut Rng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    (0..elems)
        .map(|_| if rng.next_f64() < p { 0.0 } else { keep })
        .collect()
}

/// RMSNorm from primitives (differentiable), computed in the model dtype.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(xn.broadcast_mul(weight)?)
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

/// Rotary embedding in Hugging Face's half-split layout; `cos`/`sin`: `[b, 1, t, d]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok((x.broadcast_mul(cos)? + rotate_half(x)?.broadcast_mul(sin)?)?)
}

/// One decoder layer.
pub struct Layer {
    pub input_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub post_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Layer {
    pub fn proj(&self, name: &str) -> &Linear {
        match name {
            "q_proj" => &self.q,
            "k_proj" => &self.k,
            "v_proj" => &self.v,
            "o_proj" => &self.o,
            "gate_proj" => &self.gate,
            "up_proj" => &self.up,
            _ => &self.down,
        }
    }
    pub fn proj_mut(&mut self, name: &str) -> &mut Linear {
        match name {
            "q_proj" => &mut self.q,
            "k_proj" => &mut self.k,
            "v_proj" => &mut self.v,
            "o_proj" => &mut self.o,
            "gate_proj" => &mut self.gate,
            "up_proj" => &mut self.up,
            _ => &mut self.down,
        }
    }
}

/// Keys and values of earlier positions, per layer: `[b, kv_heads, T, d]`.
#[derive(Default, Clone)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
}

/// One forward's inputs: `b` rows of `t` tokens, row-major.
pub struct Inputs<'a> {
    pub b: usize,
    pub t: usize,
    pub ids: &'a [u32],
    pub positions: &'a [u32],
    /// Additive attention mask `[b, 1, t, T]` (0 or -inf), `T` = cached + t.
    pub mask: Tensor,
}

/// The decoder.
pub struct Llama {
    pub cfg: Config,
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Tensor>,
    /// The LM head (or tied embedding) in GGUF blocks, for decode steps.
    pub packed_head: Option<Arc<PackedWeight>>,
    inv_freq: Vec<f64>,
    pub dtype: DType,
    pub device: Device,
}

impl Llama {
    /// Build from Hugging Face tensor names (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub fn from_weights(
        cfg: Config,
        mut w: BTreeMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Llama> {
        let mut take = |name: &str| -> Result<Tensor> {
            let t = w
                .remove(name)
                .ok_or_else(|| TrainError::Model(format!("weight `{name}` is missing")))?;
            Ok(t.to_dtype(dtype)?.contiguous()?)
        };
        let embed = take("model.embed_tokens.weight")?;
        let device = embed.device().clone();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut lin = |name: &str, bias: bool| -> Result<Linear> {
                let path = module_path(name);
                Ok(Linear {
                    weight: take(&format!("{p}.{path}.weight"))?,
                    bias: if bias {
                        Some(take(&format!("{p}.{path}.bias"))?)
                    } else {
                        None
                    },
                    lora: None,
                    packed: None,
                })
            };
            let (q, k, v) = (
                lin("q_proj", cfg.qkv_bias)?,
                lin("k_proj", cfg.qkv_bias)?,
                lin("v_proj", cfg.qkv_bias)?,
            );
            let o = lin("o_proj", false)?;
            let (gate, up, down) = (
                lin("gate_proj", false)?,
                lin("up_proj", false)?,
                lin("down_proj", false)?,
            );
            layers.push(Layer {
                input_norm: take(&format!("{p}.input_layernorm.weight"))?,
                post_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(take("lm_head.weight")?)
        };
        let inv_freq = cfg.inv_freq();
        Ok(Llama {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            packed_head: None,
            inv_freq,
            dtype,
            device,
        })
    }

    /// Every weight under its Hugging Face name, LoRA folded in (merge export).
    pub fn merged_weights(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        out.insert("model.embed_tokens.weight".into(), self.embed.clone());
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.insert(
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.clone(),
            );
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.clone(),
            );
            for name in PROJECTIONS {
                let lin = layer.proj(name);
                let path = module_path(name);
                out.insert(format!("{p}.{path}.weight"), lin.merged_weight()?);
                if let Some(b) = &lin.bias {
                    out.insert(format!("{p}.{path}.bias"), b.clone());
                }
            }
        }
        out.insert("model.norm.weight".into(), self.norm.clone());
        if let Some(h) = &self.lm_head {
            out.insert("lm_head.weight".into(), h.clone());
        }
        Ok(out)
    }

    /// `cos`, `sin` as `[b * t, head_dim / 2]` for the given positions.
    fn rotary_half(&self, positions: &[u32]) -> (Vec<f64>, Vec<f64>) {
        let half = self.cfg.head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for f in &self.inv_freq[..half] {
                let angle = p as f64 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }

    /// `cos`, `sin` as `[b, 1, t, head_dim]` (both halves share frequencies,
    /// Hugging Face's `cat(freqs, freqs)`).
    fn rotary(&self, b: usize, t: usize, cos: &[f64], sin: &[f64]) -> Result<(Tensor, Tensor)> {
        let half = self.cfg.head_dim / 2;
        let mk = |v: &[f64]| -> Result<Tensor> {
            let full: Vec<f64> = v
                .chunks(half)
                .flat_map(|row| row.iter().chain(row.iter()).copied())
                .collect();
            Ok(Tensor::from_vec(full, (b, 1, t, 2 * half), &self.device)?.to_dtype(self.dtype)?)
        };
        Ok((mk(cos)?, mk(sin)?))
    }

    /// The final-normed hidden states `[b * t, hidden]`.
    pub fn forward_hidden(
        &self,
        inp: &Inputs<'_>,
        mut cache: Option<&mut KvCache>,
        fwd: &mut Fwd<'_>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t) = (inp.b, inp.t);
        let ids = Tensor::from_slice(inp.ids, b * t, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let fused = fwd.fused && self.dtype == DType::F32 && self.device.is_cpu();
        let (cos_h, sin_h) = self.rotary_half(inp.positions);
        let (cos, sin) = self.rotary(b, t, &cos_h, &sin_h)?;
        let to32 = |v: Vec<f64>| Arc::new(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>());
        let (cos32, sin32) = (to32(cos_h), to32(sin_h));
        let mask32 = if fused {
            Arc::new(inp.mask.flatten_all()?.to_vec1::<f32>()?)
        } else {
            Arc::new(Vec::new())
        };
        let eps = cfg.rms_norm_eps;
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            if fused {
                let weight = Arc::new(w.to_vec1::<f32>()?);
                Ok(x.apply_op1(fused::RmsNorm {
                    weight,
                    eps: eps as f32,
                })?)
            } else {
                rms_norm(x, w, eps)
            }
        };
        // `y [b * t, heads * d]` -> rotated `[b, heads, t, d]` times `scale`.
        let rotate = |y: &Tensor, heads: usize, scale: f64| -> Result<Tensor> {
            let y = y.reshape((b, t, heads, cfg.head_dim))?;
            if fused {
                Ok(y.apply_op1(fused::Rope {
                    cos: cos32.clone(),
                    sin: sin32.clone(),
                    scale: scale as f32,
                })?)
            } else {
                let y = rope(&y.transpose(1, 2)?.contiguous()?, &cos, &sin)?;
                Ok(if scale == 1.0 {
                    y
                } else {
                    y.affine(scale, 0.0)?
                })
            }
        };
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let rep = nh / nkv;
        let mask = inp.mask.unsqueeze(2)?; // [b, 1, 1, t, T]
        if let Some(c) = cache.as_deref_mut()
            && c.layers.len() != self.layers.len()
        {
            c.layers = vec![None; self.layers.len()];
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let h = norm(&x, &layer.input_norm)?;
            let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = rotate(&layer.q.forward(&h, fwd)?, nh, 1.0 / (hd as f64).sqrt())?;
            let mut k = rotate(&layer.k.forward(&h, fwd)?, nkv, 1.0)?;
            let mut v = heads(layer.v.forward(&h, fwd)?, nkv)?;
            if let Some(c) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &c.layers[li] {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                c.layers[li] = Some((k.clone(), v.clone()));
            }
            let big_t = k.dim(2)?;
            let q = q.reshape((b, nkv, rep * t, hd))?;
            let y = if fused {
                q.contiguous()?.apply_op3(
                    &k.contiguous()?,
                    &v.contiguous()?,
                    crate::attention::FusedAttention::new(mask32.clone(), t),
                )?
            } else {
                let att = q.matmul(&k.t()?)?;
                let att = att.reshape((b, nkv, rep, t, big_t))?.broadcast_add(&mask)?;
                let att = candle_nn::ops::softmax(&att, D::Minus1)?;
                att.reshape((b, nkv, rep * t, big_t))?.matmul(&v)?
            };
            let y = y
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((b * t, nh * hd))?;
            x = (x + layer.o.forward(&y, fwd)?)?;
            let h = norm(&x, &layer.post_norm)?;
            let g = layer.gate.forward(&h, fwd)?;
            let u = layer.up.forward(&h, fwd)?;
            let gu = if fused {
                g.apply_op2(&u, fused::SwiGlu)?
            } else {
                (g.silu()? * u)?
            };
            x = (x + layer.down.forward(&gu, fwd)?)?;
        }
        norm(&x, &self.norm)
    }

    /// Logits `[rows, vocab]` for hidden rows `[rows, hidden]`.
    pub fn logits(&self, hidden: &Tensor, skip_frozen_grads: bool) -> Result<Tensor> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        frozen_matmul(hidden, head, skip_frozen_grads)
    }

    /// Whether any weight has a packed copy ([`Llama::attach_packed`]).
    pub fn has_packed(&self) -> bool {
        self.packed_head.is_some()
            || self
                .layers
                .iter()
                .any(|l| PROJECTIONS.iter().any(|n| l.proj(n).packed.is_some()))
    }

    /// Logits of a decode step: the packed head when there is one.
    pub fn decode_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.packed_head {
            Some(p) if use_packed(hidden, true)? => p.forward(hidden),
            _ => self.logits(hidden, false),
        }
    }

    /// Give projections and the LM head their GGUF-block copies (by Hugging
    /// Face name, as [`crate::loader::load_gguf_packed`] returns them).
    /// Weights without one keep the f32 path.
    pub fn attach_packed(&mut self, mut packed: BTreeMap<String, PackedWeight>) -> Result<()> {
        let mut take =
            |name: &str, rows: usize, cols: usize| -> Result<Option<Arc<PackedWeight>>> {
                match packed.remove(name) {
                    Some(p) if p.rows() == rows && p.cols() == cols => Ok(Some(Arc::new(p))),
                    Some(p) => Err(TrainError::Model(format!(
                        "packed `{name}` is [{}, {}], the model has [{rows}, {cols}]",
                        p.rows(),
                        p.cols()
                    ))),
                    None => Ok(None),
                }
            };
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for name in PROJECTIONS {
                let lin = layer.proj_mut(name);
                let (rows, cols) = lin.weight.dims2()?;
                lin.packed = take(
                    &format!("model.layers.{i}.{}.weight", module_path(name)),
                    rows,
                    cols,
                )?;
            }
        }
        let head_name = if self.lm_head.is_some() {
            "lm_head.weight"
        } else {
            "model.embed_tokens.weight"
        };
        let (rows, cols) = self.lm_head.as_ref().unwrap_or(&self.embed).dims2()?;
        self.packed_head = take(head_name, rows, cols)?;
        Ok(())
    }

    /// Sum of `-ln p(label)` over trained positions and their count. Labels
    /// are aligned with the inputs (not shifted): position `i` predicts `labels[i + 1]`.
    /// Only trained rows go through the LM head, which saves most of its cost
    /// when prompts are masked.
    pub fn loss_sum(
        &self,
        hidden: &Tensor,
        b: usize,
        t: usize,
        labels: &[i32],
        fwd: &Fwd<'_>,
    ) -> Result<(Tensor, usize)> {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for r in 0..b {
            for i in 0..t.saturating_sub(1) {
                let label = labels[r * t + i + 1];
                if label >= 0 {
                    rows.push((r * t + i) as u32);
                    targets.push(label as u32);
                }
            }
        }
        let n = rows.len();
        if n == 0 {
            return Ok((Tensor::zeros((), self.dtype, &self.device)?, 0));
        }
        let rows = Tensor::from_vec(rows, n, &self.device)?;
        let h = hidden.index_select(&rows, 0)?;
        let fused_cpu = fwd.fused && self.dtype == DType::F32 && self.device.is_cpu();
        if fused_cpu && fwd.skip_frozen_grads && h.track_op() {
            let head = self.lm_head.as_ref().unwrap_or(&self.embed);
            let op = crate::head::HeadCrossEntropy::new(head.clone(), Arc::new(targets));
            return Ok((h.contiguous()?.apply_op1(op)?, n));
        }
        let logits = self.logits(&h, fwd.skip_frozen_grads)?;
        if fused_cpu {
            let loss = logits.apply_op1(fused::CrossEntropySum {
                targets: Arc::new(targets),
            })?;
            return Ok((loss, n));
        }
        let targets = Tensor::from_vec(targets, (n, 1), &self.device)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = logp.gather(&targets, 1)?;
        Ok((picked.sum_all()?.neg()?, n))
    }
}

/// Additive mask for packed training rows: a token sees earlier tokens of its
/// own segment; padding (segment 0) sees only itself so no row is all -inf.
pub fn segment_mask(
    b: usize,
    t: usize,
    segments: &[u32],
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let mut m = vec![f32::NEG_INFINITY; b * t * t];
    for r in 0..b {
        let seg = &segments[r * t..(r + 1) * t];
        for i in 0..t {
            let row = &mut m[(r * t + i) * t..(r * t + i + 1) * t];
            row[i] = 0.0;
            if seg[i] == 0 {
                continue;
            }
            for j in 0..i {
                if seg[j] == seg[i] {
                    row[j] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, t, t), dev)?.to_dtype(dtype)?)
}

/// Additive mask for left-padded generation: `t` new tokens after `past` cached
/// ones; row `r` has `pads[r]` padding positions at the front.
pub fn left_pad_mask(
    b: usize,
    t: usize,
    past: usize,
    pads: &[usize],
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let total = past + t;
    let mut m = vec![f32::NEG_INFINITY; b * t * total];
    for r in 0..b {
        for i in 0..t {
            let qi = past + i;
            let row = &mut m[(r * t + i) * total..(r * t + i + 1) * total];
            if qi < pads[r] {
                row[qi] = 0.0;
                continue;
            }
            for cell in row.iter_mut().take(qi + 1).skip(pads[r]) {
                *cell = 0.0;
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, t, total), dev)?.to_dtype(dtype)?)
}
