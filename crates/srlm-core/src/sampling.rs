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

impl SamplingConfig {
    /// The largest K srlm accepts: the sampler holds K rows per prompt (logits and KV cache),
    /// and papers use K ≤ 64 (Yuan et al. 2024: 4; Wang et al. 2025: 7).
    pub const MAX_K: usize = 1024;

    /// Checks every field's range, naming the field: `k` in 1..=[`Self::MAX_K`], `temperature`
    /// finite and ≥ 0, `top_p` in (0, 1], `max_new_tokens` ≥ 1.
    ///
    /// # Errors
    /// The first field out of range, as `"sampling.<field> …"`.
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 || self.k > Self::MAX_K {
            return Err(format!(
                "sampling.k = {} must be in 1..={}",
                self.k,
                Self::MAX_K
            ));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "sampling.temperature = {} must be a finite number ≥ 0 (0 is greedy)",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("sampling.top_p = {} must be in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return Err("sampling.max_new_tokens must be at least 1".into());
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_out_of_range_field_is_named() {
        let check = |f: &dyn Fn(&mut SamplingConfig), needle: &str| {
            let mut c = SamplingConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        check(&|c| c.temperature = f64::NAN, "sampling.temperature = NaN");
        check(&|c| c.temperature = -0.5, "sampling.temperature = -0.5");
        check(
            &|c| c.temperature = f64::INFINITY,
            "sampling.temperature = inf",
        );
        check(&|c| c.top_p = f64::NAN, "sampling.top_p");
        check(&|c| c.top_p = 0.0, "sampling.top_p");
        check(&|c| c.k = 0, "sampling.k = 0");
        check(&|c| c.k = 1 << 40, "must be in 1..=1024");
        check(&|c| c.max_new_tokens = 0, "max_new_tokens");
        assert_eq!(SamplingConfig::default().validate(), Ok(()));
        let greedy = SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(greedy.validate(), Ok(()));
    }
}
