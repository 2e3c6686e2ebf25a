//! [`ExternalBackend`]: a run's backend whose [`Trainer`] port is an external trainer (TRL or
//! OpenRLHF as a command, srlm-trainer), its [`Generator`] port whatever backend it wraps
//! (in-process candle or an inference server).
//!
//! A DPO step: the parent model as an HF folder (a model a trainer wrote is one already; M0
//! from a GGUF is written once as an f32 HF checkpoint in the run's `cache/hf/`), its tokenizer
//! and chat template read without loading weights ([`ModelText`]), the step run in `records`
//! (`iter_<i>/trainer/`; `cache/trainer/<id>/` when the caller gives no folder), the trained
//! model moved to `out.location` and loaded by the wrapped backend.

use crate::ports::{
    Backend, BackendError, DpoRun, Generated, Generator, ModelRef, PairHidden, Trained, Trainer,
};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::DpoConfig;
use srlm_judge::JudgeModel;
use srlm_model::{ModelText, SaveDtype};
use srlm_trainer::{ExternalTrainer, TrainerConfig};
use std::path::{Path, PathBuf};

/// See the module docs.
pub struct ExternalBackend<'a> {
    inner: &'a dyn Backend,
    trainer: ExternalTrainer,
    cache: PathBuf,
}

fn dpo_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Dpo(e.to_string())
}

/// Whether `dir` is an HF checkpoint folder (config and safetensors weights).
fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

impl<'a> ExternalBackend<'a> {
    /// Wraps `inner`; `cache` holds M0's HF export and the records of steps that have no
    /// folder of their own.
    ///
    /// # Errors
    /// [`BackendError::Dpo`] for settings the trainer cannot run.
    pub fn new(
        inner: &'a dyn Backend,
        config: TrainerConfig,
        cache: &Path,
    ) -> Result<Self, BackendError> {
        if config.backend == srlm_trainer::TrainerBackend::Openrlhf {
            // OpenRLHF logs its steps only to wandb / TensorBoard, so srlm cannot take the step
            // log back (DPO metrics, NaN checks, compute accounting); refused before any GPU
            // time is spent rather than recorded without metrics.
            return Err(BackendError::Dpo(
                "trainer.backend = \"openrlhf\" is supported by `srlm run --dry-run` only (the command \
                 line srlm would run); a run needs a step log OpenRLHF does not write: use \
                 trainer.backend = \"trl\" (TRL under accelerate with DeepSpeed ZeRO-3 or FSDP)"
                    .into(),
            ));
        }
        Ok(ExternalBackend {
            inner,
            trainer: ExternalTrainer::new(config).map_err(dpo_err)?,
            cache: cache.to_path_buf(),
        })
    }

    /// `model` as an HF folder the trainer can load.
    fn hf_dir(&self, model: &ModelRef) -> Result<PathBuf, BackendError> {
        let here = PathBuf::from(&model.location);
        if is_hf_dir(&here) {
            return Ok(here);
        }
        let dir = self.cache.join("hf").join(&model.id);
        if !is_hf_dir(&dir) {
            // TRL refuses a model loaded from a quantized GGUF ("cannot perform fine-tuning on
            // purely quantized models"): it gets srlm's f32 checkpoint of it.
            self.inner.load(model)?;
            self.inner.save_checkpoint(model, &dir, SaveDtype::F32)?;
        }
        Ok(dir)
    }
}

impl Generator for ExternalBackend<'_> {
    fn weights_digest(&self, reference: &str) -> Result<String, BackendError> {
        self.inner.weights_digest(reference)
    }

    fn load(&self, model: &ModelRef) -> Result<(), BackendError> {
        self.inner.load(model)
    }

    fn release(&self, model: &ModelRef) {
        self.inner.release(model)
    }

    fn sample(
        &self,
        model: &ModelRef,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generated>>, BackendError> {
        self.inner.sample(model, prompts, cfg)
    }

    fn pair_hidden_states(
        &self,
        model: &ModelRef,
        pairs: &[PreferencePair],
    ) -> Result<Vec<PairHidden>, BackendError> {
        self.inner.pair_hidden_states(model, pairs)
    }

    fn judge_model(&self, model: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        self.inner.judge_model(model)
    }

    fn engine_id(&self) -> Option<String> {
        self.inner.engine_id()
    }
}

