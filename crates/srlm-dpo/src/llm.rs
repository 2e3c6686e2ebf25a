//! DPO on srlm-model's [`LanguageModel`]: the [`PolicyModel`] implementation (full-sequence
//! logits in [`Mode::Train`], target log-probs, every weight trainable, HF checkpoints) and
//! [`tokenize_pairs`], which turns [`PreferencePair`]s into [`TokenizedPair`]s with the model's
//! own chat template and tokenizer.
//!
//! Tokenization follows cases T1–T4 of `tests/fixtures/cases.md`: the conversation is templated once and
//! split into prompt and response text ([`LanguageModel::encode_exchange`]); both are encoded
//! separately and concatenated as ids, never re-tokenized joined. Responses end with the
//! template's end-of-turn text (`<|im_end|>\n` for ChatML), so stopping is trained. Sampled
//! token ids carried by a pair are used as sampled ([`LanguageModel::response_ids_from_sample`]).

use crate::batch::TokenizedPair;
use crate::config::DpoConfig;
use crate::error::{DpoError, Result};
use crate::model::PolicyModel;
use candle_core::{Device, Tensor, Var};
use srlm_core::PreferencePair;
use srlm_model::{LanguageModel, LoraConfig, LoraTarget, Mode, ModelError, ModelText};
use std::path::Path;

/// A [`ModelError`] as a candle error (the trait's error type), unwrapping candle's own errors.
fn to_candle(e: ModelError) -> candle_core::Error {
    match e {
        ModelError::Candle(c) => c,
        other => candle_core::Error::wrap(other),
    }
}

impl PolicyModel for LanguageModel {
    /// [`srlm_model::Llama::token_logps`] in [`Mode::Train`]: `[b, s]` u32 → `[b, s − 1]` f32
    /// nats, differentiable w.r.t. every weight. Deterministic on the CPU for a given input
    /// shape.
    fn token_logps(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        self.model
            .token_logps(input_ids, Mode::Train)
            .map_err(to_candle)
    }

    /// Runs the LM head and log-softmax on the masked (response) positions only.
    fn sequence_logps(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (rows, s) = input_ids.dims2()?;
        let mask = mask.to_vec2::<u8>()?;
        let mut positions = Vec::new();
        let mut owner = Vec::new();
        for (r, m) in mask.iter().enumerate() {
            for (t, &on) in m.iter().enumerate() {
                if on != 0 {
                    positions.push((r * s + t) as u32);
                    owner.push(r);
                }
            }
        }
        if positions.is_empty() {
            return Ok(Tensor::zeros(
                rows,
                candle_core::DType::F32,
                input_ids.device(),
            )?);
        }
        let lp = self
            .model
            .selected_token_logps(input_ids, &positions, Mode::Train)
            .map_err(to_candle)?;

        // Per-row sums as one [rows, M] × [M, 1] product with a 0/1 selector.
        let mut sel = vec![0f32; rows * positions.len()];
        for (i, &r) in owner.iter().enumerate() {
            sel[r * positions.len() + i] = 1.0;
        }
        let sel = Tensor::from_vec(sel, (rows, positions.len()), lp.device())?;
        Ok(sel.matmul(&lp.unsqueeze(1)?)?.squeeze(1)?)
    }

    fn backward(&self, loss: &Tensor) -> candle_core::Result<candle_core::backprop::GradStore> {
        self.model.backward(loss).map_err(to_candle)
    }

    /// On: [`srlm_model::Checkpointing::Attention`] (recompute the attention sublayers).
    fn set_gradient_checkpointing(&self, on: bool) -> bool {
        self.model.set_gradient_checkpointing(if on {
            srlm_model::Checkpointing::Attention
        } else {
            srlm_model::Checkpointing::Off
        });
        self.model.device().is_cpu()
    }

    /// Every weight of the network, or a LoRA model's adapters only
    /// ([`srlm_model::Llama::vars`], sorted by name).
    fn trainable_vars(&self) -> Vec<Var> {
        self.model.vars()
    }

    /// An HF-style checkpoint ([`LanguageModel::save`]: `model.safetensors`, `config.json`,
    /// `tokenizer.json`, `tokenizer_config.json`; a LoRA model's adapter in PEFT's format),
    /// written into a temporary sibling folder and
    /// renamed into `dir`; loadable with `LanguageModel::load(dir)` / `srlm generate --model dir`.
    fn save_checkpoint(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.save(dir).map_err(|e| Box::new(e) as _)
    }

