//! The project's own seeded random numbers (candle's CPU device cannot be seeded).
//!
//! Streams are derived from `(seed, tags...)` rather than carried along, so a
//! resumed run recreates the exact stream of any step from the step number alone:
//! the checkpoint needs no RNG state beyond the seed and the step.

/// SplitMix64: tiny, fast, and good enough for init, shuffling and dropout masks.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A stream for one purpose, e.g. `derive(seed, &[TAG_SHUFFLE, epoch])`.
    pub fn derive(seed: u64, tags: &[u64]) -> Self {
        let mut rng = Rng::new(seed ^ 0x5851_f42d_4c95_7f2d);
        for &tag in tags {
            let mixed = rng.next_u64() ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            rng = Rng::new(mixed);
            rng.next_u64();
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Standard normal (Box-Muller; one draw per call keeps the stream simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for shuffles of any realistic size.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Tags naming each random stream.
pub const TAG_BUILTIN: u64 = 1;
pub const TAG_LORA_INIT: u64 = 2;
pub const TAG_SHUFFLE: u64 = 3;
pub const TAG_DROPOUT: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(7, &[1, 2]).next_u64()).collect();
        assert!(a.iter().all(|x| *x == a[0]));
        assert_ne!(
            Rng::derive(7, &[1, 2]).next_u64(),
            Rng::derive(7, &[1, 3]).next_u64()
        );
        let mut r = Rng::new(1);
        let mean: f64 = (0..20000).map(|_| r.normal()).sum::<f64>() / 20000.0;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
