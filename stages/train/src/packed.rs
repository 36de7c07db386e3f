//! Weights kept in their GGUF block format, for the matrix-vector products of
//! decoding.
//!
//! Generating a token reads every weight once, with one to a few rows per
//! step. A Q4_1 GGUF holds 0.6 bytes a weight where its dequantized f32 copy
//! holds 4, and multiplying straight from the blocks reads a sixth of the
//! bytes. To make the arithmetic as cheap as the reads, the activations are
//! rounded to 8 bits per block of 32 (a scale per block, as llama.cpp does for
//! its quantized dot products), so a block's dot product is one integer
//! multiply-add of 32 bytes by 32 bytes: `d·dx·Σ q·qx + m·dx·Σ qx`. The weights
//! are used exactly as stored; the rounding of the activations moves outputs
//! by about 0.1% of their scale, and is deterministic. (Candle's quantized
//! matmul works the same way but has a SIMD path for Q4_1 only when the whole
//! build targets AVX; this kernel picks AVX2 at run time.)
//!
//! Training never uses these: its forward runs on the f32 weights, which the
//! eval stage also keeps for prompt prefill and scoring (many rows at once,
//! where a blocked f32 matmul is faster).

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Values per block in both formats.
const BLOCK: usize = 32;

/// Rows up to which [`PackedWeight`] beats the f32 matmul (decode steps of a
/// batch); longer inputs (prefill) take the f32 path.
pub const MAX_PACKED_ROWS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// 32 unsigned 4-bit values, `w = d * q + m`.
    Q4_1,
    /// 32 signed 8-bit values, `w = d * q`.
    Q8_0,
}

/// A `[rows, cols]` weight as quantized blocks along `cols`.
pub struct PackedWeight {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    /// `d` of each block, row-major `[rows, cols / 32]`, widened from f16 once.
    scales: Vec<f32>,
    /// `m` of each block (Q4_1 only).
    mins: Vec<f32>,
    /// Q4_1: 16 bytes a block, value `j` in the low nibble of byte `j` and
    /// value `j + 16` in its high nibble. Q8_0: 32 `i8` a block.
    quants: Vec<u8>,
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

impl PackedWeight {
    /// From a GGUF tensor's raw bytes; `None` for formats this kernel does not
    /// read (those stay on the f32 path).
    pub fn from_ggml(dtype: GgmlDType, rows: usize, cols: usize, data: &[u8]) -> Option<Self> {
        let format = match dtype {
            GgmlDType::Q4_1 => BlockFormat::Q4_1,
            GgmlDType::Q8_0 => BlockFormat::Q8_0,
            _ => return None,
        };
        if !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let (block_bytes, quant_bytes) = match format {
            BlockFormat::Q4_1 => (20, 16),
            BlockFormat::Q8_0 => (34, 32),
        };
        if data.len() != blocks * block_bytes {
            return None;
        }
        let mut scales = Vec::with_capacity(blocks);
        let mut mins = Vec::new();
        let mut quants = Vec::with_capacity(blocks * quant_bytes);
        for block in data.chunks_exact(block_bytes) {
            scales.push(f16_at(block, 0));
            let head = match format {
                BlockFormat::Q4_1 => {
                    mins.push(f16_at(block, 2));
                    4
                }
                BlockFormat::Q8_0 => 2,
            };
            quants.extend_from_slice(&block[head..]);
        }
        Some(PackedWeight {
            format,
            rows,
            cols,
            scales,
            mins,
            quants,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    fn quant_bytes(&self) -> usize {
        match self.format {
            BlockFormat::Q4_1 => 16,
            BlockFormat::Q8_0 => 32,
        }
    }

    /// Reorder rows: row `i` of the result is row `order[i]` of `self` (undoes
    /// llama.cpp's Q/K row permutation, which moves whole rows).
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let per_row = self.cols / BLOCK;
        let qb = self.quant_bytes() * per_row;
        let mut out = PackedWeight {
            format: self.format,
            rows: self.rows,
            cols: self.cols,
            scales: Vec::with_capacity(self.scales.len()),
            mins: Vec::with_capacity(self.mins.len()),
            quants: Vec::with_capacity(self.quants.len()),
        };
        for &r in order {
            out.scales
                .extend_from_slice(&self.scales[r * per_row..(r + 1) * per_row]);
            if !self.mins.is_empty() {
                out.mins
                    .extend_from_slice(&self.mins[r * per_row..(r + 1) * per_row]);
            }
            out.quants
                .extend_from_slice(&self.quants[r * qb..(r + 1) * qb]);
        }
        out
    }

    /// The weight as f32 `[rows, cols]` (tests; the loader dequantizes with candle).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.dequantize_block(b, chunk);
        }
        out
    }

