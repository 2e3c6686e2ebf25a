//! Scoring: response log-probabilities given a prompt, and the mean last-layer hidden state
//! over response tokens (the collapse diagnostic of Wang et al. 2025, arXiv 2508.06026, Sec. 2).
//!
//! Sequences are prompt ids followed by response ids (concatenated as ids, never re-tokenized,
//! case T4), right-padded; masks come from lengths, never from `id != pad` (case T2), and the
//! log-prob of response token t is read at position t−1 (case D1).

use crate::error::{ModelError, Result};
use crate::llama::Mode;
use crate::model::LanguageModel;
use candle_core::{Device, Tensor, D};

/// Log-probabilities of one response.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseLogps {
    /// log p(response | prompt), nats, summed over response tokens.
    pub sum: f64,
    /// `sum / num_tokens` (nats per token).
    pub mean: f64,
    /// Each response token's log-prob (nats).
    pub tokens: Vec<f32>,
}

/// Target-token log-probs from logits: `logits` `[batch, seq, vocab]` f32, `ids` `[batch, seq]`
/// u32 → `[batch, seq-1]` f32 with out[b, t] = log softmax(logits[b, t])[ids[b, t+1]].
/// Differentiable (log-sum-exp composed from primitives).
pub fn target_logps(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let s = ids.dim(1)?;
    gather_logps(&logits.narrow(1, 0, s - 1)?, &ids.narrow(1, 1, s - 1)?)
}

/// log softmax(logits)[target] over the last dim, from candle primitives (any device;
/// differentiable): `logits` `[.., vocab]` f32, `targets` `[..]` u32 → `[..]` f32. The CPU's
/// fused equivalent is [`crate::fused::target_logps`].
pub(crate) fn gather_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?;
    let picked = logits
        .contiguous()?
        .gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?;
    Ok((picked - lse)?.squeeze(D::Minus1)?)
}

/// Right-pads sequences into `[batch, max_len]` u32 with `pad`.
pub fn pad_right(seqs: &[Vec<u32>], pad: u32, device: &Device) -> Result<Tensor> {
    let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(seqs.len() * len);
    for s in seqs {
        flat.extend(s);
        flat.extend(std::iter::repeat_n(pad, len - s.len()));
    }
    Ok(Tensor::from_vec(flat, (seqs.len(), len), device)?)
}

/// Most tokens scored in one forward pass (batch × padded length).
const TOKEN_BUDGET: usize = 2048;

fn batches(items: &[(Vec<u32>, Vec<u32>)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut max_len = 0;
    for (i, (p, r)) in items.iter().enumerate() {
        let l = p.len() + r.len();
        let new_max = max_len.max(l);
        if i > start && new_max * (i - start + 1) > TOKEN_BUDGET {
            out.push(start..i);
            start = i;
            max_len = l;
        } else {
            max_len = new_max;
        }
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

fn check(items: &[(Vec<u32>, Vec<u32>)]) -> Result<()> {
    for (i, (p, r)) in items.iter().enumerate() {
        if p.is_empty() || r.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "item {i}: prompt and response must both have tokens"
            )));
        }
    }
    Ok(())
}

impl LanguageModel {
    /// log p(response | prompt) for each (prompt ids, response ids) item, batched, no gradient.
    /// Errors: [`ModelError::InvalidInput`] for an empty prompt or response.
    pub fn response_logps(&self, items: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<ResponseLogps>> {
        check(items)?;
        let mut out = Vec::with_capacity(items.len());
        for range in batches(items) {
            let chunk = &items[range];
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|(p, r)| [p.as_slice(), r.as_slice()].concat())
                .collect();
            let ids = pad_right(&seqs, self.pad_id, self.model.device())?;
            // Only response positions go through the LM head: prompt tokens' log-probs are
            // never read.
            let width = ids.dim(1)?;
            let positions: Vec<u32> = chunk
                .iter()
                .enumerate()
                .flat_map(|(row, (p, r))| {
                    let start = row * width + p.len() - 1;
                    (start..start + r.len()).map(|i| i as u32)
                })
                .collect();
            let lp = self
                .model
                .selected_token_logps(&ids, &positions, Mode::Infer)?
                .to_vec1::<f32>()?;
            let mut next = 0;
            for (_, r) in chunk {
                let tokens = lp[next..next + r.len()].to_vec();
                next += r.len();
                let sum: f64 = tokens.iter().map(|&x| x as f64).sum();
                out.push(ResponseLogps {
                    sum,
                    mean: sum / tokens.len() as f64,
                    tokens,
                });
            }
        }
        Ok(out)
    }

