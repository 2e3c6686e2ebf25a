//! Model configuration: HF `config.json` (serde) and GGUF metadata, mapped into one runtime
//! [`LlamaConfig`] for the Llama family (Llama 2/3, SmolLM2, Mistral, Qwen2).

use crate::error::{ModelError, Result};
use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

/// Which member of the Llama family; decides tensor names, biases and the GGUF Q/K layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3, SmolLM, SmolLM2 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`): Llama layout; sliding-window attention is not applied
    /// (srlm's sequences are shorter than the window).
    Mistral,
    /// Qwen2 (`Qwen2ForCausalLM`): Llama layout plus biases on the Q, K and V projections.
    Qwen2,
}

impl Architecture {
    /// Parses an HF `model_type` / GGUF `general.architecture` value.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            other => Err(ModelError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// The HF `model_type` name.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// The HF `architectures[0]` class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// Runtime configuration of a decoder-only Llama-family transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Family member.
    pub architecture: Architecture,
    /// Vocabulary size V (rows of the embedding).
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Per-head width (usually hidden_size / num_attention_heads).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency θ.
    pub rope_theta: f64,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether Q/K/V projections have biases (Qwen2).
    pub attention_bias: bool,
    /// Start-of-sequence token id, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, if any.
    pub eos_token_id: Option<u32>,
    /// RoPE frequency scaling (Llama 3.1's `rope_type = "llama3"`), if any.
    pub rope_scaling: Option<Llama3RopeScaling>,
}

/// Llama 3.1's RoPE frequency scaling (HF `rope_type = "llama3"`, Meta's `apply_scaling`):
/// wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided
/// by `factor`, shorter than `… / high_freq_factor` kept, and those between interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Division of the low frequencies (8 for Llama 3.1).
    pub factor: f64,
    /// 1 for Llama 3.1.
    pub low_freq_factor: f64,
    /// 4 for Llama 3.1.
    pub high_freq_factor: f64,
    /// The pre-training context (8192 for Llama 3.1).
    pub original_max_position_embeddings: usize,
}

impl Llama3RopeScaling {
    /// The scaled inverse frequency of one RoPE dimension pair (HF's
    /// `_compute_llama3_parameters`).
    pub fn scale(&self, inv_freq: f64) -> f64 {
        let old = self.original_max_position_embeddings as f64;
        let (low_wavelen, high_wavelen) = (old / self.low_freq_factor, old / self.high_freq_factor);
        let wavelen = std::f64::consts::TAU / inv_freq;
        if wavelen < high_wavelen {
            inv_freq
        } else if wavelen > low_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (old / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

/// The subset of an HF `config.json` srlm reads (and writes back in checkpoints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HfConfig {
    /// e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// e.g. `"llama"`.
    pub model_type: String,
    /// See [`LlamaConfig::vocab_size`].
    pub vocab_size: usize,
    /// See [`LlamaConfig::hidden_size`].
    pub hidden_size: usize,
    /// See [`LlamaConfig::intermediate_size`].
    pub intermediate_size: usize,
    /// See [`LlamaConfig::num_hidden_layers`].
    pub num_hidden_layers: usize,
    /// See [`LlamaConfig::num_attention_heads`].
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// See [`LlamaConfig::rms_norm_eps`].
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// See [`LlamaConfig::rope_theta`]. transformers 4 writes it here, transformers 5 in
    /// `rope_parameters`; 10000 when neither has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// transformers 4's RoPE scaling (`{"rope_type": "llama3", "factor": 8.0, …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5's RoPE settings (`{"rope_theta": …, "rope_type": "default" | "llama3",
    /// …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// See [`LlamaConfig::max_position_embeddings`].
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    /// See [`LlamaConfig::tie_word_embeddings`].
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's explicit flag; Qwen2 implies biases.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// See [`LlamaConfig::bos_token_id`].
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    /// See [`LlamaConfig::eos_token_id`] (a number or a list; the first is used).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Always `"float32"` in srlm checkpoints.
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_ctx() -> usize {
    2048
}

fn first_id(v: &Option<serde_json::Value>) -> Option<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|n| n.as_u64()).map(|n| n as u32),
        _ => None,
    }
}