    fn dequantize_block(&self, b: usize, out: &mut [f32]) {
        let d = self.scales[b];
        match self.format {
            BlockFormat::Q4_1 => {
                let m = self.mins[b];
                let q = &self.quants[b * 16..b * 16 + 16];
                for j in 0..16 {
                    out[j] = f32::from(q[j] & 0x0F).mul_add(d, m);
                    out[j + 16] = f32::from(q[j] >> 4).mul_add(d, m);
                }
            }
            BlockFormat::Q8_0 => {
                let q = &self.quants[b * 32..b * 32 + 32];
                for j in 0..32 {
                    out[j] = f32::from(q[j] as i8) * d;
                }
            }
        }
    }

    /// `x [n, cols] -> x Wᵀ [n, rows]`, both row-major.
    pub fn matmul_rows(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "packed matmul: input shape");
        let xq = QuantizedRows::new(x, n, self.cols);
        // Each task takes a run of output rows and writes them transposed
        // (`[rows, n]`), so tasks never share a cache line of the output.
        const CHUNK: usize = 64;
        let mut transposed = vec![0f32; self.rows * n];
        transposed
            .par_chunks_mut(CHUNK * n)
            .enumerate()
            .for_each(|(c, out)| {
                let first = c * CHUNK;
                for (i, out_row) in out.chunks_exact_mut(n).enumerate() {
                    self.row_dot(first + i, &xq, out_row);
                }
            });
        let mut y = vec![0f32; n * self.rows];
        for (o, vals) in transposed.chunks_exact(n).enumerate() {
            for (r, v) in vals.iter().enumerate() {
                y[r * self.rows + o] = *v;
            }
        }
        y
    }

