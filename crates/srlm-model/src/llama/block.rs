//! A decoder block: its weights ([`Block`]) and its two forward passes, the one outside
//! training's fused kernels ([`Block::forward`], which also serves KV-cached decoding) and the
//! fused CPU training path ([`fused_block`] and its two sublayers, which gradient checkpointing
//! ([`super::recompute`]) reruns in the backward pass).

use super::attention::Attention;
use super::ops::{rms_norm, Mode};
use super::proj::Proj;
use crate::config::LlamaConfig;
use crate::error::Result;
use candle_core::Tensor;

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
    pub(super) gate: Proj,
    /// SwiGLU up projection.
    pub(super) up: Proj,
    /// MLP down projection.
    pub(super) down: Proj,
}

impl Block {
    /// The block's projections, in PEFT's target order (q, k, v, o, gate, up, down).
    pub(super) fn projections(&self) -> [&Proj; 7] {
        [
            &self.attn.q,
            &self.attn.k,
            &self.attn.v,
            &self.attn.o,
            &self.gate,
            &self.up,
            &self.down,
        ]
    }

    /// Every trainable tensor of the block: all its weights in a fully trained model, the
    /// adapters' A and B in a LoRA model (whose base, norms included, is frozen).
    pub(super) fn weights(&self) -> Vec<Tensor> {
        let mut w = match self.attn.q.frozen {
            true => Vec::new(),
            false => vec![self.input_norm.clone(), self.post_norm.clone()],
        };
        for p in self.projections() {
            w.extend(p.trainable());
        }
        w
    }

    /// The same block with a frozen base (shared, not copied) and `adapters` on its
    /// projections, indexed like [`Block::projections`].
    pub(super) fn frozen_with(&self, adapters: [Option<super::proj::LoraPair>; 7]) -> Block {
        let [q, k, v, o, gate, up, down] = adapters;
        Block {
            input_norm: self.input_norm.detach(),
            attn: Attention {
                q: self.attn.q.frozen_with(q),
                k: self.attn.k.frozen_with(k),
                v: self.attn.v.frozen_with(v),
                o: self.attn.o.frozen_with(o),
            },
            post_norm: self.post_norm.detach(),
            gate: self.gate.frozen_with(gate),
            up: self.up.frozen_with(up),
            down: self.down.frozen_with(down),
        }
    }

    /// The same block with its projections' weights frozen and stored in `dtype` (norms and
    /// biases stay f32); see [`super::Llama::with_base_dtype`].
    pub(super) fn with_base_dtype(&self, dtype: candle_core::DType) -> Result<Block> {
        let p = |p: &Proj| p.with_base_dtype(dtype);
        Ok(Block {
            input_norm: self.input_norm.detach(),
            attn: Attention {
                q: p(&self.attn.q)?,
                k: p(&self.attn.k)?,
                v: p(&self.attn.v)?,
                o: p(&self.attn.o)?,
            },
            post_norm: self.post_norm.detach(),
            gate: p(&self.gate)?,
            up: p(&self.up)?,
            down: p(&self.down)?,
        })
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
        let act = (self.gate.forward(&h, mode)?.silu()? * self.up.forward(&h, mode)?)?;
        let h = self
            .down
            .forward(&act, mode)?
            .reshape((b, s, cfg.hidden_size))?;
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
    let gate = blk.gate.forward(&h, Mode::Train)?;
    let up = blk.up.forward(&h, Mode::Train)?;
    let swiglu_down = match blk.down.frozen {
        true => fused::swiglu_down_frozen,
        false => fused::swiglu_down,
    };
    let mut y = match &blk.down.quantized {
        Some(q) => fused::swiglu_down_quantized(&gate, &up, q)?,
        None => swiglu_down(&gate, &up, &blk.down.weight)?,
    };
    if blk.down.lora.is_some() {
        // The adapter needs the activation itself, which the fused op never keeps.
        let act = (gate.silu()? * &up)?;
        if let Some(delta) = blk.down.lora_delta(&act, Mode::Train)? {
            y = (y + delta)?;
        }
    }
    if let Some(bias) = &blk.down.bias {
        y = y.broadcast_add(bias)?;
    }
    Ok((x + y.reshape((b, s, d))?)?)
}
