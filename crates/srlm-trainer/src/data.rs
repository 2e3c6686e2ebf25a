//! The pairs of one DPO step, tokenized by srlm and written for the external trainer.
//!
//! srlm tokenizes (chat template split, sampled ids as sampled: cases T1–T4 of
//! `tests/fixtures/cases.md`) and truncates (TRL's order, [`srlm_dpo::truncate_pairs`]) exactly
//! as its own trainer does, then writes one JSON object per pair:
//!
//! ```json
//! {"id": "ifeval-12", "prompt": "<|im_start|>…assistant\n", "chosen": "Hi!<|im_end|>\n",
//!  "rejected": "No.<|im_end|>\n", "prompt_ids": [1, 9690, …], "chosen_ids": [26843, 17, 2, 198],
//!  "rejected_ids": [5230, 30, 2, 198]}
//! ```
//!
//! TRL (through srlm's launcher) trains on the ids; OpenRLHF, which takes no ids, on the
//! rendered texts (`prompt` + `chosen`, joined by OpenRLHF).

use crate::error::TrainerError;
use serde_json::json;
use srlm_core::PreferencePair;
use srlm_dpo::{DpoConfig, FilterStats, PairFailure, TokenizedPair};
use srlm_model::ModelText;
use std::path::Path;

/// The pairs of one step, ready to write.
#[derive(Debug, Clone, Default)]
pub struct StepData {
    /// Tokenized and truncated pairs, each with its rendered prompt and response texts.
    pub pairs: Vec<(TokenizedPair, [String; 3])>,
    /// What truncation did (pairs dropped and cut).
    pub filter: FilterStats,
    /// Pairs that could not be tokenized.
    pub failures: Vec<PairFailure>,
}

impl StepData {
    /// Tokenizes and truncates `pairs` for `text`'s model under `dpo`'s length limits.
    ///
    /// # Errors
    /// [`TrainerError::Data`] when no pair is left to train on.
    pub fn prepare(
        text: &ModelText,
        pairs: &[PreferencePair],
        dpo: &DpoConfig,
    ) -> Result<Self, TrainerError> {
        let mut out = StepData::default();
        let mut total = FilterStats::default();
        for pair in pairs {
            let tokenized = match srlm_dpo::tokenize_pair(text, pair) {
                Ok(t) => t,
                Err(srlm_dpo::DpoError::InvalidPair { id, message }) => {
                    out.failures.push(PairFailure { id, message });
                    continue;
                }
                Err(e) => return Err(TrainerError::Data(e.to_string())),
            };
            let (kept, stats) = srlm_dpo::truncate_pairs(
                std::slice::from_ref(&tokenized),
                dpo.max_length,
                dpo.max_prompt_length,
            );
            total.total += stats.total;
            total.kept += stats.kept;
            total.truncated_prompt += stats.truncated_prompt;
            total.truncated_response += stats.truncated_response;
            total.dropped_empty_response += stats.dropped_empty_response;
            total.dropped_empty_prompt += stats.dropped_empty_prompt;
            total.dropped_identical += stats.dropped_identical;
            let Some(kept) = kept.into_iter().next() else {
                continue;
            };
            let render = |response: &str| {
                text.template
                    .split_exchange(&pair.prompt, response)
                    .map_err(|e| TrainerError::Data(format!("pair {}: {e}", pair.prompt_id)))
            };
            let (prompt, chosen) = render(&pair.chosen)?;
            let (_, rejected) = render(&pair.rejected)?;
            out.pairs.push((kept, [prompt, chosen, rejected]));
        }
        out.filter = total;
        if out.pairs.is_empty() {
            let why = out
                .failures
                .first()
                .map(|f| format!("; first failure: pair {}: {}", f.id, f.message))
                .unwrap_or_default();
            return Err(TrainerError::Data(format!(
                "none of the {} pairs is left to train on (tokenization failures {}, dropped by truncation {}){why}",
                pairs.len(),
                out.failures.len(),
                total.total - total.kept
            )));
        }
        Ok(out)
    }

    /// The longest row (prompt + one response), in tokens.
    pub fn longest_row(&self) -> usize {
        self.pairs
            .iter()
            .map(|(p, _)| p.prompt_ids.len() + p.chosen_ids.len().max(p.rejected_ids.len()))
            .max()
            .unwrap_or(0)
    }

    /// Tokens of one pass over the data: prompt + response, chosen and rejected rows, no
    /// padding (what srlm's trainer counts as `tokens`).
    pub fn tokens_per_epoch(&self) -> u64 {
        self.pairs
            .iter()
            .map(|(p, _)| {
                (2 * p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len()) as u64
            })
            .sum()
    }

    /// Writes the pairs as JSONL at `path` (atomically).
    ///
    /// # Errors
    /// [`TrainerError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), TrainerError> {
        let lines: Vec<serde_json::Value> = self
            .pairs
            .iter()
            .map(|(p, [prompt, chosen, rejected])| {
                json!({
                    "id": p.id,
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "prompt_ids": p.prompt_ids,
                    "chosen_ids": p.chosen_ids,
                    "rejected_ids": p.rejected_ids,
                })
            })
            .collect();
        srlm_core::write_jsonl_atomic(path, &lines).map_err(|e| TrainerError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e.to_string()),
        })
    }
}
