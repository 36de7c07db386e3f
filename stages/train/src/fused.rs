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

pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
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
                    let ms = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
                    let r = 1.0 / (ms + self.eps).sqrt();
                    for i in 0..n {
                        yr[i] = xr[i] * r * w[i];
                    }
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (values(arg)?, values(grad)?);
        let n = self.weight.len();
        let w = &self.weight;
        let mut dx = vec![0f32; x.len()];
        let chunk = n * rows_per_task(n);
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(dc, (xc, gc))| {
                for ((dr, xr), gr) in dc.chunks_mut(n).zip(xc.chunks(n)).zip(gc.chunks(n)) {
                    let ms = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
                    let r = 1.0 / (ms + self.eps).sqrt();
                    let dot: f32 = (0..n).map(|i| w[i] * gr[i] * xr[i]).sum();
                    let k = r * r * r * dot / n as f32;
                    for i in 0..n {
                        dr[i] = r * w[i] * gr[i] - xr[i] * k;
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Rotary embedding (half-split layout) on `[b, h, t, d]`; `cos`/`sin` are
/// `[b * t, d / 2]`. The backward is the inverse rotation.
pub struct Rope {
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
}

fn rope_apply(x: &[f32], dims: &[usize], cos: &[f32], sin: &[f32], inverse: bool) -> Vec<f32> {
    let (h, t, d) = (dims[1], dims[2], dims[3]);
    let half = d / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(t * d)
        .zip(x.par_chunks(t * d))
        .enumerate()
        .for_each(|(bh, (yc, xc))| {
            let b = bh / h;
            for p in 0..t {
                let c = &cos[(b * t + p) * half..(b * t + p + 1) * half];
                let s = &sin[(b * t + p) * half..(b * t + p + 1) * half];
                let (xr, yr) = (&xc[p * d..(p + 1) * d], &mut yc[p * d..(p + 1) * d]);
                for i in 0..half {
                    let (x1, x2) = (xr[i], xr[i + half]);
                    let si = sign * s[i];
                    yr[i] = x1 * c[i] - x2 * si;
                    yr[i + half] = x2 * c[i] + x1 * si;
                }
            }
        });
    y
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let y = rope_apply(x, l.dims(), &self.cos, &self.sin, false);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = values(grad)?;
        let dx = rope_apply(&g, arg.dims(), &self.cos, &self.sin, true);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `silu(gate) * up`.
pub struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

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
            .for_each(|(yc, (gc, uc))| {
                for i in 0..yc.len() {
                    yc[i] = gc[i] * sigmoid(gc[i]) * uc[i];
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, u, d) = (values(gate)?, values(up)?, values(grad)?);
        let mut dg = vec![0f32; g.len()];
        let mut du = vec![0f32; g.len()];
        dg.par_chunks_mut(16384)
            .zip(du.par_chunks_mut(16384))
            .enumerate()
            .for_each(|(c, (dgc, duc))| {
                let at = c * 16384;
                for i in 0..dgc.len() {
                    let (x, s) = (g[at + i], sigmoid(g[at + i]));
                    duc[i] = d[at + i] * x * s;
                    dgc[i] = d[at + i] * u[at + i] * s * (1.0 + x * (1.0 - s));
                }
            });
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
        let x = values(arg)?;
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
