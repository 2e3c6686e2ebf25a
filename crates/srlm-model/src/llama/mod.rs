//! A trainable Llama-family decoder (Touvron et al. 2023, arXiv 2302.13971; SmolLM2, Mistral,
//! Qwen2 share the layout): RMSNorm, rotary position embeddings in HF's half-split layout,
//! grouped-query attention, SwiGLU MLP.
//!
//! Unlike `candle-transformers`' llama, this model returns logits for **every** position and is
//! differentiable to every weight: candle's fused RMSNorm/RoPE/softmax kernels record no backward
//! (case C1), so training mode uses srlm's own fused CPU kernels with a backward
//! ([`crate::fused`]), or on other devices the same ops composed from candle primitives.
//! Inference (sampling with a KV cache) uses candle's fused kernels; tests check that the three
//! paths agree, and that gradient checkpointing ([`Checkpointing`]) changes no gradient.
//!
//! Weights live in a [`candle_nn::VarMap`] under HF tensor names
//! (`model.layers.0.self_attn.q_proj.weight`, …), so checkpoints are HF-loadable.
//!
//! Submodules: [`load`] (building from HF-named tensors), [`block`] (one decoder block: its
//! weights and forward passes), [`attention`] (grouped-query attention, the padding mask),
//! [`ops`] (RMSNorm, RoPE and projections outside the fused kernels), [`cache`] ([`KvCache`]),
//! [`recompute`] (gradient checkpointing of a block's parts). Dependencies run one way:
//! the model (this module and `load`) → `recompute` → `block` → `attention` → `ops`; the block
//! parts never see the [`Llama`].

mod attention;
mod block;
mod cache;
mod load;
#[cfg(test)]
mod lora_tests;
pub(crate) mod ops;
mod proj;
mod recompute;
#[cfg(test)]
mod tests;

pub use cache::KvCache;
pub use ops::Mode;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use attention::attention_mask;
use block::{fused_block, fused_mlp_sublayer, Block};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use ops::rms_norm;
use recompute::Part;

/// What gradient checkpointing recomputes in the backward pass
/// ([`Llama::set_gradient_checkpointing`]). Figures for SmolLM2-135M at 256 tokens per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Checkpointing {
    /// Keep every activation (~60 KB per token and layer).
    #[default]
    Off = 0,
    /// Recompute each attention sublayer (norm, q/k/v/o projections, RoPE, scores, softmax);
    /// keep the MLP's activations. About 60% of the activation memory for ~25% of a forward
    /// pass (selective recomputation in the spirit of Korthikanti et al. 2022, arXiv
    /// 2205.05198: the attention scores grow with the square of the length).
    Attention = 1,
    /// Recompute whole blocks; keep only each block's input (~2.3 KB per token and layer) for
    /// one more forward pass.
    Blocks = 2,
}

/// The model: embedding, `num_hidden_layers` blocks, final norm, LM head (tied or not).
pub struct Llama {
    cfg: LlamaConfig,
    varmap: VarMap,
    device: Device,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    /// `[max_position_embeddings, head_dim / 2]` f32.
    cos: Tensor,
    sin: Tensor,
    /// Train mode on the CPU uses [`crate::fused`]'s kernels (one op each, with a backward)
    /// instead of composing RMSNorm, RoPE, softmax and SwiGLU from primitives.
    fused_kernels: bool,
    /// What to recompute in the backward pass (a [`Checkpointing`] as u8; see
    /// [`recompute`]).
    gradient_checkpointing: std::sync::atomic::AtomicU8,
    /// Block weight gradients computed by recomputation, merged by [`Llama::backward`].
    recomputed: recompute::Stash,
    /// A LoRA model's adapter config: the base (every field above but the `varmap`) is frozen
    /// and may be shared with other models; the `varmap` holds the adapters' A and B only.
    adapter: Option<crate::lora::LoraConfig>,
}

impl Checkpointing {
    fn into_atomic(self) -> std::sync::atomic::AtomicU8 {
        std::sync::atomic::AtomicU8::new(self as u8)
    }
}

impl Llama {
    /// Whether [`Mode::Train`] uses the fused kernels of [`crate::fused`] (the default on the
    /// CPU, where they exist) or composes them from candle primitives (other devices; tests).
    pub fn set_fused_kernels(&mut self, on: bool) {
        self.fused_kernels = on && self.device.is_cpu();
    }

