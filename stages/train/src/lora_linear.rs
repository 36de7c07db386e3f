//! A frozen projection and its LoRA pair as one op:
//! `y = x Wᵀ + bias + scale · (x ⊙ mask) Aᵀ Bᵀ`.
//!
//! Composed from candle ops, an adapted projection leaves four `[rows, out]`
//! tensors in the graph (the frozen product, the LoRA product, its scaled copy
//! and the sum) and makes three extra passes over them; over the seven
//! projections of a layer that was half of the activation memory of a
//! training step. This op writes one output buffer, keeps nothing but its
//! inputs (the graph already holds them), and recomputes the rank-sized
//! product `x Aᵀ` in backward, which costs `rank / out` of the forward.
//!
//! The backward gives the input gradient and the gradients of A and B, never
//! the frozen weight's (see [`crate::frozen`]).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::frozen::{matmul, matmul_acc, matmul_new, parallelism};
use crate::fused::{F32View, slice, with_cpu_f32};

/// `x [rows, in] -> [rows, out]`; the op's arguments are `x`, `A [rank, in]`
/// and `B [out, rank]`. f32 on the CPU only.
pub struct LoraLinear {
    /// `[out, in]`, contiguous, not a variable.
    pub weight: Tensor,
    /// `[out]`, frozen.
    pub bias: Option<Tensor>,
    pub scale: f32,
    /// Dropout on the adapter's input: `0` or `1 / (1 - p)` per element of
    /// `x`, `None` without dropout.
    pub mask: Option<Arc<Vec<f32>>>,
}

/// The adapter's input: `x ⊙ mask`, or `x` itself without dropout.
fn adapter_input<'a>(x: &'a [f32], mask: Option<&[f32]>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match mask {
        None => x,
        Some(m) => {
            buf.clear();
            buf.extend(x.iter().zip(m).map(|(x, m)| x * m));
            buf
        }
    }
}

impl LoraLinear {
    fn check_mask(&self, elems: usize) -> Result<Option<&[f32]>> {
        match &self.mask {
            Some(m) if m.len() != elems => {
                candle_core::bail!("lora-linear: mask has {} values, x {elems}", m.len())
            }
            m => Ok(m.as_deref().map(Vec::as_slice)),
        }
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sa: &CpuStorage,
        la: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(sx, lx, self.name())?;
        let (a, b) = (slice(sa, la, self.name())?, slice(sb, lb, self.name())?);
        let (out, inner) = self.weight.dims2()?;
        let (rank, a_in) = la.shape().dims2()?;
        if a_in != inner || lb.shape().dims2()? != (out, rank) {
            candle_core::bail!(
                "lora-linear: A {:?} and B {:?} do not fit W [{out}, {inner}]",
                la.shape(),
                lb.shape()
            );
        }
        let rows = x.len() / inner;
        let mask = self.check_mask(x.len())?;

        let par = parallelism();
        let mut y = with_cpu_f32(&self.weight, "lora-linear (weight)", |w| {
            Ok(matmul_new((x, false), (w, true), (rows, out, inner), par))
        })?;
        if let Some(bias) = &self.bias {
            with_cpu_f32(bias, "lora-linear (bias)", |bias| {
                y.par_chunks_mut(out)
                    .for_each(|row| row.iter_mut().zip(bias).for_each(|(y, b)| *y += b));
                Ok(())
            })?;
        }
        let mut buf = Vec::new();
        let xd = adapter_input(x, mask, &mut buf);
        let mut low = vec![0f32; rows * rank];
        matmul(
            &mut low,
            (xd, false),
            (a, true),
            (rows, rank, inner),
            parallelism(),
        );
        matmul_acc(
            &mut y,
            (&low, false),
            (b, true),
            (rows, out, rank),
            self.scale,
            parallelism(),
        );

        let mut dims = lx.dims().to_vec();
        *dims.last_mut().expect("a matrix") = out;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x_t: &Tensor,
        a_t: &Tensor,
        b_t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inner) = self.weight.dims2()?;
        let (rank, _) = a_t.dims2()?;
        let grad = grad.contiguous()?;
        let views = [x_t, a_t, b_t, &grad, &self.weight].map(|t| F32View::new(t, self.name()));
        let [x, a, b, g, w] = views;
        let (x, a, b, g, w) = (x?, a?, b?, g?, w?);
        let (dx, da, db) = self.backward(
            x.as_slice(),
            a.as_slice(),
            b.as_slice(),
            g.as_slice(),
            w.as_slice(),
            (out, inner, rank),
            x_t.track_op(),
        );
        let dev = x_t.device();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, x_t.shape(), dev))
                .transpose()?,
            Some(Tensor::from_vec(da, a_t.shape(), dev)?),
            Some(Tensor::from_vec(db, b_t.shape(), dev)?),
        ))
    }
}

