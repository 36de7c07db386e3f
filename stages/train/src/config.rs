//! Model shapes: Hugging Face `config.json` (llama, mistral, qwen2) to a runtime [`Config`]
//! with every default resolved, as candle's `LlamaConfig::into_config` does.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Llama 3 style `rope_scaling` (`rope_type: llama3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// The runtime configuration of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `llama`, `mistral` or `qwen2`.
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v (Qwen2, or llama's `attention_bias`).
    pub qkv_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rms_norm_eps: Option<f64>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

fn first_id(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().map(|x| x as u32),
        serde_json::Value::Array(a) => a.first()?.as_u64().map(|x| x as u32),
        _ => None,
    }
}

impl Config {
    /// Read a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_hf_json(&text).map_err(|message| TrainError::bad(path, message))
    }

    pub fn from_hf_json(text: &str) -> std::result::Result<Config, String> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let model_type = hf.model_type.unwrap_or_else(|| "llama".into());
        if !matches!(model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(format!(
                "model_type `{model_type}` is not supported (llama, mistral, qwen2 are)"
            ));
        }
        let rope_scaling = match &hf.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                if kind != "llama3" {
                    return Err(format!(
                        "rope_scaling type `{kind}` is not supported (only llama3)"
                    ));
                }
                Some(serde_json::from_value(v.clone()).map_err(|e| format!("rope_scaling: {e}"))?)
            }
        };
        let heads = hf.num_attention_heads;
        Ok(Config {
            qkv_bias: model_type == "qwen2" || hf.attention_bias.unwrap_or(false),
            tie_word_embeddings: hf
                .tie_word_embeddings
                .unwrap_or(model_type == "qwen2" && hf.hidden_size <= 2048),
            model_type,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / heads),
            vocab_size: hf.vocab_size,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            rope_theta: hf.rope_theta.unwrap_or(10000.0),
            rope_scaling,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            bos_token_id: first_id(&hf.bos_token_id),
            eos_token_id: first_id(&hf.eos_token_id),
        })
    }

    /// `builtin:tiny`'s shapes.
    pub fn tiny() -> Config {
        let t = pipe_model::builtin::TINY_CONFIG;
        Config {
            model_type: "llama".into(),
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads,
            head_dim: t.hidden_size / t.num_attention_heads,
            vocab_size: t.vocab_size,
            max_position_embeddings: t.max_position_embeddings,
            rope_theta: t.rope_theta,
            rope_scaling: None,
            rms_norm_eps: t.rms_norm_eps,
            tie_word_embeddings: t.tie_word_embeddings,
            qkv_bias: false,
            bos_token_id: None,
            eos_token_id: Some(pipe_model::builtin::IM_END_ID),
        }
    }

    /// A Hugging Face `config.json` for this model (merged-model export).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let arch = match self.model_type.as_str() {
            "qwen2" => "Qwen2ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        };
        let mut v = serde_json::json!({
            "architectures": [arch],
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        let obj = v.as_object_mut().expect("object");
        if self.model_type == "llama" {
            obj.insert("attention_bias".into(), self.qkv_bias.into());
        }
        if let Some(s) = &self.rope_scaling {
            let mut s = serde_json::to_value(s).expect("serializable");
            s["rope_type"] = "llama3".into();
            obj.insert("rope_scaling".into(), s);
        }
        if let Some(id) = self.bos_token_id {
            obj.insert("bos_token_id".into(), id.into());
        }
        if let Some(id) = self.eos_token_id {
            obj.insert("eos_token_id".into(), id.into());
        }
        v
    }

    /// Inverse frequencies of the rotary embedding, with Llama 3 scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64);
                match &self.rope_scaling {
                    None => f,
                    Some(s) => {
                        let old = s.original_max_position_embeddings as f64;
                        let low_wavelen = old / s.low_freq_factor;
                        let high_wavelen = old / s.high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_gets_bias_and_llama3_scaling_parses() {
        let c = Config::from_hf_json(
            r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,"tie_word_embeddings":true}"#,
        )
        .unwrap();
        assert!(c.qkv_bias && c.tie_word_embeddings && c.head_dim == 16);
        let c = Config::from_hf_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"rope_theta":500000.0,
            "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
        )
        .unwrap();
        let plain = Config {
            rope_scaling: None,
            ..c.clone()
        };
        let (a, b) = (c.inv_freq(), plain.inv_freq());
        assert_eq!(a[0], b[0], "high frequencies are kept");
        assert!(
            (a[7] - b[7] / 8.0).abs() < 1e-15,
            "low frequencies are divided"
        );
        let err = Config::from_hf_json(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(err.contains("gpt2") || err.contains("missing"));
    }
}
