//! srlm-dpo: Direct Preference Optimization (Rafailov et al. 2023) for srlm's self-rewarding
//! loop: M_{i+1} = DPO(M_i, pairs) with M_i as the reference.
//!
//! - [`PolicyModel`]: the three-method interface the trainer needs from a causal LM (target
//!   log-probs of a batch, its trainable vars, a checkpoint writer). Implemented here for
//!   srlm-model's [`srlm_model::LanguageModel`] (full-sequence logits in training mode, HF
//!   checkpoints); `BigramLm` (cargo feature `toy`) is a toy implementation for tests.
//! - [`tokenize_pairs`]: [`srlm_core::PreferencePair`]s → [`TokenizedPair`]s with a
//!   `LanguageModel`'s chat template and tokenizer (cases T1–T4), failures counted.
//! - Losses as free functions over per-pair tensors, under TRL's `loss_type` names:
//!   [`sigmoid_loss`] (DPO, cDPO), [`robust_loss`], [`hinge_loss`], [`ipo_loss`], and RPO's
//!   [`rpo_nll`]; [`preference_loss`] dispatches on [`LossType`].
//! - [`TokenizedPair`] → [`PairBatch`]: chosen and rejected rows in one right-padded batch,
//!   with response masks built from lengths ([`response_mask`]).
//! - [`DpoTrainer`] (config [`DpoConfig`], TRL names): AdamW, gradient accumulation, global-norm
//!   clipping, LR schedule ([`lr_at`]), TRL's metrics per step ([`StepMetrics`], written by a
//!   [`MetricsWriter`]), a non-finite guard, and a checked checkpoint at the end.
//! - [`read_preference_pairs`]: TRL preference JSONL (strings or chat messages).
//!
//! Design choice: the reference model's log-probs are computed **once, before the first
//! update, and detached** by default (`precompute_ref_log_probs`, as in TRL): the policy at
//! step 0 *is* M_i, so no second copy of the weights is needed and no gradient can ever reach
//! the reference. A separate frozen reference model is still supported (its output is detached
//! at every step). The trainer itself knows nothing about tokenizers or model files: it trains
//! whatever implements [`PolicyModel`] on already-tokenized pairs; only the `llm` module (the
//! `LanguageModel` glue) touches srlm-model.

#![deny(missing_docs)]

mod batch;
mod config;
mod data;
mod error;
mod llm;
mod loss;
mod metrics;
mod model;
mod optim;
mod schedule;
#[cfg(feature = "toy")]
mod toy;
mod trainer;

pub use batch::{
    masked_sum, response_mask, sequence_logps, truncate_pairs, FilterStats, PairBatch,
    TokenizedPair,
};
pub use config::DpoConfig;
pub use data::read_preference_pairs;
pub use error::{DpoError, Result};
pub use llm::{
    initial_policy, lora_config, tokenize_pair, tokenize_pairs, ChatEncoder, PairFailure,
    TokenizedPairs,
};
pub use loss::{
    dpo_logits, hinge_loss, ipo_loss, log_sigmoid, preference_loss, robust_loss, rpo_nll,
    sigmoid_loss, LossType,
};
pub use metrics::{MetricsWriter, StepMetrics};
pub use model::{all_finite, save_checkpoint_checked, PolicyModel};
pub use optim::FusedAdamW;
pub use schedule::{lr_at, warmup_len, LrSchedulerType};
#[cfg(feature = "toy")]
pub use toy::BigramLm;
pub use trainer::{
    dpo_batch_loss, global_grad_norm, reference_logps, train_dpo, BatchLoss, DpoTrainer, RefLogps,
    StepCallback, TrainSummary,
};