    /// The device the weights live on.
    fn device(&self) -> Device {
        self.model.device().clone()
    }
}

/// The model DPO trains, made from `parent` (which is also the reference M_i) as `config`
/// says:
/// - full fine-tuning (`use_peft` false): a copy with its own weights (a LoRA parent merged
///   first);
/// - LoRA (`use_peft`): a parent without adapter gets a new one on its frozen, shared weights
///   (B = 0, so the first loss is exactly ln 2; A drawn from `config.seed`); a LoRA parent's
///   adapter is **continued** (copied and trained further on the same base), so M0, every M_i
///   and M_f are one base plus one adapter each. PEFT-based iterative DPO either merges each
///   round's adapter and starts a new one (base no longer shared) or keeps training one
///   adapter; srlm keeps one adapter so the base stays M0's.
///
/// Errors: [`DpoError::Config`] for a LoRA parent whose adapter is not the one `config`
/// describes (rank, α, targets), [`DpoError::Candle`] from the model.
pub fn initial_policy(parent: &LanguageModel, config: &DpoConfig) -> Result<LanguageModel> {
    let model_err = |e: ModelError| DpoError::Candle(to_candle(e));
    let Some(lora) = lora_config(config)? else {
        return match (parent.model.lora_config(), parent.model.base_frozen()) {
            (None, false) => parent.deep_copy().map_err(model_err),
            // An adapter, or a frozen (bf16) base: full fine-tuning starts from f32 weights.
            _ => Ok(LanguageModel::with_text(
                parent.model.merged().map_err(model_err)?,
                parent.text(),
                parent.origin.clone(),
            )),
        };
    };
    match parent.model.lora_config() {
        None => parent.with_lora(&lora, config.seed).map_err(model_err),
        Some(have) if *have == lora => parent.deep_copy().map_err(model_err),
        Some(have) => Err(crate::error::config_err(
            "lora_r",
            format!(
                "the model's adapter has r = {}, lora_alpha = {}, targets {}; the config asks for r = {}, lora_alpha = {}, targets {} (an adapter is continued as it is)",
                have.r, have.lora_alpha, names(&have.target_modules), lora.r, lora.lora_alpha, names(&lora.target_modules)
            ),
        )),
    }
}

/// PEFT's names of `targets`, space-separated.
fn names(targets: &[LoraTarget]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The adapter `config` asks for (`use_peft` and the `lora_*` keys), or `None` for full
/// fine-tuning.
///
/// Errors: [`DpoError::Config`] naming `lora_target_modules` for a name that is not a Llama
/// projection.
pub fn lora_config(config: &DpoConfig) -> Result<Option<LoraConfig>> {
    if !config.use_peft {
        return Ok(None);
    }
    let targets = config
        .lora_target_modules
        .iter()
        .map(|t| t.parse::<LoraTarget>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| crate::error::config_err("lora_target_modules", e))?;
    LoraConfig::new(config.lora_r, config.lora_alpha as f64, &targets)
        .map(Some)
        .map_err(|e| crate::error::config_err("lora_r", e.to_string()))
}

/// A pair that could not be tokenized, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFailure {
    /// The pair's id ([`PreferencePair::prompt_id`]).
    pub id: String,
    /// What went wrong (a template or tokenizer error, or prompt ids that differ between the
    /// chosen and rejected renderings).
    pub message: String,
}

/// The result of [`tokenize_pairs`]: the pairs that tokenized, in input order, and the ones
/// that did not.
#[derive(Debug, Clone, Default)]
pub struct TokenizedPairs {
    /// Successfully tokenized pairs, in input order.
    pub pairs: Vec<TokenizedPair>,
    /// Pairs skipped, in input order, with the reason.
    pub failures: Vec<PairFailure>,
}

/// What tokenizing a pair needs of a model: its chat template split and tokenizer. A loaded
/// [`LanguageModel`] has them, and so does a [`ModelText`] (no weights), which is how pairs are
/// tokenized for an external trainer of a model too large to load here.
pub trait ChatEncoder {
    /// [`LanguageModel::encode_exchange`].
    ///
    /// # Errors
    /// The template's or the tokenizer's.
    fn encode_exchange(
        &self,
        prompt: &str,
        response: &str,
    ) -> std::result::Result<(Vec<u32>, Vec<u32>), ModelError>;

    /// [`LanguageModel::response_ids_from_sample`].
    ///
    /// # Errors
    /// The template's or the tokenizer's.
    fn response_ids_from_sample(
        &self,
        prompt: &str,
        sampled: &[u32],
    ) -> std::result::Result<Vec<u32>, ModelError>;
}

