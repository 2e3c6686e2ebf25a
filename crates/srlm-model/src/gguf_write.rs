//! Writes a [`LanguageModel`] as a GGUF file llama.cpp (`llama-server`, Ollama) can load: the
//! weights in f32 or f16 under llama.cpp's tensor names, with the Q/K rows permuted back into
//! llama.cpp's interleaved RoPE layout (the inverse of [`crate::weights::unpermute_qk`]), and
//! the metadata (architecture sizes, tokenizer, chat template, special tokens) copied from the
//! GGUF the model descends from. `general.file_type` is set to the written type. 1-D tensors
//! (norms) stay f32, as llama.cpp's converter writes them.
//!
//! [`write_gguf_lora`] writes a LoRA model's adapter alone, as llama.cpp's GGUF LoRA adapter.
//!
//! The file is written to a temporary sibling and renamed, so a crash never leaves a
//! truncated GGUF under the final name.

use crate::error::{io_err, ModelError, Result};
use crate::model::LanguageModel;
use crate::weights::gguf_to_hf_name;
use crate::Architecture;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Tensor;
use std::path::Path;

/// Element type of the weight matrices in a written GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufDType {
    /// 32-bit floats (exactly srlm's weights).
    #[default]
    F32,
    /// 16-bit floats (half the size; rounding of about 1e-3 relative).
    F16,
}

impl std::str::FromStr for GgufDType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(GgufDType::F32),
            "f16" => Ok(GgufDType::F16),
            other => Err(format!("GGUF type `{other}`: expected f32 or f16")),
        }
    }
}

/// The llama.cpp name of an HF tensor name (inverse of [`gguf_to_hf_name`]).
pub fn hf_to_gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let tails = [
        "attn_norm.weight",
        "ffn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
        "attn_output.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    tails.into_iter().find_map(|t| {
        let g = format!("blk.{layer}.{t}");
        (gguf_to_hf_name(&g).as_deref() == Some(&format!("model.layers.{layer}.{tail}")))
            .then_some(g)
    })
}

/// HF half-split Q/K rows → llama.cpp's interleaved pairs (`[n_head, 2, head_dim/2, in]` →
/// `[n_head, head_dim/2, 2, in]`).
pub fn permute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let half = dims[0] / n_head / 2;
    let inner: usize = dims[1..].iter().product();
    let t = w
        .reshape((n_head, 2, half, inner))?
        .transpose(1, 2)?
        .contiguous()?;
    Ok(t.reshape(dims)?)
}

/// Writes `model` to `out` as GGUF with `base`'s metadata (the GGUF it was trained from: same
/// tokenizer and architecture). Returns the number of tensors written.
///
/// Errors: [`ModelError::Io`]; [`ModelError::Corrupt`] for an unreadable `base`;
/// [`ModelError::InvalidInput`] when `base`'s vocabulary or sizes differ from the model's, or a
/// weight is not finite; [`ModelError::Candle`].
pub fn write_gguf(
    model: &LanguageModel,
    base: &Path,
    out: &Path,
    dtype: GgufDType,
) -> Result<usize> {
    let content = read_header(base)?;
    let cfg = model.model.config();
    let has_output = content.tensor_infos.contains_key("output.weight");
    let base_cfg = crate::LlamaConfig::from_gguf(&content, has_output)?;
    let mismatch = |what: &str| {
        ModelError::InvalidInput(format!(
            "{}: its {what} differs from the model's; a GGUF takes its metadata from the GGUF the model was trained from",
            base.display()
        ))
    };
    if (
        base_cfg.vocab_size,
        base_cfg.hidden_size,
        base_cfg.num_hidden_layers,
        base_cfg.num_attention_heads,
        base_cfg.num_key_value_heads,
        base_cfg.intermediate_size,
    ) != (
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.intermediate_size,
    ) {
        return Err(mismatch("architecture (sizes)"));
    }
    if let Some(gguf_file::Value::Array(tokens)) = content.metadata.get("tokenizer.ggml.tokens") {
        let same = tokens.len() == model.tokenizer.vocab_size()
            && tokens.iter().enumerate().all(|(id, t)| {
                t.to_string().ok().map(String::as_str)
                    == model.tokenizer.id_to_token(id as u32).as_deref()
            });
        if !same {
            return Err(mismatch("tokenizer vocabulary"));
        }
    }
    let permuted = matches!(
        cfg.architecture,
        Architecture::Llama | Architecture::Mistral
    );
    let mut named: Vec<(String, Tensor)> = Vec::new();
    let mut tensors: Vec<_> = model.model.named_tensors()?.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (hf, t) in tensors {
        if hf == "lm_head.weight" && cfg.tie_word_embeddings {
            continue;
        }
        let Some(name) = hf_to_gguf_name(&hf) else {
            return Err(ModelError::InvalidInput(format!(
                "tensor `{hf}` has no llama.cpp name"
            )));
        };
        if !crate::scoring::all_finite(&t)? {
            return Err(ModelError::InvalidInput(format!(
                "weight `{hf}` is not finite; GGUF not written"
            )));
        }
        let t = if permuted && name.contains("attn_q.") {
            permute_qk(&t, cfg.num_attention_heads)?
        } else if permuted && name.contains("attn_k.") {
            permute_qk(&t, cfg.num_key_value_heads)?
        } else {
            t
        };
        named.push((name, t));
    }
    let qtensors: Vec<(String, QTensor)> = named
        .into_iter()
        .map(|(name, t)| {
            let ty = if dtype == GgufDType::F16 && t.rank() > 1 {
                GgmlDType::F16
            } else {
                GgmlDType::F32
            };
            Ok((name, QTensor::quantize(&t, ty)?))
        })
        .collect::<Result<_>>()?;
    let file_type = gguf_file::Value::U32(match dtype {
        GgufDType::F32 => 0,
        GgufDType::F16 => 1,
    });
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    metadata.push(("general.file_type", &file_type));
    let refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_atomically(out, &metadata, &refs)?;
    Ok(refs.len())
}

