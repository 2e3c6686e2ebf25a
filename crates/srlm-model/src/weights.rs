//! Reads weights into HF-named f32 tensors: GGUF (every quantization candle can read,
//! dequantized) and safetensors directories.
//!
//! GGUF stores Llama weights under llama.cpp names (`blk.0.attn_q.weight`) and, for the
//! `llama` architecture only, with the Q and K rows permuted into the interleaved RoPE layout
//! (llama.cpp's `convert_hf_to_gguf.py`, `LlamaModel.permute`). srlm computes RoPE in HF's
//! half-split layout, so loading undoes that permutation (case C2); checkpoints are then
//! directly loadable by HF transformers.

use crate::config::{Architecture, HfConfig, LlamaConfig};
use crate::error::{io_err, ModelError, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A parsed GGUF file: its metadata (tokenizer, chat template) and HF-named f32 weights.
pub struct GgufModel {
    /// The runtime config from the metadata.
    pub config: LlamaConfig,
    /// Weights by HF name, f32 on the requested device.
    pub tensors: HashMap<String, Tensor>,
    /// The raw GGUF metadata.
    pub metadata: HashMap<String, gguf_file::Value>,
}

/// Maps a llama.cpp tensor name to the HF name (`None` for tensors srlm does not use).
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undoes llama.cpp's Q/K row permutation: GGUF rows are, per head, interleaved pairs
/// (`[n_head, head_dim/2, 2, in]`); HF rows are two halves (`[n_head, 2, head_dim/2, in]`).
/// `w` is `[n_head * head_dim, in]` (or `[n_head * head_dim]` for a bias).
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let half = rows / n_head / 2;
    let inner: usize = dims[1..].iter().product();
    let t = w
        .reshape((n_head, half, 2, inner))?
        .transpose(1, 2)?
        .contiguous()?;
    Ok(t.reshape(dims)?)
}

/// Reads a GGUF model file. Errors: [`ModelError::Corrupt`] (truncated or not GGUF),
/// [`ModelError::UnsupportedArchitecture`], [`ModelError::Weights`].
pub fn load_gguf(path: &Path, device: &Device) -> Result<GgufModel> {
    let corrupt = |message: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        format: "GGUF",
        message,
    };
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| corrupt(e.to_string()))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let has_output = content.tensor_infos.contains_key("output.weight");
    let config = LlamaConfig::from_gguf(&content, has_output)?;
    let mut tensors = HashMap::new();
    for (name, info) in &content.tensor_infos {
        let Some(hf) = gguf_to_hf_name(name) else {
            continue;
        };
        let start = content.tensor_data_offset + info.offset;
        let bytes =
            info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        if start + bytes as u64 > file_len {
            return Err(corrupt(format!(
                "tensor `{name}` ends at byte {} but the file has {file_len} (truncated?)",
                start + bytes as u64
            )));
        }
        let q = content
            .tensor(&mut file, name, device)
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        let mut t = q.dequantize(device)?;
        if config.architecture == Architecture::Llama
            || config.architecture == Architecture::Mistral
        {
            if name.contains("attn_q.") {
                t = unpermute_qk(&t, config.num_attention_heads)?;
            } else if name.contains("attn_k.") {
                t = unpermute_qk(&t, config.num_key_value_heads)?;
            }
        }
        tensors.insert(hf, t);
    }
    Ok(GgufModel {
        config,
        tensors,
        metadata: content.metadata,
    })
}

/// The projection weights of a GGUF model file in their stored blocks, by HF name
/// (`model.layers.{i}.self_attn.q_proj.weight`, …), Q and K rows unpermuted as
/// [`load_gguf`] does (a row reorder: blocks lie within rows). Other tensors (embedding, norms,
/// biases) are not read. Used for a frozen quantized base ([`crate::quant`]).
///
/// Errors: [`ModelError::Corrupt`] for a file that is not GGUF or a tensor that cannot be
/// read, [`ModelError::Weights`] for a projection stored in a type candle cannot dequantize.
pub fn load_gguf_projections(
    path: &Path,
) -> Result<HashMap<String, std::sync::Arc<crate::quant::QWeight>>> {
    let corrupt = |message: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        format: "GGUF",
        message,
    };
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| corrupt(e.to_string()))?;
    let has_output = content.tensor_infos.contains_key("output.weight");
    let config = LlamaConfig::from_gguf(&content, has_output)?;
    let permuted = matches!(
        config.architecture,
        Architecture::Llama | Architecture::Mistral
    );
    let mut out = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = gguf_to_hf_name(name).filter(|n| n.ends_with("_proj.weight")) else {
            continue;
        };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        let w = crate::quant::QWeight::new(q)
            .map_err(|e| ModelError::Weights(format!("tensor `{name}`: {e}")))?;
        let heads = match name {
            _ if name.contains("attn_q.") => Some(config.num_attention_heads),
            _ if name.contains("attn_k.") => Some(config.num_key_value_heads),
            _ => None,
        };
        let w = match heads.filter(|_| permuted) {
            Some(h) => w
                .permute_rows(&unpermuted_row_order(w.dims().0, h))
                .map_err(|e| ModelError::Weights(format!("tensor `{name}`: {e}")))?,
            None => w,
        };
        out.insert(hf, std::sync::Arc::new(w));
    }
    Ok(out)
}

/// The row order [`unpermute_qk`] produces: HF row (h, two, i) is GGUF row (h, i, two), for
/// `rows = n_head · 2 · half`.
fn unpermuted_row_order(rows: usize, n_head: usize) -> Vec<usize> {
    let half = rows / n_head / 2;
    let mut order = Vec::with_capacity(rows);
    for h in 0..n_head {
        for two in 0..2 {
            for i in 0..half {
                order.push(h * half * 2 + i * 2 + two);
            }
        }
    }
    order
}

/// Reads `config.json` and every `*.safetensors` file of an HF-style directory.
/// Errors: [`ModelError::Io`], [`ModelError::Corrupt`] (bad JSON or safetensors),
/// [`ModelError::UnsupportedArchitecture`].
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
        path: cfg_path.clone(),
        format: "config.json",
        message: e.to_string(),
    })?;
    let config = hf.to_runtime()?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::Weights(format!(
            "{}: no *.safetensors file",
            dir.display()
        )));
    }
    let mut tensors = HashMap::new();
    for f in files {
        let loaded =
            candle_core::safetensors::load(&f, device).map_err(|e| ModelError::Corrupt {
                path: f.clone(),
                format: "safetensors",
                message: e.to_string(),
            })?;
        tensors.extend(loaded);
    }
    Ok((config, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map() {
        assert_eq!(
            gguf_to_hf_name("blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.ffn_norm.weight").unwrap(),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf_name("token_embd.weight").unwrap(),
            "model.embed_tokens.weight"
        );
        assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(w.shape)
        let (n_head, hd, inp) = (2usize, 4usize, 3usize);
        let hf = Tensor::arange(0f32, (n_head * hd * inp) as f32, &Device::Cpu)
            .unwrap()
            .reshape((n_head * hd, inp))
            .unwrap();
        let gguf = hf
            .reshape((n_head, 2, hd / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((n_head * hd, inp))
            .unwrap();
        assert_ne!(gguf.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
        let back = unpermute_qk(&gguf, n_head).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn truncated_gguf_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        std::fs::write(&p, b"GGUF\x03\x00\x00\x00").unwrap();
        let err = load_gguf(&p, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("not a readable GGUF file"), "{err}");
    }
}
