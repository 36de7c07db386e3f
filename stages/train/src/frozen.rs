//! The frozen projection `y = x Wᵀ` as a custom op whose backward returns only
//! the input gradient `grad · W`.
//!
//! Candle's matmul backward always computes the gradient of both operands; for
//! a frozen base weight that is a full `[out, in]` matmul per projection whose
//! result is thrown away: most of LoRA's backward time and memory. This op keeps
//! the weight out of the graph altogether.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::fused::with_cpu_f32;

/// `x [rows, in] -> x Wᵀ [rows, out]` with `W [out, in]` held outside the graph.
pub struct FrozenLinear {
    /// `[out, in]`, contiguous, not a variable.
    pub weight: Tensor,
}

/// `x Wᵀ` for f64 (the finite-difference tests) through candle's matmul.
fn rows_matmul_f64(x: Tensor, w: &Tensor) -> Result<(CpuStorage, Shape)> {
    let y = x.matmul(&w.t()?)?;
    let shape = y.shape().clone();
    Ok((CpuStorage::F64(y.flatten_all()?.to_vec1::<f64>()?), shape))
}

impl FrozenLinear {
    /// `x Wᵀ` written straight into the output buffer: no copy of the input
    /// into a tensor and none of the product out of one.
    fn forward_f32(&self, x: &[f32], layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (out, inner) = self.weight.dims2()?;
        let rows = x.len() / inner;
        let y = with_cpu_f32(&self.weight, "frozen-linear (weight)", |w| {
            Ok(matmul_new(
                (x, false),
                (w, true),
                (rows, out, inner),
                parallelism(),
            ))
        })?;
        let mut dims = layout.dims().to_vec();
        *dims.last_mut().expect("a matrix") = out;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: input not contiguous".into()))?;
        match storage {
            CpuStorage::F32(v) => self.forward_f32(&v[start..end], layout),
            // f64 is copied into a plain tensor so candle's matmul serves it.
            CpuStorage::F64(v) => rows_matmul_f64(
                Tensor::from_slice(&v[start..end], layout.shape(), &candle_core::Device::Cpu)?,
                &self.weight,
            ),
            _ => candle_core::bail!("frozen-linear: only f32 and f64 are supported"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.matmul(&self.weight)?))
    }
}

/// `dst [m, n] = op(a) · op(b)`, row-major: `a` is `[m, k]` (`[k, m]` when
/// `a_t`), `b` is `[k, n]` (`[n, k]` when `b_t`). With [`matmul_acc`], the
/// one place that calls gemm (the kernel candle's own matmul uses on the CPU)
/// directly.
pub(crate) fn matmul(
    dst: &mut [f32],
    a: (&[f32], bool),
    b: (&[f32], bool),
    dims: (usize, usize, usize),
    parallelism: gemm::Parallelism,
) {
    gemm_into(dst, a, b, dims, None, parallelism)
}

/// `dst [m, n] += scale · op(a) · op(b)`, in the layout of [`matmul`].
pub(crate) fn matmul_acc(
    dst: &mut [f32],
    a: (&[f32], bool),
    b: (&[f32], bool),
    dims: (usize, usize, usize),
    scale: f32,
    parallelism: gemm::Parallelism,
) {
    gemm_into(dst, a, b, dims, Some(scale), parallelism)
}

/// `op(a) · op(b)` as a new `[m, n]` buffer.
///
/// The buffer is zeroed first although gemm overwrites it: handing gemm
/// uninitialized memory (tried, to save the memset) made resumed training
/// runs differ in the last bits from uninterrupted ones, so some gemm path
/// reads the destination it was told not to.
pub(crate) fn matmul_new(
    a: (&[f32], bool),
    b: (&[f32], bool),
    dims: (usize, usize, usize),
    parallelism: gemm::Parallelism,
) -> Vec<f32> {
    let mut dst = vec![0f32; dims.0 * dims.1];
    gemm_into(&mut dst, a, b, dims, None, parallelism);
    dst
}

/// `dst = op(a) op(b)`, or `dst += scale · op(a) op(b)` with `accumulate`.
fn gemm_into(
    dst: &mut [f32],
    (a, a_t): (&[f32], bool),
    (b, b_t): (&[f32], bool),
    (m, n, k): (usize, usize, usize),
    accumulate: Option<f32>,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    let (a_rs, a_cs) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // gemm computes `alpha · dst + beta · a b`, reading dst only when asked.
    let (read_dst, beta) = match accumulate {
        Some(scale) => (true, scale),
        None => (false, 1.0),
    };
    // SAFETY: the assert bounds every index these sizes and strides reach;
    // `dst` is a unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The parallelism of candle's thread count (`RAYON_NUM_THREADS`).
pub(crate) fn parallelism() -> gemm::Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// [`matmul`] over candle's thread count (`RAYON_NUM_THREADS`).
pub(crate) fn matmul_parallel(
    dst: &mut [f32],
    a: (&[f32], bool),
    b: (&[f32], bool),
    dims: (usize, usize, usize),
) {
    matmul(dst, a, b, dims, parallelism())
}
