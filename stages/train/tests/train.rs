//! End-to-end checks of the model, LoRA, the training loop and the PEFT files.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use pipe_train::config::Config;
use pipe_train::data::{Batch, Sequence, pack, write_tokens};
use pipe_train::infer::Generator;
use pipe_train::llama::{Fwd, Llama};
use pipe_train::loader::{load_model, random_weights};
use pipe_train::lora::{self, LoraSpec};
use pipe_train::trainer::{Outcome, TrainOptions, TrainPaths, batch_loss, train};

fn micro_config() -> Config {
    Config {
        model_type: "llama".into(),
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        vocab_size: 20,
        max_position_embeddings: 64,
        rope_theta: 10000.0,
        rope_scaling: None,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
        qkv_bias: true,
        bos_token_id: None,
        eos_token_id: None,
    }
}

fn micro_model(dtype: DType) -> Llama {
    let cfg = micro_config();
    let w = random_weights(&cfg, 5, &Device::Cpu).unwrap();
    // Larger weights than init so the loss surface is not flat.
    let w: BTreeMap<String, Tensor> = w
        .into_iter()
        .map(|(k, t)| {
            let t = if k.contains("norm") {
                t
            } else {
                t.affine(10.0, 0.0).unwrap()
            };
            (k, t)
        })
        .collect();
    Llama::from_weights(cfg, w, dtype).unwrap()
}

/// LoRA on every projection with B set non-zero, so A gets a gradient too.
fn with_live_lora(model: &mut Llama, dropout: f64) {
    let spec = LoraSpec::new(2, 4.0, dropout, &["all-linear".into()], false).unwrap();
    lora::attach(model, &spec, 9).unwrap();
    for (i, (key, var)) in lora::variables(model).into_iter().enumerate() {
        if key.contains("lora_B") {
            // Deterministic values: candle's CPU RNG cannot be seeded.
            let n = var.elem_count();
            let v: Vec<f32> = (0..n)
                .map(|j| (((j * 7 + i * 13) % 11) as f32 - 5.0) * 0.05)
                .collect();
            let t = Tensor::from_vec(v, var.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(model.dtype)
                .unwrap();
            var.set(&t).unwrap();
        }
    }
}

fn examples() -> Vec<Sequence> {
    vec![
        Sequence::single(vec![1, 5, 7, 3, 9], vec![-100, -100, 7, 3, 9]),
        Sequence::single(vec![2, 4, 6], vec![-100, 4, 6]),
        Sequence::single(vec![11, 12, 13, 14], vec![-100, 12, 13, 14]),
    ]
}

#[test]
fn every_lora_variable_gets_a_gradient() {
    let mut model = micro_model(DType::F32);
    with_live_lora(&mut model, 0.0);
    let refs: Vec<&Sequence> = examples().leak().iter().collect();
    let batch = Batch::new(&refs, 0);
    let (loss, n) = batch_loss(&model, &batch, &mut Fwd::eval()).unwrap();
    assert!(n > 0);
    let grads = loss.backward().unwrap();
    for (key, var) in lora::variables(&model) {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{key}: no gradient"));
        let max = g
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max > 0.0, "{key}: zero gradient");
    }
}

