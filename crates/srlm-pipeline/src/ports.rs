//! The host's two backend ports (brief §5): a [`Generator`] samples, scores and serves judge
//! models; a [`Trainer`] runs DPO. The loop ([`crate::run`]) and the plugin host
//! ([`crate::host::RunHost`]) see models only through them, by [`ModelRef`].
//!
//! Today both are implemented in-process by [`crate::candle::CandleBackend`] (srlm-model and
//! srlm-dpo on candle). The ports are shaped for a model that lives in another process — an
//! inference server, an external trainer: a model is named by a [`ModelRef`] (an identity hash
//! and a location: a model reference, an HF checkpoint folder), never by an object in memory;
//! every call takes plain data (prompt texts, token ids, pairs) and returns plain data; a
//! backend makes a model available with [`Generator::load`] and may drop it on
//! [`Generator::release`].
//!
//! [`crate::testing::FakeBackend`] implements both without model files, so the loop, the host
//! and resume are unit tested on it.

use serde::{Deserialize, Serialize};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::DpoConfig;
use srlm_judge::JudgeModel;
use srlm_model::SaveDtype;
use std::collections::BTreeMap;
use std::path::Path;

/// A model as the ports know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// Identity hash (hex) that stands for the weights: for M0 a hash of its reference and its
    /// file's SHA-256; for a trained model a hash of (parent identity, pairs, DPO config).
    /// Training is deterministic, so the identity is the memo store's key for the model.
    pub id: String,
    /// Where the weights are: a model reference (`default`, a `.gguf` file, an HF folder) or an
    /// HF checkpoint folder a [`Trainer`] wrote.
    pub location: String,
}

impl ModelRef {
    /// A reference to the model at `location` with identity `id`.
    pub fn new(id: impl Into<String>, location: impl Into<String>) -> Self {
        ModelRef {
            id: id.into(),
            location: location.into(),
        }
    }

    /// A reference to a folder (e.g. a checkpoint).
    pub fn at_dir(id: impl Into<String>, dir: &Path) -> Self {
        ModelRef::new(id, dir.display().to_string())
    }
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// The response text (the end-of-turn token not included).
    pub text: String,
    /// Its token ids (the count is what compute accounting adds up).
    pub token_ids: Vec<u32>,
    /// Sum of the sampled tokens' log-probabilities under the sampling distribution (nats).
    pub logprob: f64,
}

/// The mean last-layer hidden states of a pair's chosen and rejected responses.
pub type PairHidden = (Vec<f32>, Vec<f32>);

/// log p(response | prompt) of one exchange under a model: the response as the chat template
/// renders it after the prompt (its end-of-turn token included), re-encoded from its text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResponseLogp {
    /// Sum of the response tokens' log-probabilities (nats, ≤ 0).
    pub sum: f64,
    /// Response tokens scored (≥ 1: the end-of-turn token of an empty response counts).
    pub tokens: usize,
}

/// Errors of a backend: each names the model (its location) or the prompt concerned.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model could not be loaded or failed (its location and the backend's message).
    #[error("model `{location}`: {message}")]
    Model {
        /// The model's location.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// A model was used before [`Generator::load`] made it available.
    #[error("model `{0}` is not loaded (a bug in the caller: Generator::load first)")]
    NotLoaded(String),
    /// One prompt cannot be served (too long for the context, cannot be encoded).
    #[error("prompt {index}: {message}")]
    Prompt {
        /// Its index in the call.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// DPO training failed.
    #[error("DPO: {0}")]
    Dpo(String),
}

/// The summary of one DPO run, as the memo store keeps it and `temporary_<n>.json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoRun {
    /// Pairs trained on.
    pub pairs: usize,
    /// Pairs that could not be tokenized (dropped).
    pub pairs_failed: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Tokens through the policy's forward + backward passes.
    pub tokens_trained: u64,
    /// Tokens through the reference model's forward passes.
    pub reference_tokens: u64,
    /// Wall time (seconds).
    pub wall_seconds: f64,
    /// TRL metrics of the last step.
    #[serde(rename = "final")]
    pub final_metrics: srlm_dpo::StepMetrics,
    /// Mean of every numeric step metric over the steps (TRL names; none when not finite).
    pub mean: BTreeMap<String, Option<f64>>,
    /// The same means per epoch, first epoch first (a step belongs to the epoch its `epoch`
    /// value ends in: 0.2 … 1.0 → the first). Empty in summaries written before srlm kept it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epoch_means: Vec<BTreeMap<String, Option<f64>>>,
}

/// What a [`Trainer`] returns: the run's summary and every step's metrics (TRL names).
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// The summary.
    pub summary: DpoRun,
    /// One entry per optimizer step, in order.
    pub log: Vec<srlm_dpo::StepMetrics>,
}