impl Trainer for ExternalBackend<'_> {
    fn train_dpo(
        &self,
        parent: &ModelRef,
        pairs: &[PreferencePair],
        config: &DpoConfig,
        out: &ModelRef,
        records: Option<&Path>,
    ) -> Result<Trained, BackendError> {
        let model_dir = self.hf_dir(parent)?;
        let text =
            ModelText::load(&model_dir.display().to_string()).map_err(|e| BackendError::Model {
                location: model_dir.display().to_string(),
                message: e.to_string(),
            })?;
        let work = records
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.cache.join("trainer").join(&out.id));
        let step = self
            .trainer
            .train(&model_dir, &text, pairs, config, &work)
            .map_err(dpo_err)?;
        // The trained model becomes `out` (srlm's cache): moved, not copied.
        let dest = PathBuf::from(&out.location);
        let io = |e: std::io::Error| BackendError::Model {
            location: out.location.clone(),
            message: e.to_string(),
        };
        if dest.exists() {
            // An earlier attempt's model without its summary (srlm's cache entry).
            std::fs::remove_dir_all(&dest).map_err(io)?;
        }
        if let Some(parent_dir) = dest.parent() {
            std::fs::create_dir_all(parent_dir).map_err(io)?;
        }
        // srlm's marker, and `torch_dtype` beside transformers 5's `dtype`, make the folder a
        // checkpoint srlm can publish by hard links (`link_checkpoint`), so `iter_<i>/checkpoint`
        // costs no second copy and no in-process load of a large model.
        mark_as_checkpoint(&step.model_dir).map_err(io)?;
        std::fs::rename(&step.model_dir, &dest).map_err(io)?;
        self.inner.load(out)?;
        let log = step.log.steps;
        let final_metrics = log
            .last()
            .cloned()
            .ok_or_else(|| dpo_err(format!("{}: no step was logged", work.display())))?;
        let summary = DpoRun {
            pairs: step.pairs,
            pairs_failed: step.failures.len(),
            steps: log.len() as u64,
            tokens_trained: step.tokens_trained,
            reference_tokens: step.reference_tokens,
            wall_seconds: step.wall_seconds,
            final_metrics,
            mean: crate::candle::mean_metrics(&log),
        };
        Ok(Trained { summary, log })
    }

    fn save_checkpoint(
        &self,
        model: &ModelRef,
        dir: &Path,
        dtype: SaveDtype,
    ) -> Result<(), BackendError> {
        // A model the trainer wrote in that dtype: its files under a second name. Anything else
        // (M0, another dtype) is written by the wrapped backend.
        if srlm_model::link_checkpoint(Path::new(&model.location), dir, dtype).is_ok() {
            return Ok(());
        }
        self.inner.save_checkpoint(model, dir, dtype)
    }
}

/// Marks a trainer's output folder as an srlm checkpoint and records its weights type as
/// `torch_dtype` (transformers 5 writes `dtype`; both are read by transformers).
fn mark_as_checkpoint(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    if config.get("torch_dtype").and_then(|v| v.as_str()).is_none() {
        if let Some(d) = config.get("dtype").and_then(|v| v.as_str()).map(String::from) {
            config["torch_dtype"] = serde_json::Value::String(d);
            let text = serde_json::to_string_pretty(&config).expect("json");
            srlm_core::write_atomic(&path, text.as_bytes())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    srlm_core::output::write_marker(dir, srlm_model::CHECKPOINT)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
