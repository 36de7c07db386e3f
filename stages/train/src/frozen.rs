//! The frozen projection `y = x Wᵀ` as a custom op whose backward returns only
//! the input gradient `grad · W`.
//!
//! Candle's matmul backward always computes the gradient of both operands; for
//! a frozen base weight that is a full `[out, in]` matmul per projection whose
//! result is thrown away: most of LoRA's backward time and memory. This op keeps
//! the weight out of the graph altogether.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// `x [rows, in] -> x Wᵀ [rows, out]` with `W [out, in]` held outside the graph.
pub struct FrozenLinear {
    /// `[out, in]`, contiguous, not a variable.
    pub weight: Tensor,
}

fn rows_matmul(x: Tensor, w: &Tensor) -> Result<(CpuStorage, Shape)> {
    let y = x.matmul(&w.t()?)?;
    let shape = y.shape().clone();
    let storage = match y.dtype() {
        candle_core::DType::F64 => CpuStorage::F64(y.flatten_all()?.to_vec1::<f64>()?),
        _ => CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
    };
    Ok((storage, shape))
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: input not contiguous".into()))?;
        let dev = candle_core::Device::Cpu;
        // The input is copied into a plain tensor so the matmul runs on candle's
        // gemm; the copy is O(activations), small next to the O(activations x out) product.
        let x = match storage {
            CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], layout.shape(), &dev)?,
            CpuStorage::F64(v) => Tensor::from_slice(&v[start..end], layout.shape(), &dev)?,
            _ => candle_core::bail!("frozen-linear: only f32 and f64 are supported"),
        };
        rows_matmul(x, &self.weight)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.matmul(&self.weight)?))
    }
}
