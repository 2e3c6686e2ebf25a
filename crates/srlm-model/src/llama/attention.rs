//! Grouped-query causal self-attention: the projections of one layer ([`Attention`]) and its
//! two forward passes (outside training's fused kernels, with an optional KV cache; and the
//! fused CPU training path), plus the additive mask for padded batches.

use super::ops::{rope, Mode};
use super::proj::Proj;
use crate::config::LlamaConfig;
use crate::error::Result;
use candle_core::{Device, Tensor, D};

/// Additive mask value for attention positions a query may not see. Finite (not -inf) so a
/// row with every key masked (a left-padding query) gives a uniform softmax instead of NaN.
const MASKED: f32 = -1e9;

/// One layer's attention projections (HF's `self_attn.{q,k,v,o}_proj`).
#[derive(Clone)]
pub(super) struct Attention {
    /// Query projection.
    pub(super) q: Proj,
    /// Key projection.
    pub(super) k: Proj,
    /// Value projection.
    pub(super) v: Proj,
    /// Output projection.
    pub(super) o: Proj,
}

impl Attention {
    /// Causal attention on `x` `[b, s, hidden]` (already normalised) → `[b, s, hidden]`,
    /// composed from candle ops ([`Mode::Train`]: every op has a backward) or with candle's fused
    /// kernels ([`Mode::Infer`]). `cos`/`sin` `[b, s, head_dim/2]` are the rows' RoPE angles;
    /// `mask` is [`attention_mask`]'s; with `cache` the new keys/values are appended to the
    /// layer's slot and attention covers every cached position.
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
        let (b, s, d) = x.dims3()?;
        // Projections as plain 2-D matmuls over [b·s, d]: candle's Linear broadcasts the
        // weight over a 3-D batch, which costs a [b, in, out] gradient in the backward pass.
        let x = &x.reshape((b * s, d))?;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let q = self
            .q
            .forward(x, mode)?
            .reshape((b, s, nh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = self
            .k
            .forward(x, mode)?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = self
            .v
            .forward(x, mode)?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rope(&q, cos, sin, mode)?;
        let mut k = rope(&k, cos, sin, mode)?;
        let mut v = v;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            // Detached: the weights are `Var`s, so every activation records the ops that made
            // it; a cached tensor that kept its graph would keep every earlier step's cache
            // alive (memory grew by ~3 MB per row and step before this).
            *slot = Some((k.detach(), v.detach()));
        }
        let kv_len = k.dim(2)?;
        let rep = nh / nkv;
        // Grouped-query attention: view the query heads as [nkv, rep] groups so each group
        // shares one key/value head without copying K and V.
        let q = q.reshape((b, nkv, rep * s, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.reshape((b, nkv, rep, s, kv_len))?;
        let scores = scores.broadcast_add(&mask.unsqueeze(1)?)?;
        let probs = match mode {
            Mode::Train => candle_nn::ops::softmax(&scores, D::Minus1)?,
            Mode::Infer => candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?,
        };
        let out = probs.reshape((b, nkv, rep * s, kv_len))?.matmul(&v)?; // [b, nkv, rep*s, hd]
        let out = out
            .reshape((b, nh, s, hd))?
            .transpose(1, 2)?
            .reshape((b * s, nh * hd))?;
        Ok(self.o.forward(&out, mode)?.reshape((b, s, d))?)
    }

    /// The attention of training's fused CPU path ([`crate::fused`]: RoPE straight into the
    /// per-head layout, the causal mask inside the softmax) on `x` `[b, s, hidden]` (already
    /// normalised), causal over the whole right-padded batch → `[b, s, hidden]`.
    pub(super) fn forward_fused(
        &self,
        cfg: &LlamaConfig,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        use crate::fused;
        let (b, s, d) = x.dims3()?;
        let h = &x.reshape((b * s, d))?;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        // RoPE writes the per-head layout directly; the causal mask lives in the softmax.
        let q = fused::rope_bshd_to_bhsd(
            &self.q.forward(h, Mode::Train)?.reshape((b, s, nh, hd))?,
            cos,
            sin,
        )?;
        let k = fused::rope_bshd_to_bhsd(
            &self.k.forward(h, Mode::Train)?.reshape((b, s, nkv, hd))?,
            cos,
            sin,
        )?;
        let v = self
            .v
            .forward(h, Mode::Train)?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let rep = nh / nkv;
        let q = q.reshape((b, nkv, rep * s, hd))?;
        let scores = q.matmul(&k.t()?)?; // [b, nkv, rep*s, s]
        let probs = fused::causal_softmax(&scores, 1.0 / (hd as f64).sqrt(), s)?;
        let out = probs
            .matmul(&v)? // [b, nkv, rep*s, hd]
            .reshape((b, nh, s, hd))?
            .transpose(1, 2)?
            .reshape((b * s, nh * hd))?;
        Ok(self.o.forward(&out, Mode::Train)?.reshape((b, s, d))?)
    }
}

/// Additive attention mask `[batch, queries, offset + queries]` f32: query i of row r (absolute
/// position offset + i) sees key j iff `pad_left[r] <= j <= offset + i`.
pub(super) fn attention_mask(
    b: usize,
    s: usize,
    offset: usize,
    pad_left: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let kv = offset + s;
    let mut m = vec![0f32; b * s * kv];
    for r in 0..b {
        for i in 0..s {
            for j in 0..kv {
                if j > offset + i || j < pad_left[r] {
                    m[(r * s + i) * kv + j] = MASKED;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, s, kv), device)?.unsqueeze(1)?)
}
