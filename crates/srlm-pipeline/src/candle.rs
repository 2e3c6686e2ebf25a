//! [`CandleBackend`]: both ports ([`Generator`], [`Trainer`]) in-process, on srlm-model's
//! candle Llama and srlm-dpo's trainer. Loaded models are kept by identity; a model trained
//! here stays in memory (it is not read back from its checkpoint). With LoRA
//! (`dpo.use_peft`) every trained model is an adapter on M0's weights, held once: training
//! puts the adapter on the parent's shared base, and a resumed run loads an adapter onto the
//! M0 it holds. In a LoRA run that base is kept frozen in a compact form
//! ([`srlm_model::FrozenBase`]: a GGUF's own blocks, or bf16 with `trainer.dtype =
//! "bfloat16"`): every model this backend loads from disk is converted once, adapters' bases
//! included.

use crate::ports::{
    BackendError, DpoRun, Generated, Generator, ModelRef, PairHidden, ResponseLogp, Trained,
    Trainer,
};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::DpoConfig;
use srlm_judge::{JudgeError, JudgeModel};
use srlm_model::{Device, LanguageModel};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The in-process backend.
pub struct CandleBackend {
    device: Device,
    /// How models loaded from disk are kept: as loaded (trainable), or as a LoRA run's frozen
    /// base.
    frozen_base: Option<srlm_model::FrozenBase>,
    models: Mutex<HashMap<String, Arc<LanguageModel>>>,
}

fn model_err(location: &str) -> impl FnOnce(srlm_model::ModelError) -> BackendError + '_ {
    move |e| BackendError::Model {
        location: location.to_string(),
        message: e.to_string(),
    }
}

impl CandleBackend {
    /// A backend on `device`. Sampling and DPO report progress through
    /// [`srlm_core::progress`].
    pub fn new(device: Device) -> Self {
        CandleBackend {
            device,
            frozen_base: None,
            models: Mutex::new(HashMap::new()),
        }
    }

    /// A backend that keeps every model it loads from disk as a frozen base in `frozen_base`
    /// form ([`LanguageModel::frozen_base`]), or as loaded (`None`). Only LoRA training can
    /// start from a frozen base: its adapters are f32.
    pub fn with_frozen_base(device: Device, frozen_base: Option<srlm_model::FrozenBase>) -> Self {
        CandleBackend {
            frozen_base,
            ..Self::new(device)
        }
    }

    /// A model loaded from disk, kept in this backend's form.
    fn load_base(&self, location: &str) -> Result<LanguageModel, srlm_model::ModelError> {
        let model = LanguageModel::load(location, &self.device)?;
        match self.frozen_base {
            None => Ok(model),
            Some(form) => model.frozen_base(form),
        }
    }

    /// A loaded model.
    ///
    /// # Errors
    /// [`BackendError::NotLoaded`].
    pub fn model(&self, m: &ModelRef) -> Result<Arc<LanguageModel>, BackendError> {
        self.models
            .lock()
            .expect("model registry")
            .get(&m.id)
            .cloned()
            .ok_or_else(|| BackendError::NotLoaded(m.location.clone()))
    }

    /// Registers an already loaded model under `m`'s identity.
    pub fn insert(&self, m: &ModelRef, model: LanguageModel) {
        self.models
            .lock()
            .expect("model registry")
            .insert(m.id.clone(), Arc::new(model));
    }
}

impl Generator for CandleBackend {
    fn weights_digest(&self, reference: &str) -> Result<String, BackendError> {
        let file = match srlm_model::resolve_model(reference) {
            Ok(srlm_model::ModelFiles::Gguf(p)) => Some(p),
            Ok(srlm_model::ModelFiles::HfDir(d)) => {
                Some(d.join("model.safetensors")).filter(|p| p.is_file())
            }
            Err(_) => None,
        };
        match file {
            Some(p) => srlm_assets::sha256_file(&p).map_err(|e| BackendError::Model {
                location: reference.to_string(),
                message: e.to_string(),
            }),
            None => Ok(String::new()),
        }
    }