/// Sampling, scoring and judge models (brief §5, port 1).
pub trait Generator {
    /// The SHA-256 (hex) of a model reference's weights file, or an empty string when the
    /// reference names no single file (the built-in `tiny-random`, a folder without
    /// `model.safetensors`). Part of M0's identity.
    ///
    /// # Errors
    /// [`BackendError::Model`] when the file cannot be read.
    fn weights_digest(&self, reference: &str) -> Result<String, BackendError>;

    /// Makes `model` available to the other calls (idempotent).
    ///
    /// # Errors
    /// [`BackendError::Model`] naming the location.
    fn load(&self, model: &ModelRef) -> Result<(), BackendError>;

    /// Lets the backend free `model` (it may be loaded again later).
    fn release(&self, model: &ModelRef);

    /// `cfg.k` samples for each prompt (a user turn; the backend applies the model's chat
    /// template), seeded by `cfg.seed`: the same call gives the same samples. Greedy when
    /// `cfg.temperature` is 0.
    ///
    /// # Errors
    /// [`BackendError::Prompt`] naming the prompt's index (too long for the context, …),
    /// [`BackendError::Model`].
    fn sample(
        &self,
        model: &ModelRef,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generated>>, BackendError>;

    /// The mean last-layer hidden states of each pair's chosen and rejected responses (the
    /// collapse diagnostic of Wang et al. 2025, Sec. 2); pairs that cannot be tokenized are
    /// left out.
    ///
    /// # Errors
    /// [`BackendError::Model`].
    fn pair_hidden_states(
        &self,
        model: &ModelRef,
        pairs: &[PreferencePair],
    ) -> Result<Vec<PairHidden>, BackendError>;

    /// log p(response | prompt) under `model` for each (prompt, response) exchange (a user
    /// turn and the assistant's answer as text; the backend applies the model's chat
    /// template), in order. The perplexity of later models' answers under M0 is computed
    /// from it (a degeneration check; see [`crate::metrics::EvalMetrics`]).
    ///
    /// # Errors
    /// [`BackendError::Prompt`] naming the exchange's index (too long for the context, cannot
    /// be encoded), [`BackendError::Model`].
    fn response_logps(
        &self,
        model: &ModelRef,
        exchanges: &[(&str, &str)],
    ) -> Result<Vec<ResponseLogp>, BackendError>;

    /// `model` as a judge model (render a user turn, encode, sample, next-token logits) for
    /// srlm-judge's LLM judge. A remote backend answers `last_logits` from the server's top
    /// log-probs (unlisted tokens at −∞).
    ///
    /// # Errors
    /// [`BackendError::NotLoaded`].
    fn judge_model(&self, model: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError>;

    /// What produces samples and judge outputs besides the weights, when it is not srlm's own
    /// in-process sampler: e.g. the server kind and command. It joins the memo store's keys of
    /// samples, judgments and evaluations, so a run (or a resumed run) never replays samples
    /// made by another engine. `None` (the default) leaves the keys as they always were.
    fn engine_id(&self) -> Option<String> {
        None
    }

    /// Gives back what sampling holds outside this process before DPO trains (inference
    /// servers stop, and start again on their port when next used); the default does
    /// nothing.
    fn suspend(&self) {}
}

/// DPO training (brief §5, port 2).
pub trait Trainer {
    /// Trains `out` = DPO(`parent`, `pairs`) with `parent` as the reference model and writes it
    /// as an HF checkpoint folder at `out.location`; afterwards `out` is loaded (available to
    /// the [`Generator`] of the same backend). `records` is a folder for what a trainer that
    /// runs as another program leaves of this step (command line, log, its data); the
    /// in-process trainer writes nothing there.
    ///
    /// # Errors
    /// [`BackendError::Dpo`], [`BackendError::Model`].
    fn train_dpo(
        &self,
        parent: &ModelRef,
        pairs: &[PreferencePair],
        config: &DpoConfig,
        out: &ModelRef,
        records: Option<&Path>,
    ) -> Result<Trained, BackendError>;

    /// Writes `model` as an HF checkpoint folder at `dir` (atomically) with its weights as
    /// `dtype`. A backend whose model already lives in such a folder with weights of that type
    /// (a model it trained, in f32) publishes that folder's files at `dir` without a second
    /// copy (hard links).
    ///
    /// # Errors
    /// [`BackendError::Model`].
    fn save_checkpoint(
        &self,
        model: &ModelRef,
        dir: &Path,
        dtype: SaveDtype,
    ) -> Result<(), BackendError>;
}

/// A backend that is both ports (what a run needs).
pub trait Backend: Generator + Trainer {}
impl<T: Generator + Trainer> Backend for T {}
