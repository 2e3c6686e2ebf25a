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
    /// See [`LlamaConfig::rope_theta`].
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
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
fn default_theta() -> f64 {
    10000.0
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
    /// Maps to the runtime config. Errors: [`ModelError::UnsupportedArchitecture`].
    pub fn to_runtime(&self) -> Result<LlamaConfig> {
        let architecture = Architecture::parse(&self.model_type)?;
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
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self
                .attention_bias
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: first_id(&self.bos_token_id),
            eos_token_id: first_id(&self.eos_token_id),
        })
    }
}

impl LlamaConfig {
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
            rope_theta: self.rope_theta,
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
        };
        // SmolLM2-135M: 134,515,008 parameters (HF model card's "135M").
        assert_eq!(c.num_parameters(), 134_515_008);
    }
}