    fn load(&self, m: &ModelRef) -> Result<(), BackendError> {
        if self.model(m).is_ok() {
            return Ok(());
        }
        let dir = Path::new(&m.location);
        // A LoRA adapter on a base this backend holds (M0, usually) shares its weights.
        let shared_base = srlm_model::adapter_base(dir).and_then(|base| {
            let models = self.models.lock().expect("model registry");
            models
                .values()
                .find(|l| {
                    // The base is recorded as an absolute path; the origin as it was given.
                    let origin = std::fs::canonicalize(&l.origin)
                        .map_or_else(|_| l.origin.clone(), |p| p.display().to_string());
                    origin == base && l.model.lora_config().is_none()
                })
                .cloned()
        });
        let model = match (shared_base, srlm_model::adapter_base(dir)) {
            (Some(base), _) => base.load_adapter(dir),
            // An adapter whose base this backend does not hold yet: the base as this backend
            // keeps bases, then the adapter.
            (None, Some(base)) => self.load_base(&base).and_then(|b| b.load_adapter(dir)),
            (None, None) => self.load_base(&m.location),
        }
        .map_err(model_err(&m.location))?;
        self.insert(m, model);
        Ok(())
    }

    fn release(&self, m: &ModelRef) {
        self.models.lock().expect("model registry").remove(&m.id);
    }

