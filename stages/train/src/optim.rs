//! AdamW over flat `f32` buffers and learning-rate schedules.
//!
//! The adapter is small (millions of numbers, not billions), so the update runs
//! on plain vectors: exact PyTorch semantics, bit-stable, and trivially saved
//! into checkpoints.

use serde::{Deserialize, Serialize};

/// PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments).
#[derive(Debug, Clone)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// First and second moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    pub fn new(sizes: &[usize], beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
            m: sizes.iter().map(|n| vec![0.0; *n]).collect(),
            v: sizes.iter().map(|n| vec![0.0; *n]).collect(),
        }
    }

    /// One update; `step` counts from 1.
    pub fn update(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f64, step: u64) {
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let bc1 = 1.0 - self.beta1.powi(step as i32);
        let bc2 = 1.0 - self.beta2.powi(step as i32);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = self.eps as f32;
        let decay = (1.0 - lr * self.weight_decay) as f32;
        for (i, p) in params.iter_mut().enumerate() {
            let (m, v, g) = (&mut self.m[i], &mut self.v[i], &grads[i]);
            for j in 0..p.len() {
                p[j] *= decay;
                m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                let denom = v[j].sqrt() / bc2_sqrt + eps;
                p[j] -= step_size * m[j] / denom;
            }
        }
    }
}

/// Shape of the learning rate after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// Learning rate for 0-based `step` of `total`, as Hugging Face's
/// `get_{constant,linear,cosine}_schedule_with_warmup` (linear warmup from 0).
pub fn lr_at(schedule: Schedule, base: f64, step: u64, total: u64, warmup: u64) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()).max(0.0),
    }
}

/// Scale gradients so their global L2 norm is at most `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: Option<f64>) -> f64 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if let Some(max) = max_norm {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                for x in g.iter_mut() {
                    *x = (*x as f64 * coef) as f32;
                }
            }
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_and_decay() {
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 10, 2), 0.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 1, 10, 2), 0.5);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 2, 10, 2), 1.0);
        assert!((lr_at(Schedule::Linear, 1.0, 6, 10, 2) - 0.5).abs() < 1e-12);
        assert!((lr_at(Schedule::Cosine, 1.0, 6, 10, 2) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 1.0, 9, 10, 2), 1.0);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_and_clip_caps_norm() {
        // First Adam step: m/sqrt(v) = sign(g), so each weight moves by lr.
        let mut opt = AdamW::new(&[2], 0.9, 0.999, 1e-8, 0.0);
        let mut p = vec![vec![1.0f32, 1.0]];
        opt.update(&mut p, &[vec![0.5, -3.0]], 0.1, 1);
        assert!((p[0][0] - 0.9).abs() < 1e-6 && (p[0][1] - 1.1).abs() < 1e-6);
        let mut g = vec![vec![3.0f32, 4.0]];
        assert_eq!(clip_global_norm(&mut g, Some(1.0)), 5.0);
        assert!((g[0][0] - 0.6).abs() < 1e-5 && (g[0][1] - 0.8).abs() < 1e-5);
    }
}