impl HfConfig {
    /// RoPE's base θ and scaling from `rope_theta` / `rope_scaling` (transformers 4) or
    /// `rope_parameters` (transformers 5).
    ///
    /// Errors: [`ModelError::Weights`] for a `rope_type` srlm does not implement (linear,
    /// dynamic, YaRN, LongRoPE, …: their logits would be silently wrong) or a llama3 scaling
    /// without its four numbers.
    fn rope(&self) -> Result<(f64, Option<Llama3RopeScaling>)> {
        let params = self.rope_parameters.as_ref();
        let theta = self
            .rope_theta
            .or_else(|| params.and_then(|p| p["rope_theta"].as_f64()))
            .unwrap_or(10000.0);
        let scaling = match (params, &self.rope_scaling) {
            (_, Some(v)) if !v.is_null() => Some(v),
            (Some(p), _) => Some(p),
            _ => None,
        };
        let Some(v) = scaling else {
            return Ok((theta, None));
        };
        let kind = v["rope_type"].as_str().or_else(|| v["type"].as_str());
        match kind {
            None | Some("default") => Ok((theta, None)),
            Some("llama3") => {
                let scaling = serde_json::from_value::<Llama3RopeScaling>(v.clone()).map_err(|e| {
                    ModelError::Weights(format!("config.json: llama3 RoPE scaling: {e}"))
                })?;
                Ok((theta, Some(scaling)))
            }
            Some(other) => Err(ModelError::Weights(format!(
                "config.json: RoPE scaling `{other}` is not implemented by srlm (default and llama3 are)"
            ))),
        }
    }

    /// Maps to the runtime config. Errors: [`ModelError::UnsupportedArchitecture`], and
    /// [`HfConfig::rope`]'s.
    pub fn to_runtime(&self) -> Result<LlamaConfig> {
        let architecture = Architecture::parse(&self.model_type)?;
        let (rope_theta, rope_scaling) = self.rope()?;
        Ok(LlamaConfig {
            architecture,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self
                .attention_bias
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: first_id(&self.bos_token_id),
            eos_token_id: first_id(&self.eos_token_id),
            rope_scaling,
        })
    }
}

impl LlamaConfig {
    /// Reads an HF `config.json` (shapes only: no weights or tokenizer needed).
    /// Errors: [`ModelError::Io`], [`ModelError::Corrupt`], and those of
    /// [`HfConfig::to_runtime`].
    pub fn from_hf_config_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| ModelError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
            path: path.to_path_buf(),
            format: "config.json",
            message: e.to_string(),
        })?;
        hf.to_runtime()
    }

    /// The HF `config.json` for this model (what HF transformers loads).
    pub fn to_hf(&self) -> HfConfig {
        HfConfig {
            architectures: vec![self.architecture.hf_class().to_string()],
            model_type: self.architecture.model_type().to_string(),
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: Some(self.num_key_value_heads),
            head_dim: Some(self.head_dim),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: Some(self.rope_theta),
            rope_scaling: self.rope_scaling.map(|r| {
                let mut v = serde_json::to_value(r).expect("serialises");
                v["rope_type"] = "llama3".into();
                v
            }),
            rope_parameters: None,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: Some(self.attention_bias),
            bos_token_id: self.bos_token_id.map(Into::into),
            eos_token_id: self.eos_token_id.map(Into::into),
            torch_dtype: Some("float32".into()),
        }
    }

    /// Reads the config from GGUF metadata (`<arch>.block_count`, `<arch>.embedding_length`, …).
    /// Errors: [`ModelError::UnsupportedArchitecture`], [`ModelError::Weights`] for a missing key.
    pub fn from_gguf(ct: &gguf_file::Content, has_output_weight: bool) -> Result<Self> {
        let arch_name = meta_str(ct, "general.architecture")?;
        let architecture = Architecture::parse(&arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let get = |k: &str| meta_u32(ct, &key(k));
        let hidden_size = get("embedding_length")? as usize;
        let heads = get("attention.head_count")? as usize;
        let vocab_size = match get("vocab_size") {
            Ok(v) => v as usize,
            Err(_) => match ct.metadata.get("tokenizer.ggml.tokens") {
                Some(gguf_file::Value::Array(a)) => a.len(),
                _ => {
                    return Err(ModelError::Weights(
                        "GGUF has neither vocab_size nor tokenizer.ggml.tokens".into(),
                    ))
                }
            },
        };
        if ct.tensor_infos.contains_key("rope_freqs.weight") {
            // llama.cpp's form of Llama 3.1's RoPE scaling: per-dimension frequency factors.
            return Err(ModelError::Weights(
                "the GGUF carries `rope_freqs.weight` (RoPE frequency scaling, e.g. Llama 3.1), which srlm does not apply; load the model's HF folder instead".into(),
            ));
        }
        Ok(LlamaConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: get("feed_forward_length")? as usize,
            num_hidden_layers: get("block_count")? as usize,
            num_attention_heads: heads,
            num_key_value_heads: get("attention.head_count_kv")
                .map(|v| v as usize)
                .unwrap_or(heads),
            head_dim: get("attention.key_length")
                .map(|v| v as usize)
                .unwrap_or(hidden_size / heads),
            rms_norm_eps: meta_f32(ct, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5)
                as f64,
            rope_theta: meta_f32(ct, &key("rope.freq_base")).unwrap_or(10000.0) as f64,
            max_position_embeddings: get("context_length").map(|v| v as usize).unwrap_or(2048),
            tie_word_embeddings: !has_output_weight,
            attention_bias: architecture == Architecture::Qwen2,
            rope_scaling: None,
            bos_token_id: meta_u32(ct, "tokenizer.ggml.bos_token_id").ok(),
            eos_token_id: meta_u32(ct, "tokenizer.ggml.eos_token_id").ok(),
        })
    }

    /// A 2-layer Llama config (vocabulary 64, width 32, 4 query / 2 key-value heads of width 8,
    /// context 128) for fast plumbing tests with [`crate::Llama::random`]; never for results.
    pub fn tiny() -> Self {
        LlamaConfig {
            architecture: Architecture::Llama,
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 128,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            rope_scaling: None,
        }
    }

    /// Number of parameters N (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let d = self.hidden_size;
        let kv = self.num_key_value_heads * self.head_dim;
        let q = self.num_attention_heads * self.head_dim;
        let attn = d * q + 2 * d * kv + q * d + if self.attention_bias { q + 2 * kv } else { 0 };
        let mlp = 3 * d * self.intermediate_size;
        let per_layer = attn + mlp + 2 * d;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }
}

