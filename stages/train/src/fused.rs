//! Fused CPU kernels with hand-written backward passes for the hot blocks of
//! the decoder: RMSNorm with a frozen weight, rotary embedding, SwiGLU and
//! cross-entropy (attention is in `attention.rs`, the LM head with its loss in
//! `head.rs`).
//!
//! Composed from primitive ops these blocks are correct but slow to train: each
//! primitive stores its output for backward and adds its own pass over memory
//! (a composed softmax keeps six `[b, heads, t, t]` tensors per layer). Each op
//! here stores only its input or output and computes its gradient in one pass,
//! as unsloth's kernels do. They are used for f32 on the CPU; other dtypes and
//! devices take the composed path in `llama.rs`, which the tests compare against.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::vmath;

pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: only f32 is supported"),
    }
}

/// Run `f` on the f32 data of a contiguous CPU tensor, borrowed, not copied
/// (a frozen weight that is read on every call).
pub(crate) fn with_cpu_f32<R>(
    t: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(c) => f(slice(c, layout, op)?),
        _ => candle_core::bail!("{op}: the weight is not on the CPU"),
    }
}

/// The f32 data of a contiguous CPU tensor, borrowed while the view lives:
/// a backward pass reads its saved inputs in place instead of copying them.
pub(crate) struct F32View<'a> {
    storage: candle_core::StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl<'a> F32View<'a> {
    /// `t` must be contiguous (call `.contiguous()` first; it is free when it is).
    pub(crate) fn new(t: &'a Tensor, op: &str) -> Result<F32View<'a>> {
        let (storage, layout) = t.storage_and_layout();
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input not contiguous")))?;
        match &*storage {
            candle_core::Storage::Cpu(CpuStorage::F32(_)) => Ok(F32View {
                storage,
                range: start..end,
            }),
            _ => candle_core::bail!("{op}: only f32 on the CPU is supported"),
        }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        match &*self.storage {
            candle_core::Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.clone()],
            _ => unreachable!("checked in F32View::new"),
        }
    }
}

