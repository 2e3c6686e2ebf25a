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
    Backend, BackendError, DpoRun, Generated, Generator, ModelRef, PairHidden, ResponseLogp,
    Trained, Trainer,
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
        Ok(ExternalBackend {
            inner,
            trainer: ExternalTrainer::for_run(config).map_err(dpo_err)?,
            cache: cache.to_path_buf(),
        })
    }

    /// `model` as an HF folder the trainer can load.
    fn hf_dir(&self, model: &ModelRef) -> Result<PathBuf, BackendError> {
        let here = PathBuf::from(&model.location);
        if srlm_trainer::is_hf_checkpoint(&here) {
            return Ok(here);
        }
        let dir = self.cache.join("hf").join(&model.id);
        if !srlm_trainer::is_hf_checkpoint(&dir) {
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

    fn response_logps(
        &self,
        model: &ModelRef,
        exchanges: &[(&str, &str)],
    ) -> Result<Vec<ResponseLogp>, BackendError> {
        self.inner.response_logps(model, exchanges)
    }

    fn judge_model(&self, model: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        self.inner.judge_model(model)
    }

    fn engine_id(&self) -> Option<String> {
        self.inner.engine_id()
    }

    fn suspend(&self) {
        self.inner.suspend()
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
        // The trainer gets the accelerators: inference servers stop until next used.
        self.inner.suspend();
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
        // Marked as an srlm checkpoint by the trainer: published as `iter_<i>/checkpoint` by
        // hard links (see save_checkpoint), no second copy, no in-process load.
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
            epoch_means: crate::candle::epoch_means(&log),
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