/// Writes a LoRA model's adapter as llama.cpp's GGUF LoRA adapter (what
/// `convert_lora_to_gguf.py` writes; `llama-server --lora FILE`, per-request `lora` scales):
/// metadata `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, the
/// base GGUF's `general.architecture`; for every adapted projection `<gguf name>.lora_a`
/// `[r, in]` and `.lora_b` `[out, r]` in f32 (ggml's `ne` reversed: `[in, r]`, `[r, out]`),
/// B's rows of `attn_q` / `attn_k` permuted into llama.cpp's RoPE layout as the base weight's
/// are. Returns the number of tensors written.
///
/// Errors: [`ModelError::InvalidInput`] for a model without adapter or a non-finite adapter
/// weight; [`ModelError::Io`]; [`ModelError::Corrupt`] for an unreadable `base`.
pub fn write_gguf_lora(model: &LanguageModel, base: &Path, out: &Path) -> Result<usize> {
    let Some(lora) = model.model.lora_config() else {
        return Err(ModelError::InvalidInput(
            "the model has no LoRA adapter; write the whole model with write_gguf".into(),
        ));
    };
    let content = read_header(base)?;
    let arch = content
        .metadata
        .get("general.architecture")
        .cloned()
        .ok_or_else(|| ModelError::Corrupt {
            path: base.to_path_buf(),
            format: "GGUF",
            message: "no general.architecture".into(),
        })?;
    let cfg = model.model.config();
    let permuted = matches!(
        cfg.architecture,
        Architecture::Llama | Architecture::Mistral
    );
    let mut qtensors: Vec<(String, QTensor)> = Vec::new();
    for (name, var) in model.model.named_vars() {
        let (module, ab) = match (
            name.strip_suffix(".lora_A.weight"),
            name.strip_suffix(".lora_B.weight"),
        ) {
            (Some(m), _) => (m, "a"),
            (_, Some(m)) => (m, "b"),
            _ => continue,
        };
        let hf = format!("{module}.weight");
        let Some(gguf) = hf_to_gguf_name(&hf) else {
            return Err(ModelError::InvalidInput(format!(
                "adapter tensor `{name}` has no llama.cpp name"
            )));
        };
        let t = var.as_tensor().detach();
        if !crate::scoring::all_finite(&t)? {
            return Err(ModelError::InvalidInput(format!(
                "adapter weight `{name}` is not finite; GGUF not written"
            )));
        }
        let t = match ab {
            "b" if permuted && gguf.contains("attn_q.") => permute_qk(&t, cfg.num_attention_heads)?,
            "b" if permuted && gguf.contains("attn_k.") => permute_qk(&t, cfg.num_key_value_heads)?,
            _ => t,
        };
        qtensors.push((
            format!("{gguf}.lora_{ab}"),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    let kind = gguf_file::Value::String("adapter".into());
    let lora_kind = gguf_file::Value::String("lora".into());
    let alpha = gguf_file::Value::F32(lora.lora_alpha as f32);
    let metadata: Vec<(&str, &gguf_file::Value)> = vec![
        ("general.architecture", &arch),
        ("general.type", &kind),
        ("adapter.type", &lora_kind),
        ("adapter.lora.alpha", &alpha),
    ];
    let refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_atomically(out, &metadata, &refs)?;
    Ok(refs.len())
}

/// The metadata and tensor index of GGUF `base` (no tensor data).
fn read_header(base: &Path) -> Result<gguf_file::Content> {
    let mut file = std::fs::File::open(base).map_err(io_err(base))?;
    gguf_file::Content::read(&mut file).map_err(|e| ModelError::Corrupt {
        path: base.to_path_buf(),
        format: "GGUF",
        message: e.to_string(),
    })
}

/// Writes a GGUF to a temporary sibling of `out`, syncs it and renames it into place.
fn write_atomically(
    out: &Path,
    metadata: &[(&str, &gguf_file::Value)],
    tensors: &[(&str, &QTensor)],
) -> Result<()> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = std::io::BufWriter::new(f);
        gguf_file::write(&mut w, metadata, tensors)?;
        let f = w.into_inner().map_err(|e| ModelError::Io {
            path: tmp.clone(),
            error: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, out).map_err(io_err(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::unpermute_qk;
    use candle_core::Device;

    #[test]
    fn names_round_trip() {
        for g in [
            "token_embd.weight",
            "output_norm.weight",
            "output.weight",
            "blk.0.attn_q.weight",
            "blk.11.ffn_down.weight",
            "blk.3.attn_norm.weight",
            "blk.29.attn_output.weight",
        ] {
            let hf = gguf_to_hf_name(g).unwrap();
            assert_eq!(hf_to_gguf_name(&hf).as_deref(), Some(g), "{hf}");
        }
        assert_eq!(hf_to_gguf_name("model.layers.0.foo.weight"), None);
    }

    #[test]
    fn permute_inverts_unpermute() {
        // 2 heads of width 4, 3 inputs: rows 0..8.
        let w = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((8, 3))
            .unwrap();
        let hf = unpermute_qk(&w, 2).unwrap();
        // GGUF rows (per head) 0,1,2,3 = pairs (0,1),(2,3) → HF halves: 0,2 | 1,3.
        let rows: Vec<f32> = hf.get_on_dim(1, 0).unwrap().to_vec1().unwrap();
        assert_eq!(rows, vec![0., 6., 3., 9., 12., 18., 15., 21.]);
        let back = permute_qk(&hf, 2).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
