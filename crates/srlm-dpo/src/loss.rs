//! Preference losses as free functions over per-pair tensors, named by TRL's `loss_type`.
//!
//! Every function takes `h`, the DPO "logits" of TRL's `DPOTrainer.dpo_loss`:
//!
//! ```text
//! h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))     [batch] f32, nats
//! ```
//!
//! built by [`dpo_logits`] from per-pair response log-probs. For `sigmoid`, `robust` and
//! `hinge` these are *sums* over response tokens; for `ipo` they are per-token *means*
//! (TRL divides the summed log-probs by the completion length when `loss_type == "ipo"`;
//! case D3). `beta` is applied exactly once, inside the loss (case D2). Each function returns
//! the per-pair loss `[batch]` f32; the trainer averages over the batch.

use candle_core::{Result, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which preference loss to train with (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    /// DPO (Rafailov et al. 2023, Eq. 7), with optional label smoothing (cDPO). See [`sigmoid_loss`].
    #[default]
    Sigmoid,
    /// Robust DPO (Chowdhury et al. 2024). See [`robust_loss`].
    Robust,
    /// SLiC hinge loss (Zhao et al. 2023). See [`hinge_loss`].
    Hinge,
    /// IPO (Azar et al. 2023, Eq. 17) on per-token mean log-probs. See [`ipo_loss`].
    Ipo,
}

impl LossType {
    /// TRL's name for this loss (`"sigmoid"`, `"robust"`, `"hinge"`, `"ipo"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LossType::Sigmoid => "sigmoid",
            LossType::Robust => "robust",
            LossType::Hinge => "hinge",
            LossType::Ipo => "ipo",
        }
    }

    /// Whether this loss works on per-token mean log-probs (only `ipo`) instead of sums.
    pub fn uses_mean_logps(self) -> bool {
        matches!(self, LossType::Ipo)
    }
}

impl std::fmt::Display for LossType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `h = (policy_chosen − ref_chosen) − (policy_rejected − ref_rejected)`.
///
/// All four inputs: `[batch]` f32 response log-probs in nats (sums, or per-token means for IPO).
/// Returns `[batch]` f32. Differentiable w.r.t. whichever inputs carry a graph.
pub fn dpo_logits(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
) -> Result<Tensor> {
    (policy_chosen - ref_chosen)?.sub(&(policy_rejected - ref_rejected)?)
}

/// Numerically stable `log σ(x)`, element-wise, smooth everywhere (so its gradient at 0 is
/// exactly ½, which matters: DPO starts at h = 0). Any shape, f32.
///
/// `log σ(x) = −ln(1 + e^{−x})` for x ≥ −80 (no overflow: e^{80} < f32::MAX), and `x` below
/// (where the difference is under e^{−80}). Built from primitives with a backward pass; the
/// kink-free form matters because candle's `relu`/`abs` have derivative 1 at 0, which would
/// make `relu(−x) + ln(1 + e^{−|x|})` report a gradient of 1.5 instead of 0.5 at x = 0.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    const FLOOR: f64 = -80.0;
    let safe = x.maximum(FLOOR)?;
    let smooth = (safe.neg()?.exp()? + 1.0)?.log()?.neg()?;
    x.ge(FLOOR)?.where_cond(&smooth, x)
}

/// `sigmoid` loss: DPO (Rafailov et al. 2023, Eq. 7) with conservative label smoothing ε
/// (cDPO, Mitchell 2023, "A note on DPO with noisy preferences"):
///
/// ```text
/// L = −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)
/// ```
///
/// `h`: `[batch]` f32 (summed log-probs, see [`dpo_logits`]); `label_smoothing` ε ∈ [0, 0.5).
/// Returns `[batch]` f32 in nats. With ε = 0 this is plain DPO. Matches TRL `loss_type="sigmoid"`.
pub fn sigmoid_loss(h: &Tensor, beta: f64, label_smoothing: f64) -> Result<Tensor> {
    let bh = (h * beta)?;
    let pos = (log_sigmoid(&bh)? * -(1.0 - label_smoothing))?;
    if label_smoothing == 0.0 {
        return Ok(pos);
    }
    let neg = (log_sigmoid(&bh.neg()?)? * label_smoothing)?;
    pos - neg
}

