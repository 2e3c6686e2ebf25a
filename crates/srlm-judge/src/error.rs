//! The one error type of srlm-judge.

/// Everything that can go wrong while building or running a judge.
///
/// A response that merely fails to earn a score is *not* an error: it is a
/// [`Verdict`](crate::Verdict) with `score: None`, counted by [`JudgeHealth`](crate::JudgeHealth).
/// Errors are reserved for bad input (a record the judge cannot read), bad configuration
/// (a template that does not render, a composite spec that does not parse), a failing model,
/// and data a judge needs that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A record cannot be judged as given: unknown instruction id, missing or mistyped field.
    /// `at` is the record's origin (`file.jsonl:3` when the caller set
    /// [`JudgeItem::origin`](crate::JudgeItem::origin), else `item 2`), `field` the JSON path
    /// of the offending field (e.g. `kwargs[1].num_words`).
    #[error("{at}: field `{field}`: {message}")]
    Record {
        /// Where the record came from.
        at: String,
        /// JSON path of the field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The judge template failed to parse or render (minijinja's message).
    #[error("judge template: {0}")]
    Template(String),
    /// The judge model failed (tokenizer, forward pass, sampler), or broke the
    /// [`JudgeModel`](crate::JudgeModel) contract (wrong number of rows, multi-token digits).
    #[error("judge model: {0}")]
    Model(String),
    /// Data a rule judge needs could not be fetched or read: `langdetect`'s language profiles,
    /// which the IFEval judge fetches from PyPI into srlm's cache at first use. The message
    /// names the package, its version, the cache folder and the cause.
    #[error("judge data: {0}")]
    Data(String),
    /// A judge specification (`ifeval`, `0.5*ifeval+0.5*self`, …) is invalid.
    #[error("judge spec `{spec}`: {message}")]
    Spec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sub-judge returned a batch of the wrong length (a bug in that judge).
    #[error("judge `{judge}` returned {got} verdicts for {expected} items")]
    BatchLength {
        /// Name of the judge.
        judge: String,
        /// Items given.
        expected: usize,
        /// Verdicts returned.
        got: usize,
    },
}

impl JudgeError {
    /// A [`JudgeError::Record`] error.
    pub fn record(
        at: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        JudgeError::Record {
            at: at.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