#[test]
fn lora_gradients_match_finite_differences() {
    let mut model = micro_model(DType::F64);
    with_live_lora(&mut model, 0.0);
    let refs: Vec<&Sequence> = examples().leak().iter().collect();
    let batch = Batch::new(&refs, 0);
    let loss_of = |m: &Llama| -> f64 {
        let (l, _) = batch_loss(m, &batch, &mut Fwd::eval()).unwrap();
        l.to_scalar::<f64>().unwrap()
    };
    let (loss, _) = batch_loss(&model, &batch, &mut Fwd::eval()).unwrap();
    let grads = loss.backward().unwrap();
    let vars = lora::variables(&model);
    let mut checked = 0;
    for (key, var) in vars.iter().step_by(3) {
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for idx in [0, base.len() / 2, base.len() - 1] {
            let h = 1e-6;
            let shifted = |delta: f64| {
                let mut v = base.clone();
                v[idx] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_of(&model)
            };
            let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let err = (numeric - g[idx]).abs() / (1e-6 + numeric.abs().max(g[idx].abs()));
            assert!(
                err < 1e-4 || (numeric - g[idx]).abs() < 1e-7,
                "{key}[{idx}]: analytic {} vs numeric {numeric}",
                g[idx]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

#[test]
fn frozen_op_gives_the_same_gradients_as_plain_matmul() {
    let mut model = micro_model(DType::F64);
    with_live_lora(&mut model, 0.0);
    let refs: Vec<&Sequence> = examples().leak().iter().collect();
    let batch = Batch::new(&refs, 0);
    let grads_with = |skip: bool| -> Vec<Vec<f64>> {
        let mut fwd = Fwd {
            dropout: None,
            skip_frozen_grads: skip,
            fused: false,
            no_grad: false,
            decode: false,
        };
        let (loss, _) = batch_loss(&model, &batch, &mut fwd).unwrap();
        let g = loss.backward().unwrap();
        lora::variables(&model)
            .iter()
            .map(|(_, v)| {
                g.get(v.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect()
    };
    let (a, b) = (grads_with(true), grads_with(false));
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-10 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn packed_batches_give_the_same_loss_as_unpacked() {
    let mut model = micro_model(DType::F64);
    with_live_lora(&mut model, 0.0);
    let ex = examples();
    let refs: Vec<&Sequence> = ex.iter().collect();
    let (unpacked, n1) = batch_loss(&model, &Batch::new(&refs, 0), &mut Fwd::eval()).unwrap();
    let packed = pack(&ex, 64);
    assert_eq!(packed.len(), 1);
    let (packed_loss, n2) =
        batch_loss(&model, &Batch::new(&[&packed[0]], 0), &mut Fwd::eval()).unwrap();
    assert_eq!(n1, n2);
    let (a, b) = (
        unpacked.to_scalar::<f64>().unwrap(),
        packed_loss.to_scalar::<f64>().unwrap(),
    );
    assert!((a - b).abs() < 1e-9 * a.abs(), "unpacked {a} vs packed {b}");
}

/// Short byte strings in ChatML-ish shape for builtin:tiny.
fn memorize_sequences() -> Vec<Sequence> {
    [
        "the cat sat on the mat",
        "pipe trains adapters",
        "loss goes down",
    ]
    .iter()
    .map(|s| {
        let mut ids: Vec<u32> = vec![256];
        ids.extend(s.bytes().map(u32::from));
        ids.push(257);
        let labels = ids.iter().map(|x| *x as i32).collect();
        Sequence::single(ids, labels)
    })
    .collect()
}

fn tiny() -> pipe_model::ResolvedModel {
    pipe_model::resolve("builtin:tiny", std::path::Path::new(".")).unwrap()
}

fn run(dir: &std::path::Path, opts: &TrainOptions, stop_after: Option<u64>) -> Outcome {
    let paths = TrainPaths {
        tokens: dir.join("tokens.arrow"),
        validation: None,
        out_dir: dir.join("adapter"),
        scratch_dir: dir.join("scratch"),
    };
    std::fs::create_dir_all(&paths.scratch_dir).unwrap();
    let model = load_model(&tiny(), DType::F32, &Device::Cpu).unwrap();
    train(model, opts, &paths, stop_after, &mut |_, _| {}).unwrap()
}

#[test]
fn loss_falls_on_a_tiny_memorization_task() {
    let dir = tempfile::tempdir().unwrap();
    write_tokens(&dir.path().join("tokens.arrow"), &memorize_sequences()).unwrap();
    let spec = LoraSpec::new(8, 16.0, 0.0, &["all-linear".into()], false).unwrap();
    let mut opts = TrainOptions::new(spec, 1);
    opts.lr = 1e-2;
    opts.max_steps = Some(40);
    opts.batch_size = 3;
    let Outcome::Finished(summary) = run(dir.path(), &opts, None) else {
        panic!("stopped")
    };
    let log = std::fs::read_to_string(dir.path().join("adapter/training_log.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let first = first["loss"].as_f64().unwrap();
    assert!(
        summary.final_loss < first * 0.4,
        "loss {first} -> {}: {log}",
        summary.final_loss
    );
    let svg = std::fs::read_to_string(dir.path().join("adapter/loss.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("polyline"));
    // The PNG is the SVG rasterized: its size, a white page, and the blue curve.
    let png = resvg::tiny_skia::Pixmap::load_png(dir.path().join("adapter/loss.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 480));
    let pixels = png.pixels();
    let white = pixels
        .iter()
        .filter(|p| (p.red(), p.green(), p.blue()) == (255, 255, 255))
        .count();
    let blue = pixels
        .iter()
        .filter(|p| p.blue() > 200 && p.red() < 80 && p.green() < 80)
        .count();
    assert!(white > pixels.len() / 2, "{white} white pixels");
    assert!(blue > 200, "{blue} pixels of the curve");
}

#[test]
fn resume_after_kill_equals_uninterrupted_run_byte_for_byte() {
    let full = tempfile::tempdir().unwrap();
    let killed = tempfile::tempdir().unwrap();
    let mut seqs = memorize_sequences();
    seqs.extend(memorize_sequences().into_iter().map(|mut s| {
        s.labels[1] = -100;
        s
    }));
    for d in [full.path(), killed.path()] {
        write_tokens(&d.join("tokens.arrow"), &seqs).unwrap();
    }
    let spec = LoraSpec::new(
        4,
        8.0,
        0.1,
        &["q_proj".into(), "v_proj".into(), "down_proj".into()],
        true,
    )
    .unwrap();
    let mut opts = TrainOptions::new(spec, 3);
    opts.lr = 5e-3;
    opts.epochs = 2;
    opts.batch_size = 2;
    opts.grad_accum = 2;
    opts.schedule = pipe_train::optim::Schedule::Cosine;
    opts.warmup_steps = Some(1);
    opts.checkpoint_every = Some(1);
    opts.weight_decay = 0.01;
    assert!(matches!(
        run(full.path(), &opts, None),
        Outcome::Finished(_)
    ));
    assert!(matches!(
        run(killed.path(), &opts, Some(2)),
        Outcome::Stopped { step: 2 }
    ));
    let Outcome::Finished(summary) = run(killed.path(), &opts, None) else {
        panic!("stopped")
    };
    assert_eq!(summary.resumed_from_step, Some(2));
    let read =
        |d: &std::path::Path| std::fs::read(d.join("adapter/adapter_model.safetensors")).unwrap();
    assert_eq!(read(full.path()), read(killed.path()));
    // Same inputs, same seed: the same bytes again from scratch.
    let again = tempfile::tempdir().unwrap();
    write_tokens(&again.path().join("tokens.arrow"), &seqs).unwrap();
    run(again.path(), &opts, None);
    assert_eq!(read(full.path()), read(again.path()));
}

#[test]
fn peft_files_have_the_right_names_shapes_and_config() {
    let dir = tempfile::tempdir().unwrap();
    write_tokens(&dir.path().join("tokens.arrow"), &memorize_sequences()).unwrap();
    let spec = LoraSpec::new(8, 16.0, 0.05, &["q_proj".into(), "v_proj".into()], false).unwrap();
    let mut opts = TrainOptions::new(spec, 1);
    opts.max_steps = Some(1);
    opts.base_model = "builtin:tiny".into();
    run(dir.path(), &opts, None);
    let tensors =
        lora::read_safetensors(&dir.path().join("adapter/adapter_model.safetensors")).unwrap();
    let cfg = Config::tiny();
    assert_eq!(tensors.len(), cfg.num_hidden_layers * 2 * 2);
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let a = &tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    let b = &tensors["base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"];
    assert_eq!(a.dims(), [8, cfg.hidden_size]);
    assert_eq!(b.dims(), [kv, 8]);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 8);
    assert_eq!(config["lora_alpha"], 16.0);
    assert_eq!(config["lora_dropout"], 0.05);
    assert_eq!(config["use_rslora"], false);
    assert_eq!(config["base_model_name_or_path"], "builtin:tiny");
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter/train_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["steps"], 1);
}

#[test]
fn merged_model_logits_equal_base_plus_adapter() {
    let dir = tempfile::tempdir().unwrap();
    // An adapter with non-zero B: a few training steps at a high rate.
    write_tokens(&dir.path().join("tokens.arrow"), &memorize_sequences()).unwrap();
    let spec = LoraSpec::new(4, 8.0, 0.0, &["all-linear".into()], false).unwrap();
    let mut opts = TrainOptions::new(spec.clone(), 2);
    opts.lr = 1e-2;
    opts.max_steps = Some(3);
    run(dir.path(), &opts, None);
    let adapter = dir.path().join("adapter");
    let merged_dir = dir.path().join("merged");
    let written = pipe_train::merge::merge_to_hf(&tiny(), &adapter, &merged_dir).unwrap();
    assert!(written.contains(&"config.json".to_owned()));
    let merged_ref =
        pipe_model::resolve(merged_dir.to_str().unwrap(), std::path::Path::new("/")).unwrap();
    assert!(matches!(
        merged_ref,
        pipe_model::ResolvedModel::HfFolder { .. }
    ));

    // Base + adapter, unmerged (the training-time LoRA path).
    let mut model = load_model(&tiny(), DType::F32, &Device::Cpu).unwrap();
    let (spec_back, tensors) = lora::load_adapter(&adapter).unwrap();
    assert_eq!(spec_back, spec);
    lora::apply_adapter(&mut model, &spec_back, &tensors, &adapter).unwrap();
    let ids: Vec<u32> = "pipe trains".bytes().map(u32::from).collect();
    let mut with_lora = Generator::from_model(model, 0);
    let mut merged = Generator::load(&merged_ref, None, 0).unwrap();
    let mut base = Generator::load(&tiny(), None, 0).unwrap();
    let a = with_lora.start(std::slice::from_ref(&ids)).unwrap();
    let b = merged.start(std::slice::from_ref(&ids)).unwrap();
    let c = base.start(std::slice::from_ref(&ids)).unwrap();
    let max_diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    };
    assert!(
        max_diff(&a[0], &b[0]) < 1e-4,
        "merged differs by {}",
        max_diff(&a[0], &b[0])
    );
    assert!(max_diff(&a[0], &c[0]) > 1e-3, "the adapter changes nothing");
}

#[test]
fn generator_batches_left_padded_prompts_and_caches_keys() {
    let model_ref = tiny();
    let mut g = Generator::load(&model_ref, None, 0).unwrap();
    assert_eq!(g.vocab_size(), pipe_model::builtin::VOCAB_SIZE);
    let p1: Vec<u32> = "hello there".bytes().map(u32::from).collect();
    let p2: Vec<u32> = "hi".bytes().map(u32::from).collect();
    let batched = g.start(&[p1.clone(), p2.clone()]).unwrap();
    let next = g.step(&[104, 105]).unwrap();
    let single = g.start(std::slice::from_ref(&p2)).unwrap();
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
    assert!(
        close(&batched[1], &single[0]),
        "left padding changes logits"
    );
    // Cached decoding agrees with a full forward (token_logprobs).
    let mut seq = p1.clone();
    seq.push(104);
    seq.push(7);
    let lp = g.token_logprobs(&seq).unwrap();
    assert_eq!(lp.len(), seq.len() - 1);
    let row = &next[0];
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    assert!((row[7] - lse - lp[lp.len() - 1]).abs() < 1e-4);

    // A prefill in passes of 3 positions (over the padding of p2, too) gives
    // the logits of one pass, and decoding continues from the same cache.
    let mut chunked = Generator::load(&model_ref, None, 0)
        .unwrap()
        .with_prefill_chunk(3);
    let batched_in_passes = chunked.start(&[p1.clone(), p2.clone()]).unwrap();
    let next_in_passes = chunked.step(&[104, 105]).unwrap();
    for (x, y) in batched.iter().zip(&batched_in_passes) {
        assert!(close(x, y), "a prefill in passes changes logits");
    }
    for (x, y) in next.iter().zip(&next_in_passes) {
        assert!(close(x, y), "decoding after a prefill in passes differs");
    }
}

#[test]
fn fused_kernels_match_composed_ops() {
    let mut model = micro_model(DType::F32);
    with_live_lora(&mut model, 0.0);
    let mut ex = examples();
    ex.extend(pack(&examples(), 64));
    let refs: Vec<&Sequence> = ex.iter().collect();
    let batch = Batch::new(&refs, 0);
    let run_with = |fused: bool| -> (f32, Vec<Vec<f32>>) {
        let mut fwd = Fwd {
            dropout: None,
            skip_frozen_grads: true,
            fused,
            no_grad: false,
            decode: false,
        };
        let (loss, _) = batch_loss(&model, &batch, &mut fwd).unwrap();
        let g = loss.backward().unwrap();
        let grads = lora::variables(&model)
            .iter()
            .map(|(_, v)| {
                g.get(v.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        (loss.to_scalar::<f32>().unwrap(), grads)
    };
    let ((la, ga), (lb, gb)) = (run_with(true), run_with(false));
    assert!((la - lb).abs() < 1e-4 * la.abs(), "loss {la} vs {lb}");
    let scale = gb.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    for (x, y) in ga.iter().flatten().zip(gb.iter().flatten()) {
        assert!((x - y).abs() < 1e-4 * scale, "{x} vs {y}");
    }
}

/// builtin:tiny written as a GGUF the way llama.cpp writes one: projections
/// Q4_1, the tied embedding Q8_0, norms f32, Q/K rows in llama.cpp's order.
fn tiny_gguf(dir: &std::path::Path) -> pipe_model::ResolvedModel {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let cfg = Config::tiny();
    let weights = random_weights(&cfg, pipe_train::loader::BUILTIN_SEED, &Device::Cpu).unwrap();
    // llama.cpp's `permute`, which the loader undoes.
    let permute = |w: &Tensor, heads: usize| {
        let (rows, cols) = w.dims2().unwrap();
        w.reshape((heads, 2, rows / heads / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((rows, cols))
            .unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, w) in &weights {
        let (gguf, dtype, w) = if name == "model.embed_tokens.weight" {
            ("token_embd.weight".to_owned(), GgmlDType::Q8_0, w.clone())
        } else if name == "model.norm.weight" {
            ("output_norm.weight".to_owned(), GgmlDType::F32, w.clone())
        } else {
            let rest = name.strip_prefix("model.layers.").unwrap();
            let (layer, module) = rest.split_once('.').unwrap();
            let (short, dtype, w) = match module {
                "input_layernorm.weight" => ("attn_norm", GgmlDType::F32, w.clone()),
                "post_attention_layernorm.weight" => ("ffn_norm", GgmlDType::F32, w.clone()),
                "self_attn.q_proj.weight" => (
                    "attn_q",
                    GgmlDType::Q4_1,
                    permute(w, cfg.num_attention_heads),
                ),
                "self_attn.k_proj.weight" => (
                    "attn_k",
                    GgmlDType::Q4_1,
                    permute(w, cfg.num_key_value_heads),
                ),
                "self_attn.v_proj.weight" => ("attn_v", GgmlDType::Q4_1, w.clone()),
                "self_attn.o_proj.weight" => ("attn_output", GgmlDType::Q4_1, w.clone()),
                "mlp.gate_proj.weight" => ("ffn_gate", GgmlDType::Q4_1, w.clone()),
                "mlp.up_proj.weight" => ("ffn_up", GgmlDType::Q4_1, w.clone()),
                "mlp.down_proj.weight" => ("ffn_down", GgmlDType::Q4_1, w.clone()),
                other => panic!("unexpected weight {other}"),
            };
            (format!("blk.{layer}.{short}.weight"), dtype, w)
        };
        tensors.push((gguf, QTensor::quantize(&w, dtype).unwrap()));
    }
    use gguf_file::Value as V;
    let u = |x: usize| V::U32(x as u32);
    let metadata = [
        ("general.architecture", V::String("llama".into())),
        ("llama.embedding_length", u(cfg.hidden_size)),
        ("llama.feed_forward_length", u(cfg.intermediate_size)),
        ("llama.block_count", u(cfg.num_hidden_layers)),
        ("llama.attention.head_count", u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u(cfg.num_key_value_heads)),
        ("llama.context_length", u(cfg.max_position_embeddings)),
        ("llama.rope.freq_base", V::F32(cfg.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            V::F32(cfg.rms_norm_eps as f32),
        ),
    ];
    let path = dir.join("tiny.Q4_1.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let md: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts).unwrap();
    pipe_model::ResolvedModel::Gguf { path }
}

#[test]
fn gguf_blocks_decode_like_the_dequantized_model() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(dir.path());
    // The same weights, dequantized to f32 (the model training uses).
    let mut f32_model = load_model(&gguf, DType::F32, &Device::Cpu).unwrap();
    assert!(!f32_model.has_packed());
    with_live_lora(&mut f32_model, 0.0);
    let spec = LoraSpec::new(2, 4.0, 0.0, &["all-linear".into()], false).unwrap();
    let adapter = dir.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    lora::save_adapter(&adapter, &f32_model, &spec, "tiny").unwrap();

    let prompts: Vec<Vec<u32>> = ["the court", "a statute of limitations"]
        .iter()
        .map(|s| s.bytes().map(u32::from).collect())
        .collect();
    // Logits through the prompt and four decode steps.
    let decode = |g: &mut Generator| -> Vec<Vec<f32>> {
        let mut all = g.start(&prompts).unwrap();
        for step in 0..4u32 {
            all.extend(g.step(&[100 + step, 101 + step]).unwrap());
        }
        all
    };
    for with_adapter in [false, true] {
        let reference = if with_adapter {
            let mut m = load_model(&gguf, DType::F32, &Device::Cpu).unwrap();
            let (s, t) = lora::load_adapter(&adapter).unwrap();
            lora::apply_adapter(&mut m, &s, &t, &adapter).unwrap();
            decode(&mut Generator::from_model(m, 0))
        } else {
            decode(&mut Generator::from_model(
                load_model(&gguf, DType::F32, &Device::Cpu).unwrap(),
                0,
            ))
        };
        let mut packed =
            Generator::load(&gguf, with_adapter.then_some(adapter.as_path()), 0).unwrap();
        assert!(packed.model().has_packed());
        let got = decode(&mut packed);
        let mut decode_diff = 0f32;
        for (step, (a, b)) in reference.iter().zip(&got).enumerate() {
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            // The prompt runs on the f32 weights (the first two outputs);
            // decode steps on the blocks, with 8-bit activations.
            let bound = if step < prompts.len() { 1e-5 } else { 5e-3 };
            if step >= prompts.len() {
                decode_diff = decode_diff.max(diff);
            }
            assert!(
                diff <= bound * scale,
                "adapter {with_adapter}, output {step}: logits differ by {diff} (scale {scale})"
            );
        }
        // Rounded activations cannot give identical logits: the blocks were used.
        assert!(
            decode_diff > 0.0,
            "decode steps did not use the GGUF blocks"
        );
    }
}