impl LoraLinear {
    /// `(dx, dA, dB)` for the upstream gradient `g [rows, out]`; `dx` only
    /// `with_dx`: the first layer's input (the embedding of frozen weights)
    /// needs none, and skipping it saves a full-size product there.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        x: &[f32],
        a: &[f32],
        b: &[f32],
        g: &[f32],
        w: &[f32],
        (out, inner, rank): (usize, usize, usize),
        with_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let rows = x.len() / inner;
        // `check_mask` passed in forward, for the same x.
        let mask = self.mask.as_deref().map(Vec::as_slice);
        let mut buf = Vec::new();
        let xd = adapter_input(x, mask, &mut buf);
        let par = parallelism();

        // d(low) = scale · g B, the gradient at the rank-sized product.
        let mut dlow = vec![0f32; rows * rank];
        matmul_acc(
            &mut dlow,
            (g, false),
            (b, false),
            (rows, rank, out),
            self.scale,
            par,
        );
        let mut low = vec![0f32; rows * rank];
        matmul(&mut low, (xd, false), (a, true), (rows, rank, inner), par);

        // dA = d(low)ᵀ xd; dB = scale · gᵀ low.
        let mut da = vec![0f32; rank * inner];
        matmul(
            &mut da,
            (&dlow, true),
            (xd, false),
            (rank, inner, rows),
            par,
        );
        let mut db = vec![0f32; out * rank];
        matmul_acc(
            &mut db,
            (g, true),
            (&low, false),
            (out, rank, rows),
            self.scale,
            par,
        );

        if !with_dx {
            return (None, da, db);
        }
        // dx = g W + (d(low) A) ⊙ mask.
        let mut dx = matmul_new((g, false), (w, false), (rows, inner, out), par);
        match mask {
            None => matmul_acc(
                &mut dx,
                (&dlow, false),
                (a, false),
                (rows, inner, rank),
                1.0,
                par,
            ),
            Some(m) => {
                let mut dxd = vec![0f32; rows * inner];
                matmul(
                    &mut dxd,
                    (&dlow, false),
                    (a, false),
                    (rows, inner, rank),
                    par,
                );
                dx.par_iter_mut()
                    .zip(dxd.par_iter().zip(m.par_iter()))
                    .for_each(|(dx, (d, m))| *dx += d * m);
            }
        }
        (Some(dx), da, db)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n)
            .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Output and the gradients of x, A and B against composed candle ops,
    /// with a bias, a dropout mask and an upstream gradient that is not 1.
    fn check(with_bias: bool, with_mask: bool) {
        let dev = Device::Cpu;
        let (rows, inner, out, rank) = (13, 24, 17, 4);
        let scale = 1.75f32;
        let w = Tensor::from_vec(values(out * inner, 1), (out, inner), &dev).unwrap();
        let bias = with_bias.then(|| Tensor::from_vec(values(out, 2), out, &dev).unwrap());
        let mask: Option<Vec<f32>> = with_mask.then(|| {
            (0..rows * inner)
                .map(|i| if i % 3 == 0 { 0.0 } else { 1.5 })
                .collect()
        });
        let x = Var::from_vec(values(rows * inner, 3), (rows, inner), &dev).unwrap();
        let a = Var::from_vec(values(rank * inner, 4), (rank, inner), &dev).unwrap();
        let b = Var::from_vec(values(out * rank, 5), (out, rank), &dev).unwrap();
        let up = Tensor::from_vec(values(rows * out, 6), (rows, out), &dev).unwrap();

        let op = LoraLinear {
            weight: w.clone(),
            bias: bias.clone(),
            scale,
            mask: mask.clone().map(Arc::new),
        };
        let fused = x.as_tensor().apply_op3(&a, &b, op).unwrap();

        let xd = match &mask {
            Some(m) => {
                (x.as_tensor() * Tensor::from_vec(m.clone(), (rows, inner), &dev).unwrap()).unwrap()
            }
            None => x.as_tensor().clone(),
        };
        let mut composed = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        if let Some(bias) = &bias {
            composed = composed.broadcast_add(bias).unwrap();
        }
        let lora = xd
            .matmul(&a.t().unwrap())
            .unwrap()
            .matmul(&b.t().unwrap())
            .unwrap();
        let composed = (composed + lora.affine(scale as f64, 0.0).unwrap()).unwrap();

        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let close = |p: &[f32], q: &[f32], what: &str| {
            let scale = q.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{what} is all zeros");
            for (u, v) in p.iter().zip(q) {
                assert!((u - v).abs() < 1e-5 * scale, "{what}: {u} vs {v}");
            }
        };
        close(&flat(&fused), &flat(&composed), "output");
        let gf = (fused * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gc = (composed * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (var, what) in [(&x, "dx"), (&a, "dA"), (&b, "dB")] {
            let t = var.as_tensor();
            close(&flat(gf.get(t).unwrap()), &flat(gc.get(t).unwrap()), what);
        }
    }

    #[test]
    fn matches_the_composed_projection() {
        check(false, false);
    }

    #[test]
    fn matches_the_composed_projection_with_bias_and_dropout() {
        check(true, true);
        check(true, false);
        check(false, true);
    }
}
