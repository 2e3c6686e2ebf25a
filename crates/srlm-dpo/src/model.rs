//! [`PolicyModel`]: the small interface the trainer needs from a causal LM, and the
//! finite-weights check that guards every checkpoint.

use crate::error::{DpoError, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;

/// A causal LM the trainer can score and update.
///
/// Implemented by srlm-model's trainable Llama, and by the toy `BigramLm` used in tests (cargo
/// feature `toy`).
/// The same trait serves the frozen reference model (only [`PolicyModel::sequence_logps`] is
/// called on it, and its output is detached).
pub trait PolicyModel {
    /// Target-token log-probs of a right-padded batch.
    ///
    /// `input_ids`: `[batch, seq]` u32, each row a prompt followed by its response, right-padded
    /// (the padding id is a valid token id; its value carries no meaning). Returns
    /// `[batch, seq - 1]` f32 (natural log) where `out[b, t] = log p(ids[b, t+1] | ids[b, ..=t])`,
    /// differentiable w.r.t. [`PolicyModel::trainable_vars`]. Positions at or after a row's
    /// true length may hold anything, even NaN (the caller selects, never multiplies, by its
    /// mask); padding sits only after the real tokens, so a causal model's real positions
    /// never see it. Must be deterministic: the same input gives bit-identical output.
    fn token_logps(&self, input_ids: &Tensor) -> candle_core::Result<Tensor>;

    /// Summed target-token log-probs over the masked positions of each row: `input_ids`
    /// `[batch, seq]` u32 as in [`PolicyModel::token_logps`], `mask` `[batch, seq − 1]` u8
    /// (1 = a response token's position) → `[batch]` f32 (nats), differentiable w.r.t.
    /// [`PolicyModel::trainable_vars`].
    ///
    /// The default selects from [`PolicyModel::token_logps`] ([`crate::masked_sum`]); a model
    /// may override it to skip the unmasked positions (srlm-model's Llama runs its LM head and
    /// log-softmax on response positions only). Must agree with the default.
    ///
    /// Errors: [`DpoError::ModelOutput`] when `token_logps` returns another shape or dtype;
    /// [`DpoError::Candle`] from the model.
    fn sequence_logps(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let lp = self.token_logps(input_ids)?;
        let (rows, seq) = input_ids.dims2()?;
        if lp.dims() != [rows, seq - 1] || lp.dtype() != DType::F32 {
            return Err(DpoError::ModelOutput {
                expected: format!("token_logps of [{rows}, {}] f32", seq - 1),
                got: format!("{:?} {:?}", lp.dims(), lp.dtype()),
            });
        }
        Ok(crate::batch::masked_sum(&lp, mask)?)
    }

    /// Gradients of `loss` (built from [`PolicyModel::sequence_logps`] /
    /// [`PolicyModel::token_logps`]) for every trainable var. Default: `loss.backward()`. A
    /// model whose forward pass recomputes activations (gradient checkpointing) adds the
    /// gradients it computed during the backward pass here.
    fn backward(&self, loss: &Tensor) -> candle_core::Result<GradStore> {
        loss.backward()
    }

    /// Turns gradient checkpointing on or off; returns whether the model supports it (the
    /// default: no, and nothing changes).
    fn set_gradient_checkpointing(&self, on: bool) -> bool {
        let _ = on;
        false
    }

    /// The trainable parameters, in a stable order (AdamW state follows this order).
    fn trainable_vars(&self) -> Vec<Var>;

    /// Writes a checkpoint of the current weights into `dir` (created if missing). The
    /// implementation writes atomically (temporary file, then rename). The trainer calls it
    /// only through [`save_checkpoint_checked`], i.e. never with non-finite weights.
    fn save_checkpoint(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The device the model runs on; input ids are created there. Default: the device of the
    /// first trainable var, else the CPU.
    fn device(&self) -> Device {
        self.trainable_vars()
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(Device::Cpu)
    }
}

/// Whether every element of `t` is finite (no NaN, no ±inf). Any shape, any float dtype.
pub fn all_finite(t: &Tensor) -> candle_core::Result<bool> {
    // x − x is 0 for finite x and NaN for NaN or ±inf; the sum is 0 exactly iff all are finite.
    let t = t.to_dtype(DType::F32)?;
    #[allow(clippy::eq_op)] // x − x is the point: NaN for non-finite x
    let s = (&t - &t)?.sum_all()?.to_scalar::<f32>()?;
    Ok(s == 0.0)
}

/// Checks that every trainable var of `model` is finite, then calls
/// [`PolicyModel::save_checkpoint`]. Non-finite weights give [`DpoError::NonFinite`] with
/// `what = "weights"` (at `step`) and nothing is written.
pub fn save_checkpoint_checked(model: &dyn PolicyModel, dir: &Path, step: u64) -> Result<()> {
    for v in model.trainable_vars() {
        if !all_finite(v.as_tensor())? {
            return Err(DpoError::NonFinite {
                step,
                what: "weights",
                pair_ids: Vec::new(),
            });
        }
    }
    model
        .save_checkpoint(dir)
        .map_err(|source| DpoError::Checkpoint {
            dir: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_check() {
        let d = Device::Cpu;
        assert!(all_finite(&Tensor::new(&[1.0f32, -3.0e38], &d).unwrap()).unwrap());
        assert!(!all_finite(&Tensor::new(&[1.0f32, f32::NAN], &d).unwrap()).unwrap());
        assert!(!all_finite(&Tensor::new(&[f32::NEG_INFINITY, 0.0], &d).unwrap()).unwrap());
    }
}