    /// Gradient checkpointing (Chen et al. 2016, arXiv 1604.06174): in [`Mode::Train`] with
    /// the fused kernels, keep less and recompute it in the backward pass (see
    /// [`Checkpointing`] for the trade-offs). Gradients are then complete only through
    /// [`Llama::backward`]. Ignored where the fused kernels are off (non-CPU devices).
    pub fn set_gradient_checkpointing(&self, what: Checkpointing) {
        self.gradient_checkpointing
            .store(what as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// The current [`Llama::set_gradient_checkpointing`] setting.
    pub fn gradient_checkpointing(&self) -> Checkpointing {
        match self
            .gradient_checkpointing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            1 => Checkpointing::Attention,
            2 => Checkpointing::Blocks,
            _ => Checkpointing::Off,
        }
    }

    /// `loss.backward()`, plus the block weight gradients that gradient checkpointing computed
    /// during it. Use this instead of `loss.backward()` on a loss built in [`Mode::Train`].
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        let mut grads = loss.backward()?;
        recompute::merge(&self.recomputed, &mut grads)?;
        Ok(grads)
    }

    /// Whether the base weights (embedding, projections, LM head) are frozen: in a LoRA model,
    /// and in a model whose base was narrowed by [`Llama::with_base_dtype`].
    pub fn base_frozen(&self) -> bool {
        self.adapter.is_some() || self.blocks.first().is_some_and(|b| b.attn.q.frozen)
    }

    /// The dtype the base weights are stored in (f32, or bf16 after
    /// [`Llama::with_base_dtype`]); norms, adapters and activations are always f32.
    pub fn base_dtype(&self) -> DType {
        self.embed.dtype()
    }

