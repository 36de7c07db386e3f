//! The LM head and the cross-entropy loss as one op, in blocks of rows.
//!
//! Composed, the head writes `[rows, vocab]` logits (a 49,152-word vocabulary
//! makes that 200 MB for 1,024 trained tokens), the loss keeps them for its
//! backward, and the backward writes a second tensor of that size before the
//! frozen head turns it into the `[rows, hidden]` input gradient. Here each
//! block of rows goes through logits, loss and `(softmax - onehot) · W` at
//! once, and only the last, hidden-sized result is kept: the loss is the end
//! of the graph, so its upstream gradient is a scalar that backward applies.
//! Same products as the composed path, a fraction of its memory.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::frozen::matmul_parallel;
use crate::fused::{slice, with_cpu_f32};
use crate::vmath;

/// Rows of the hidden state per block: a `[block, vocab]` scratch of a few MB
/// that gives the matmuls enough rows to run at full speed.
const BLOCK_ROWS: usize = 128;

/// `Σ_rows (logsumexp(h Wᵀ) - (h Wᵀ)[target])` over `h [rows, hidden]`, with
/// the head `W [vocab, hidden]` frozen. f32 on the CPU.
pub struct HeadCrossEntropy {
    /// `[vocab, hidden]`, contiguous f32 on the CPU.
    pub weight: Tensor,
    /// One target id per row of `h`.
    pub targets: Arc<Vec<u32>>,
    /// `(softmax - onehot) · W` per row, filled by the forward pass.
    grad_per_unit: Mutex<Vec<f32>>,
}

impl HeadCrossEntropy {
    pub fn new(weight: Tensor, targets: Arc<Vec<u32>>) -> Self {
        Self {
            weight,
            targets,
            grad_per_unit: Mutex::new(Vec::new()),
        }
    }
}

impl HeadCrossEntropy {
    /// Losses and `(softmax - onehot) · W` of the rows of `h [rows, hidden]`,
    /// with `w [vocab, hidden]`, one block of rows at a time.
    fn blocks(&self, h: &[f32], w: &[f32], hidden: usize, losses: &mut [f64], grad: &mut [f32]) {
        let (rows, vocab) = (losses.len(), w.len() / hidden);
        let mut probs = vec![0f32; BLOCK_ROWS.min(rows) * vocab];
        for start in (0..rows).step_by(BLOCK_ROWS) {
            let m = BLOCK_ROWS.min(rows - start);
            let block = &mut probs[..m * vocab];
            let h_block = &h[start * hidden..(start + m) * hidden];
            matmul_parallel(block, (h_block, false), (w, true), (m, vocab, hidden));
            // Logits -> loss and softmax - onehot, one row per task.
            block
                .par_chunks_mut(vocab)
                .zip(losses[start..start + m].par_iter_mut())
                .zip(self.targets[start..start + m].par_iter())
                .for_each(|((row, loss), &t)| {
                    let max = vmath::max(row);
                    let target_logit = row[t as usize];
                    let sum = vmath::exp_shifted(row, max);
                    *loss = max as f64 + sum.ln() - target_logit as f64;
                    vmath::scale(row, (1.0 / sum) as f32);
                    row[t as usize] -= 1.0;
                });
            matmul_parallel(
                &mut grad[start * hidden..(start + m) * hidden],
                (block, false),
                (w, false),
                (m, hidden, vocab),
            );
        }
    }
}

impl CustomOp1 for HeadCrossEntropy {
    fn name(&self) -> &'static str {
        "head-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = slice(s, l, "head-cross-entropy (hidden state)")?;
        let hidden = self.weight.dim(1)?;
        let rows = h.len() / hidden;
        if rows != self.targets.len() {
            candle_core::bail!(
                "head-cross-entropy: {rows} rows but {} targets",
                self.targets.len()
            );
        }
        let mut grad = vec![0f32; rows * hidden];
        let mut losses = vec![0f64; rows];
        with_cpu_f32(&self.weight, "head-cross-entropy (weight)", |w| {
            self.blocks(h, w, hidden, &mut losses, &mut grad);
            Ok(())
        })?;
        *self.grad_per_unit.lock().expect("not poisoned") = grad;
        // Summed in row order so the result does not depend on the thread count.
        let total: f64 = losses.iter().sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.flatten_all()?.to_vec1::<f32>()?[0];
        let mut dh = std::mem::take(&mut *self.grad_per_unit.lock().expect("not poisoned"));
        if dh.len() != arg.elem_count() {
            candle_core::bail!("head-cross-entropy: backward without a forward pass");
        }
        if g != 1.0 {
            dh.par_iter_mut().for_each(|d| *d *= g);
        }
        Ok(Some(Tensor::from_vec(dh, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Var};

    use super::*;

    /// Loss and gradient against logits -> log_softmax -> gather, over more
    /// rows than one block so the block boundary is crossed.
    #[test]
    fn matches_the_composed_head_and_loss() {
        let dev = Device::Cpu;
        let (rows, hidden, vocab) = (BLOCK_ROWS + 9, 16, 37);
        let values = |n: usize, seed: u64| -> Vec<f32> {
            let mut rng = crate::rng::Rng::new(seed);
            (0..n)
                .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let w = Tensor::from_vec(values(vocab * hidden, 1), (vocab, hidden), &dev).unwrap();
        let targets: Vec<u32> = (0..rows as u32)
            .map(|i| (i * 7 + 3) % vocab as u32)
            .collect();
        let h = Var::from_vec(values(rows * hidden, 2), (rows, hidden), &dev).unwrap();

        // Scaled by 0.5 so the upstream gradient is not 1.
        let fused = (h
            .as_tensor()
            .apply_op1(HeadCrossEntropy::new(w.clone(), Arc::new(targets.clone())))
            .unwrap()
            * 0.5)
            .unwrap();
        let fused_grad = fused
            .backward()
            .unwrap()
            .get(h.as_tensor())
            .unwrap()
            .clone();

        let logits = h.as_tensor().matmul(&w.t().unwrap()).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let t = Tensor::from_vec(targets, (rows, 1), &dev).unwrap();
        let composed = (logp
            .gather(&t, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap()
            * 0.5)
            .unwrap();
        let composed_grad = composed
            .backward()
            .unwrap()
            .get(h.as_tensor())
            .unwrap()
            .clone();

        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-4 * b.abs(), "loss {a} vs {b}");
        let a = fused_grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = composed_grad
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5 * scale, "{x} vs {y}");
        }
    }
}