/// Rows processed per rayon task: large enough to amortize scheduling.
fn rows_per_task(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

/// `y = x / rms(x) * w` over the last dim, `w` frozen.
pub struct RmsNorm {
    pub weight: Arc<Vec<f32>>,
    pub eps: f32,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let n = self.weight.len();
        let w = &self.weight;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n * rows_per_task(n))
            .zip(x.par_chunks(n * rows_per_task(n)))
            .for_each(|(yc, xc)| {
                for (yr, xr) in yc.chunks_mut(n).zip(xc.chunks(n)) {
                    let ms = vmath::dot(xr, xr) / n as f32;
                    vmath::scale_mul(yr, xr, w, 1.0 / (ms + self.eps).sqrt());
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let (xv, gv) = (
            F32View::new(arg, self.name())?,
            F32View::new(&grad, self.name())?,
        );
        let (x, g) = (xv.as_slice(), gv.as_slice());
        let n = self.weight.len();
        let w = &self.weight;
        let mut dx = vec![0f32; x.len()];
        let chunk = n * rows_per_task(n);
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(dc, (xc, gc))| {
                for ((dr, xr), gr) in dc.chunks_mut(n).zip(xc.chunks(n)).zip(gc.chunks(n)) {
                    let ms = vmath::dot(xr, xr) / n as f32;
                    let r = 1.0 / (ms + self.eps).sqrt();
                    let k = r * r * r * vmath::dot3(w, gr, xr) / n as f32;
                    vmath::rms_norm_grad(dr, xr, w, gr, r, k);
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Rotary embedding (half-split layout) and a scale, fused with the move to
/// head-major layout: `[b, t, heads, d]` (a projection's output) in,
/// `[b, heads, t, d]` out. `cos`/`sin` are `[b * t, d / 2]`. The backward is
/// the inverse rotation, scaled, moved back to `[b, t, heads, d]`.
///
/// Separately, the move, the rotation and the query's `1/sqrt(d)` scale
/// were three ops, each keeping its own copy of q in the graph.
pub struct Rope {
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
    pub scale: f32,
}

/// `y = scale · rotate(x)` for one position's head vector (`inverse`
/// rotates by the negative angle).
fn rotate_into(y: &mut [f32], x: &[f32], c: &[f32], s: &[f32], scale: f32, inverse: bool) {
    let half = c.len();
    let sign = if inverse { -scale } else { scale };
    for i in 0..half {
        let (x1, x2) = (x[i], x[i + half]);
        let (ci, si) = (scale * c[i], sign * s[i]);
        y[i] = x1 * ci - x2 * si;
        y[i + half] = x2 * ci + x1 * si;
    }
}

impl Rope {
    /// `cos` and `sin` of one position (`row` of `[b * t]`).
    fn angles(&self, row: usize, half: usize) -> (&[f32], &[f32]) {
        let at = row * half..(row + 1) * half;
        (&self.cos[at.clone()], &self.sin[at])
    }

    /// `[b, t, h, d]` -> rotated, scaled `[b, h, t, d]`.
    fn forward(&self, x: &[f32], (b, t, h, d): (usize, usize, usize, usize)) -> Vec<f32> {
        let half = d / 2;
        let mut y = vec![0f32; b * t * h * d];
        y.par_chunks_mut(t * d).enumerate().for_each(|(bh, yc)| {
            let (bi, hi) = (bh / h, bh % h);
            for p in 0..t {
                let row = bi * t + p;
                let at = (row * h + hi) * d;
                let (c, s) = self.angles(row, half);
                let y = &mut yc[p * d..(p + 1) * d];
                rotate_into(y, &x[at..at + d], c, s, self.scale, false);
            }
        });
        y
    }

    /// The gradient `[b, h, t, d]` -> `[b, t, h, d]`.
    fn backward(&self, g: &[f32], (b, t, h, d): (usize, usize, usize, usize)) -> Vec<f32> {
        let half = d / 2;
        let mut dx = vec![0f32; b * t * h * d];
        dx.par_chunks_mut(h * d).enumerate().for_each(|(row, dc)| {
            let (bi, p) = (row / t, row % t);
            for hi in 0..h {
                let at = ((bi * h + hi) * t + p) * d;
                let (c, s) = self.angles(row, half);
                let dx = &mut dc[hi * d..(hi + 1) * d];
                rotate_into(dx, &g[at..at + d], c, s, self.scale, true);
            }
        });
        dx
    }
}

fn dims4(dims: &[usize], op: &str) -> Result<(usize, usize, usize, usize)> {
    match dims {
        &[b, t, h, d] if d % 2 == 0 => Ok((b, t, h, d)),
        _ => candle_core::bail!("{op}: expected [b, t, heads, even d], got {dims:?}"),
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let (b, t, h, d) = dims4(l.dims(), self.name())?;
        if self.cos.len() != b * t * d / 2 {
            candle_core::bail!("fused-rope: cos/sin do not fit [{b}, {t}, {h}, {d}]");
        }
        let y = self.forward(x, (b, t, h, d));
        Ok((CpuStorage::F32(y), Shape::from((b, h, t, d))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let g = F32View::new(&grad, self.name())?;
        let dx = self.backward(g.as_slice(), dims4(arg.dims(), self.name())?);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `silu(gate) * up`.
pub struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let mut y = vec![0f32; g.len()];
        y.par_chunks_mut(16384)
            .zip(g.par_chunks(16384).zip(u.par_chunks(16384)))
            .for_each(|(yc, (gc, uc))| vmath::swiglu(yc, gc, uc));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let views = [gate, up, &grad].map(|t| F32View::new(t, self.name()));
        let [g, u, d] = views;
        let (g, u, d) = (g?, u?, d?);
        let (g, u, d) = (g.as_slice(), u.as_slice(), d.as_slice());
        let mut dg = vec![0f32; g.len()];
        let mut du = vec![0f32; g.len()];
        dg.par_chunks_mut(16384)
            .zip(du.par_chunks_mut(16384))
            .zip(g.par_chunks(16384).zip(u.par_chunks(16384)))
            .zip(d.par_chunks(16384))
            .for_each(|(((dgc, duc), (gc, uc)), dc)| vmath::swiglu_grad(dgc, duc, gc, uc, dc));
        let dev = gate.device();
        Ok((
            Some(Tensor::from_vec(dg, gate.shape(), dev)?),
            Some(Tensor::from_vec(du, up.shape(), dev)?),
        ))
    }
}

/// `Σ_rows (logsumexp(logits) - logits[target])` as a scalar; the backward
/// recomputes the softmax from the logits instead of storing log-probs.
pub struct CrossEntropySum {
    pub targets: Arc<Vec<u32>>,
}

impl CustomOp1 for CrossEntropySum {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let v = l.dims()[1];
        let losses: Vec<f64> = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|z| ((z - max) as f64).exp()).sum();
                max as f64 + sum.ln() - row[t as usize] as f64
            })
            .collect();
        // Summed in row order so the result does not depend on the thread count.
        let total: f64 = losses.iter().sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let xv = F32View::new(arg, self.name())?;
        let x = xv.as_slice();
        let g = grad.flatten_all()?.to_vec1::<f32>()?[0];
        let v = arg.dim(1)?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(v)
            .zip(x.par_chunks(v).zip(self.targets.par_iter()))
            .for_each(|(dr, (row, &t))| {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for (d, z) in dr.iter_mut().zip(row) {
                    *d = (z - max).exp();
                    sum += *d;
                }
                let k = g / sum;
                for d in dr.iter_mut() {
                    *d *= k;
                }
                dr[t as usize] -= g;
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}
