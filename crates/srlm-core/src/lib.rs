//! srlm's shared vocabulary: the records every stage reads and writes.
//!
//! A [`PromptRecord`] is sampled into [`Sample`]s (K per prompt, from a [`ModelSource`]),
//! each sample is scored by a judge into a [`Judgment`], and a pair-selection strategy turns
//! scored samples into [`PreferencePair`]s that DPO trains on. [`SamplingConfig`] holds the
//! sampling settings shared by the sampler and the judges.
//!
//! Design choice: this crate knows nothing about tensors, models or files on disk (no candle
//! dependency), so judges, strategy plugins and the plugin ABI can depend on it without pulling
//! in a numerical backend. Every record is plain serde data with a JSON Schema (schemars).

#![deny(missing_docs)]

mod jsonl;
pub mod output;
pub mod progress;
mod records;
mod sampling;

pub use jsonl::{jsonl_lines, read_jsonl, read_text, write_atomic, write_jsonl_atomic, JsonlError};
pub use records::{Judgment, ModelSource, PairProvenance, PreferencePair, PromptRecord, Sample};
pub use sampling::SamplingConfig;
