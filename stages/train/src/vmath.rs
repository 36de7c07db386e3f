//! Row kernels of the fused ops (softmax, SiLU, RMS), written so the compiler
//! vectorizes them, and compiled twice: for baseline x86-64 (SSE2, 4 lanes)
//! and for AVX2 + FMA (8 lanes), chosen at run time as gemm chooses its own.
//!
//! Two habits make a loop vectorize here: an `exp` made of multiplies and
//! adds ([`exp`]), where the C library's `expf` is a call per element, and
//! sums kept in [`LANES`] separate accumulators, because floating-point
//! addition is not associative and the compiler must not reorder one running
//! sum. Both change the last bits of the results, never their order of
//! evaluation from one run to the next, so training stays deterministic.

/// Accumulators per sum: one AVX2 register of f32.
pub const LANES: usize = 8;

/// Defines `pub fn $name` that runs its body compiled for AVX2 + FMA when the
/// CPU has both, else for the baseline.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// `e^x` to about 1 ulp for `x` in [-87.3, 88] (Cephes' `expf` polynomial on
/// `x - n ln 2`, scaled by `2^n` through the exponent bits). Below the range
/// it returns `2^-126` (a softmax term that small is 0 to f32 addition), above
/// it `e^88`; NaN stays NaN; `-inf` is the caller's to handle.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5 · 2^23 rounds to an integer and leaves it in the low
    // mantissa bits, so n comes out as an integer without a conversion.
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.336_55, 88.0);
    let shifted = xc * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let pow2 = f32::from_bits(((n_bits + 127) << 23) as u32);
    if x.is_nan() { x } else { e * pow2 }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

multiversion! {
    /// `row[i] = e^(row[i] - max)`, `-inf` to 0; returns the sum in f64.
    pub fn exp_shifted(row: &mut [f32], max: f32) -> f64 {
        // One flat loop without a reduction: the form the loop vectorizer takes.
        for z in row.iter_mut() {
            *z = if *z == f32::NEG_INFINITY { 0.0 } else { exp(*z - max) };
        }
        let mut acc = [0f64; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (a, z) in acc.iter_mut().zip(chunk) {
                *a += *z as f64;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|&z| z as f64).sum::<f64>()
    }
}

multiversion! {
    /// The largest value of `row` (`-inf` when empty), ignoring NaN as `f32::max` does.
    pub fn max(row: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (z, a) in chunk.iter().zip(acc.iter_mut()) {
                *a = a.max(*z);
            }
        }
        for z in chunks.remainder() {
            acc[0] = acc[0].max(*z);
        }
        acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

multiversion! {
    /// `Σ a[i] · b[i]`.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for j in 0..LANES {
                acc[j] += x[j] * y[j];
            }
        }
        for (x, y) in ra.iter().zip(rb) {
            acc[0] += x * y;
        }
        acc.iter().sum()
    }
}

multiversion! {
    /// `Σ a[i] · b[i] · c[i]`.
    pub fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ca, cb, cc) = (a.chunks_exact(LANES), b.chunks_exact(LANES), c.chunks_exact(LANES));
        let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
        for ((x, y), z) in ca.zip(cb).zip(cc) {
            for j in 0..LANES {
                acc[j] += x[j] * y[j] * z[j];
            }
        }
        for ((x, y), z) in ra.iter().zip(rb).zip(rc) {
            acc[0] += x * y * z;
        }
        acc.iter().sum()
    }
}

multiversion! {
    /// `y[i] = x[i] · k · w[i]` (RMSNorm's output for a row with `k = 1/rms`).
    pub fn scale_mul(y: &mut [f32], x: &[f32], w: &[f32], k: f32) {
        for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
            *y = x * k * w;
        }
    }
}

multiversion! {
    /// RMSNorm's input gradient for one row: `dx = r w g - x k`.
    pub fn rms_norm_grad(dx: &mut [f32], x: &[f32], w: &[f32], g: &[f32], r: f32, k: f32) {
        for (((d, x), w), g) in dx.iter_mut().zip(x).zip(w).zip(g) {
            *d = r * w * g - x * k;
        }
    }
}

multiversion! {
    /// `y = silu(g) · u`.
    pub fn swiglu(y: &mut [f32], g: &[f32], u: &[f32]) {
        for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
            *y = g * sigmoid(*g) * u;
        }
    }
}

multiversion! {
    /// Gradients of `silu(g) · u` for the upstream gradient `d`.
    pub fn swiglu_grad(dg: &mut [f32], du: &mut [f32], g: &[f32], u: &[f32], d: &[f32]) {
        for ((((dg, du), g), u), d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(d) {
            let s = sigmoid(*g);
            *du = d * g * s;
            *dg = d * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

multiversion! {
    /// `row *= k`.
    pub fn scale(row: &mut [f32], k: f32) {
        for z in row.iter_mut() {
            *z *= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_library() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (fast, exact) = (exp(x), (x as f64).exp());
            let ulp = (exact as f32).to_bits().abs_diff(fast.to_bits());
            assert!(ulp <= 2, "exp({x}) = {fast}, library {exact}");
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn row_kernels_match_plain_loops() {
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 17 % 23) as f32 - 11.0) * 0.7)
            .collect();
        let w: Vec<f32> = (0..37).map(|i| 0.5 + i as f32 * 0.01).collect();
        assert_eq!(
            max(&row),
            row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
        let exact_dot: f64 = row.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum();
        assert!((dot(&row, &w) as f64 - exact_dot).abs() < 1e-4);
        let exact_dot3: f64 = row.iter().zip(&w).map(|(a, b)| (a * b * b) as f64).sum();
        assert!((dot3(&row, &w, &w) as f64 - exact_dot3).abs() < 1e-4);

        let mut e = row.clone();
        e[3] = f32::NEG_INFINITY;
        let m = max(&e);
        let sum = exp_shifted(&mut e, m);
        let mut exact_sum = 0f64;
        for (i, (&z, &x)) in e.iter().zip(&row).enumerate() {
            let exact = if i == 3 { 0.0 } else { ((x - m) as f64).exp() };
            exact_sum += exact;
            assert!(
                (z as f64 - exact).abs() <= 1e-6 * exact.max(1e-30),
                "{z} vs {exact}"
            );
        }
        assert!((sum - exact_sum).abs() < 1e-6 * exact_sum);

        let (mut y, mut dg, mut du) = (vec![0f32; 37], vec![0f32; 37], vec![0f32; 37]);
        swiglu(&mut y, &row, &w);
        swiglu_grad(&mut dg, &mut du, &row, &w, &w);
        for i in 0..37 {
            let (g, u, d) = (row[i] as f64, w[i] as f64, w[i] as f64);
            let s = 1.0 / (1.0 + (-g).exp());
            assert!((y[i] as f64 - g * s * u).abs() < 1e-5, "swiglu {i}");
            assert!((du[i] as f64 - d * g * s).abs() < 1e-5, "du {i}");
            let exact_dg = d * u * s * (1.0 + g * (1.0 - s));
            assert!((dg[i] as f64 - exact_dg).abs() < 1e-5, "dg {i}");
        }
    }
}
