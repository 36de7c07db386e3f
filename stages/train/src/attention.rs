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
    /// Query positions per block (see [`BLOCK_POSITIONS`]).
    pub block: usize,
}

/// Query positions that share one window of keys. A causal block of 64
/// positions ending at position p reads keys `[0, p)` only, so over 256
/// positions the products cover 5/8 of the full `[t, T]` square; a packed
/// segment's block skips the keys of the segments before it too.
pub const BLOCK_POSITIONS: usize = 64;

/// One product on this thread: (sequence, kv head) groups run in parallel.
fn matmul(dst: &mut [f32], a: (&[f32], bool), b: (&[f32], bool), dims: (usize, usize, usize)) {
    crate::frozen::matmul(dst, a, b, dims, gemm::Parallelism::None)
}

/// `dst += op(a) op(b)`, as [`matmul`].
fn matmul_acc(dst: &mut [f32], a: (&[f32], bool), b: (&[f32], bool), dims: (usize, usize, usize)) {
    crate::frozen::matmul_acc(dst, a, b, dims, 1.0, gemm::Parallelism::None)
}

struct Dims {
    rows: usize,
    big_t: usize,
    d: usize,
    groups: usize,
    heads_per_batch: usize,
}

/// Rows `[r0, r1)` of a group's q (positions `[p0, p1)` of one query head)
/// and the keys `[lo, hi)` any of them may see.
#[derive(Clone, Copy)]
struct Block {
    r0: usize,
    r1: usize,
    p0: usize,
    lo: usize,
    hi: usize,
}

impl FusedAttention {
    pub fn new(mask: Arc<Vec<f32>>, t: usize) -> FusedAttention {
        FusedAttention {
            mask,
            t,
            block: BLOCK_POSITIONS,
        }
    }

    fn mask_row(&self, batch: usize, i: usize, big_t: usize) -> &[f32] {
        let at = (batch * self.t + i) * big_t;
        &self.mask[at..at + big_t]
    }

    /// The blocks of each sequence, with their key windows from the mask.
    fn blocks(&self, dims: &Dims) -> Vec<Vec<Block>> {
        let (t, big_t) = (self.t, dims.big_t);
        let rep = dims.rows / t;
        let batches = dims.groups / dims.heads_per_batch;
        (0..batches)
            .map(|batch| {
                let mut blocks = Vec::new();
                for p0 in (0..t).step_by(self.block.max(1)) {
                    let p1 = (p0 + self.block.max(1)).min(t);
                    let (mut lo, mut hi) = (big_t, 0);
                    for i in p0..p1 {
                        let row = self.mask_row(batch, i, big_t);
                        let seen = |m: &f32| *m != f32::NEG_INFINITY;
                        if let Some(first) = row.iter().position(seen) {
                            lo = lo.min(first);
                            hi = hi.max(row.iter().rposition(seen).expect("one seen") + 1);
                        }
                    }
                    if lo >= hi {
                        // Every row masked: a zero output, as keys of weight 0.
                        (lo, hi) = (0, 0);
                    }
                    for h in 0..rep {
                        let (r0, r1) = (h * t + p0, h * t + p1);
                        blocks.push(Block { r0, r1, p0, lo, hi });
                    }
                }
                blocks
            })
            .collect()
    }

