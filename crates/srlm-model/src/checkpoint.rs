//! Checkpoints in HF's layout: `model.safetensors` (HF tensor names, f32, Q/K in HF's
//! half-split layout), `config.json`, `tokenizer.json`, `tokenizer_config.json` (with the chat
//! template), written atomically: everything goes into a temporary sibling folder which is
//! renamed into place, so a crash never leaves a checkpoint that looks complete.

use crate::error::{io_err, ModelError, Result};
use crate::model::LanguageModel;
use std::path::Path;

/// Writes `model` to `dir` (replacing an existing checkpoint there).
///
/// Errors: [`ModelError::Io`], [`ModelError::InvalidInput`] if a weight is not finite (a
/// checkpoint is never written from NaN/inf weights), [`ModelError::Candle`].
pub fn save_checkpoint(model: &LanguageModel, dir: &Path) -> Result<()> {
    let tensors = model.model.named_tensors()?;
    for (name, t) in &tensors {
        let bad = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .any(|x| !x.is_finite());
        if bad {
            return Err(ModelError::InvalidInput(format!(
                "weight `{name}` is not finite; checkpoint not written"
            )));
        }
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))?;
    let cfg = model.model.config();
    let write_json = |file: &str, v: &serde_json::Value| -> Result<()> {
        let p = tmp.join(file);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(io_err(&p))
    };
    write_json(
        "config.json",
        &serde_json::to_value(cfg.to_hf()).expect("config serialises"),
    )?;
    model.tokenizer.save(&tmp.join("tokenizer.json"))?;
    let tok = |id: Option<u32>| id.and_then(|i| model.tokenizer.id_to_token(i));
    write_json(
        "tokenizer_config.json",
        &serde_json::json!({
            "chat_template": model.template.source(),
            "bos_token": tok(cfg.bos_token_id),
            "eos_token": tok(cfg.eos_token_id),
            "pad_token": model.tokenizer.id_to_token(model.pad_id),
            "model_max_length": cfg.max_position_embeddings,
            "add_bos_token": false,
            "tokenizer_class": "GPT2Tokenizer",
        }),
    )?;
    write_json(
        "generation_config.json",
        &serde_json::json!({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}),
    )?;
    // fsync the files so the rename publishes complete data.
    for entry in std::fs::read_dir(&tmp).map_err(io_err(&tmp))? {
        let p = entry.map_err(io_err(&tmp))?.path();
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&p))?;
    }
    if dir.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
    }
    Ok(())
}