    fn fused(&self, mode: Mode) -> bool {
        mode == Mode::Train && self.fused_kernels
    }

    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All trainable parameters, sorted by name: one [`Var`] per HF tensor, or a LoRA model's
    /// adapter tensors only (`….q_proj.lora_A.weight`, …).
    pub fn vars(&self) -> Vec<Var> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        names.into_iter().map(|n| data[n].clone()).collect()
    }

    /// Parameters by name, sorted.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Final-norm hidden states `[batch, seq, hidden]` f32 (HF's `hidden_states[-1]`) for a
    /// right-padded batch: `input_ids` `[batch, seq]` u32, positions 0..seq, causal attention.
    /// Padding after a row's true length does not change that row's real positions.
    pub fn hidden_states(&self, input_ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, s as u32, &self.device)?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let mask = attention_mask(b, s, 0, &vec![0; b], &self.device)?;
        self.run_blocks(input_ids, &positions, &mask, None, mode)
    }

    /// Logits `[batch, seq, vocab]` f32 for every position of a right-padded batch
    /// (`input_ids` `[batch, seq]` u32). Differentiable in [`Mode::Train`].
    pub fn forward(&self, input_ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.hidden_states(input_ids, mode)?;
        self.lm_head(&h)
    }

    /// The LM head without a gradient, for sampling and judging: `hidden` `[rows, hidden]` →
    /// logits `[rows, vocab]` f32. Few rows (one per sequence being decoded) go through
    /// [`crate::skinny`], which streams the `[vocab, hidden]` weight once instead of packing it.
    pub fn lm_head_infer(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(crate::skinny::matmul_t(
            &hidden.detach(),
            &self.lm_head.detach(),
        )?)
    }

    /// Applies the LM head to hidden states `[.., hidden]` → logits `[.., vocab]`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let d = *dims.last().expect("hidden states have a last dim");
        let rows = hidden.elem_count() / d;
        let hidden = hidden.reshape((rows, d))?;
        // A frozen head (a LoRA model's, or a bf16 base's): no `[vocab, hidden]` weight
        // gradient is computed.
        let logits = match self.base_frozen() {
            true => crate::fused::frozen_matmul_t(&hidden, &self.lm_head)?,
            false => hidden.matmul(&self.lm_head.t()?)?,
        };
        let mut out = dims;
        *out.last_mut().expect("non-empty") = self.cfg.vocab_size;
        Ok(logits.reshape(out)?)
    }

    /// Target-token log-probs for every position of a right-padded batch: `input_ids`
    /// `[batch, seq]` u32 → `[batch, seq − 1]` f32 (nats), out[b, t] = log p(ids[b, t+1] |
    /// ids[b, ..=t]). The LM head runs on the `seq − 1` positions that predict a token only;
    /// with the fused kernels the `[.., vocab]` log-softmax is never materialised.
    /// Differentiable in [`Mode::Train`].
    pub fn token_logps(&self, input_ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        if s < 2 {
            return Err(ModelError::InvalidInput(format!(
                "token_logps needs at least 2 tokens per row, got {s}"
            )));
        }
        let h = self.hidden_states(input_ids, mode)?;
        let h = h
            .narrow(1, 0, s - 1)?
            .reshape((b * (s - 1), self.cfg.hidden_size))?;
        let targets = input_ids.narrow(1, 1, s - 1)?.flatten_all()?;
        Ok(self.head_logps(&h, &targets)?.reshape((b, s - 1))?)
    }

    /// Target-token log-probs at chosen positions only (e.g. a DPO batch's response tokens):
    /// `positions` are flat indices `row · seq + t` with `t < seq − 1`, each scoring token
    /// `ids[row, t + 1]` → `[positions.len()]` f32 (nats), in the order given. The LM head and
    /// the log-softmax run on those rows alone. Differentiable in [`Mode::Train`].
    ///
    /// Errors: [`ModelError::InvalidInput`] for a position outside the batch or in the last
    /// column (which predicts nothing).
    pub fn selected_token_logps(
        &self,
        input_ids: &Tensor,
        positions: &[u32],
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        if let Some(&p) = positions
            .iter()
            .find(|&&p| p as usize >= b * s || p as usize % s == s - 1)
        {
            return Err(ModelError::InvalidInput(format!(
                "position {p} (row {}, column {}) does not predict a token of a [{b}, {s}] batch",
                p as usize / s,
                p as usize % s
            )));
        }
        let ids = input_ids.flatten_all()?.to_vec1::<u32>()?;
        let targets: Vec<u32> = positions.iter().map(|&p| ids[p as usize + 1]).collect();
        let targets = Tensor::from_vec(targets, positions.len(), &self.device)?;
        let idx = Tensor::new(positions, &self.device)?;
        let h = self.hidden_states(input_ids, mode)?;
        let h = h
            .reshape((b * s, self.cfg.hidden_size))?
            .index_select(&idx, 0)?;
        self.head_logps(&h, &targets)
    }

    /// LM head + log-softmax + gather: `hidden` `[n, hidden]`, `targets` `[n]` u32 → `[n]`.
    fn head_logps(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if self.fused_kernels && self.base_frozen() && self.lm_head.dtype() == DType::F32 {
            // A frozen head: no `[n, vocab]` logits are kept for the backward pass.
            return Ok(crate::fused::frozen_head_logps(
                hidden,
                &self.lm_head,
                targets,
            )?);
        }
        let logits = self.lm_head(hidden)?;
        if self.fused_kernels {
            Ok(crate::fused::target_logps(&logits, targets)?)
        } else {
            crate::scoring::gather_logps(&logits, targets)
        }
    }

    /// One incremental step with a KV cache, for left-padded batches.
    ///
    /// `input_ids` `[batch, new]` u32 are the next tokens of every row; `pad_left[r]` is the
    /// number of padding tokens at the start of row r (so its positions count from its first
    /// real token, case C3). Returns the final hidden states `[batch, new, hidden]` f32 and
    /// appends the new keys/values to `cache`. Runs in [`Mode::Infer`].
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        pad_left: &[usize],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        if pad_left.len() != b {
            return Err(ModelError::InvalidInput(format!(
                "pad_left has {} rows, batch has {b}",
                pad_left.len()
            )));
        }
        let offset = cache.len();
        let pos: Vec<u32> = (0..b)
            .flat_map(|r| (0..s).map(move |i| (offset + i).saturating_sub(pad_left[r]) as u32))
            .collect();
        let positions = Tensor::from_vec(pos, (b, s), &self.device)?;
        let mask = attention_mask(b, s, offset, pad_left, &self.device)?;
        if cache.layers.is_empty() {
            cache.layers = vec![None; self.cfg.num_hidden_layers];
        }
        self.run_blocks(input_ids, &positions, &mask, Some(cache), Mode::Infer)
    }

    fn run_blocks(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        mut cache: Option<&mut KvCache>,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let flat_pos = positions.flatten_all()?;
        let half = self.cfg.head_dim / 2;
        let cos = self.cos.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let sin = self.sin.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let mut x = self
            .embed
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, s, self.cfg.hidden_size))?;
        if x.dtype() != DType::F32 {
            // A bf16 frozen base: activations are f32 from the first one on.
            x = x.to_dtype(DType::F32)?;
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            if self.fused(mode) {
                let stash = &self.recomputed;
                x = match self.gradient_checkpointing() {
                    Checkpointing::Off => fused_block(&self.cfg, blk, &x, &cos, &sin)?,
                    Checkpointing::Attention => {
                        let x =
                            recompute::run(Part::Attention, &self.cfg, blk, &x, &cos, &sin, stash)?;
                        fused_mlp_sublayer(&self.cfg, blk, &x)?
                    }
                    Checkpointing::Blocks => {
                        recompute::run(Part::Block, &self.cfg, blk, &x, &cos, &sin, stash)?
                    }
                };
                continue;
            }
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = blk.forward(&self.cfg, &x, &cos, &sin, mask, layer_cache, mode)?;
            if mode == Mode::Infer {
                // No gradient is wanted: cut the op graph so this block's activations are freed
                // now instead of living as long as the output (weights are `Var`s, so every
                // result records its inputs).
                x = x.detach();
            }
        }
        self.rms(&x, &self.norm, mode)
    }

    fn rms(&self, x: &Tensor, weight: &Tensor, mode: Mode) -> Result<Tensor> {
        if self.fused(mode) {
            Ok(crate::fused::rms_norm(x, weight, self.cfg.rms_norm_eps)?)
        } else {
            rms_norm(x, weight, self.cfg.rms_norm_eps, mode)
        }
    }
}
