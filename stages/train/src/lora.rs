//! LoRA adapters: settings, PEFT's initialization from our seed, and the PEFT
//! file format (`adapter_model.safetensors` + `adapter_config.json`).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::llama::{Llama, LoraPair, PROJECTIONS, module_path};
use crate::rng::{Rng, TAG_LORA_INIT};

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// LoRA settings with targets resolved to projection names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Projection names in [`PROJECTIONS`] order.
    pub targets: Vec<String>,
    pub rslora: bool,
}

impl LoraSpec {
    /// `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Check the settings and expand `all-linear`; targets come back in a fixed order.
    pub fn new(
        rank: usize,
        alpha: f64,
        dropout: f64,
        targets: &[String],
        rslora: bool,
    ) -> Result<Self> {
        if rank == 0 {
            return Err(TrainError::param("lora.rank", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(TrainError::param("lora.dropout", "must be in [0, 1)"));
        }
        if targets.is_empty() {
            return Err(TrainError::param(
                "lora.targets",
                "name at least one projection, or `all-linear`",
            ));
        }
        let mut chosen = Vec::new();
        for t in targets {
            if t == "all-linear" {
                chosen.extend(PROJECTIONS.iter().map(|s| s.to_string()));
            } else if PROJECTIONS.contains(&t.as_str()) {
                chosen.push(t.clone());
            } else {
                return Err(TrainError::param(
                    "lora.targets",
                    format!(
                        "unknown target `{t}`: use all-linear or any of {}",
                        PROJECTIONS.join(", ")
                    ),
                ));
            }
        }
        let targets = PROJECTIONS
            .iter()
            .filter(|p| chosen.iter().any(|c| c == *p))
            .map(|s| s.to_string())
            .collect();
        Ok(LoraSpec {
            rank,
            alpha,
            dropout,
            targets,
            rslora,
        })
    }
}

/// PEFT's key for one LoRA matrix (`which` is `A` or `B`).
pub fn peft_key(layer: usize, projection: &str, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{which}.weight",
        module_path(projection)
    )
}

/// Attach fresh adapters: A Kaiming-uniform (PEFT's `a=sqrt(5)`, i.e. bound
/// `1/sqrt(in)`), B zeros, each from its own stream of `seed`.
pub fn attach(model: &mut Llama, spec: &LoraSpec, seed: u64) -> Result<()> {
    let dtype = model.dtype;
    let dev = model.device.clone();
    for (li, layer) in model.layers.iter_mut().enumerate() {
        for (pi, name) in PROJECTIONS.iter().enumerate() {
            if !spec.targets.iter().any(|t| t == name) {
                continue;
            }
            let lin = layer.proj_mut(name);
            let (out, inp) = lin.weight.dims2()?;
            let mut rng = Rng::derive(seed, &[TAG_LORA_INIT, li as u64, pi as u64]);
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..spec.rank * inp)
                .map(|_| rng.uniform(-bound, bound) as f32)
                .collect();
            let a = Tensor::from_vec(a, (spec.rank, inp), &dev)?.to_dtype(dtype)?;
            let b = Tensor::zeros((out, spec.rank), dtype, &dev)?;
            lin.lora = Some(LoraPair {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
                scale: spec.scale(),
                dropout: spec.dropout,
            });
        }
    }
    Ok(())
}

/// Every LoRA variable with its PEFT key, in a fixed order (layer, projection, A then B).
pub fn variables(model: &Llama) -> Vec<(String, Var)> {
    let mut out = Vec::new();
    for (li, layer) in model.layers.iter().enumerate() {
        for name in PROJECTIONS {
            if let Some(l) = &layer.proj(name).lora {
                out.push((peft_key(li, name, "A"), l.a.clone()));
                out.push((peft_key(li, name, "B"), l.b.clone()));
            }
        }
    }
    out
}

/// Write tensors as safetensors with keys in sorted order (same tensors -> same bytes).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let data: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(data, Some(meta))
        .map_err(|e| TrainError::bad(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &bytes)
}

/// Write via a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| TrainError::bad(path, format!("cannot read safetensors: {e}")))?;
    Ok(map.into_iter().collect())
}

/// Save the model's adapters in PEFT's format into `dir`.
pub fn save_adapter(dir: &Path, model: &Llama, spec: &LoraSpec, base_model: &str) -> Result<()> {
    let tensors: BTreeMap<String, Tensor> = variables(model)
        .into_iter()
        .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
    let config = serde_json::json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": spec.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": spec.targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": spec.rslora,
    });
    let text = serde_json::to_string_pretty(&config).expect("json");
    write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())
}

/// Read a PEFT adapter folder: settings and tensors.
pub fn load_adapter(dir: &Path) -> Result<(LoraSpec, BTreeMap<String, Tensor>)> {
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::bad(&cfg_path, e.to_string()))?;
    let field = |k: &str| {
        v.get(k)
            .ok_or_else(|| TrainError::bad(&cfg_path, format!("key `{k}` is missing")))
    };
    let rank = field("r")?.as_u64().unwrap_or(0) as usize;
    let alpha = field("lora_alpha")?.as_f64().unwrap_or(0.0);
    let dropout = v
        .get("lora_dropout")
        .and_then(|x| x.as_f64())
        .unwrap_or(0.0);
    let rslora = v
        .get("use_rslora")
        .and_then(|x| x.as_bool())
        .unwrap_or(false);
    let targets: Vec<String> = match field("target_modules")? {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    let spec = LoraSpec::new(rank, alpha, dropout, &targets, rslora)
        .map_err(|e| TrainError::bad(&cfg_path, e.to_string()))?;
    let tensors = read_safetensors(&dir.join(ADAPTER_WEIGHTS))?;
    Ok((spec, tensors))
}

/// Put saved adapter tensors onto the model (as variables, so training can continue).
pub fn apply_adapter(
    model: &mut Llama,
    spec: &LoraSpec,
    tensors: &BTreeMap<String, Tensor>,
    origin: &Path,
) -> Result<()> {
    let dtype = model.dtype;
    let dev = model.device.clone();
    for (li, layer) in model.layers.iter_mut().enumerate() {
        for name in PROJECTIONS {
            if !spec.targets.iter().any(|t| t == name) {
                continue;
            }
            let get = |which: &str| -> Result<Tensor> {
                let key = peft_key(li, name, which);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| TrainError::bad(origin, format!("tensor `{key}` is missing")))?;
                Ok(t.to_device(&dev)?.to_dtype(dtype)?)
            };
            let (a, b) = (get("A")?, get("B")?);
            let lin = layer.proj_mut(name);
            let (out, inp) = lin.weight.dims2()?;
            if a.dims() != [spec.rank, inp] || b.dims() != [out, spec.rank] {
                return Err(TrainError::bad(
                    origin,
                    format!(
                        "layer {li} {name}: A {:?} / B {:?} do not fit rank {} and weight [{out}, {inp}]",
                        a.dims(),
                        b.dims(),
                        spec.rank
                    ),
                ));
            }
            lin.lora = Some(LoraPair {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
                scale: spec.scale(),
                dropout: spec.dropout,
            });
        }
    }
    Ok(())
}
