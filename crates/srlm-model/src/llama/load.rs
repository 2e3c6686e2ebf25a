//! Building a [`Llama`]: the HF-named tensors the architecture needs ([`expected_tensors`]),
//! loading them into a `VarMap`, seeded random weights for tests, and deep copies.

use super::attention::Attention;
use super::block::Block;
use super::ops::rope_tables;
use super::Llama;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
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
            candle_nn::Linear::new(get(&format!("{name}.weight")), b)
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
}
