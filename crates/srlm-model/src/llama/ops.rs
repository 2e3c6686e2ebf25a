//! The ops the blocks are made of outside [`crate::fused`] and [`super::proj`]: RMSNorm
//! and rotary embeddings (with their tables), in the two implementations a [`Mode`] chooses:
//! composed from candle primitives (every op has a backward) or candle's fused inference kernels.

use crate::config::LlamaConfig;
use crate::error::Result;
use candle_core::{Device, Tensor, D};

/// Which implementation of RMSNorm / RoPE / softmax to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Composed from primitive ops: slower, but every weight receives a gradient.
    Train,
    /// candle's fused CPU/CUDA kernels: faster, no backward.
    Infer,
}

/// `[max_position_embeddings, head_dim/2]` cos and sin tables: angle(p, i) = p · θ^(−2i/head_dim)
/// (Su et al. 2021, RoFormer, Eq. 34), in HF's half-split convention; with Llama 3.1's
/// scaling ([`crate::config::Llama3RopeScaling`]) applied to each frequency.
pub(super) fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let n = cfg.max_position_embeddings;
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
        .map(|f| cfg.rope_scaling.map_or(f, |s| s.scale(f)))
        .collect();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

/// Rotary embedding, half-split layout: for x = [x1, x2] (each head_dim/2),
/// out = [x1·cos − x2·sin, x2·cos + x1·sin]. `x` `[b, h, s, hd]`, `cos`/`sin` `[b, s, hd/2]`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Infer => Ok(candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &cos.contiguous()?,
            &sin.contiguous()?,
        )?),
        Mode::Train => {
            let hd = x.dim(D::Minus1)?;
            let cos = cos.unsqueeze(1)?;
            let sin = sin.unsqueeze(1)?;
            let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
            let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
            let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
            Ok(Tensor::cat(&[a, b], D::Minus1)?)
        }
    }
}

/// RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · weight over the last dim.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Infer => Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            weight,
            eps as f32,
        )?),
        Mode::Train => {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inv = (ms + eps)?.sqrt()?.recip()?;
            Ok(x.broadcast_mul(&inv)?.broadcast_mul(weight)?)
        }
    }
}
