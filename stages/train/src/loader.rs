//! Base weights from a resolved model reference, under Hugging Face tensor names.
//!
//! - Hugging Face folder: safetensors, memory-mapped, converted to the model dtype.
//! - GGUF: tensors dequantized to f32, llama.cpp names mapped back to Hugging Face
//!   names, and llama.cpp's Q/K row permutation (done by its converter so that
//!   its rotary kernel can work on adjacent pairs) undone, since this model uses
//!   Hugging Face's half-split rotary layout.
//! - `builtin:tiny`: generated from a fixed seed, identical on every machine.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use pipe_model::ResolvedModel;

use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::llama::{Llama, PROJECTIONS, module_path};
use crate::packed::PackedWeight;
use crate::rng::{Rng, TAG_BUILTIN};

/// The seed of `builtin:tiny`'s weights: fixed, so the model is the same for every
/// recipe (`pipe_model::builtin::TINY_VERSION` stands for its content in cache keys).
pub const BUILTIN_SEED: u64 = 0x7069_7065_7469_6e79; // "pipetiny"

/// Load a base model (no LoRA) in `dtype` on `device`.
pub fn load_model(model: &ResolvedModel, dtype: DType, device: &Device) -> Result<Llama> {
    let (cfg, weights) = load_weights(model, device)?;
    Llama::from_weights(cfg, weights, dtype)
}

/// A base model in f32 on the CPU (what training and the stage use).
pub fn load_f32_cpu(model: &ResolvedModel) -> Result<Llama> {
    load_model(model, DType::F32, &Device::Cpu)
}

/// The configuration and the weights under Hugging Face names.
pub fn load_weights(
    model: &ResolvedModel,
    device: &Device,
) -> Result<(Config, BTreeMap<String, Tensor>)> {
    match model {
        ResolvedModel::Builtin { name } if name == pipe_model::builtin::TINY => {
            let cfg = Config::tiny();
            let w = random_weights(&cfg, BUILTIN_SEED, device)?;
            Ok((cfg, w))
        }
        ResolvedModel::Builtin { name } => Err(TrainError::Model(format!(
            "unknown builtin model `builtin:{name}`"
        ))),
        ResolvedModel::HfFolder {
            config, weights, ..
        } => {
            let cfg = Config::from_hf_file(config)?;
            Ok((cfg, load_safetensors(weights, device)?))
        }
        ResolvedModel::Gguf { path } => load_gguf(path, device),
    }
}

/// Random weights: projections as Hugging Face initializes them (normal, std
/// 0.02), norms at 1, and embeddings at std 0.1. With a tied head and a fixed
/// final norm, std-0.02 embeddings would cap every logit near 2.5 (|h| = sqrt(hidden)
/// times |e| = 0.02 sqrt(hidden)), so no adapter could bring the loss below ~3.
pub fn random_weights(cfg: &Config, seed: u64, dev: &Device) -> Result<BTreeMap<String, Tensor>> {
    let mut rng = Rng::derive(seed, &[TAG_BUILTIN]);
    let mut w = BTreeMap::new();
    let normal_std = |rows: usize, cols: usize, std: f64, rng: &mut Rng| -> Result<Tensor> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), dev)?)
    };
    let normal = |rows: usize, cols: usize, rng: &mut Rng| normal_std(rows, cols, 0.02, rng);
    let ones = |n: usize| Tensor::ones(n, DType::F32, dev);
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let qd = cfg.num_attention_heads * cfg.head_dim;
    let kvd = cfg.num_key_value_heads * cfg.head_dim;
    w.insert(
        "model.embed_tokens.weight".to_owned(),
        normal_std(cfg.vocab_size, h, 0.1, &mut rng)?,
    );
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for name in PROJECTIONS {
            let (out, inp) = match name {
                "q_proj" => (qd, h),
                "k_proj" | "v_proj" => (kvd, h),
                "o_proj" => (h, qd),
                "gate_proj" | "up_proj" => (i, h),
                _ => (h, i),
            };
            let path = module_path(name);
            w.insert(format!("{p}.{path}.weight"), normal(out, inp, &mut rng)?);
            if cfg.qkv_bias && matches!(name, "q_proj" | "k_proj" | "v_proj") {
                w.insert(
                    format!("{p}.{path}.bias"),
                    normal(1, out, &mut rng)?.reshape(out)?,
                );
            }
        }
        w.insert(format!("{p}.input_layernorm.weight"), ones(h)?);
        w.insert(format!("{p}.post_attention_layernorm.weight"), ones(h)?);
    }
    w.insert("model.norm.weight".to_owned(), ones(h)?);
    if !cfg.tie_word_embeddings {
        w.insert(
            "lm_head.weight".to_owned(),
            normal_std(cfg.vocab_size, h, 0.1, &mut rng)?,
        );
    }
    Ok(w)
}

