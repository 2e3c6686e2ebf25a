//! A decoder block: its weights ([`Block`]) and its two forward passes, the one outside
//! training's fused kernels ([`Block::forward`], which also serves KV-cached decoding) and the
//! fused CPU training path ([`fused_block`] and its two sublayers, which gradient checkpointing
//! ([`super::recompute`]) reruns in the backward pass).

use super::attention::Attention;
use super::ops::{linear, rms_norm, Mode};
use crate::config::LlamaConfig;
use crate::error::Result;
use candle_core::{Module, Tensor};

/// One decoder block's weights (the tensors of the model's `Var`s, shared, not copied).
#[derive(Clone)]
pub(super) struct Block {
    /// RMSNorm weight before attention.
    pub(super) input_norm: Tensor,
    /// The attention projections.
    pub(super) attn: Attention,
    /// RMSNorm weight before the MLP.
    pub(super) post_norm: Tensor,
    /// SwiGLU gate projection.
    pub(super) gate: candle_nn::Linear,
    /// SwiGLU up projection.
    pub(super) up: candle_nn::Linear,
    /// MLP down projection.
    pub(super) down: candle_nn::Linear,
}

impl Block {
    /// Every trainable tensor of the block (the `Var`s' tensors).
    pub(super) fn weights(&self) -> Vec<Tensor> {
        let mut w = vec![self.input_norm.clone(), self.post_norm.clone()];
        for l in [
            &self.attn.q,
            &self.attn.k,
            &self.attn.v,
            &self.attn.o,
            &self.gate,
            &self.up,
            &self.down,
        ] {
            w.push(l.weight().clone());
            if let Some(b) = l.bias() {
                w.push(b.clone());
            }
        }
        w
    }

    /// The block outside training's fused kernels (composed ops in [`Mode::Train`], candle's
    /// fused kernels in [`Mode::Infer`]): `x` `[b, s, hidden]` ↦ y = x + attention(rms_norm(x)),
    /// then y ↦ y + down(silu(gate(h)) ⊙ up(h)) with h = rms_norm(y). `cos`, `sin`, `mask` and
    /// `cache` as in [`Attention::forward`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &self,
        cfg: &LlamaConfig,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let h = rms_norm(x, &self.input_norm, cfg.rms_norm_eps, mode)?;
        let h = self.attn.forward(cfg, &h, cos, sin, mask, cache, mode)?;
        let x = (x + h)?;
        let h = rms_norm(&x, &self.post_norm, cfg.rms_norm_eps, mode)?;
        let h = h.reshape((b * s, cfg.hidden_size))?;
        let act = (linear(&self.gate, &h, mode)?.silu()? * linear(&self.up, &h, mode)?)?;
        let h = linear(&self.down, &act, mode)?.reshape((b, s, cfg.hidden_size))?;
        Ok((x + h)?)
    }
}

/// One decoder block in training mode with the fused kernels of [`crate::fused`] (CPU):
/// `x` `[b, s, hidden]` → `[b, s, hidden]`, causal attention over the whole (right-padded)
/// batch. The same math as [`Block::forward`].
pub(super) fn fused_block(
    cfg: &LlamaConfig,
    blk: &Block,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    fused_mlp_sublayer(cfg, blk, &fused_attention_sublayer(cfg, blk, x, cos, sin)?)
}

/// The attention half of [`fused_block`]: x + attention(rms_norm(x)).
pub(super) fn fused_attention_sublayer(
    cfg: &LlamaConfig,
    blk: &Block,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    let h = crate::fused::rms_norm(x, &blk.input_norm, cfg.rms_norm_eps)?;
    Ok((x + blk.attn.forward_fused(cfg, &h, cos, sin)?)?)
}

/// The MLP half of [`fused_block`]: x + down(silu(gate(h)) ⊙ up(h)), h = rms_norm(x); the
/// activation is recomputed in the backward pass ([`crate::fused::swiglu_down`]).
pub(super) fn fused_mlp_sublayer(cfg: &LlamaConfig, blk: &Block, x: &Tensor) -> Result<Tensor> {
    use crate::fused;
    let (b, s, d) = x.dims3()?;
    let h = fused::rms_norm(x, &blk.post_norm, cfg.rms_norm_eps)?.reshape((b * s, d))?;
    let mut y = fused::swiglu_down(
        &blk.gate.forward(&h)?,
        &blk.up.forward(&h)?,
        blk.down.weight(),
    )?;
    if let Some(bias) = blk.down.bias() {
        y = y.broadcast_add(bias)?;
    }
    Ok((x + y.reshape((b, s, d))?)?)
}
