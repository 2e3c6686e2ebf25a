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

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::recompute::{self, Part};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::VarMap;
use std::collections::HashMap;

/// Additive mask value for attention positions a query may not see. Finite (not -inf) so a
/// row with every key masked (a left-padding query) gives a uniform softmax instead of NaN.
const MASKED: f32 = -1e9;

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

/// Which implementation of RMSNorm / RoPE / softmax to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Composed from primitive ops: slower, but every weight receives a gradient.
    Train,
    /// candle's fused CPU/CUDA kernels: faster, no backward.
    Infer,
}

#[derive(Clone)]
pub(crate) struct Block {
    input_norm: Tensor,
    q: candle_nn::Linear,
    k: candle_nn::Linear,
    v: candle_nn::Linear,
    o: candle_nn::Linear,
    post_norm: Tensor,
    gate: candle_nn::Linear,
    up: candle_nn::Linear,
    down: candle_nn::Linear,
}

/// Per-layer key/value cache for incremental decoding. Tensors are
/// `[batch, num_key_value_heads, cached_len, head_dim]`, f32.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the batch rows listed in `rows` (in that order, repeats allowed): used to expand
    /// one prefilled prompt into K sample rows, and to drop finished rows.
    pub fn select_rows(&self, rows: &[u32]) -> Result<KvCache> {
        let Some(first) = self.layers.first().and_then(|l| l.as_ref()) else {
            return Ok(self.clone());
        };
        let idx = Tensor::new(rows, first.0.device())?;
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }
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
    /// [`crate::recompute`]).
    gradient_checkpointing: std::sync::atomic::AtomicU8,
    /// Block weight gradients computed by recomputation, merged by [`Llama::backward`].
    recomputed: crate::recompute::Stash,
}

/// HF names of every tensor the architecture needs, with their shapes.
pub fn expected_tensors(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, d],
    )];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, d]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, d]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, d]));
        if cfg.attention_bias {
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        out.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![cfg.intermediate_size, d],
        ));
        out.push((
            format!("{p}.mlp.up_proj.weight"),
            vec![cfg.intermediate_size, d],
        ));
        out.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![d, cfg.intermediate_size],
        ));
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, d]));
    }
    out
}

impl Llama {
    /// Builds the model from HF-named tensors (any float dtype; converted to f32 on `device`).
    ///
    /// Errors: [`ModelError::Weights`] naming a missing tensor or a wrong shape.
    pub fn from_tensors(
        cfg: LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("varmap lock");
            for (name, shape) in expected_tensors(&cfg) {
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| ModelError::Weights(format!("missing tensor `{name}`")))?;
                if t.dims() != shape.as_slice() {
                    return Err(ModelError::Weights(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.dims()
                    )));
                }
                let t = t.to_dtype(DType::F32)?.to_device(device)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Self::from_varmap(cfg, varmap, device)
    }

    fn from_varmap(cfg: LlamaConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        let get = |name: &str| -> Tensor {
            varmap.data().lock().expect("varmap lock")[name]
                .as_tensor()
                .clone()
        };
        let lin = |name: &str, bias: bool| {
            let b = bias.then(|| get(&format!("{name}.bias")));
            candle_nn::Linear::new(get(&format!("{name}.weight")), b)
        };
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Block {
                    input_norm: get(&format!("{p}.input_layernorm.weight")),
                    q: lin(&format!("{p}.self_attn.q_proj"), cfg.attention_bias),
                    k: lin(&format!("{p}.self_attn.k_proj"), cfg.attention_bias),
                    v: lin(&format!("{p}.self_attn.v_proj"), cfg.attention_bias),
                    o: lin(&format!("{p}.self_attn.o_proj"), false),
                    post_norm: get(&format!("{p}.post_attention_layernorm.weight")),
                    gate: lin(&format!("{p}.mlp.gate_proj"), false),
                    up: lin(&format!("{p}.mlp.up_proj"), false),
                    down: lin(&format!("{p}.mlp.down_proj"), false),
                }
            })
            .collect();
        let embed = get("model.embed_tokens.weight");
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight")
        };
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Llama {
            fused_kernels: device.is_cpu(),
            gradient_checkpointing: Default::default(),
            recomputed: Default::default(),
            norm: get("model.norm.weight"),
            cfg,
            varmap,
            device: device.clone(),
            embed,
            blocks,
            lm_head,
            cos,
            sin,
        })
    }

    /// A random model (weights ~ N(0, 0.02), norms 1) for fast plumbing tests.
    pub fn random(cfg: LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in expected_tensors(&cfg) {
            let t = if name.ends_with("norm.weight") {
                Tensor::ones(shape, DType::F32, device)?
            } else {
                let n: usize = shape.iter().product();
                // Box-Muller: N(0, 0.02²) from two uniforms.
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        let (u1, u2): (f32, f32) = (rng.gen::<f32>().max(1e-12), rng.gen());
                        0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                    })
                    .collect();
                Tensor::from_vec(v, shape, device)?
            };
            tensors.insert(name, t);
        }
        Self::from_tensors(cfg, tensors, device)
    }

    /// A deep copy with its own weights (e.g. a frozen reference, or a temporary model).
    pub fn deep_copy(&self) -> Result<Self> {
        let tensors = self.named_tensors()?;
        Self::from_tensors(self.cfg.clone(), tensors, &self.device)
    }

    /// Copies of all weights by HF name (detached from the graph).
    pub fn named_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let data = self.varmap.data().lock().expect("varmap lock");
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

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
        crate::recompute::merge(&self.recomputed, &mut grads)?;
        Ok(grads)
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

    /// All trainable parameters (one [`Var`] per HF tensor), sorted by name.
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
        let logits = hidden.reshape((rows, d))?.matmul(&self.lm_head.t()?)?;
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
            let h = self.rms(&x, &blk.input_norm, mode)?;
            let h = self.attention(blk, &h, &cos, &sin, mask, layer_cache, mode)?;
            x = (x + h)?;
            let h = self.rms(&x, &blk.post_norm, mode)?;
            let h = h.reshape((b * s, self.cfg.hidden_size))?;
            let act = (linear(&blk.gate, &h, mode)?.silu()? * linear(&blk.up, &h, mode)?)?;
            let h = linear(&blk.down, &act, mode)?.reshape((b, s, self.cfg.hidden_size))?;
            x = (x + h)?;
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

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        blk: &Block,
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
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let q = linear(&blk.q, x, mode)?
            .reshape((b, s, nh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = linear(&blk.k, x, mode)?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = linear(&blk.v, x, mode)?
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
        Ok(linear(&blk.o, &out, mode)?.reshape((b, s, d))?)
    }
}

