//! srlm-judge: turns (prompt, response) pairs into scores on the 0–5 scale.
//!
//! - [`Judge`]: the batch trait every judge implements; [`JudgeItem`] in, [`Verdict`]
//!   (`score: Option<f64>` + JSON details) out, convertible to [`srlm_core::Judgment`].
//! - [`LlmJudge`]: LLM-as-a-Judge with the additive 5-point rubric of Yuan et al. 2024
//!   (arXiv 2401.10020, Fig. 2), `sampled` or `expected` ([`JudgeMode`]), over any model that
//!   implements the small [`JudgeModel`] trait.
//! - [`IfevalJudge`]: the 25 verifiable instruction types of IFEval (Zhou et al. 2023,
//!   arXiv 2311.07911), strict and loose; see [`ifeval`].
//! - [`AnswerJudge`]: exact match of a final answer (a number, GSM8K-style; a letter,
//!   ARC-style multiple choice) with the record's reference; see [`answer`].
//! - [`CompositeJudge`]: weighted sums such as `0.5*ifeval+0.5*self` ([`parse_spec`]).
//! - [`JudgeSpec`]: a judge specification parsed once; [`build_judge`], the one factory that
//!   turns a spec and [`JudgeSettings`] into a judge (the caller supplies the models).
//! - [`JudgeHealth`] and [`pairwise_agreement`]: is a judge usable, and do two judges agree?
//! - [`parse_score`]: the judge's last line-anchored `Score: N` (case J1).
//! - [`degeneration`]: does a response loop (repeated word trigrams)? A rule judge cannot
//!   tell; the run's report counts it.
//!
//! Design choice: **"no score" is a value, not a zero.** A judge that cannot score a response
//! returns `score: None`; composites propagate it, health reports count it, and nothing in
//! this crate ever turns it into 0. That keeps a blind judge (e.g. a 135M model that never
//! writes a `Score:` line) visible instead of quietly producing all-zero preference data.
//!
//! Architecture invariant: srlm-judge knows nothing about tensors or model files; model judges
//! reach a model only through [`JudgeModel`], which the model backend implements.

#![deny(missing_docs)]

pub mod answer;
mod composite;
pub mod degeneration;
mod error;
mod health;
pub mod ifeval;
pub mod injection;
mod judge;
mod llm;
mod score;
mod spec;

pub use answer::AnswerJudge;
pub use composite::{parse_spec, CompositeJudge, SpecTerm};
pub use error::JudgeError;
pub use health::{
    digits_missing, pairwise_agreement, same_prompt_pairs, JudgeHealth, PairwiseAgreement,
};
pub use ifeval::{IfevalAccuracy, IfevalJudge, InstructionResult};
pub use judge::{Judge, JudgeItem, Verdict};
pub use llm::{
    expected_score, quote_for_judge, JudgeMode, JudgeModel, LlmJudge, DEFAULT_ANSWER_PREFIX,
    DEFAULT_TEMPLATE, TRUNCATION_NOTE,
};
pub use score::parse_score;
pub use spec::{build_judge, JudgeName, JudgeSettings, JudgeSpec};
