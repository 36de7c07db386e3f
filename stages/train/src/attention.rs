//! Causal attention `softmax(q kᵀ + mask) v` as one op that keeps no
//! `[t, T]` matrix between forward and backward.
//!
//! Composed, every layer keeps its scores and its probabilities (the inputs
//! of the softmax and of the second matmul) until backward: two
//! `[b, heads, t, T]` tensors per layer, 560 MB over SmolLM2's 30 layers at
//! 4 x 256 tokens. Here forward and backward work one (sequence, kv head)
//! block at a time and backward recomputes the probabilities from q and k,
//! which the graph holds anyway, as flash attention does. The extra q kᵀ is
//! ~1% of a step's arithmetic.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{F32View, slice};
use crate::vmath;

/// `q [b, kv_heads, rep * t, d]` (the `rep` query heads of a kv head stacked,
/// already scaled by 1/sqrt(d)), `k, v [b, kv_heads, T, d]`, and the additive
/// mask `[b, t, T]` (0 or -inf, shared by all heads) -> `[b, kv_heads, rep * t, d]`.
pub struct FusedAttention {
    pub mask: Arc<Vec<f32>>,
    /// Query positions per sequence (`t`); the rows of q are `rep * t`.
    pub t: usize,
}

/// One (sequence, kv head) block's product on this thread: blocks run in parallel.
fn matmul(dst: &mut [f32], a: (&[f32], bool), b: (&[f32], bool), dims: (usize, usize, usize)) {
    crate::frozen::matmul(dst, a, b, dims, gemm::Parallelism::None)
}

struct Dims {
    rows: usize,
    big_t: usize,
    d: usize,
    groups: usize,
}

impl FusedAttention {
    /// Probabilities `[rows, T]` of one (sequence, kv head) block.
    fn probabilities(&self, q: &[f32], k: &[f32], batch: usize, dims: &Dims) -> Vec<f32> {
        let Dims { rows, big_t, d, .. } = *dims;
        let mut p = vec![0f32; rows * big_t];
        matmul(&mut p, (q, false), (k, true), (rows, big_t, d));
        for (r, row) in p.chunks_mut(big_t).enumerate() {
            let i = r % self.t;
            let mask = &self.mask[(batch * self.t + i) * big_t..(batch * self.t + i + 1) * big_t];
            for (x, m) in row.iter_mut().zip(mask) {
                *x += m;
            }
            // Masked positions (half of a causal block) come out as 0.
            let sum = vmath::exp_shifted(row, vmath::max(row));
            vmath::scale(row, (1.0 / sum) as f32);
        }
        p
    }

