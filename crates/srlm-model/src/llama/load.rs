//! Building a [`Llama`]: the HF-named tensors the architecture needs ([`expected_tensors`]),
//! loading them into a `VarMap`, seeded random weights for tests, deep copies, and LoRA models
//! on a shared frozen base ([`Llama::with_lora`], [`Llama::with_adapter`]).

use super::attention::Attention;
use super::block::Block;
use super::ops::rope_tables;
use super::proj::{LoraPair, Proj};
use super::Llama;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::lora::{LoraConfig, LoraTarget};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;

/// HF names of every tensor the architecture needs, with their shapes.
pub(super) fn expected_tensors(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
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
            Proj::new(get(&format!("{name}.weight")), b)
        };
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Block {
                    input_norm: get(&format!("{p}.input_layernorm.weight")),
                    attn: Attention {
                        q: lin(&format!("{p}.self_attn.q_proj"), cfg.attention_bias),
                        k: lin(&format!("{p}.self_attn.k_proj"), cfg.attention_bias),
                        v: lin(&format!("{p}.self_attn.v_proj"), cfg.attention_bias),
                        o: lin(&format!("{p}.self_attn.o_proj"), false),
                    },
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
            adapter: None,
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

    /// A deep copy with its own weights (e.g. a frozen reference, or a temporary model). A LoRA
    /// model's copy shares the frozen base and copies the adapter.
    pub fn deep_copy(&self) -> Result<Self> {
        if self.adapter.is_none() && self.base_frozen() {
            // Nothing of it is trainable: the copy shares everything.
            return self.with_base_dtype(self.base_dtype());
        }
        if let Some(config) = &self.adapter {
            let tensors = self
                .named_vars()
                .into_iter()
                .map(|(n, v)| Ok((n, v.as_tensor().detach().copy()?)))
                .collect::<Result<HashMap<_, _>>>()?;
            return self.with_adapter(config, tensors);
        }
        let tensors = self.named_tensors()?;
        Self::from_tensors(self.cfg.clone(), tensors, &self.device)
    }

    /// Copies of all weights by HF name (detached from the graph). A LoRA model's are merged:
    /// W + (α / r)·B·A for every adapted projection, i.e. the weights of the same model without
    /// adapters.
    pub fn named_tensors(&self) -> Result<HashMap<String, Tensor>> {
        // f32 copies, also of a bf16 base: what a merge or an export writes is trainable.
        let copy = |t: &Tensor| match t.dtype() {
            DType::F32 => t.detach().copy(),
            _ => t.detach().to_dtype(DType::F32),
        };
        let mut out = HashMap::new();
        out.insert("model.embed_tokens.weight".to_string(), copy(&self.embed)?);
        for (i, blk) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.insert(
                format!("{p}.input_layernorm.weight"),
                copy(&blk.input_norm)?,
            );
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                copy(&blk.post_norm)?,
            );
            for (t, proj) in LoraTarget::ALL.into_iter().zip(blk.projections()) {
                let path = t.module_path(i);
                out.insert(format!("{path}.weight"), copy(&proj.merged_weight()?)?);
                if let Some(b) = &proj.bias {
                    out.insert(format!("{path}.bias"), copy(b)?);
                }
            }
        }
        out.insert("model.norm.weight".to_string(), copy(&self.norm)?);
        if !self.cfg.tie_word_embeddings {
            out.insert("lm_head.weight".to_string(), copy(&self.lm_head)?);
        }
        Ok(out)
    }

    /// The same model as one without adapters (W + (α / r)·B·A merged into every adapted
    /// projection), with its own trainable weights; a model without adapters is copied.
    pub fn merged(&self) -> Result<Self> {
        Self::from_tensors(self.cfg.clone(), self.named_tensors()?, &self.device)
    }

    /// The same model with its base frozen and stored in `dtype` (f32, or bf16 to halve the
    /// base's memory): embedding, LM head and the projections' weights; norms and biases stay
    /// f32, and so do activations (a bf16 weight is widened per use, see
    /// [`crate::fused::frozen_matmul_t`]). The result has no trainable weights; it is the base
    /// of LoRA models ([`Llama::with_lora`], [`Llama::with_adapter`]), which share it. An f32
    /// `dtype` shares this model's weights (no copy).
    ///
    /// Errors: [`ModelError::InvalidInput`] for a LoRA model (narrow its base first) or a
    /// dtype other than f32 and bf16.
    pub fn with_base_dtype(&self, dtype: DType) -> Result<Self> {
        if self.adapter.is_some() {
            return Err(ModelError::InvalidInput(
                "the base dtype is chosen before an adapter is added; this model has one".into(),
            ));
        }
        if !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(ModelError::InvalidInput(format!(
                "a frozen base is stored in f32 or bf16, not {dtype:?}"
            )));
        }
        let narrow = |t: &Tensor| t.detach().to_dtype(dtype);
        let embed = narrow(&self.embed)?;
        let lm_head = match self.cfg.tie_word_embeddings {
            true => embed.clone(),
            false => narrow(&self.lm_head)?,
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| b.with_base_dtype(dtype))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.frozen_sibling(embed, lm_head, blocks, VarMap::new(), None))
    }

    /// A model with this one's config, norms, RoPE tables and settings, its base frozen (the
    /// given embedding, LM head and blocks), `varmap` its trainable tensors (an adapter's, or
    /// none) and `adapter` its LoRA config.
    fn frozen_sibling(
        &self,
        embed: Tensor,
        lm_head: Tensor,
        blocks: Vec<Block>,
        varmap: VarMap,
        adapter: Option<LoraConfig>,
    ) -> Self {
        Llama {
            cfg: self.cfg.clone(),
            varmap,
            device: self.device.clone(),
            embed,
            blocks,
            norm: self.norm.detach(),
            lm_head,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            fused_kernels: self.fused_kernels,
            gradient_checkpointing: self.gradient_checkpointing().into_atomic(),
            recomputed: Default::default(),
            adapter,
        }
    }

    /// The same model with its projections' weights replaced by `quantized` (GGUF blocks by HF
    /// name, from [`crate::weights::load_gguf_projections`] of the file this model was loaded
    /// from) and its base frozen: the base of LoRA models at a fraction of the memory. The
    /// embedding, LM head, norms and biases are shared as they are (f32). The caller vouches
    /// that the blocks are this model's weights; [`crate::LanguageModel::with_quantized_base`]
    /// checks one projection.
    ///
    /// Errors: [`ModelError::InvalidInput`] for a LoRA model or a non-CPU device,
    /// [`ModelError::Weights`] naming a missing or wrongly shaped projection.
    pub fn with_quantized_base(
        &self,
        mut quantized: HashMap<String, std::sync::Arc<crate::quant::QWeight>>,
    ) -> Result<Self> {
        if self.adapter.is_some() {
            return Err(ModelError::InvalidInput(
                "the base's form is chosen before an adapter is added; this model has one".into(),
            ));
        }
        if !self.device.is_cpu() {
            return Err(ModelError::InvalidInput(
                "a quantized base runs on the CPU only (on a GPU use a bf16 base)".into(),
            ));
        }
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for (i, blk) in self.blocks.iter().enumerate() {
            let mut projections = Vec::with_capacity(7);
            for (t, proj) in LoraTarget::ALL.into_iter().zip(blk.projections()) {
                let name = format!("{}.weight", t.module_path(i));
                let q = quantized
                    .remove(&name)
                    .ok_or_else(|| ModelError::Weights(format!("no quantized `{name}`")))?;
                if q.dims() != self.projection_shape(t) {
                    return Err(ModelError::Weights(format!(
                        "quantized `{name}` is {:?}, the model's is {:?}",
                        q.dims(),
                        self.projection_shape(t)
                    )));
                }
                projections.push(Proj::quantized(q, proj.bias.clone())?);
            }
            let [q, k, v, o, gate, up, down]: [Proj; 7] = projections
                .try_into()
                .map_err(|_| ModelError::InvalidInput("7".into()))?;
            blocks.push(Block {
                input_norm: blk.input_norm.detach(),
                attn: Attention { q, k, v, o },
                post_norm: blk.post_norm.detach(),
                gate,
                up,
                down,
            });
        }
        Ok(self.frozen_sibling(
            self.embed.detach(),
            self.lm_head.detach(),
            blocks,
            VarMap::new(),
            None,
        ))
    }

    /// The base weight of one projection as f32 `[out, in]` (adapter not merged).
    ///
    /// Errors: [`ModelError::InvalidInput`] for a layer out of range.
    pub fn projection_weight(&self, layer: usize, target: LoraTarget) -> Result<Tensor> {
        let blk = self.blocks.get(layer).ok_or_else(|| {
            ModelError::InvalidInput(format!("layer {layer} of {}", self.blocks.len()))
        })?;
        let slot = LoraTarget::ALL
            .iter()
            .position(|t| *t == target)
            .expect("a target");
        blk.projections()[slot].dense_weight()
    }

    /// Bytes of the base weights (embedding, LM head when not tied, projections in their
    /// stored form, norms and biases); adapters not included.
    pub fn base_size_in_bytes(&self) -> usize {
        let t = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let mut n = t(&self.embed) + t(&self.norm);
        if !self.cfg.tie_word_embeddings {
            n += t(&self.lm_head);
        }
        for blk in &self.blocks {
            n += t(&blk.input_norm) + t(&blk.post_norm);
            for p in blk.projections() {
                n += match &p.quantized {
                    Some(q) => q.size_in_bytes(),
                    None => t(&p.weight),
                } + p.bias.as_ref().map_or(0, t);
            }
        }
        n
    }

    /// The adapter's config, for a LoRA model.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.adapter.as_ref()
    }

    /// A LoRA model on this model's weights, frozen and shared (not copied), with a new adapter
    /// initialised as PEFT does (`init_lora_weights = True`): A ~ U(−1/√in, 1/√in) (PyTorch's
    /// `kaiming_uniform_(a = √5)`, drawn from `seed`), B = 0, so the new model computes exactly
    /// what this one does until B is trained. Only A and B are [`Llama::vars`].
    ///
    /// Errors: [`ModelError::InvalidInput`] when this model already has an adapter (continue
    /// it with [`Llama::deep_copy`], or [`Llama::merged`] first).
    pub fn with_lora(&self, config: &LoraConfig, seed: u64) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        if self.adapter.is_some() {
            return Err(ModelError::InvalidInput(
                "the model already has a LoRA adapter; continue it (deep_copy) or merge it first"
                    .into(),
            ));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, (out, inp)) in self.adapter_shapes(config) {
            let t = if name.ends_with(".lora_A.weight") {
                let bound = 1.0 / (inp as f32).sqrt();
                let v: Vec<f32> = (0..config.r * inp)
                    .map(|_| rng.gen_range(-bound..bound))
                    .collect();
                Tensor::from_vec(v, (config.r, inp), &self.device)?
            } else {
                Tensor::zeros((out, config.r), DType::F32, &self.device)?
            };
            tensors.insert(name, t);
        }
        self.with_adapter(config, tensors)
    }

    /// A LoRA model on this model's base (frozen and shared, not copied; a LoRA model's own
    /// adapter is replaced) with the given adapter tensors, named
    /// `model.layers.{i}.{self_attn|mlp}.{target}.lora_{A|B}.weight` (PEFT's names without
    /// its `base_model.model.` prefix), any float dtype.
    ///
    /// Errors: [`ModelError::Weights`] naming a missing, unexpected or wrongly shaped tensor.
    pub fn with_adapter(
        &self,
        config: &LoraConfig,
        mut tensors: HashMap<String, Tensor>,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let mut pairs: Vec<[Option<LoraPair>; 7]> = (0..self.cfg.num_hidden_layers)
            .map(|_| Default::default())
            .collect();
        {
            let mut data = varmap.data().lock().expect("varmap lock");
            let mut take = |name: &str, shape: (usize, usize)| -> Result<Tensor> {
                let t = tensors.remove(name).ok_or_else(|| {
                    ModelError::Weights(format!("missing adapter tensor `{name}`"))
                })?;
                if t.dims() != [shape.0, shape.1] {
                    return Err(ModelError::Weights(format!(
                        "adapter tensor `{name}` has shape {:?}, expected {:?}",
                        t.dims(),
                        [shape.0, shape.1]
                    )));
                }
                let var = Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
                data.insert(name.to_string(), var.clone());
                Ok(var.as_tensor().clone())
            };
            for (i, layer) in pairs.iter_mut().enumerate() {
                for (slot, t) in LoraTarget::ALL.into_iter().enumerate() {
                    if !config.target_modules.contains(&t) {
                        continue;
                    }
                    let (out, inp) = self.projection_shape(t);
                    let path = t.module_path(i);
                    let a = take(&format!("{path}.lora_A.weight"), (config.r, inp))?;
                    let b = take(&format!("{path}.lora_B.weight"), (out, config.r))?;
                    layer[slot] = Some(LoraPair {
                        a,
                        b,
                        scale: config.scale(),
                    });
                }
            }
        }
        if let Some(extra) = tensors.keys().min() {
            return Err(ModelError::Weights(format!(
                "adapter tensor `{extra}` is not a target of this adapter ({} left over)",
                tensors.len()
            )));
        }
        let blocks = self
            .blocks
            .iter()
            .zip(pairs)
            .map(|(blk, p)| blk.frozen_with(p))
            .collect();
        Ok(self.frozen_sibling(
            self.embed.detach(),
            self.lm_head.detach(),
            blocks,
            varmap,
            Some(config.clone()),
        ))
    }

    /// `[out, in]` of one target projection.
    fn projection_shape(&self, t: LoraTarget) -> (usize, usize) {
        let c = &self.cfg;
        let (d, q, kv, f) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
            c.intermediate_size,
        );
        match t {
            LoraTarget::QProj => (q, d),
            LoraTarget::KProj | LoraTarget::VProj => (kv, d),
            LoraTarget::OProj => (d, q),
            LoraTarget::GateProj | LoraTarget::UpProj => (f, d),
            LoraTarget::DownProj => (d, f),
        }
    }

    /// Every adapter tensor name of `config` on this architecture with its projection's
    /// `(out, in)`, in layer and target order.
    fn adapter_shapes(&self, config: &LoraConfig) -> Vec<(String, (usize, usize))> {
        let mut out = Vec::new();
        for i in 0..self.cfg.num_hidden_layers {
            for &t in &config.target_modules {
                let path = t.module_path(i);
                for ab in ["A", "B"] {
                    out.push((format!("{path}.lora_{ab}.weight"), self.projection_shape(t)));
                }
            }
        }
        out
    }
}
