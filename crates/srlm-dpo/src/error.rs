//! The one error type of srlm-dpo: every failure names what a user needs to fix it.

use std::path::PathBuf;

/// Everything that can go wrong while loading pairs, preparing batches or training.
#[derive(Debug, thiserror::Error)]
pub enum DpoError {
    /// A configuration value is out of range or inconsistent; `field` is its TRL name.
    #[error("invalid DPO config: `{field}`: {message}")]
    Config {
        /// The offending field (TRL name, e.g. `label_smoothing`), or the unknown name given.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// No pair survived filtering (empty input, or every pair dropped by truncation).
    #[error(
        "empty dataset: {total} pairs given, {dropped_empty_response} dropped because truncation \
         left an empty response, {dropped_empty_prompt} dropped for an empty prompt, \
         {dropped_identical} dropped because chosen and rejected are the same tokens"
    )]
    EmptyDataset {
        /// Pairs given to the trainer.
        total: usize,
        /// Pairs whose chosen or rejected response was empty (or became empty under `max_length`).
        dropped_empty_response: usize,
        /// Pairs with no prompt token (the first response token would have no context).
        dropped_empty_prompt: usize,
        /// Pairs whose chosen and rejected are the same tokens.
        dropped_identical: usize,
    },
    /// The model stopped responding to its weights: the gradient is exactly zero while the loss
    /// is not (a collapse after too large a step, e.g. uniform logits at learning rate 1e3).
    /// Training stops before the update and no checkpoint is written.
    #[error("training diverged at optimizer step {step}: the gradient is exactly 0 while the loss is {loss:.4} (the model collapsed; lower learning_rate, now {learning_rate:e}); no checkpoint written")]
    Diverged {
        /// 1-based optimizer step.
        step: u64,
        /// The step's loss.
        loss: f64,
        /// The configured peak learning rate.
        learning_rate: f64,
    },
    /// A loss or gradient became NaN or infinite; training stopped before the update.
    #[error("non-finite {what} at optimizer step {step} (pairs: {})", pair_ids.join(", "))]
    NonFinite {
        /// 1-based optimizer step at which it happened (0: before the first step, i.e. while
        /// precomputing reference log-probs).
        step: u64,
        /// What was non-finite: `"loss"`, `"gradient"`, `"reference log-probs"` or `"weights"`.
        what: &'static str,
        /// Ids of the pairs in the offending (accumulated) batch.
        pair_ids: Vec<String>,
    },
    /// The model's checkpoint writer failed.
    #[error("writing checkpoint to {dir}: {source}")]
    Checkpoint {
        /// The checkpoint folder.
        dir: PathBuf,
        /// The model's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pair cannot be batched (empty prompt or response: run [`crate::truncate_pairs`] first).
    #[error("pair `{id}`: {message}")]
    InvalidPair {
        /// The pair's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The model returned log-probs of an unexpected shape or dtype.
    #[error("PolicyModel returned {got}, expected {expected}")]
    ModelOutput {
        /// What the trainer expected, e.g. `[4, 11] f32`.
        expected: String,
        /// What it got.
        got: String,
    },
    /// A preference file or a TOML config file has a malformed line (`file:line: field: message`).
    #[error("{}:{line}: `{field}`: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is at fault).
        line: usize,
        /// The field at fault (`prompt`, `chosen`, `rejected`, or `line` for bad JSON).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file (pairs, metrics log) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from candle (shape mismatch, device, dtype, …).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = DpoError> = std::result::Result<T, E>;

pub(crate) fn config_err(field: impl Into<String>, message: impl Into<String>) -> DpoError {
    DpoError::Config {
        field: field.into(),
        message: message.into(),
    }
}