/// `l.forward(x)` for a 2-D `x`; in [`Mode::Infer`] a few rows go through [`crate::skinny`]
/// (no gradient), which reads the weight in place instead of packing it.
fn linear(l: &candle_nn::Linear, x: &Tensor, mode: Mode) -> Result<Tensor> {
    if mode == Mode::Infer && x.dim(0)? <= crate::skinny::MAX_ROWS {
        let y = crate::skinny::matmul_t(&x.detach(), &l.weight().detach())?;
        return Ok(match l.bias() {
            Some(b) => y.broadcast_add(&b.detach())?,
            None => y,
        });
    }
    Ok(l.forward(x)?)
}

impl Block {
    /// Every trainable tensor of the block (the `Var`s' tensors).
    pub(crate) fn weights(&self) -> Vec<Tensor> {
        let mut w = vec![self.input_norm.clone(), self.post_norm.clone()];
        for l in [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ] {
            w.push(l.weight().clone());
            if let Some(b) = l.bias() {
                w.push(b.clone());
            }
        }
        w
    }
}

/// One decoder block in training mode with the fused kernels of [`crate::fused`] (CPU):
/// `x` `[b, s, hidden]` → `[b, s, hidden]`, causal attention over the whole (right-padded)
/// batch. The same math as the composed path of `Llama::run_blocks`.
pub(crate) fn fused_block(
    cfg: &LlamaConfig,
    blk: &Block,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    fused_mlp_sublayer(cfg, blk, &fused_attention_sublayer(cfg, blk, x, cos, sin)?)
}

/// The attention half of [`fused_block`]: x + attention(rms_norm(x)).
pub(crate) fn fused_attention_sublayer(
    cfg: &LlamaConfig,
    blk: &Block,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    use crate::fused;
    let (b, s, d) = x.dims3()?;
    let h = fused::rms_norm(x, &blk.input_norm, cfg.rms_norm_eps)?;
    let h = &h.reshape((b * s, d))?;
    let (nh, nkv, hd) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    // RoPE writes the per-head layout directly; the causal mask lives in the softmax.
    let q = fused::rope_bshd_to_bhsd(&blk.q.forward(h)?.reshape((b, s, nh, hd))?, cos, sin)?;
    let k = fused::rope_bshd_to_bhsd(&blk.k.forward(h)?.reshape((b, s, nkv, hd))?, cos, sin)?;
    let v = blk
        .v
        .forward(h)?
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
    Ok((x + blk.o.forward(&out)?.reshape((b, s, d))?)?)
}

