//! The records that flow through one iteration: prompt → samples → judgments → pairs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One prompt of the pool, as read from a prompts file.
///
/// `metadata` carries everything else the record had (for IFEval records:
/// `instruction_id_list` and `kwargs`), so rule judges can read it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptRecord {
    /// Stable identifier, unique in its pool (e.g. IFEval's `key`, or the line number).
    pub id: String,
    /// The user turn, as plain text (rendered with the model's chat template later).
    pub prompt: String,
    /// A reference answer, when the data has one (SPIN's chosen side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Any other fields of the source record, kept verbatim.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// Which model a sample came from.
///
/// Follows Wang et al. 2025 (arXiv 2508.06026), Sec. 3: `Initial` is M0, `Current` is M_i,
/// `Temporary(n)` is the n-th temporary model trained during the iteration (the "future"
/// model M_f of Future-Guided Chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// The initial model M0, kept for the whole run.
    Initial,
    /// The model of the current iteration, M_i.
    Current,
    /// A temporary model trained during this iteration (handle number).
    Temporary(u32),
    /// Not sampled from a model: a reference answer from the data (SPIN).
    Reference,
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Initial => write!(f, "initial"),
            ModelSource::Current => write!(f, "current"),
            ModelSource::Temporary(n) => write!(f, "temporary:{n}"),
            ModelSource::Reference => write!(f, "reference"),
        }
    }
}

/// One sampled response to a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// Identifier unique within an iteration (e.g. `"p17/current/2"`).
    pub id: String,
    /// The [`PromptRecord::id`] this answers.
    pub prompt_id: String,
    /// The model that wrote it.
    pub source: ModelSource,
    /// The response text, without the template's end token.
    pub text: String,
    /// The generated token ids, end token included when one was generated.
    #[serde(default)]
    pub token_ids: Vec<u32>,
    /// Sum of the sampled tokens' log-probabilities under the sampling model, in nats
    /// (before temperature / top-p), or 0 for non-model samples.
    #[serde(default)]
    pub logprob: f64,
}

/// A judge's verdict on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Judgment {
    /// The [`Sample::id`] judged.
    pub sample_id: String,
    /// Score on the 0–5 scale; `None` when the judge gave no usable score
    /// (never coerced to 0: missing scores are counted and reported).
    pub score: Option<f64>,
    /// Judge-specific details: raw judge texts, per-sample scores, per-constraint results.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Where each side of a pair came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PairProvenance {
    /// Model of the chosen response.
    pub chosen_source: ModelSource,
    /// Model of the rejected response.
    pub rejected_source: ModelSource,
    /// The strategy that built the pair, e.g. `"temporal"`.
    pub strategy: String,
    /// Free-form note from the strategy (e.g. `"anchored"`, `"future-upgraded"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A preference pair in TRL's format (`prompt`, `chosen`, `rejected`) plus srlm's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PreferencePair {
    /// The [`PromptRecord::id`].
    pub prompt_id: String,
    /// The user turn (plain text).
    pub prompt: String,
    /// Preferred response text.
    pub chosen: String,
    /// Dispreferred response text.
    pub rejected: String,
    /// Judge score of the chosen response (0–5), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_score: Option<f64>,
    /// Judge score of the rejected response (0–5), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_score: Option<f64>,
    /// Sample ids of both sides, when they came from samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_sample_id: Option<String>,
    /// See `chosen_sample_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_sample_id: Option<String>,
    /// Token ids of the chosen response as sampled (avoids re-tokenizing; case T4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_token_ids: Option<Vec<u32>>,
    /// Token ids of the rejected response as sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_token_ids: Option<Vec<u32>>,
    /// Which model wrote each side, and which strategy paired them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<PairProvenance>,
}

impl PreferencePair {
    /// A pair from plain texts, without scores or provenance.
    pub fn from_texts(
        prompt_id: impl Into<String>,
        prompt: impl Into<String>,
        chosen: impl Into<String>,
        rejected: impl Into<String>,
    ) -> Self {
        PreferencePair {
            prompt_id: prompt_id.into(),
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
            chosen_score: None,
            rejected_score: None,
            chosen_sample_id: None,
            rejected_sample_id: None,
            chosen_token_ids: None,
            rejected_token_ids: None,
            provenance: None,
        }
    }
}
