//! The [`Judge`] trait and the records it consumes and produces.

use crate::JudgeError;
use serde::{Deserialize, Serialize};

/// One response to judge: the user turn, the response, and the record's other fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JudgeItem {
    /// The user turn, plain text (not chat-rendered).
    pub prompt: String,
    /// The response under review, plain text.
    pub response: String,
    /// The record's other fields (for IFEval records: `instruction_id_list`, `kwargs`);
    /// `Value::Null` when there are none.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Where the record came from, for error messages (e.g. `in.jsonl:3`); `None` names it
    /// by its index in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl JudgeItem {
    /// An item without metadata or origin.
    pub fn new(prompt: impl Into<String>, response: impl Into<String>) -> Self {
        JudgeItem {
            prompt: prompt.into(),
            response: response.into(),
            ..Default::default()
        }
    }

    /// The same item with `metadata` attached.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// The same item with an origin for error messages (e.g. `file.jsonl:3`).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The origin for error messages: [`origin`](Self::origin), or `item {index}`.
    pub fn at(&self, index: usize) -> String {
        self.origin
            .clone()
            .unwrap_or_else(|| format!("item {index}"))
    }
}

/// A judge's verdict on one item.
///
/// `score` is on the 0–5 scale of Yuan et al. 2024 (arXiv 2401.10020, Fig. 2). `None` means the
/// judge produced no usable score (e.g. no parseable `Score:` line in any sample); it is never
/// coerced to 0, and [`JudgeHealth`](crate::JudgeHealth) counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Score in [0, 5], or `None` when the judge gave none.
    pub score: Option<f64>,
    /// Judge-specific details: raw judge texts, per-sample scores, per-instruction results,
    /// `truncated` flags. Always a JSON object.
    pub details: serde_json::Value,
}

impl Verdict {
    /// Converts into the shared record, naming the sample judged.
    pub fn into_judgment(self, sample_id: impl Into<String>) -> srlm_core::Judgment {
        srlm_core::Judgment {
            sample_id: sample_id.into(),
            score: self.score,
            details: self.details,
        }
    }
}

/// Something that scores responses, a batch at a time.
///
/// Implementations return exactly one [`Verdict`] per item, in order. Batches let model judges
/// run one batched forward pass; rule judges simply loop.
///
/// # Errors
/// [`JudgeError::Record`] when an item cannot be judged as given (naming its origin and field),
/// [`JudgeError::Model`] / [`JudgeError::Template`] when the judge itself fails. A response that
/// earns no score is not an error (see [`Verdict`]).
pub trait Judge {
    /// Short name used in details and health reports (`ifeval`, `llm-sampled`, …).
    fn name(&self) -> String;

    /// Judges a batch; one verdict per item, in order.
    fn judge_batch(&self, items: &[JudgeItem]) -> Result<Vec<Verdict>, JudgeError>;

    /// Judges one item (a batch of one).
    fn judge_one(&self, item: &JudgeItem) -> Result<Verdict, JudgeError> {
        let mut v = self.judge_batch(std::slice::from_ref(item))?;
        check_len(&self.name(), 1, v.len())?;
        Ok(v.remove(0))
    }
}

impl<J: Judge + ?Sized> Judge for &J {
    fn name(&self) -> String {
        (**self).name()
    }
    fn judge_batch(&self, items: &[JudgeItem]) -> Result<Vec<Verdict>, JudgeError> {
        (**self).judge_batch(items)
    }
}

impl<J: Judge + ?Sized> Judge for Box<J> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn judge_batch(&self, items: &[JudgeItem]) -> Result<Vec<Verdict>, JudgeError> {
        (**self).judge_batch(items)
    }
}

/// Errors with [`JudgeError::BatchLength`] unless `got == expected`.
pub(crate) fn check_len(judge: &str, expected: usize, got: usize) -> Result<(), JudgeError> {
    if expected == got {
        Ok(())
    } else {
        Err(JudgeError::BatchLength {
            judge: judge.to_string(),
            expected,
            got,
        })
    }
}