pub(crate) fn meta_str(ct: &gguf_file::Content, key: &str) -> Result<String> {
    match ct.metadata.get(key) {
        Some(gguf_file::Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(ModelError::Weights(format!(
            "GGUF metadata `{key}` is not a string: {v:?}"
        ))),
        None => Err(ModelError::Weights(format!(
            "GGUF metadata `{key}` is missing"
        ))),
    }
}

pub(crate) fn meta_u32(ct: &gguf_file::Content, key: &str) -> Result<u32> {
    use gguf_file::Value::*;
    match ct.metadata.get(key) {
        Some(U8(v)) => Ok(*v as u32),
        Some(U16(v)) => Ok(*v as u32),
        Some(U32(v)) => Ok(*v),
        Some(U64(v)) => Ok(*v as u32),
        Some(I32(v)) if *v >= 0 => Ok(*v as u32),
        Some(I64(v)) if *v >= 0 => Ok(*v as u32),
        Some(v) => Err(ModelError::Weights(format!(
            "GGUF metadata `{key}` is not an unsigned integer: {v:?}"
        ))),
        None => Err(ModelError::Weights(format!(
            "GGUF metadata `{key}` is missing"
        ))),
    }
}

fn meta_f32(ct: &gguf_file::Content, key: &str) -> Result<f32> {
    match ct.metadata.get(key) {
        Some(gguf_file::Value::F32(v)) => Ok(*v),
        Some(gguf_file::Value::F64(v)) => Ok(*v as f32),
        _ => Err(ModelError::Weights(format!(
            "GGUF metadata `{key}` is missing or not a float"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_settings_of_transformers_4_and_5_and_llama3_scaling() {
        let base = r#""model_type":"llama","vocab_size":10,"hidden_size":4096,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":32,"head_dim":128"#;
        let parse = |extra: &str| -> Result<LlamaConfig> {
            serde_json::from_str::<HfConfig>(&format!("{{{base}{extra}}}"))
                .unwrap()
                .to_runtime()
        };
        // transformers 5 writes θ inside rope_parameters (TRL's checkpoints of SmolLM2).
        let c =
            parse(r#","rope_parameters":{"rope_theta":100000.0,"rope_type":"default"}"#).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1e5, None));
        assert_eq!(parse(r#","rope_theta":5e5"#).unwrap().rope_theta, 5e5);
        assert_eq!(parse("").unwrap().rope_theta, 1e4);
        // Llama 3.1-8B's scaling. Reference: transformers 5.24.0's
        // ROPE_INIT_FUNCTIONS["llama3"] on this config (run in scripts/install-trl.sh's venv),
        // inverse frequencies of dimension pairs 0, 20, 40, 44, 46, 48, 52, 63.
        let llama3 = r#","rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#;
        let c = parse(llama3).unwrap();
        let s = c.rope_scaling.expect("llama3 scaling");
        let reference = [
            (0, 1.0),
            (20, 0.016560440883040428),
            (40, 3.428102354519069e-05),
            (44, 1.5096217794052791e-05),
            (46, 1.0017868589784484e-05),
            (48, 6.647869668086059e-06),
            (52, 2.927499735960737e-06),
            (63, 3.068925877869333e-07),
        ];
        for (i, want) in reference {
            let f = s.scale(1.0 / 5e5f64.powf(2.0 * i as f64 / 128.0));
            assert!((f - want).abs() <= 1e-6 * want, "pair {i}: {f} vs {want}");
        }
        // transformers 4's layout says the same; a checkpoint srlm writes keeps it.
        let v4 = llama3
            .replace("rope_parameters", "rope_scaling")
            .replace(r#""rope_theta":500000.0,"#, "");
        let c4 = parse(&format!(r#","rope_theta":500000.0{v4}"#)).unwrap();
        assert_eq!((c4.rope_theta, c4.rope_scaling), (5e5, Some(s)));
        let back = serde_json::to_string(&c.to_hf()).unwrap();
        let again: HfConfig = serde_json::from_str(&back).unwrap();
        assert_eq!(again.to_runtime().unwrap().rope_scaling, Some(s));
        // Scalings srlm does not implement are refused, not ignored.
        let e = parse(r#","rope_scaling":{"rope_type":"yarn","factor":4.0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`yarn`") && e.contains("not implemented"), "{e}");
    }

    #[test]
    fn qwen2_and_mistral_configs_map() {
        let qwen: HfConfig = serde_json::from_str(
            r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,"hidden_size":896,
            "intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,
            "rms_norm_eps":1e-6,"rope_theta":1000000.0,"max_position_embeddings":32768,"tie_word_embeddings":true,
            "bos_token_id":151643,"eos_token_id":151645}"#,
        )
        .unwrap();
        let c = qwen.to_runtime().unwrap();
        assert_eq!(
            (c.architecture, c.head_dim, c.num_key_value_heads),
            (Architecture::Qwen2, 64, 2)
        );
        assert!(c.attention_bias && c.tie_word_embeddings);
        assert_eq!(
            (c.bos_token_id, c.eos_token_id),
            (Some(151643), Some(151645))
        );
        let mistral: HfConfig = serde_json::from_str(
            r#"{"model_type":"mistral","vocab_size":32000,"hidden_size":4096,"intermediate_size":14336,
            "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"sliding_window":4096,"eos_token_id":[2,3]}"#,
        )
        .unwrap();
        let m = mistral.to_runtime().unwrap();
        assert_eq!(
            (m.architecture, m.head_dim, m.rope_theta, m.eos_token_id),
            (Architecture::Mistral, 128, 10000.0, Some(2))
        );
        assert!(!m.attention_bias && !m.tie_word_embeddings);
        let bad: HfConfig = serde_json::from_str(r#"{"model_type":"gpt2","vocab_size":1,"hidden_size":1,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":1}"#).unwrap();
        assert_eq!(
            bad.to_runtime().unwrap_err().to_string(),
            "unsupported architecture `gpt2` (srlm supports llama, mistral and qwen2)"
        );
    }

    #[test]
    fn smollm2_parameter_count() {
        let c = LlamaConfig {
            architecture: Architecture::Llama,
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 1e5,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            rope_scaling: None,
        };
        // SmolLM2-135M: 134,515,008 parameters (HF model card's "135M").
        assert_eq!(c.num_parameters(), 134_515_008);
    }
}