    /// `out[r] = x[r] · W[row]` for every input row `r`.
    fn row_dot(&self, row: usize, xq: &QuantizedRows, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the features the function is compiled for were just detected.
                unsafe { avx2::row_dot(self, row, xq, out) };
                return;
            }
        }
        self.row_dot_portable(row, xq, out);
    }

    fn row_dot_portable(&self, row: usize, xq: &QuantizedRows, out: &mut [f32]) {
        let per_row = self.cols / BLOCK;
        for (r, acc) in out.iter_mut().enumerate() {
            let mut sum = 0f32;
            for blk in 0..per_row {
                let b = row * per_row + blk;
                let xb = r * per_row + blk;
                let qx = &xq.quants[xb * BLOCK..][..BLOCK];
                let dot: i32 = match self.format {
                    BlockFormat::Q4_1 => {
                        let q = &self.quants[b * 16..][..16];
                        (0..16)
                            .map(|j| {
                                i32::from(q[j] & 0x0F) * i32::from(qx[j])
                                    + i32::from(q[j] >> 4) * i32::from(qx[j + 16])
                            })
                            .sum()
                    }
                    BlockFormat::Q8_0 => {
                        let q = &self.quants[b * 32..][..32];
                        q.iter()
                            .zip(qx)
                            .map(|(&a, &c)| i32::from(a as i8) * i32::from(c))
                            .sum()
                    }
                };
                sum += dot as f32 * (self.scales[b] * xq.scales[xb]);
                if self.format == BlockFormat::Q4_1 {
                    sum += self.mins[b] * xq.sums[xb];
                }
            }
            *acc = sum;
        }
    }

    /// `x [n, cols]` (any f32 CPU tensor) times `Wᵀ`, as a tensor `[n, rows]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, cols) = x.dims2()?;
        if cols != self.cols {
            return Err(TrainError::Model(format!(
                "packed weight takes {} inputs, got {cols}",
                self.cols
            )));
        }
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let y = self.matmul_rows(&xs, n);
        Ok(Tensor::from_vec(y, (n, self.rows), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}

/// Activation rows rounded to 8 bits per block of 32: `x ≈ scale · q`.
struct QuantizedRows {
    /// `[n, cols]`.
    quants: Vec<i8>,
    /// `[n, cols / 32]`: the block's scale, `max |x| / 127`.
    scales: Vec<f32>,
    /// `[n, cols / 32]`: `scale · Σ q`, the block's sum as the kernel sees it
    /// (multiplies Q4_1's offset `m`).
    sums: Vec<f32>,
}

impl QuantizedRows {
    fn new(x: &[f32], n: usize, cols: usize) -> Self {
        let blocks = n * cols / BLOCK;
        let mut quants = vec![0i8; n * cols];
        let mut scales = Vec::with_capacity(blocks);
        let mut sums = Vec::with_capacity(blocks);
        for (xs, qs) in x.chunks_exact(BLOCK).zip(quants.chunks_exact_mut(BLOCK)) {
            let max = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qs.iter_mut().zip(xs) {
                *q = (v * inv).round() as i8;
                sum += i32::from(*q);
            }
            scales.push(scale);
            sums.push(scale * sum as f32);
        }
        QuantizedRows {
            quants,
            scales,
            sums,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCK, BlockFormat, PackedWeight, QuantizedRows};

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Eight lanes that sum to `Σ a·b` over 32 unsigned bytes `a` and signed
    /// bytes `b`. Adjacent products are first summed in i16, which cannot
    /// overflow here: `a <= 128` and `|b| <= 127`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(a, b);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Block `b`'s 32 quantized weights as bytes, in value order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weights(w: &PackedWeight, b: usize) -> __m256i {
        unsafe {
            match w.format {
                BlockFormat::Q4_1 => {
                    let q = _mm_loadu_si128(w.quants.as_ptr().add(b * 16) as *const __m128i);
                    let mask = _mm_set1_epi8(0x0F);
                    let lo = _mm_and_si128(q, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
                    _mm256_set_m128i(hi, lo)
                }
                BlockFormat::Q8_0 => {
                    _mm256_loadu_si256(w.quants.as_ptr().add(b * 32) as *const __m256i)
                }
            }
        }
    }

    /// `G` input rows from `r0` against one weight row; `G` is a constant so
    /// the accumulators stay in registers.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_dot<const G: usize>(
        w: &PackedWeight,
        row: usize,
        xq: &QuantizedRows,
        r0: usize,
        out: &mut [f32],
    ) {
        unsafe {
            let per_row = w.cols / BLOCK;
            let mut acc = [_mm256_setzero_ps(); G];
            let mut offset = [0f32; G];
            for blk in 0..per_row {
                let b = row * per_row + blk;
                let q = weights(w, b);
                let d = *w.scales.get_unchecked(b);
                // maddubs multiplies unsigned by signed bytes: Q8_0's signed
                // weights move their sign onto the activations.
                let (qa, signs) = match w.format {
                    BlockFormat::Q4_1 => (q, None),
                    BlockFormat::Q8_0 => (_mm256_sign_epi8(q, q), Some(q)),
                };
                for k in 0..G {
                    let xb = (r0 + k) * per_row + blk;
                    let mut x =
                        _mm256_loadu_si256(xq.quants.as_ptr().add(xb * BLOCK) as *const __m256i);
                    if let Some(s) = signs {
                        x = _mm256_sign_epi8(x, s);
                    }
                    let scale = _mm256_set1_ps(d * *xq.scales.get_unchecked(xb));
                    acc[k] = _mm256_fmadd_ps(dot_u8_i8(qa, x), scale, acc[k]);
                    if w.format == BlockFormat::Q4_1 {
                        offset[k] += *w.mins.get_unchecked(b) * *xq.sums.get_unchecked(xb);
                    }
                }
            }
            for k in 0..G {
                out[r0 + k] = hsum(acc[k]) + offset[k];
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_dot(
        w: &PackedWeight,
        row: usize,
        xq: &QuantizedRows,
        out: &mut [f32],
    ) {
        let n = out.len();
        let mut r0 = 0;
        while r0 < n {
            // SAFETY: callers check the shapes; block indices stay inside
            // `row`'s blocks and the input rows `r0..r0 + G` exist.
            unsafe {
                match n - r0 {
                    1 => rows_dot::<1>(w, row, xq, r0, out),
                    2 => rows_dot::<2>(w, row, xq, r0, out),
                    3 => rows_dot::<3>(w, row, xq, r0, out),
                    _ => rows_dot::<4>(w, row, xq, r0, out),
                }
            }
            r0 += 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks with every nibble / byte value, and scales of both signs.
    fn sample(format: GgmlDType, rows: usize, cols: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let blocks = rows * cols / BLOCK;
        for b in 0..blocks {
            let d = half::f16::from_f32(0.01 * (b as f32 % 7.0 - 3.0));
            data.extend_from_slice(&d.to_le_bytes());
            match format {
                GgmlDType::Q4_1 => {
                    let m = half::f16::from_f32(-0.05 + 0.003 * b as f32);
                    data.extend_from_slice(&m.to_le_bytes());
                    data.extend((0..16).map(|j| ((j * 7 + b) % 256) as u8));
                }
                _ => data.extend((0..32).map(|j| ((j * 37 + b * 11) % 256) as u8)),
            }
        }
        data
    }

    fn check(format: GgmlDType) {
        let (rows, cols) = (70, 96);
        let w = PackedWeight::from_ggml(format, rows, cols, &sample(format, rows, cols)).unwrap();
        let dense = w.dequantize();
        // Candle's own dequantization of the same bytes is the reference.
        let q = candle_core::quantized::QTensor::new(
            candle_core::quantized::QStorage::from_data(
                std::borrow::Cow::Owned(sample(format, rows, cols)),
                &Device::Cpu,
                format,
            )
            .unwrap(),
            (rows, cols),
        )
        .unwrap();
        let theirs = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (a, b) in dense.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        for n in [1, 3, 4, 9] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let y = w.matmul_rows(&x, n);
            for r in 0..n {
                for o in 0..rows {
                    let want: f32 = (0..cols)
                        .map(|c| x[r * cols + c] * dense[o * cols + c])
                        .sum();
                    // 8-bit activations: the error is bounded by the size of
                    // the terms, not of their (possibly cancelling) sum.
                    let terms: f32 = (0..cols)
                        .map(|c| (x[r * cols + c] * dense[o * cols + c]).abs())
                        .sum();
                    let got = y[r * rows + o];
                    assert!(
                        (got - want).abs() <= 5e-3 * terms + 1e-6,
                        "{format:?} n={n} r={r} o={o}: {got} vs {want}"
                    );
                }
            }
            // The portable path gives the same products.
            for o in [0, rows - 1] {
                let mut out = vec![0f32; n];
                w.row_dot_portable(o, &QuantizedRows::new(&x, n, cols), &mut out);
                for r in 0..n {
                    assert!((out[r] - y[r * rows + o]).abs() <= 1e-5 * out[r].abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn q4_1_products_equal_the_dequantized_weight() {
        check(GgmlDType::Q4_1);
    }

    #[test]
    fn q8_0_products_equal_the_dequantized_weight() {
        check(GgmlDType::Q8_0);
    }

    #[test]
    fn rows_move_whole() {
        let (rows, cols) = (4, 64);
        let w = PackedWeight::from_ggml(
            GgmlDType::Q4_1,
            rows,
            cols,
            &sample(GgmlDType::Q4_1, rows, cols),
        )
        .unwrap();
        let p = w.permute_rows(&[2, 0, 3, 1]);
        let (a, b) = (w.dequantize(), p.dequantize());
        assert_eq!(&b[0..cols], &a[2 * cols..3 * cols]);
        assert_eq!(&b[3 * cols..], &a[cols..2 * cols]);
    }

    #[test]
    fn other_formats_are_left_to_the_f32_path() {
        assert!(PackedWeight::from_ggml(GgmlDType::Q4K, 1, 256, &[0; 144]).is_none());
        assert!(PackedWeight::from_ggml(GgmlDType::Q4_1, 1, 33, &[0; 20]).is_none());
    }
}
