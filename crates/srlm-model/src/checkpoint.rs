//! Checkpoints in HF's layout (a LoRA model's in PEFT's adapter layout, the base not copied:
//! `adapter_config.json`, `adapter_model.safetensors`, the tokenizer files): `model.safetensors` (HF tensor names, f32 unless saved as bf16
//! or f16 ([`SaveDtype`]), Q/K in HF's half-split layout), `config.json`, `tokenizer.json`,
//! `tokenizer_config.json` (with the chat template), written atomically: everything goes into a
//! temporary sibling folder which is renamed into place, so a crash never leaves a checkpoint
//! that looks complete. The folder carries srlm's output marker (`srlm.json`, see
//! [`srlm_core::output`]); an existing folder is replaced only when it carries the marker, so a
//! folder srlm did not write is never removed. Files get the permissions of any new file
//! (`0644` under the usual umask), the weights included.
//!
//! [`link_checkpoint`] publishes an existing checkpoint at a second place without a second
//! copy of its bytes (hard links), which is how a run folder shows the models its cache holds.

use crate::error::{io_err, ModelError, Result};
use crate::model::LanguageModel;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The floating-point type of a checkpoint's weights. Training and sampling always run in f32;
/// a bf16 or f16 checkpoint is half the size and loads back (converted to f32) with rounding
/// errors of about 0.4% (bf16) or 0.05% (f16) per weight.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SaveDtype {
    /// 32-bit floats: the weights exactly as trained (4 bytes per parameter).
    #[default]
    F32,
    /// bfloat16 (2 bytes per parameter; PyTorch's `torch.bfloat16`).
    Bf16,
    /// IEEE half precision (2 bytes per parameter; `torch.float16`).
    F16,
}

impl SaveDtype {
    /// candle's dtype.
    pub fn dtype(self) -> DType {
        match self {
            SaveDtype::F32 => DType::F32,
            SaveDtype::Bf16 => DType::BF16,
            SaveDtype::F16 => DType::F16,
        }
    }

    /// The name HF's `config.json` uses (`torch_dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "float32",
            SaveDtype::Bf16 => "bfloat16",
            SaveDtype::F16 => "float16",
        }
    }
}

impl std::str::FromStr for SaveDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(SaveDtype::F32),
            "bf16" => Ok(SaveDtype::Bf16),
            "f16" => Ok(SaveDtype::F16),
            other => Err(format!("`{other}`: expected f32, bf16 or f16")),
        }
    }
}

impl std::fmt::Display for SaveDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaveDtype::F32 => "f32",
            SaveDtype::Bf16 => "bf16",
            SaveDtype::F16 => "f16",
        })
    }
}

/// Refuses `dir` unless it is missing, empty or an srlm checkpoint (which may be replaced).
fn check_replaceable(dir: &Path) -> Result<()> {
    use srlm_core::output::{dir_state, DirState};
    match dir_state(dir) {
        DirState::Missing | DirState::Empty => Ok(()),
        DirState::Ours(m) if m.srlm_output == CHECKPOINT => Ok(()),
        _ => Err(ModelError::InvalidInput(format!(
            "{}: holds something srlm did not write as a checkpoint; not replaced",
            dir.display()
        ))),
    }
}

/// Writes `model` to `dir` with its weights as `dtype` (replacing an earlier srlm checkpoint
/// there).
///
/// Errors: [`ModelError::Io`], [`ModelError::InvalidInput`] if a weight is not finite (a
/// checkpoint is never written from NaN/inf weights) or `dir` holds something other than an
/// srlm checkpoint (a file, a folder without the marker), [`ModelError::Candle`].
pub fn save_checkpoint(model: &LanguageModel, dir: &Path, dtype: SaveDtype) -> Result<()> {
    check_replaceable(dir)?;
    if let Some(config) = model.model.lora_config() {
        return save_adapter(model, config, dir, dtype);
    }
    let tensors = model.model.named_tensors()?;
    for (name, t) in &tensors {
        if !crate::scoring::all_finite(t)? {
            return Err(ModelError::InvalidInput(format!(
                "weight `{name}` is not finite; checkpoint not written"
            )));
        }
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(dtype.dtype())?)))
        .collect::<Result<std::collections::HashMap<_, _>>>()?;
    publish(dir, |tmp| write_files(model, &tensors, dtype, tmp))
}

/// A LoRA model's checkpoint: PEFT's adapter format (`adapter_config.json` naming the base,
/// `adapter_model.safetensors` with PEFT's tensor names) plus the tokenizer files and srlm's
/// marker; the base is not copied.
fn save_adapter(
    model: &LanguageModel,
    config: &crate::LoraConfig,
    dir: &Path,
    dtype: SaveDtype,
) -> Result<()> {
    let mut tensors = std::collections::HashMap::new();
    for (name, var) in model.model.named_vars() {
        if !crate::scoring::all_finite(var.as_tensor())? {
            return Err(ModelError::InvalidInput(format!(
                "adapter weight `{name}` is not finite; checkpoint not written"
            )));
        }
        let key = format!("{}{name}", crate::lora::PEFT_PREFIX);
        tensors.insert(key, var.as_tensor().to_dtype(dtype.dtype())?);
    }
    publish(dir, |tmp| {
        write_marker(tmp)?;
        crate::lora::write_adapter_config(tmp, config, model.base_model.as_deref(), 0.0)?;
        write_safetensors(&tensors, &tmp.join(crate::lora::ADAPTER_WEIGHTS), tmp)?;
        write_tokenizer_files(model, tmp)?;
        sync_files(tmp)
    })
}