fn load_safetensors(
    files: &[std::path::PathBuf],
    dev: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    // SAFETY: the files are model weights that nobody writes while we train;
    // mmap avoids reading the whole file into memory before conversion.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(files) }.map_err(|e| {
        TrainError::bad(
            files.first().cloned().unwrap_or_default(),
            format!("cannot map safetensors: {e}"),
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, _) in st.tensors() {
        let t = st.load(&name, dev)?.to_dtype(DType::F32)?;
        out.insert(name, t);
    }
    Ok(out)
}

fn gguf_usize(
    md: &std::collections::HashMap<String, gguf_file::Value>,
    key: &str,
) -> Option<usize> {
    use gguf_file::Value as V;
    Some(match md.get(key)? {
        V::U8(x) => *x as usize,
        V::U16(x) => *x as usize,
        V::U32(x) => *x as usize,
        V::U64(x) => *x as usize,
        V::I32(x) => *x as usize,
        V::I64(x) => *x as usize,
        _ => return None,
    })
}

fn gguf_f64(md: &std::collections::HashMap<String, gguf_file::Value>, key: &str) -> Option<f64> {
    use gguf_file::Value as V;
    Some(match md.get(key)? {
        V::F32(x) => *x as f64,
        V::F64(x) => *x,
        _ => return None,
    })
}