impl ChatEncoder for LanguageModel {
    fn encode_exchange(
        &self,
        prompt: &str,
        response: &str,
    ) -> std::result::Result<(Vec<u32>, Vec<u32>), ModelError> {
        LanguageModel::encode_exchange(self, prompt, response)
    }

    fn response_ids_from_sample(
        &self,
        prompt: &str,
        sampled: &[u32],
    ) -> std::result::Result<Vec<u32>, ModelError> {
        LanguageModel::response_ids_from_sample(self, prompt, sampled)
    }
}

impl ChatEncoder for ModelText {
    fn encode_exchange(
        &self,
        prompt: &str,
        response: &str,
    ) -> std::result::Result<(Vec<u32>, Vec<u32>), ModelError> {
        ModelText::encode_exchange(self, prompt, response)
    }

    fn response_ids_from_sample(
        &self,
        prompt: &str,
        sampled: &[u32],
    ) -> std::result::Result<Vec<u32>, ModelError> {
        ModelText::response_ids_from_sample(self, prompt, sampled)
    }
}

/// Tokenizes one pair for `model` (see the module docs for the rules).
///
/// Prompt ids come from the chat template split of the prompt with the chosen response and
/// must equal those of the rejected rendering (else the pair is ambiguous and rejected: case
/// T3). Each response uses its sampled ids when the pair carries them (`chosen_token_ids` /
/// `rejected_token_ids`; end-of-turn suffix appended), else the encoded template split.
///
/// Errors: [`DpoError::InvalidPair`] naming the pair, with the template or tokenizer message.
pub fn tokenize_pair<E: ChatEncoder + ?Sized>(
    model: &E,
    pair: &PreferencePair,
) -> Result<TokenizedPair> {
    let fail = |message: String| DpoError::InvalidPair {
        id: pair.prompt_id.clone(),
        message,
    };
    if pair.chosen.trim() == pair.rejected.trim() {
        return Err(fail(
            "chosen and rejected have the same text (whitespace at the ends aside): nothing to prefer"
                .into(),
        ));
    }
    let side = |text: &str, sampled: &Option<Vec<u32>>| -> Result<(Vec<u32>, Vec<u32>)> {
        let (prompt_ids, text_ids) = model
            .encode_exchange(&pair.prompt, text)
            .map_err(|e| fail(e.to_string()))?;
        let ids = match sampled {
            Some(s) => model
                .response_ids_from_sample(&pair.prompt, s)
                .map_err(|e| fail(e.to_string()))?,
            None => text_ids,
        };
        Ok((prompt_ids, ids))
    };
    let (prompt_ids, chosen_ids) = side(&pair.chosen, &pair.chosen_token_ids)?;
    let (prompt_r, rejected_ids) = side(&pair.rejected, &pair.rejected_token_ids)?;
    if prompt_ids != prompt_r {
        return Err(fail(
            "the chat template renders a different prompt for the chosen and the rejected \
             response (case T3)"
                .into(),
        ));
    }
    Ok(TokenizedPair {
        id: pair.prompt_id.clone(),
        prompt_ids,
        chosen_ids,
        rejected_ids,
    })
}

/// Tokenizes every pair with [`tokenize_pair`], keeping going past failures.
///
/// Returns the tokenized pairs and the failures (each counted once, with its reason).
/// Errors: [`DpoError::InvalidPair`] when `pairs` is non-empty and **every** pair failed (the
/// message gives the count and the first reason), since training would have nothing to do.
pub fn tokenize_pairs<E: ChatEncoder + ?Sized>(
    model: &E,
    pairs: &[PreferencePair],
) -> Result<TokenizedPairs> {
    let mut out = TokenizedPairs::default();
    for pair in pairs {
        match tokenize_pair(model, pair) {
            Ok(t) => out.pairs.push(t),
            Err(DpoError::InvalidPair { id, message }) => {
                tracing::warn!(pair = %id, "skipping pair: {message}");
                out.failures.push(PairFailure { id, message });
            }
            Err(e) => return Err(e),
        }
    }
    if out.pairs.is_empty() {
        if let Some(first) = out.failures.first() {
            return Err(DpoError::InvalidPair {
                id: first.id.clone(),
                message: format!(
                    "all {} pairs failed to tokenize; first: {}",
                    out.failures.len(),
                    first.message
                ),
            });
        }
    }
    Ok(out)
}