/// Publishes the srlm checkpoint `src`, whose weights are `dtype`, at `dir` as hard links to
/// its files (copies where the file system cannot link), atomically and with the same
/// replacement rule as [`save_checkpoint`]: one copy of the weights on disk, two names.
///
/// Errors: [`ModelError::InvalidInput`] when `src` is not an srlm checkpoint, its weights are
/// not `dtype` (its `config.json`'s `torch_dtype`), or `dir` cannot be replaced;
/// [`ModelError::Io`].
pub fn link_checkpoint(src: &Path, dir: &Path, dtype: SaveDtype) -> Result<()> {
    use srlm_core::output::{dir_state, DirState};
    if !matches!(dir_state(src), DirState::Ours(m) if m.srlm_output == CHECKPOINT) {
        return Err(ModelError::InvalidInput(format!(
            "{}: not a checkpoint srlm wrote",
            src.display()
        )));
    }
    let config: serde_json::Value = std::fs::read_to_string(src.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if config["torch_dtype"].as_str() != Some(dtype.torch_name()) {
        return Err(ModelError::InvalidInput(format!(
            "{}: weights are {}, not {}",
            src.display(),
            config["torch_dtype"],
            dtype.torch_name()
        )));
    }
    check_replaceable(dir)?;
    publish(dir, |tmp| {
        for entry in std::fs::read_dir(src).map_err(io_err(src))? {
            let from = entry.map_err(io_err(src))?.path();
            let to = tmp.join(from.file_name().expect("a directory entry has a name"));
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io_err(&to))?;
            }
        }
        Ok(())
    })
}

/// Fills a temporary sibling of `dir` with `fill` and renames it into place (an earlier srlm
/// checkpoint there is moved aside first, then removed).
fn publish(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
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
    if let Err(e) = fill(&tmp) {
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
    dtype: SaveDtype,
    tmp: &Path,
) -> Result<()> {
    write_marker(tmp)?;
    write_safetensors(tensors, &tmp.join("model.safetensors"), tmp)?;
    let mut hf = model.model.config().to_hf();
    hf.torch_dtype = Some(dtype.torch_name().into());
    write_json(
        tmp,
        "config.json",
        &serde_json::to_value(hf).expect("config serialises"),
    )?;
    write_tokenizer_files(model, tmp)?;
    sync_files(tmp)
}

fn write_marker(tmp: &Path) -> Result<()> {
    srlm_core::output::write_marker(tmp, CHECKPOINT).map_err(|e| match e {
        srlm_core::JsonlError::Io { path, error } => ModelError::Io { path, error },
        other => ModelError::InvalidInput(other.to_string()),
    })
}

fn write_json(tmp: &Path, file: &str, v: &serde_json::Value) -> Result<()> {
    let p = tmp.join(file);
    std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(io_err(&p))
}

/// Writes `tensors` to `file`. The safetensors writer creates it owner-only (0600); it gets
/// the permissions of the marker written first into `tmp` (the umask's), like the
/// checkpoint's other files.
fn write_safetensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    file: &Path,
    tmp: &Path,
) -> Result<()> {
    candle_core::safetensors::save(tensors, file).map_err(|e| ModelError::Io {
        path: file.to_path_buf(),
        error: std::io::Error::other(e.to_string()),
    })?;
    let marker = tmp.join(srlm_core::output::MARKER);
    let mode = std::fs::metadata(&marker)
        .map_err(io_err(&marker))?
        .permissions();
    std::fs::set_permissions(file, mode).map_err(io_err(file))
}

/// `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
/// `generation_config.json`.
fn write_tokenizer_files(model: &LanguageModel, tmp: &Path) -> Result<()> {
    let cfg = model.model.config();
    model.tokenizer.save(&tmp.join("tokenizer.json"))?;
    let tok = |id: Option<u32>| id.and_then(|i| model.tokenizer.id_to_token(i));
    write_json(
        tmp,
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
        tmp,
        "generation_config.json",
        &serde_json::json!({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}),
    )
}

/// fsyncs every file in `tmp`, so the rename publishes complete data.
fn sync_files(tmp: &Path) -> Result<()> {
    for entry in std::fs::read_dir(tmp).map_err(io_err(tmp))? {
        let p = entry.map_err(io_err(tmp))?.path();
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&p))?;
    }
    Ok(())
}

/// Whether the safetensors file at `path` is whole, judged from its header alone (read without
/// the tensor data): the header parses and the file is exactly as long as the tensors it lists
/// need. A truncated or overwritten weights file fails; a file whose tensor bytes were changed
/// in place passes (that takes loading it).
pub fn safetensors_complete(path: &Path) -> bool {
    use std::io::Read;
    let check = || -> Option<bool> {
        let mut f = std::fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        let mut n = [0u8; 8];
        f.read_exact(&mut n).ok()?;
        let n = u64::from_le_bytes(n);
        if n > 100 << 20 || 8 + n > len {
            return Some(false);
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).ok()?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).ok()?;
        let mut end = 0u64;
        for (name, t) in &header {
            if name == "__metadata__" {
                continue;
            }
            end = end.max(t["data_offsets"][1].as_u64()?);
        }
        Some(len == 8 + n + end)
    };
    check().unwrap_or(false)
}

/// The weights file of checkpoint folder `dir`: `adapter_model.safetensors` for a LoRA
/// adapter (an `adapter_config.json` beside it), else `model.safetensors`.
pub fn checkpoint_weights(dir: &Path) -> std::path::PathBuf {
    match crate::lora::is_adapter_dir(dir) {
        true => dir.join(crate::lora::ADAPTER_WEIGHTS),
        false => dir.join("model.safetensors"),
    }
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
