//! Learning-rate schedules (HF `get_scheduler` semantics): linear warmup, then constant,
//! linear decay to 0, or half-cosine decay to 0.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schedule after warmup (HF's `lr_scheduler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedulerType {
    /// Constant after warmup (HF `constant` / `constant_with_warmup`).
    #[serde(alias = "constant_with_warmup")]
    Constant,
    /// Linear decay from the peak to 0 at the last step (HF default).
    #[default]
    Linear,
    /// Half-cosine decay from the peak to 0 (HF `cosine`, 0.5 cycles).
    Cosine,
}

/// The learning rate of optimizer step `step` (0-based: the value used for the `step+1`-th
/// update) out of `total_steps`, with `warmup_steps` of linear warmup. Same formulas as HF
/// transformers' schedulers (`LambdaLR` factors times `peak`):
///
/// ```text
/// warmup (s < w):  s / max(1, w)                (so the first step of a warmup uses lr 0)
/// constant:        1
/// linear:          max(0, (T − s) / max(1, T − w))
/// cosine:          max(0, 0.5·(1 + cos(π·(s − w) / max(1, T − w))))
/// ```
///
/// Units: same as `peak` (the AdamW learning rate).
pub fn lr_at(
    kind: LrSchedulerType,
    peak: f64,
    step: u64,
    total_steps: u64,
    warmup_steps: u64,
) -> f64 {
    let (s, t, w) = (step as f64, total_steps as f64, warmup_steps as f64);
    if step < warmup_steps {
        return peak * s / w.max(1.0);
    }
    let factor = match kind {
        LrSchedulerType::Constant => 1.0,
        LrSchedulerType::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
        LrSchedulerType::Cosine => {
            let progress = (s - w) / (t - w).max(1.0);
            (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
        }
    };
    peak * factor
}

/// Warmup length in steps: `warmup_steps` when > 0, else `ceil(warmup_ratio · total_steps)` (HF).
pub fn warmup_len(warmup_steps: u64, warmup_ratio: f64, total_steps: u64) -> u64 {
    if warmup_steps > 0 {
        warmup_steps
    } else {
        (warmup_ratio * total_steps as f64).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LrSchedulerType::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn table() {
        // (kind, step, total, warmup, factor); values as torch LambdaLR with HF's lambdas gives.
        let cases = [
            (Constant, 0, 10, 0, 1.0),
            (Constant, 0, 10, 2, 0.0),
            (Constant, 1, 10, 2, 0.5),
            (Constant, 9, 10, 2, 1.0),
            (Linear, 0, 10, 0, 1.0),
            (Linear, 9, 10, 0, 0.1),
            (Linear, 2, 10, 2, 1.0),
            (Linear, 6, 10, 2, 0.5),
            (Cosine, 0, 10, 0, 1.0),
            (Cosine, 5, 10, 0, 0.5),
            (
                Cosine,
                4,
                10,
                2,
                0.5 * (1.0 + (std::f64::consts::PI * 0.25).cos()),
            ),
        ];
        for (kind, s, t, w, f) in cases {
            close(lr_at(kind, 2.0, s, t, w), 2.0 * f);
        }
    }

    #[test]
    fn warmup_ratio_rounds_up() {
        assert_eq!(warmup_len(0, 0.1, 15), 2);
        assert_eq!(warmup_len(3, 0.5, 15), 3);
        assert_eq!(warmup_len(0, 0.0, 15), 0);
    }
}