/// The MLP half of [`fused_block`]: x + down(silu(gate(h)) ⊙ up(h)), h = rms_norm(x); the
/// activation is recomputed in the backward pass ([`crate::fused::swiglu_down`]).
pub(crate) fn fused_mlp_sublayer(cfg: &LlamaConfig, blk: &Block, x: &Tensor) -> Result<Tensor> {
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

/// `[max_position_embeddings, head_dim/2]` cos and sin tables: angle(p, i) = p · θ^(−2i/head_dim)
/// (Su et al. 2021, RoFormer, Eq. 34), in HF's half-split convention.
fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let n = cfg.max_position_embeddings;
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
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
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
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
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
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

/// Additive attention mask `[batch, queries, offset + queries]` f32: query i of row r (absolute
/// position offset + i) sees key j iff `pad_left[r] <= j <= offset + i`.
pub fn attention_mask(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny_config() -> LlamaConfig {
        LlamaConfig::tiny()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{x} vs {y}");
        }
    }

    #[test]
    fn rms_norm_gradient_case_c1() {
        // Case C1: x = [[1,2,3]], weight [1,1,1], eps 1e-5, loss = y[0,0].
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2., 3.]], &dev).unwrap();
        let w = Var::new(&[1f32, 1., 1.], &dev).unwrap();
        let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5, Mode::Train).unwrap();
        let loss = y.get(0).unwrap().get(0).unwrap();
        let g = loss.backward().unwrap();
        let gw = g.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        close(&gw[..1], &[0.462910], 1e-5);
        close(&gx[0][..2], &[0.429845, -0.066130], 1e-5);
    }

    #[test]
    fn rope_half_split_case_c2() {
        // Case C2: head_dim 4, base 10000, position 1, x = [1,0,0,0] → [cos 1, 0, sin 1, 0].
        let mut cfg = tiny_config();
        cfg.head_dim = 4;
        let (cos, sin) = rope_tables(&cfg, &Device::Cpu).unwrap();
        let x = Tensor::new(&[1f32, 0., 0., 0.], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 4))
            .unwrap();
        let c = cos.narrow(0, 1, 1).unwrap().unsqueeze(0).unwrap();
        let s = sin.narrow(0, 1, 1).unwrap().unsqueeze(0).unwrap();
        for mode in [Mode::Train, Mode::Infer] {
            let y = rope(&x, &c, &s, mode)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            close(&y, &[0.540302, 0.0, 0.841471, 0.0], 1e-6);
        }
    }

    #[test]
    fn train_and_infer_paths_agree_and_padding_changes_nothing() {
        let dev = Device::Cpu;
        let m = Llama::random(tiny_config(), 3, &dev).unwrap();
        let ids = Tensor::new(&[[5u32, 9, 17, 33], [5, 9, 17, 33]], &dev).unwrap();
        let a = m.forward(&ids, Mode::Train).unwrap();
        let b = m.forward(&ids, Mode::Infer).unwrap();
        let diff = (a.clone() - &b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "train vs infer {diff}");
        // Case C3: identical rows are identical and equal to the batch-of-one logits.
        let rows = a.to_vec3::<f32>().unwrap();
        assert_eq!(rows[0], rows[1]);
        let one = m
            .forward(&ids.narrow(0, 0, 1).unwrap(), Mode::Train)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        close(&one[0].concat(), &rows[0].concat(), 1e-5);
        // Left padding [PAD, a, b] with the cache path equals [a, b], before and after a decode step.
        let mut c1 = KvCache::default();
        let h1 = m
            .forward_cached(&Tensor::new(&[[2u32, 5, 9]], &dev).unwrap(), &[1], &mut c1)
            .unwrap();
        let mut c2 = KvCache::default();
        let h2 = m
            .forward_cached(&Tensor::new(&[[5u32, 9]], &dev).unwrap(), &[0], &mut c2)
            .unwrap();
        let l1 = m
            .lm_head(&h1.narrow(1, 1, 2).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let l2 = m
            .lm_head(&h2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        close(&l1, &l2, 1e-5);
        let s1 = m
            .forward_cached(&Tensor::new(&[[17u32]], &dev).unwrap(), &[1], &mut c1)
            .unwrap();
        let s2 = m
            .forward_cached(&Tensor::new(&[[17u32]], &dev).unwrap(), &[0], &mut c2)
            .unwrap();
        close(
            &s1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            &s2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            1e-5,
        );
        // and the cached path equals the full forward pass
        let full = m
            .hidden_states(&Tensor::new(&[[5u32, 9, 17]], &dev).unwrap(), Mode::Infer)
            .unwrap();
        close(
            &full
                .narrow(1, 2, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            &s2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            1e-5,
        );
    }

    #[test]
    fn gradients_reach_every_weight() {
        let dev = Device::Cpu;
        let mut cfg = tiny_config();
        cfg.tie_word_embeddings = false;
        cfg.attention_bias = true;
        let m = Llama::random(cfg, 7, &dev).unwrap();
        let ids = Tensor::new(&[[3u32, 8, 21, 40, 7]], &dev).unwrap();
        let logits = m.forward(&ids, Mode::Train).unwrap();
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let loss = lp
            .narrow(2, 5, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in m.named_vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n.is_finite() && n > 0.0, "{name}: |g|² = {n}");
        }
    }

    /// Every weight's gradient, by HF name (panics naming a weight without one).
    fn named_grads(m: &Llama, grads: &candle_core::backprop::GradStore) -> Vec<(String, Vec<f32>)> {
        m.named_vars()
            .into_iter()
            .map(|(n, v)| {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("no grad {n}"));
                (n, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
            .collect()
    }

    #[test]
    fn fused_and_composed_training_agree() {
        // Same weights, fused kernels on and off: logits, target log-probs and every weight's
        // gradient agree (grouped-query attention, biases, untied head, batch of 2, 40 tokens).
        let dev = Device::Cpu;
        let mut cfg = tiny_config();
        cfg.tie_word_embeddings = false;
        cfg.attention_bias = true;
        let fused = Llama::random(cfg, 11, &dev).unwrap();
        let mut composed = fused.deep_copy().unwrap();
        composed.set_fused_kernels(false);
        assert!(fused.fused(Mode::Train) && !composed.fused(Mode::Train));
        let ids: Vec<u32> = (0..80u32).map(|i| (i * 37 + 5) % 64).collect();
        let ids = Tensor::from_vec(ids, (2, 40), &dev).unwrap();
        let run = |m: &Llama| {
            let logits = m.forward(&ids, Mode::Train).unwrap();
            let lp = crate::scoring::target_logps(&logits, &ids).unwrap();
            let grads = lp.sum_all().unwrap().backward().unwrap();
            let g = named_grads(m, &grads);
            (logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        };
        let (la, ga) = run(&fused);
        let (lb, gb) = run(&composed);
        close(&la, &lb, 1e-4);
        for ((name, a), (_, b)) in ga.iter().zip(&gb) {
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * scale, "{name}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn gradient_checkpointing_gives_the_same_gradients() {
        let dev = Device::Cpu;
        let mut cfg = tiny_config();
        cfg.attention_bias = true;
        let m = Llama::random(cfg, 13, &dev).unwrap();
        let ids: Vec<u32> = (0..60u32).map(|i| (i * 29 + 3) % 64).collect();
        let ids = Tensor::from_vec(ids, (2, 30), &dev).unwrap();
        let run = |ckpt: Checkpointing| {
            m.set_gradient_checkpointing(ckpt);
            let lp = m.token_logps(&ids, Mode::Train).unwrap();
            let grads = m.backward(&lp.sum_all().unwrap()).unwrap();
            let g = named_grads(&m, &grads);
            (lp.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        };
        let (la, ga) = run(Checkpointing::Off);
        for what in [Checkpointing::Attention, Checkpointing::Blocks] {
            let (lb, gb) = run(what);
            assert_eq!(la, lb, "{what:?}: log-probs");
            for ((name, a), (_, b)) in ga.iter().zip(&gb) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-6, "{what:?} {name}: {x} vs {y}");
                }
                assert!(
                    a.iter().any(|&x| x != 0.0),
                    "{what:?} {name}: zero gradient"
                );
            }
            // The stash is drained: a second checkpointed step gives the same gradients.
            let (_, gc) = run(what);
            for ((name, a), (_, c)) in gb.iter().zip(&gc) {
                assert_eq!(a, c, "{what:?} {name}");
            }
        }
        m.set_gradient_checkpointing(Checkpointing::Off);
    }
}