    /// Probabilities `[r1 - r0, hi - lo]` of one block over its key window.
    fn probabilities(
        &self,
        q: &[f32],
        k: &[f32],
        batch: usize,
        blk: &Block,
        dims: &Dims,
    ) -> Vec<f32> {
        let (d, big_t) = (dims.d, dims.big_t);
        let (n, w) = (blk.r1 - blk.r0, blk.hi - blk.lo);
        let mut p = vec![0f32; n * w];
        if w == 0 {
            return p;
        }
        let (qb, kw) = (&q[blk.r0 * d..blk.r1 * d], &k[blk.lo * d..blk.hi * d]);
        matmul(&mut p, (qb, false), (kw, true), (n, w, d));
        for (r, row) in p.chunks_mut(w).enumerate() {
            let mask = &self.mask_row(batch, blk.p0 + r, big_t)[blk.lo..blk.hi];
            for (x, m) in row.iter_mut().zip(mask) {
                *x += m;
            }
            // Masked positions inside the window come out as 0.
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
            heads_per_batch: q[1],
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
        let blocks = self.blocks(&dims);
        let mut out = vec![0f32; dims.groups * rows * d];
        out.par_chunks_mut(rows * d).enumerate().for_each(|(g, o)| {
            let batch = g / dims.heads_per_batch;
            let qg = &q[g * rows * d..(g + 1) * rows * d];
            let kg = &k[g * big_t * d..(g + 1) * big_t * d];
            let vg = &v[g * big_t * d..(g + 1) * big_t * d];
            for blk in &blocks[batch] {
                let p = self.probabilities(qg, kg, batch, blk, &dims);
                let (ob, vw) = (&mut o[blk.r0 * d..blk.r1 * d], &vg[blk.lo * d..blk.hi * d]);
                matmul(
                    ob,
                    (&p, false),
                    (vw, false),
                    (blk.r1 - blk.r0, d, blk.hi - blk.lo),
                );
            }
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
        let blocks = self.blocks(&dims);
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
                let batch = g / dims.heads_per_batch;
                let (qs, ks) = (
                    g * rows * d..(g + 1) * rows * d,
                    g * big_t * d..(g + 1) * big_t * d,
                );
                let (qg, kg, vg) = (&q[qs.clone()], &k[ks.clone()], &v[ks]);
                let (og, gg) = (&out[qs.clone()], &grad[qs]);
                for blk in &blocks[batch] {
                    let (n, w) = (blk.r1 - blk.r0, blk.hi - blk.lo);
                    if w == 0 {
                        continue;
                    }
                    let rs = blk.r0 * d..blk.r1 * d;
                    let ws = blk.lo * d..blk.hi * d;
                    let (qb, ob, gb) = (&qg[rs.clone()], &og[rs.clone()], &gg[rs.clone()]);
                    let (kw, vw) = (&kg[ws.clone()], &vg[ws.clone()]);
                    let mut p = self.probabilities(qg, kg, batch, blk, &dims);
                    // dV += Pᵀ dO
                    matmul_acc(&mut dvg[ws.clone()], (&p, true), (gb, false), (w, d, n));
                    // dP = dO Vᵀ, then dS = P ⊙ (dP - rowsum(dO ⊙ O)), in place of P.
                    let mut dp = vec![0f32; n * w];
                    matmul(&mut dp, (gb, false), (vw, true), (n, w, d));
                    for r in 0..n {
                        let dot = vmath::dot(&ob[r * d..(r + 1) * d], &gb[r * d..(r + 1) * d]);
                        let (pr, dpr) = (&mut p[r * w..(r + 1) * w], &dp[r * w..(r + 1) * w]);
                        for (x, y) in pr.iter_mut().zip(dpr) {
                            *x *= y - dot;
                        }
                    }
                    // dQ = dS K, dK += dSᵀ Q
                    matmul(&mut dqg[rs], (&p, false), (kw, false), (n, d, w));
                    matmul_acc(&mut dkg[ws], (&p, true), (qb, false), (w, d, n));
                }
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
        // Blocks of 2 cross block boundaries inside t = 5; 64 is one block.
        let run = |block: usize| {
            let op = FusedAttention {
                block,
                ..FusedAttention::new(Arc::new(mask.clone()), t)
            };
            let fused = q
                .as_tensor()
                .apply_op3(k.as_tensor(), v.as_tensor(), op)
                .unwrap();
            let grads = (&fused * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (fused, grads)
        };

        let mask_t = Tensor::from_vec(mask.clone(), (b, 1, 1, t, big_t), &dev).unwrap();
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
        for block in [1, 2, 3, BLOCK_POSITIONS] {
            let (fused, fused_grads) = run(block);
            close(&fused, &composed, "output");
            for (var, what) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                close(
                    fused_grads.get(var.as_tensor()).unwrap(),
                    composed_grads.get(var.as_tensor()).unwrap(),
                    what,
                );
            }
        }
    }

    fn values_of(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }
}