    fn dims(&self, q: &[usize], k: &[usize]) -> Result<Dims> {
        let (rows, d, big_t) = (q[2], q[3], k[2]);
        if q[0] != k[0] || q[1] != k[1] || d != k[3] || rows % self.t != 0 {
            candle_core::bail!(
                "fused-attention: q {q:?} and k {k:?} do not fit t = {}",
                self.t
            );
        }
        if self.mask.len() != q[0] * self.t * big_t {
            candle_core::bail!("fused-attention: the mask does not fit q {q:?}, k {k:?}");
        }
        Ok(Dims {
            rows,
            big_t,
            d,
            groups: q[0] * q[1],
        })
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            slice(s1, l1, "fused-attention (q)")?,
            slice(s2, l2, "fused-attention (k)")?,
            slice(s3, l3, "fused-attention (v)")?,
        );
        let dims = self.dims(l1.dims(), l2.dims())?;
        let (rows, big_t, d) = (dims.rows, dims.big_t, dims.d);
        let heads_per_batch = l1.dims()[1];
        let mut out = vec![0f32; dims.groups * rows * d];
        out.par_chunks_mut(rows * d).enumerate().for_each(|(g, o)| {
            let qg = &q[g * rows * d..(g + 1) * rows * d];
            let kg = &k[g * big_t * d..(g + 1) * big_t * d];
            let vg = &v[g * big_t * d..(g + 1) * big_t * d];
            let p = self.probabilities(qg, kg, g / heads_per_batch, &dims);
            matmul(o, (&p, false), (vg, false), (rows, d, big_t));
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q_t: &Tensor,
        k_t: &Tensor,
        v_t: &Tensor,
        out_t: &Tensor,
        grad_t: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = self.dims(q_t.dims(), k_t.dims())?;
        let (rows, big_t, d) = (dims.rows, dims.big_t, dims.d);
        let heads_per_batch = q_t.dim(1)?;
        let grad_t = grad_t.contiguous()?;
        let views = [q_t, k_t, v_t, out_t, &grad_t].map(|t| F32View::new(t, self.name()));
        let [q, k, v, out, grad] = views;
        let (q, k, v, out, grad) = (q?, k?, v?, out?, grad?);
        let (q, k, v, out, grad) = (
            q.as_slice(),
            k.as_slice(),
            v.as_slice(),
            out.as_slice(),
            grad.as_slice(),
        );
        let mut dq = vec![0f32; q.len()];
        let mut dk = vec![0f32; k.len()];
        let mut dv = vec![0f32; v.len()];
        dq.par_chunks_mut(rows * d)
            .zip(dk.par_chunks_mut(big_t * d))
            .zip(dv.par_chunks_mut(big_t * d))
            .enumerate()
            .for_each(|(g, ((dqg, dkg), dvg))| {
                let (qs, ks) = (
                    g * rows * d..(g + 1) * rows * d,
                    g * big_t * d..(g + 1) * big_t * d,
                );
                let (qg, kg, vg) = (&q[qs.clone()], &k[ks.clone()], &v[ks]);
                let (og, gg) = (&out[qs.clone()], &grad[qs]);
                let mut p = self.probabilities(qg, kg, g / heads_per_batch, &dims);
                // dV = Pᵀ dO
                matmul(dvg, (&p, true), (gg, false), (big_t, d, rows));
                // dP = dO Vᵀ, then dS = P ⊙ (dP - rowsum(dO ⊙ O)), in place of P.
                let mut dp = vec![0f32; rows * big_t];
                matmul(&mut dp, (gg, false), (vg, true), (rows, big_t, d));
                for r in 0..rows {
                    let dot: f32 = og[r * d..(r + 1) * d]
                        .iter()
                        .zip(&gg[r * d..(r + 1) * d])
                        .map(|(a, b)| a * b)
                        .sum();
                    let (pr, dpr) = (
                        &mut p[r * big_t..(r + 1) * big_t],
                        &dp[r * big_t..(r + 1) * big_t],
                    );
                    for (x, y) in pr.iter_mut().zip(dpr) {
                        *x *= y - dot;
                    }
                }
                // dQ = dS K, dK = dSᵀ Q
                matmul(dqg, (&p, false), (kg, false), (rows, d, big_t));
                matmul(dkg, (&p, true), (qg, false), (big_t, d, rows));
            });
        let dev = q_t.device();
        Ok((
            Some(Tensor::from_vec(dq, q_t.shape(), dev)?),
            Some(Tensor::from_vec(dk, k_t.shape(), dev)?),
            Some(Tensor::from_vec(dv, v_t.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Var};

    use super::*;

    /// Output and all three gradients against matmul -> masked softmax ->
    /// matmul, with grouped heads, a packed mask and a KV prefix (T > t).
    #[test]
    fn matches_composed_attention() {
        let dev = Device::Cpu;
        let (b, kv, rep, t, past, d) = (2, 2, 3, 5, 2, 4);
        let big_t = past + t;
        let mut rng = crate::rng::Rng::new(9);
        let mut values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let q = Var::from_vec(values(b * kv * rep * t * d), (b, kv, rep * t, d), &dev).unwrap();
        let k = Var::from_vec(values(b * kv * big_t * d), (b, kv, big_t, d), &dev).unwrap();
        let v = Var::from_vec(values(b * kv * big_t * d), (b, kv, big_t, d), &dev).unwrap();
        let upstream =
            Tensor::from_vec(values(b * kv * rep * t * d), (b, kv, rep * t, d), &dev).unwrap();
        // Causal over the prefix; in sequence 1 the first two new tokens are
        // another packed segment that sees only itself.
        let mut mask = vec![f32::NEG_INFINITY; b * t * big_t];
        for s in 0..b {
            for i in 0..t {
                for j in 0..=past + i {
                    let other_segment = s == 1 && (i < 2) != (j < past + 2) && j >= past;
                    if !other_segment {
                        mask[(s * t + i) * big_t + j] = 0.0;
                    }
                }
            }
        }
        let op = FusedAttention {
            mask: Arc::new(mask.clone()),
            t,
        };
        let fused = q
            .as_tensor()
            .apply_op3(k.as_tensor(), v.as_tensor(), op)
            .unwrap();
        let fused_loss = (&fused * &upstream).unwrap().sum_all().unwrap();
        let fused_grads = fused_loss.backward().unwrap();

        let mask_t = Tensor::from_vec(mask, (b, 1, 1, t, big_t), &dev).unwrap();
        let scores = q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap();
        let scores = scores
            .reshape((b, kv, rep, t, big_t))
            .unwrap()
            .broadcast_add(&mask_t)
            .unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let probs = probs.reshape((b, kv, rep * t, big_t)).unwrap();
        let composed = probs.matmul(v.as_tensor()).unwrap();
        let composed_loss = (&composed * &upstream).unwrap().sum_all().unwrap();
        let composed_grads = composed_loss.backward().unwrap();

        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let (a, b) = (values_of(a), values_of(b));
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "{what}: all zero");
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5 * scale.max(1.0), "{what}: {x} vs {y}");
            }
        };
        close(&fused, &composed, "output");
        for (var, what) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
            close(
                fused_grads.get(var.as_tensor()).unwrap(),
                composed_grads.get(var.as_tensor()).unwrap(),
                what,
            );
        }
    }

    fn values_of(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }
}