/// `robust` loss: robust DPO (Chowdhury et al. 2024, "Provably Robust DPO", the unbiased
/// rDPO loss), for preference labels flipped with probability ε:
///
/// ```text
/// L = (−(1 − ε)·log σ(β·h) + ε·log σ(−β·h)) / (1 − 2ε)
/// ```
///
/// `h`: `[batch]` f32 (summed log-probs); ε ∈ [0, 0.5). Returns `[batch]` f32. Matches TRL
/// `loss_type="robust"`. Unlike cDPO it can be negative for large `h`.
pub fn robust_loss(h: &Tensor, beta: f64, label_smoothing: f64) -> Result<Tensor> {
    let bh = (h * beta)?;
    let pos = (log_sigmoid(&bh)? * -(1.0 - label_smoothing))?;
    let neg = (log_sigmoid(&bh.neg()?)? * label_smoothing)?;
    (pos + neg)? / (1.0 - 2.0 * label_smoothing)
}

/// `hinge` loss: SLiC's calibration loss (Zhao et al. 2023, "SLiC-HF"), with margin 1/β
/// expressed as TRL does:
///
/// ```text
/// L = max(0, 1 − β·h)
/// ```
///
/// `h`: `[batch]` f32 (summed log-probs). Returns `[batch]` f32. Matches TRL `loss_type="hinge"`.
pub fn hinge_loss(h: &Tensor, beta: f64) -> Result<Tensor> {
    h.affine(-beta, 1.0)?.relu()
}

/// `ipo` loss: IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
/// from Human Preferences", Eq. 17, with τ = β):
///
/// ```text
/// L = (h − 1/(2β))²
/// ```
///
/// `h`: `[batch]` f32 built from per-token **mean** log-probs (case D3). Returns `[batch]` f32.
/// Matches TRL `loss_type="ipo"`.
pub fn ipo_loss(h: &Tensor, beta: f64) -> Result<Tensor> {
    h.affine(1.0, -1.0 / (2.0 * beta))?.sqr()
}

/// Dispatches on `loss_type`: [`sigmoid_loss`], [`robust_loss`], [`hinge_loss`] or [`ipo_loss`].
/// `label_smoothing` is used by `sigmoid` and `robust` only. `h`: `[batch]` f32; returns `[batch]` f32.
pub fn preference_loss(
    loss_type: LossType,
    h: &Tensor,
    beta: f64,
    label_smoothing: f64,
) -> Result<Tensor> {
    match loss_type {
        LossType::Sigmoid => sigmoid_loss(h, beta, label_smoothing),
        LossType::Robust => robust_loss(h, beta, label_smoothing),
        LossType::Hinge => hinge_loss(h, beta),
        LossType::Ipo => ipo_loss(h, beta),
    }
}

