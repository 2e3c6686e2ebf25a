//! Sampling settings shared by the sampler, the judges and the strategies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How to sample responses.
///
/// Defaults follow Yuan et al. 2024 (arXiv 2401.10020), Sec. 3: temperature 0.7, top-p 0.9;
/// `k` is 4 (the paper's 7 is GPU-sized).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Samples per prompt (K).
    pub k: usize,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    /// Nucleus (top-p) mass in (0, 1]; 1 disables it.
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: usize,
    /// Maximum number of generated tokens per response.
    pub max_new_tokens: usize,
    /// Seed of the sampler's random stream.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            k: 4,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 0,
            max_new_tokens: 128,
            seed: 1,
        }
    }
}
