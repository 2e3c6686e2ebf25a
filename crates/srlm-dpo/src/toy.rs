//! [`BigramLm`]: a tiny trainable language model implementing [`PolicyModel`], for tests and
//! examples (here and in crates that need a policy without loading a real model).
//!
//! `p(next | current) = softmax(W2 · tanh(W1 · E[current] + b1) + b2)`: an embedding and a
//! one-hidden-layer MLP, built from candle primitives that all have a backward pass
//! (`index_select`, `matmul`, `tanh`, `log_softmax`, `gather`). Weights are drawn from a seeded
//! ChaCha RNG, so two models built with the same seed are bit-identical.

use crate::model::PolicyModel;
use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// A seeded bigram MLP language model over a small vocabulary.
#[derive(Debug)]
pub struct BigramLm {
    vocab: usize,
    emb: Var, // [V, D]
    w1: Var,  // [D, H]
    b1: Var,  // [H]
    w2: Var,  // [H, V]
    b2: Var,  // [V]
}

impl BigramLm {
    /// A model over `vocab` tokens with embedding width `dim` and hidden width `hidden`,
    /// weights uniform in ±1/sqrt(fan_in) from a ChaCha8 RNG seeded with `seed`, f32 on `device`.
    pub fn new(
        vocab: usize,
        dim: usize,
        hidden: usize,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut var = |shape: &[usize], scale: f32| -> candle_core::Result<Var> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
            Var::from_tensor(&Tensor::from_vec(v, shape, device)?)
        };
        Ok(BigramLm {
            vocab,
            emb: var(&[vocab, dim], 1.0)?,
            w1: var(&[dim, hidden], 1.0 / (dim as f32).sqrt())?,
            b1: var(&[hidden], 1.0 / (dim as f32).sqrt())?,
            w2: var(&[hidden, vocab], 1.0 / (hidden as f32).sqrt())?,
            b2: var(&[vocab], 1.0 / (hidden as f32).sqrt())?,
        })
    }

    /// An exact copy with its own, independent vars (e.g. a frozen reference).
    pub fn copy(&self) -> candle_core::Result<Self> {
        let c = |v: &Var| Var::from_tensor(&v.as_tensor().copy()?);
        Ok(BigramLm {
            vocab: self.vocab,
            emb: c(&self.emb)?,
            w1: c(&self.w1)?,
            b1: c(&self.b1)?,
            w2: c(&self.w2)?,
            b2: c(&self.b2)?,
        })
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Next-token logits: `input_ids` `[batch, seq]` u32 → `[batch, seq, vocab]` f32.
    pub fn logits(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let x = self
            .emb
            .as_tensor()
            .index_select(&input_ids.flatten_all()?, 0)?; // [b*s, D]
        let h = x
            .matmul(self.w1.as_tensor())?
            .broadcast_add(self.b1.as_tensor())?
            .tanh()?;
        let logits = h
            .matmul(self.w2.as_tensor())?
            .broadcast_add(self.b2.as_tensor())?;
        logits.reshape((b, s, self.vocab))
    }

    fn named(&self) -> [(&'static str, &Var); 5] {
        [
            ("emb", &self.emb),
            ("w1", &self.w1),
            ("b1", &self.b1),
            ("w2", &self.w2),
            ("b2", &self.b2),
        ]
    }
}

impl PolicyModel for BigramLm {
    /// `[batch, seq]` u32 → `[batch, seq − 1]` f32, `out[b, t] = log p(ids[b, t+1] | ids[b, t])`.
    fn token_logps(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, s) = input_ids.dims2()?;
        let logits = self.logits(&input_ids.narrow(1, 0, s - 1)?)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let targets = input_ids.narrow(1, 1, s - 1)?.contiguous()?.unsqueeze(2)?;
        logp.gather(&targets, 2)?.squeeze(2)
    }

    fn trainable_vars(&self) -> Vec<Var> {
        self.named().iter().map(|(_, v)| (*v).clone()).collect()
    }

    /// Writes `dir/model.safetensors` (tensors `emb`, `w1`, `b1`, `w2`, `b2`) atomically.
    fn save_checkpoint(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(dir)?;
        let tensors: std::collections::HashMap<String, Tensor> = self
            .named()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    v.as_tensor().to_dtype(DType::F32).expect("f32"),
                )
            })
            .collect();
        let tmp = dir.join(format!(".model.safetensors.{}.tmp", std::process::id()));
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, dir.join("model.safetensors"))?;
        Ok(())
    }
}
