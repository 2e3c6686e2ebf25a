//! Gradient checkpointing for the decoder blocks (Chen et al. 2016, "Training Deep Nets with
//! Sublinear Memory Cost", arXiv 1604.06174): the forward pass keeps only the input of a block
//! (or of its attention sublayer, [`crate::Checkpointing`]); the backward pass runs that part
//! again, with its graph, and differentiates it.
//!
//! candle has no checkpointing, so the part becomes one custom op on its input `x`:
//! - forward: run the block on a graph-less copy of `x`, return the output (the block's
//!   activations are freed at once);
//! - backward: run the block again on `x` as a fresh leaf, backpropagate the incoming gradient
//!   through it, return d`x`, and leave the block's weight gradients in a [`Stash`] — a custom
//!   op can only return gradients for its inputs. [`crate::Llama::backward`] merges the stash
//!   into the outer gradient store.
//!
//! Both runs use the same deterministic kernels, so the recomputed activations are bit-identical
//! and the gradients equal those without checkpointing (tested in `crate::llama`). This module
//! sees only a [`Block`], never the model: the model calls [`run`] and [`merge`].

use super::block::{fused_attention_sublayer, fused_block, Block};
use crate::config::LlamaConfig;
use crate::error::Result;
use candle_core::backprop::GradStore;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape, Tensor, Var};
use std::sync::{Arc, Mutex};

/// Weight gradients (weight tensor, gradient) computed by recomputation, waiting to be merged.
pub(crate) type Stash = Arc<Mutex<Vec<(Tensor, Tensor)>>>;

/// What one recompute op covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// x ↦ x + attention(rms_norm(x)).
    Attention,
    /// The whole block.
    Block,
}

struct Recompute {
    part: Part,
    cfg: LlamaConfig,
    block: Block,
    cos: Tensor,
    sin: Tensor,
    stash: Stash,
}

impl Recompute {
    fn run(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (cfg, blk, cos, sin) = (&self.cfg, &self.block, &self.cos, &self.sin);
        match self.part {
            Part::Attention => fused_attention_sublayer(cfg, blk, x, cos, sin),
            Part::Block => fused_block(cfg, blk, x, cos, sin),
        }
        .map_err(candle_core::Error::wrap)
    }
}

impl CustomOp1 for Recompute {
    fn name(&self) -> &'static str {
        "srlm-recompute-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = s else {
            bail!("srlm-recompute-block: expected f32 hidden states");
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("srlm-recompute-block: input must be contiguous");
        };
        let x = Tensor::from_slice(&data[a..b], l.shape(), &candle_core::Device::Cpu)?;
        let y = self.run(&x)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let leaf = Var::from_tensor(&x.detach())?;
        let y = self.run(leaf.as_tensor())?;
        let grads = (y * grad.detach())?.sum_all()?.backward()?;
        let mut stash = self.stash.lock().expect("recompute stash lock");
        for w in self.block.weights() {
            if let Some(g) = grads.get(&w) {
                stash.push((w, g.clone()));
            }
        }
        Ok(grads.get(leaf.as_tensor()).cloned())
    }
}

/// Runs `part` of `block` on `x` `[b, s, hidden]` f32 (CPU, fused kernels) keeping only `x`
/// for the backward pass; `cos`/`sin` `[b, s, head_dim/2]`. The weight gradients go to `stash`.
pub(crate) fn run(
    part: Part,
    cfg: &LlamaConfig,
    block: &Block,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    stash: &Stash,
) -> Result<Tensor> {
    // candle runs an op's backward only when its input is in the graph. A LoRA model's first
    // block gets the frozen embedding's output, which is not: as a leaf of its own it is, so
    // the block's adapters still get their gradients.
    let x = match x.track_op() {
        true => x.contiguous()?,
        false => Var::from_tensor(&x.contiguous()?)?.into_inner(),
    };
    Ok(x.apply_op1(Recompute {
        part,
        cfg: cfg.clone(),
        block: block.clone(),
        cos: cos.detach(),
        sin: sin.detach(),
        stash: stash.clone(),
    })?)
}

/// Adds every stashed weight gradient into `grads` (summing with any gradient already there)
/// and empties the stash.
pub(crate) fn merge(stash: &Stash, grads: &mut GradStore) -> Result<()> {
    let stashed = std::mem::take(&mut *stash.lock().expect("recompute stash lock"));
    for (w, g) in stashed {
        let total = match grads.remove(&w) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        grads.insert(&w, total);
    }
    Ok(())
}