    fn sample(
        &self,
        m: &ModelRef,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generated>>, BackendError> {
        let model = self.model(m)?;
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let ids = model.encode_prompt(p).map_err(|e| BackendError::Prompt {
                    index,
                    message: e.to_string(),
                })?;
                if ids.len() + cfg.max_new_tokens > model.context_length() {
                    return Err(BackendError::Prompt {
                        index,
                        message: format!(
                            "{} prompt tokens + {} new tokens exceed the model's context of {}",
                            ids.len(),
                            cfg.max_new_tokens,
                            model.context_length()
                        ),
                    });
                }
                Ok(ids)
            })
            .collect::<Result<_, _>>()?;
        let gens = model.generate(&ids, cfg).map_err(model_err(&m.location))?;
        Ok(gens
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|x| Generated {
                        logprob: x.logprob(),
                        text: x.text,
                        token_ids: x.token_ids,
                    })
                    .collect()
            })
            .collect())
    }

    fn pair_hidden_states(
        &self,
        m: &ModelRef,
        pairs: &[PreferencePair],
    ) -> Result<Vec<PairHidden>, BackendError> {
        let model = self.model(m)?;
        let tok = srlm_dpo::tokenize_pairs(&*model, pairs)
            .map_err(|e| BackendError::Dpo(e.to_string()))?;
        if tok.pairs.is_empty() {
            return Ok(Vec::new());
        }
        let side = |chosen: bool| -> Vec<(Vec<u32>, Vec<u32>)> {
            tok.pairs
                .iter()
                .map(|p| {
                    let r = if chosen {
                        &p.chosen_ids
                    } else {
                        &p.rejected_ids
                    };
                    (p.prompt_ids.clone(), r.clone())
                })
                .collect()
        };
        let hc = model
            .mean_response_hidden(&side(true))
            .map_err(model_err(&m.location))?;
        let hr = model
            .mean_response_hidden(&side(false))
            .map_err(model_err(&m.location))?;
        Ok(hc.into_iter().zip(hr).collect())
    }

    fn response_logps(
        &self,
        m: &ModelRef,
        exchanges: &[(&str, &str)],
    ) -> Result<Vec<ResponseLogp>, BackendError> {
        let model = self.model(m)?;
        let context = model.context_length();
        let items = exchanges
            .iter()
            .enumerate()
            .map(|(index, (prompt, response))| {
                let prompt_err = |message: String| BackendError::Prompt { index, message };
                let (p, r) = model
                    .encode_exchange(prompt, response)
                    .map_err(|e| prompt_err(e.to_string()))?;
                if p.len() + r.len() > context {
                    return Err(prompt_err(format!(
                        "prompt and response are {} tokens, more than the context ({context})",
                        p.len() + r.len()
                    )));
                }
                Ok((p, r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(model
            .response_logps(&items)
            .map_err(model_err(&m.location))?
            .into_iter()
            .map(|lp| ResponseLogp {
                sum: lp.sum,
                tokens: lp.tokens.len(),
            })
            .collect())
    }

    fn judge_model(&self, m: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        Ok(Box::new(AsJudgeModel(self.model(m)?)))
    }
}

impl Trainer for CandleBackend {
    fn train_dpo(
        &self,
        parent: &ModelRef,
        pairs: &[PreferencePair],
        config: &DpoConfig,
        out: &ModelRef,
        _records: Option<&Path>,
    ) -> Result<Trained, BackendError> {
        let dpo = |e: srlm_dpo::DpoError| BackendError::Dpo(e.to_string());
        // A copy (full fine-tuning) or a LoRA model on the parent's shared weights.
        let policy = srlm_dpo::initial_policy(&*self.model(parent)?, config).map_err(dpo)?;
        let tok = srlm_dpo::tokenize_pairs(&policy, pairs).map_err(dpo)?;
        let t0 = Instant::now();
        let mut log = Vec::new();
        let summary = {
            let trainer = srlm_dpo::DpoTrainer::new(config.clone())
                .map_err(dpo)?
                .with_progress(true)
                .on_step(|m| log.push(m.clone()));
            trainer.train(&policy, &tok.pairs).map_err(dpo)?
        };
        policy
            .save(Path::new(&out.location))
            .map_err(model_err(&out.location))?;
        let run = DpoRun {
            pairs: tok.pairs.len(),
            pairs_failed: tok.failures.len(),
            steps: summary.steps,
            tokens_trained: summary.tokens_trained,
            reference_tokens: summary.reference_tokens,
            wall_seconds: t0.elapsed().as_secs_f64(),
            final_metrics: summary.final_metrics,
            mean: mean_metrics(&log),
            epoch_means: epoch_means(&log),
        };
        self.insert(out, policy);
        Ok(Trained { summary: run, log })
    }

    fn save_checkpoint(
        &self,
        m: &ModelRef,
        dir: &Path,
        dtype: srlm_model::SaveDtype,
    ) -> Result<(), BackendError> {
        let model = self.model(m)?;
        let location = dir.display().to_string();
        // A model this backend trained lives in a checkpoint folder of that dtype (f32): linked,
        // not copied. Anything else (M0, another dtype) is written.
        if srlm_model::link_checkpoint(Path::new(&m.location), dir, dtype).is_ok() {
            return Ok(());
        }
        model.save_as(dir, dtype).map_err(model_err(&location))
    }
}

/// Mean of every numeric metric over the steps of a DPO run (none where not finite).
pub fn mean_metrics(log: &[srlm_dpo::StepMetrics]) -> BTreeMap<String, Option<f64>> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for step in log {
        let v = serde_json::to_value(step).expect("metrics serialise");
        for (k, v) in v.as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64() {
                let e = sums.entry(k.clone()).or_default();
                e.0 += x;
                e.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| {
            let m = s / n as f64;
            (k, m.is_finite().then_some(m))
        })
        .collect()
}

/// [`mean_metrics`] per complete epoch, first epoch first. A step belongs to the epoch its
/// `epoch` value (TRL's fractional epoch at the step's end) ends in: 0.2, …, 1.0 → the first.
/// An epoch with fewer steps than the first (cut short by `max_steps`) is left out, so every
/// entry is over the same pairs.
pub fn epoch_means(log: &[srlm_dpo::StepMetrics]) -> Vec<BTreeMap<String, Option<f64>>> {
    let epoch_of = |s: &srlm_dpo::StepMetrics| (s.epoch - 1e-9).ceil().max(1.0) as u64;
    let mut by: BTreeMap<u64, Vec<srlm_dpo::StepMetrics>> = BTreeMap::new();
    for step in log {
        by.entry(epoch_of(step)).or_default().push(step.clone());
    }
    let full = by.values().next().map_or(0, Vec::len);
    by.values()
        .filter(|steps| steps.len() == full)
        .map(|steps| mean_metrics(steps))
        .collect()
}

/// A [`LanguageModel`] (owned, shared or borrowed) seen as srlm-judge's [`JudgeModel`].
pub struct AsJudgeModel<M>(pub M);

fn judge_err(e: srlm_model::ModelError) -> JudgeError {
    JudgeError::Model(e.to_string())
}

impl<M: Borrow<LanguageModel>> JudgeModel for AsJudgeModel<M> {
    fn render_user_turn(&self, user: &str) -> Result<String, JudgeError> {
        self.0.borrow().render_user_turn(user).map_err(judge_err)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, JudgeError> {
        self.0.borrow().tokenizer.encode(text).map_err(judge_err)
    }
    fn context_length(&self) -> usize {
        self.0.borrow().context_length()
    }
    fn sample(
        &self,
        prompts: &[Vec<u32>],
        n: usize,
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<String>>, JudgeError> {
        let cfg = SamplingConfig {
            k: n,
            ..cfg.clone()
        };
        let gens = self.0.borrow().generate(prompts, &cfg).map_err(judge_err)?;
        Ok(gens
            .into_iter()
            .map(|g| g.into_iter().map(|x| x.text).collect())
            .collect())
    }
    fn last_logits(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, JudgeError> {
        self.0.borrow().last_logits(prompts).map_err(judge_err)
    }
}