/// RPO's NLL term on the chosen responses (Pang et al. 2024, "Iterative Reasoning Preference
/// Optimization", Eq. 1), in TRL's form: the token-mean negative log-likelihood over all chosen
/// response tokens of the batch,
///
/// ```text
/// NLL = −Σ_i log π(y_w,i|x_i) / Σ_i |y_w,i|
/// ```
///
/// (the paper normalises per pair; TRL and srlm normalise over the batch's tokens).
/// `chosen_logps_sum`: `[batch]` f32 summed response log-probs; `chosen_lens`: `[batch]` f32
/// response token counts. Returns a scalar f32 in nats per token; the trainer adds
/// `rpo_alpha · NLL` to the batch-mean preference loss.
pub fn rpo_nll(chosen_logps_sum: &Tensor, chosen_lens: &Tensor) -> Result<Tensor> {
    let total = chosen_lens.sum_all()?;
    chosen_logps_sum.sum_all()?.neg()?.div(&total)
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // the cases' values are quoted as given (0.693147 = ln 2)
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn check(got: Tensor, want: &[f32]) {
        let got = got.to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }

    /// Case D2: beta applied once. h = 10, beta = 0.1.
    #[test]
    fn d2_beta_once() {
        let h = t(&[10.0]);
        check(sigmoid_loss(&h, 0.1, 0.0).unwrap(), &[0.313262]);
        // beta applied twice would be -log σ(0.1) = 0.644397: make sure we are not there.
        let twice = sigmoid_loss(&(&h * 0.1).unwrap(), 0.1, 0.0).unwrap();
        check(twice, &[0.644397]);
        check(robust_loss(&h, 0.1, 0.1).unwrap(), &[0.188262]);
        check(sigmoid_loss(&h, 0.1, 0.1).unwrap(), &[0.413262]);
        check(hinge_loss(&t(&[5.0]), 0.1).unwrap(), &[0.5]);
        check(hinge_loss(&t(&[20.0]), 0.1).unwrap(), &[0.0]);
        check(
            preference_loss(LossType::Robust, &h, 0.1, 0.1).unwrap(),
            &[0.188262],
        );
    }

    /// Case D3: IPO on per-token means gives 16; sums give 4; sigmoid DPO on sums: h = 3, 0.554355.
    #[test]
    fn d3_ipo_uses_means() {
        // chosen: 4 tokens, policy -1.0 / ref -1.5 per token; rejected: 2 tokens, -2.0 / -1.5.
        let (pc_sum, rc_sum, pr_sum, rr_sum) = (t(&[-4.0]), t(&[-6.0]), t(&[-4.0]), t(&[-3.0]));
        let (pc_m, rc_m, pr_m, rr_m) = (t(&[-1.0]), t(&[-1.5]), t(&[-2.0]), t(&[-1.5]));
        let h_mean = dpo_logits(&pc_m, &pr_m, &rc_m, &rr_m).unwrap();
        check(h_mean.clone(), &[1.0]);
        check(ipo_loss(&h_mean, 0.1).unwrap(), &[16.0]);
        let h_sum = dpo_logits(&pc_sum, &pr_sum, &rc_sum, &rr_sum).unwrap();
        check(h_sum.clone(), &[3.0]);
        check(ipo_loss(&h_sum, 0.1).unwrap(), &[4.0]);
        check(sigmoid_loss(&h_sum, 0.1, 0.0).unwrap(), &[0.554355]);
    }

    #[test]
    fn zero_margin_is_ln2_and_batched() {
        let h = t(&[0.0, 0.0, -10.0]);
        check(
            sigmoid_loss(&h, 0.1, 0.0).unwrap(),
            &[0.693147, 0.693147, 1.313262],
        );
        check(
            robust_loss(&h, 0.1, 0.0).unwrap(),
            &[0.693147, 0.693147, 1.313262],
        );
        check(hinge_loss(&h, 0.1).unwrap(), &[1.0, 1.0, 2.0]);
        check(ipo_loss(&h, 0.1).unwrap(), &[25.0, 25.0, 225.0]);
    }

    #[test]
    fn log_sigmoid_is_stable_at_extremes() {
        check(
            log_sigmoid(&t(&[-100.0, -79.0, -1.0, 0.0, 1.0, 100.0])).unwrap(),
            &[-100.0, -79.0, -1.313262, -0.693147, -0.313262, 0.0],
        );
        // Gradient σ(−x) everywhere, including the extremes (no NaN from the unused branch).
        let x = candle_core::Var::new(&[-100.0f32, -1.0, 0.0, 1.0, 100.0], &Device::Cpu).unwrap();
        let g = log_sigmoid(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        check(
            g.get(x.as_tensor()).unwrap().clone(),
            &[1.0, 0.731059, 0.5, 0.268941, 0.0],
        );
    }

    /// d/dh of −log σ(β h) at h = 0 is −β/2.
    #[test]
    fn sigmoid_gradient_at_zero() {
        let h = candle_core::Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let loss = sigmoid_loss(h.as_tensor(), 0.1, 0.0)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        check(g.get(h.as_tensor()).unwrap().clone(), &[-0.05]);
    }

    #[test]
    fn rpo_nll_is_token_mean() {
        // sums -4 over 4 tokens and -2 over 1 token: -(-6)/5 = 1.2
        check(
            rpo_nll(&t(&[-4.0, -2.0]), &t(&[4.0, 1.0]))
                .unwrap()
                .reshape(1)
                .unwrap(),
            &[1.2],
        );
    }
}