    /// Mean final-layer hidden state over the response tokens of each item: one `hidden_size`
    /// vector (f32) per item. Errors: as [`LanguageModel::response_logps`].
    pub fn mean_response_hidden(&self, items: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
        check(items)?;
        let mut out = Vec::with_capacity(items.len());
        for range in batches(items) {
            let chunk = &items[range];
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|(p, r)| [p.as_slice(), r.as_slice()].concat())
                .collect();
            let ids = pad_right(&seqs, self.pad_id, self.model.device())?;
            let h = self.model.hidden_states(&ids, Mode::Infer)?;
            for (b, (p, r)) in chunk.iter().enumerate() {
                let v = h
                    .get(b)?
                    .narrow(0, p.len(), r.len())?
                    .mean(0)?
                    .to_vec1::<f32>()?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Logits `[vocab]` at the last position of each sequence (for expected-score judging).
    pub fn last_logits(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(seqs.len());
        let items: Vec<(Vec<u32>, Vec<u32>)> =
            seqs.iter().map(|s| (s.clone(), Vec::new())).collect();
        for range in batches(&items) {
            let chunk = &seqs[range];
            if chunk.iter().any(Vec::is_empty) {
                return Err(ModelError::InvalidInput("empty sequence".into()));
            }
            let ids = pad_right(chunk, self.pad_id, self.model.device())?;
            let h = self.model.hidden_states(&ids, Mode::Infer)?;
            let idx: Vec<Tensor> = chunk
                .iter()
                .enumerate()
                .map(|(b, s)| h.get(b)?.get(s.len() - 1))
                .collect::<candle_core::Result<_>>()?;
            let last = Tensor::stack(&idx, 0)?;
            out.extend(self.model.lm_head_infer(&last)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_alignment_case_d1() {
        // ids [5,6,7,8,0]; logits chosen so log p(target) at positions 0..3 = [-0.1,-0.2,-0.3,-0.4]
        // for targets 6,7,8,0; response mask [0,0,1,1,0] → response = ids 2..4 → sum -0.5.
        let v = 10usize;
        let want = [-0.1f32, -0.2, -0.3, -0.4];
        let targets = [6usize, 7, 8, 0];
        let mut logits = vec![0f32; 5 * v];
        for (t, (&lp, &tg)) in want.iter().zip(&targets).enumerate() {
            // one logit L at the target, 0 elsewhere: log p = L - ln(e^L + (v-1)) = lp
            let p = lp.exp();
            let l = (p * (v as f32 - 1.0) / (1.0 - p)).ln();
            logits[t * v + tg] = l;
        }
        let logits = Tensor::from_vec(logits, (1, 5, v), &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[5u32, 6, 7, 8, 0]], &Device::Cpu).unwrap();
        let lp = target_logps(&logits, &ids)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in lp[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
        // prompt = first 2 ids, response = ids 2 and 3: read at positions 1 and 2.
        let resp: f32 = lp[0][1..3].iter().sum();
        assert!((resp - -0.5).abs() < 1e-5, "{resp}");
    }

    #[test]
    fn batches_respect_budget() {
        let items: Vec<(Vec<u32>, Vec<u32>)> =
            (0..10).map(|_| (vec![1; 500], vec![2; 100])).collect();
        let b = batches(&items);
        assert!(b
            .iter()
            .all(|r| r.len() * 600 <= TOKEN_BUDGET || r.len() == 1));
        assert_eq!(b.iter().map(|r| r.len()).sum::<usize>(), 10);
    }
}

/// Whether every element of `t` (any shape, f32) is finite.
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|x| x.is_finite()))
}