/// Undo llama.cpp's `permute`: rows were regrouped per head from
/// `[2, d/2]` (Hugging Face's halves) to `[d/2, 2]` (interleaved pairs).
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((heads, rows / heads / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// Load a GGUF file: config from metadata, f32 tensors under Hugging Face names.
pub fn load_gguf(path: &Path, dev: &Device) -> Result<(Config, BTreeMap<String, Tensor>)> {
    let mut file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| TrainError::bad(path, format!("not a readable GGUF file: {e}")))?;
    let md = &content.metadata;
    let arch = match md.get("general.architecture") {
        Some(gguf_file::Value::String(s)) => s.clone(),
        _ => {
            return Err(TrainError::bad(
                path,
                "no `general.architecture` in the metadata",
            ));
        }
    };
    if !matches!(arch.as_str(), "llama" | "qwen2" | "mistral") {
        return Err(TrainError::bad(
            path,
            format!("architecture `{arch}` is not supported (llama, mistral, qwen2 are)"),
        ));
    }
    let need = |key: &str| {
        gguf_usize(md, &format!("{arch}.{key}"))
            .ok_or_else(|| TrainError::bad(path, format!("metadata key `{arch}.{key}` is missing")))
    };
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = gguf_usize(md, &format!("{arch}.attention.head_count_kv")).unwrap_or(heads);
    let has_output = content.tensor_infos.contains_key("output.weight");
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims()[0])
        .ok_or_else(|| TrainError::bad(path, "tensor `token_embd.weight` is missing"))?;
    let qkv_bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    let token_id = |key: &str| gguf_usize(md, key).map(|x| x as u32);
    let rope_scaling = match md.get(&format!("{arch}.rope.scaling.type")) {
        Some(gguf_file::Value::String(s)) if s == "llama3" => Some(crate::config::Llama3Scaling {
            factor: gguf_f64(md, &format!("{arch}.rope.scaling.factor")).unwrap_or(8.0),
            low_freq_factor: gguf_f64(md, &format!("{arch}.rope.scaling.low_freq_factor"))
                .unwrap_or(1.0),
            high_freq_factor: gguf_f64(md, &format!("{arch}.rope.scaling.high_freq_factor"))
                .unwrap_or(4.0),
            original_max_position_embeddings: gguf_usize(
                md,
                &format!("{arch}.rope.scaling.original_context_length"),
            )
            .unwrap_or(8192),
        }),
        _ => None,
    };
    let cfg = Config {
        model_type: if arch == "qwen2" { "qwen2" } else { "llama" }.to_owned(),
        hidden_size: hidden,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: gguf_usize(md, &format!("{arch}.attention.key_length")).unwrap_or(hidden / heads),
        vocab_size: vocab,
        max_position_embeddings: gguf_usize(md, &format!("{arch}.context_length")).unwrap_or(4096),
        rope_theta: gguf_f64(md, &format!("{arch}.rope.freq_base")).unwrap_or(10000.0),
        rope_scaling,
        rms_norm_eps: gguf_f64(md, &format!("{arch}.attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5),
        tie_word_embeddings: !has_output,
        qkv_bias,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
    };
    let permuted = arch != "qwen2";
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut out = BTreeMap::new();
    for name in names {
        let Some(hf) = hf_name(name) else { continue };
        let q = content
            .tensor(&mut file, name, dev)
            .map_err(|e| TrainError::bad(path, format!("tensor `{name}`: {e}")))?;
        let mut t = q.dequantize(dev)?;
        if permuted && name.ends_with("attn_q.weight") {
            t = unpermute(&t, heads)?;
        } else if permuted && name.ends_with("attn_k.weight") {
            t = unpermute(&t, kv_heads)?;
        }
        out.insert(hf, t);
    }
    Ok((cfg, out))
}

/// The GGUF's Q4_1 and Q8_0 tensors as [`PackedWeight`]s under Hugging Face
/// names, rows in Hugging Face order (for decoding; see [`crate::packed`]).
/// Tensors in other formats are left out and stay on the f32 path.
pub fn load_gguf_packed(path: &Path, cfg: &Config) -> Result<BTreeMap<String, PackedWeight>> {
    let mut file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| TrainError::bad(path, format!("not a readable GGUF file: {e}")))?;
    let permuted = cfg.model_type != "qwen2";
    // The row order `unpermute` produces, found by running it on row numbers.
    let order = |rows: usize, heads: usize| -> Result<Vec<usize>> {
        let ids: Vec<f32> = (0..rows).map(|r| r as f32).collect();
        let t = unpermute(&Tensor::from_vec(ids, (rows, 1), &Device::Cpu)?, heads)?;
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|r| r as usize)
            .collect())
    };
    let mut out = BTreeMap::new();
    for (name, info) in &content.tensor_infos {
        let Some(hf) = hf_name(name) else { continue };
        let &[rows, cols] = info.shape.dims() else {
            continue;
        };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| TrainError::bad(path, format!("tensor `{name}`: {e}")))?;
        let Some(mut packed) = PackedWeight::from_ggml(q.dtype(), rows, cols, &q.data()?) else {
            continue;
        };
        if permuted && name.ends_with("attn_q.weight") {
            packed = packed.permute_rows(&order(rows, cfg.num_attention_heads)?);
        } else if permuted && name.ends_with("attn_k.weight") {
            packed = packed.permute_rows(&order(rows, cfg.num_key_value_heads)?);
        }
        out.insert(hf, packed);
    }
    Ok(out)
}

/// A base model for inference: f32 weights, plus the GGUF blocks of a GGUF
/// model for decode steps.
pub fn load_for_inference(model: &ResolvedModel) -> Result<Llama> {
    let mut m = load_f32_cpu(model)?;
    if let ResolvedModel::Gguf { path } = model {
        let packed = load_gguf_packed(path, &m.cfg)?;
        m.attach_packed(packed)?;
    }
    Ok(m)
}

/// llama.cpp tensor name -> Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: reshape(h, 2, d/2, in).swapaxes(1, 2)
        let dev = Device::Cpu;
        let (heads, d, inp) = (2, 4, 3);
        let hf = Tensor::arange(0f32, (heads * d * inp) as f32, &dev)
            .unwrap()
            .reshape((heads * d, inp))
            .unwrap();
        let permuted = hf
            .reshape((heads, 2, d / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((heads * d, inp))
            .unwrap();
        let back = unpermute(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
        assert_eq!(
            hf_name("blk.3.attn_output.weight").unwrap(),
            "model.layers.3.self_attn.o_proj.weight"
        );
    }
}
