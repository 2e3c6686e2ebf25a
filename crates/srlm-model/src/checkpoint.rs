//! Checkpoints in HF's layout: `model.safetensors` (HF tensor names, f32, Q/K in HF's
//! half-split layout), `config.json`, `tokenizer.json`, `tokenizer_config.json` (with the chat
//! template), written atomically: everything goes into a temporary sibling folder which is
//! renamed into place, so a crash never leaves a checkpoint that looks complete. The folder
//! carries srlm's output marker (`srlm.json`, see [`srlm_core::output`]); an existing folder is
//! replaced only when it carries the marker, so a folder srlm did not write is never removed.

use crate::error::{io_err, ModelError, Result};
use crate::model::LanguageModel;
use std::path::Path;

/// Writes `model` to `dir` (replacing an earlier srlm checkpoint there).
///
/// Errors: [`ModelError::Io`], [`ModelError::InvalidInput`] if a weight is not finite (a
/// checkpoint is never written from NaN/inf weights) or `dir` holds something other than an
/// srlm checkpoint (a file, a folder without the marker), [`ModelError::Candle`].
pub fn save_checkpoint(model: &LanguageModel, dir: &Path) -> Result<()> {
    use srlm_core::output::{dir_state, DirState};
    match dir_state(dir) {
        DirState::Missing | DirState::Empty => {}
        DirState::Ours(m) if m.srlm_output == CHECKPOINT => {}
        _ => {
            return Err(ModelError::InvalidInput(format!(
                "{}: holds something srlm did not write as a checkpoint; not replaced",
                dir.display()
            )))
        }
    }
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
    remove_stale_temporaries(parent, &name);
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    // A failed write (a full disk) names the file and leaves no temporary folder behind.
    if let Err(e) = write_files(model, &tensors, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        // An earlier srlm checkpoint (checked above): moved aside, then removed.
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes the checkpoint's files into `tmp` and syncs them.
fn write_files(
    model: &LanguageModel,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    tmp: &Path,
) -> Result<()> {
    srlm_core::output::write_marker(tmp, CHECKPOINT).map_err(|e| match e {
        srlm_core::JsonlError::Io { path, error } => ModelError::Io { path, error },
        other => ModelError::InvalidInput(other.to_string()),
    })?;
    let weights = tmp.join("model.safetensors");
    candle_core::safetensors::save(tensors, &weights).map_err(|e| ModelError::Io {
        path: weights.clone(),
        error: std::io::Error::other(e.to_string()),
    })?;
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
    Ok(())
}

/// The kind in a checkpoint's output marker.
pub const CHECKPOINT: &str = "checkpoint";

/// Removes the temporary folders (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`) that processes
/// which no longer run left beside checkpoint `<name>` in `parent` (a kill during a save).
fn remove_stale_temporaries(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = [".tmp-", ".old-"].iter().find_map(|tag| {
            file.strip_prefix(&format!(".{name}{tag}"))
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(pid) = pid {
            // Only what a save writes: a folder with the checkpoint marker (written first), or
            // an empty one.
            use srlm_core::output::{dir_state, DirState};
            let ours = match dir_state(&entry.path()) {
                DirState::Empty => true,
                DirState::Ours(m) => m.srlm_output == CHECKPOINT,
                _ => false,
            };
            if ours && pid != std::process::id() && !srlm_core::output::process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
