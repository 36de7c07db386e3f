//! LoRA fine-tuning of Llama-family models in candle, with checkpoints, exact
//! resume and PEFT-format adapters; plus the inference API the eval stage uses.
//!
//! - [`llama`]: the decoder (Llama 2/3, Mistral, Qwen2, SmolLM2), written with
//!   differentiable ops only, and [`frozen`]: the frozen projection whose
//!   backward skips the base weight's gradient, and [`lora_linear`]: that
//!   projection with its adapter as one op.
//! - [`loader`]: weights from a Hugging Face folder (mmap), a GGUF file
//!   (dequantized) or `builtin:tiny` (generated from a fixed seed).
//! - [`lora`]: settings, PEFT init from our own RNG, PEFT files.
//! - [`trainer`]: AdamW, schedules, accumulation, clipping, logs, checkpoints.
//! - [`infer::Generator`]: KV-cached batched decoding and token log-probs.
//! - [`merge::merge_to_hf`]: base + adapter as a full Hugging Face folder.
//!
//! It knows nothing about caching or recipes: the `train` stage adapter in the
//! `pipe` binary maps params onto [`trainer::TrainOptions`].
//!
//! ```no_run
//! use pipe_train::{infer::Generator, loader::load_model, lora::LoraSpec, trainer};
//! let model_ref = pipe_model::resolve("builtin:tiny", std::path::Path::new(".")).unwrap();
//! let model = load_model(&model_ref, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
//! let spec = LoraSpec::new(8, 16.0, 0.0, &["all-linear".into()], false).unwrap();
//! let paths = trainer::TrainPaths {
//!     tokens: "tokens.arrow".into(), validation: None,
//!     out_dir: "adapter".into(), scratch_dir: "scratch".into(),
//! };
//! trainer::train(model, &trainer::TrainOptions::new(spec, 42), &paths, None, &mut |_, _| {}).unwrap();
//! let mut generator = Generator::load(&model_ref, Some("adapter".as_ref()), 42).unwrap();
//! let logits = generator.start(&[vec![104, 105]]).unwrap();
//! # let _ = logits;
//! ```

pub mod attention;
pub mod config;
pub mod data;
pub mod error;
pub mod frozen;
pub mod fused;
pub mod head;
pub mod heap;
pub mod infer;
pub mod llama;
pub mod loader;
pub mod lora;
pub mod lora_linear;
pub mod merge;
pub mod optim;
pub mod packed;
pub mod plot;
pub mod rng;
pub mod trainer;
pub mod vmath;

pub use error::TrainError;
/// Re-exported so the stage adapter can derive `JsonSchema` with the same version.
pub use schemars;

/// Whether this build has CUDA kernels (the `cuda` feature).
pub const CUDA_ENABLED: bool = cfg!(feature = "cuda");
pub use infer::Generator;

/// Bump when the bytes the train stage writes would change for the same inputs.
pub const TRAIN_CODE_VERSION: u32 = 4;

/// Peak resident memory of this process in GiB (Linux `VmHWM`; NaN elsewhere),
/// for the benchmark binaries.
pub fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Set the number of CPU threads candle's kernels use. Candle reads
/// `RAYON_NUM_THREADS` on every matmul, so this must run before training
/// starts and while no other thread reads the environment.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        // SAFETY: called once at stage start, before any worker thread of ours
        // reads the environment (the documented requirement of set_var).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // Candle runs element-wise ops on a thread pool of its own (sized by
    // CANDLE_NUM_THREADS, else RAYON_NUM_THREADS) whose idle workers spin ~25,000
    // times before sleeping, and whose caller spins until they finish. Matmuls
    // and our fused kernels already keep every core busy through rayon, so those
    // spins take turns from the threads doing the work: a third of the CPU time
    // of a SmolLM2 training step on 2 cores. One thread makes that pool run ops
    // inline on the caller. Unless the user chose otherwise.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}
