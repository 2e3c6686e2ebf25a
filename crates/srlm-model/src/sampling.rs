//! Batched sampling with a KV cache: K samples for each of many prompts in one loop.
//!
//! Each prompt is prefilled once (left-padded batch, positions counted from the first real
//! token), its cache is copied into K rows, and all rows decode together; finished rows are
//! dropped from the batch. Every row draws from its own ChaCha8 stream seeded by
//! (seed, prompt ids, sample index), so a sample does not depend on what else is in the batch,
//! and the same seed and settings give the same text. Settings follow
//! [`srlm_core::SamplingConfig`] (temperature, top-p (Holtzman et al. 2020), top-k).

use crate::error::{ModelError, Result};
use crate::model::LanguageModel;
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use srlm_core::SamplingConfig;

/// One sampled response.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The response text (special tokens such as the end token left out).
    pub text: String,
    /// Generated ids, the stop token included when one was generated.
    pub token_ids: Vec<u32>,
    /// Log-probability (nats) of each generated token under the model's untempered
    /// distribution (`log_softmax(logits)`), one per id.
    pub token_logprobs: Vec<f32>,
    /// Whether a stop token ended it (else `max_new_tokens` did).
    pub finished: bool,
}

impl Generation {
    /// Sum of `token_logprobs` (nats).
    pub fn logprob(&self) -> f64 {
        self.token_logprobs.iter().map(|&x| x as f64).sum()
    }
}

/// Most rows decoded together (prompts × K is split into chunks of at most this many rows).
pub const MAX_ROWS: usize = 64;

fn row_seed(seed: u64, prompt: &[u32], sample: usize) -> u64 {
    // FNV-1a over the prompt ids, then SplitMix64 mixing with the seed and sample index.
    let mut h: u64 = 0xcbf29ce484222325;
    for &id in prompt {
        for b in id.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    let mut z = h
        ^ seed.wrapping_mul(0x9E3779B97F4A7C15)
        ^ (sample as u64).wrapping_mul(0xD1B54A32D192ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// Picks the next token from one row of logits; returns (token, log-prob under the untempered
/// distribution). Temperature 0 is greedy (lowest id wins ties). Tokens whose probability is
/// below e^-30 of the most likely one are never drawn (their mass is < 1e-8 in total).
pub fn sample_token(logits: &[f32], cfg: &SamplingConfig, rng: &mut impl Rng) -> (u32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    if cfg.temperature <= 0.0 {
        let (i, _) = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |acc, (i, &l)| if l > acc.1 { (i, l) } else { acc },
            );
        return (i as u32, logits[i] - lse);
    }
    let t = cfg.temperature as f32;
    let cutoff = max - 30.0 * t;
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, &l)| l >= cutoff)
        .map(|(i, &l)| (i as u32, (l - max) / t))
        .collect();
    // Descending logit, then ascending id: a total order, so an unstable sort is deterministic.
    cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if cfg.top_k > 0 && cand.len() > cfg.top_k {
        cand.truncate(cfg.top_k);
    }
    let mut probs: Vec<f32> = cand.iter().map(|c| c.1.exp()).collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= cfg.top_p as f32 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        cand.truncate(keep);
    }
    let total: f32 = probs.iter().sum();
    let mut u: f32 = rng.gen::<f32>() * total;
    let mut pick = cand.len() - 1;
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            pick = i;
            break;
        }
        u -= p;
    }
    let tok = cand[pick].0;
    (tok, logits[tok as usize] - lse)
}

impl LanguageModel {
    /// Samples `cfg.k` responses for each prompt (token ids of a chat-rendered prompt).
    /// Returns `[prompts][k]` generations, in order.
    ///
    /// Errors: [`ModelError::InvalidInput`] for an empty prompt or a prompt whose length plus
    /// `max_new_tokens` exceeds the context; [`ModelError::Candle`].
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generation>>> {
        cfg.validate().map_err(ModelError::InvalidInput)?;
        let k = cfg.k;
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(ModelError::InvalidInput(format!(
                    "prompt {i} has no tokens"
                )));
            }
            if p.len() + cfg.max_new_tokens > self.context_length() {
                return Err(ModelError::InvalidInput(format!(
                    "prompt {i} has {} tokens; with max_new_tokens {} it exceeds the context of {}",
                    p.len(),
                    cfg.max_new_tokens,
                    self.context_length()
                )));
            }
        }
        let per_chunk = (MAX_ROWS / k).max(1);
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(per_chunk) {
            out.extend(self.generate_chunk(chunk, k, cfg)?);
        }
        Ok(out)
    }

    fn generate_chunk(
        &self,
        prompts: &[Vec<u32>],
        k: usize,
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generation>>> {
        let dev = self.model.device().clone();
        let p = prompts.len();
        let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(p * len);
        let mut pad_left = Vec::with_capacity(p);
        for pr in prompts {
            pad_left.push(len - pr.len());
            ids.extend(std::iter::repeat_n(self.pad_id, len - pr.len()));
            ids.extend(pr);
        }
        let mut cache = crate::llama::KvCache::default();
        let h = self.model.forward_cached(
            &Tensor::from_vec(ids, (p, len), &dev)?,
            &pad_left,
            &mut cache,
        )?;
        // Logits at each prompt's last position, [p, V]; then every prompt expands into k rows.
        let last = self
            .model
            .lm_head_infer(&h.narrow(1, len - 1, 1)?.squeeze(1)?)?;
        let expand: Vec<u32> = (0..p * k).map(|r| (r / k) as u32).collect();
        let mut cache = cache.select_rows(&expand)?;
        let mut logits = last.index_select(&Tensor::new(expand.as_slice(), &dev)?, 0)?;
        let mut rows_pad: Vec<usize> = expand.iter().map(|&r| pad_left[r as usize]).collect();
        let mut active: Vec<usize> = (0..p * k).collect(); // batch row -> global row
        let mut rngs: Vec<ChaCha8Rng> = (0..p * k)
            .map(|r| ChaCha8Rng::seed_from_u64(row_seed(cfg.seed, &prompts[r / k], r % k)))
            .collect();
        let mut gens: Vec<(Vec<u32>, Vec<f32>, bool)> =
            vec![(Vec::new(), Vec::new(), false); p * k];
        for _step in 0..cfg.max_new_tokens {
            let rows = logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
            if let Some(bad) = rows
                .iter()
                .flatten()
                .find(|x| x.is_nan() || **x == f32::INFINITY)
            {
                return Err(ModelError::InvalidInput(format!(
                    "the model's next-token logits contain {bad} (are its weights finite?); \
                     nothing sampled"
                )));
            }
            // Each row draws from its own generator, so rows can be sampled in parallel.
            let mut row_rngs: Vec<&mut ChaCha8Rng> = {
                let mut by_row: Vec<Option<&mut ChaCha8Rng>> = rngs.iter_mut().map(Some).collect();
                active
                    .iter()
                    .map(|&g| by_row[g].take().expect("active rows are distinct"))
                    .collect()
            };
            let picks: Vec<(u32, f32)> = {
                use rayon::prelude::*;
                rows.par_iter()
                    .zip(row_rngs.par_iter_mut())
                    .map(|(row, rng)| sample_token(row, cfg, &mut **rng))
                    .collect()
            };
            let mut next = Vec::with_capacity(active.len());
            for (&g, (tok, lp)) in active.iter().zip(picks) {
                gens[g].0.push(tok);
                gens[g].1.push(lp);
                if self.stop_ids.contains(&tok) {
                    gens[g].2 = true;
                }
                next.push(tok);
            }
            // Drop finished rows from the batch.
            let keep: Vec<usize> = (0..active.len()).filter(|&b| !gens[active[b]].2).collect();
            if keep.is_empty() || gens[active[0]].0.len() >= cfg.max_new_tokens {
                srlm_core::progress::advance_samples(active.len() as u64);
                break;
            }
            srlm_core::progress::advance_samples((active.len() - keep.len()) as u64);
            if keep.len() != active.len() {
                let idx: Vec<u32> = keep.iter().map(|&b| b as u32).collect();
                cache = cache.select_rows(&idx)?;
                active = keep.iter().map(|&b| active[b]).collect();
                rows_pad = keep.iter().map(|&b| rows_pad[b]).collect();
                next = keep.iter().map(|&b| next[b]).collect();
            }
            let n = next.len();
            let h = self.model.forward_cached(
                &Tensor::from_vec(next, (n, 1), &dev)?,
                &rows_pad,
                &mut cache,
            )?;
            logits = self.model.lm_head_infer(&h.squeeze(1)?)?;
        }
        let mut out = Vec::with_capacity(p);
        for i in 0..p {
            let mut v = Vec::with_capacity(k);
            for j in 0..k {
                let (token_ids, token_logprobs, finished) = std::mem::take(&mut gens[i * k + j]);
                let text_ids = if finished {
                    &token_ids[..token_ids.len() - 1]
                } else {
                    &token_ids[..]
                };
                let text = self.tokenizer.decode(text_ids, true)?;
                v.push(Generation {
                    text,
                    token_ids,
                    token_logprobs,
                    finished,
                });
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_top_p_rules() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let greedy = SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        };
        let (t, lp) = sample_token(&logits, &greedy, &mut rng);
        assert_eq!(t, 1);
        let lse = (1f32.exp() + 3f32.exp() * 2.0 + 2f32.exp()).ln();
        assert!((lp - (3.0 - lse)).abs() < 1e-5);
        // top_p so small that only the best (ties: the lowest id) survives.
        let tiny_p = SamplingConfig {
            temperature: 1.0,
            top_p: 1e-6,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(sample_token(&logits, &tiny_p, &mut rng).0, 1);
        }
        // top_k = 2 never draws ids 0 or 2.
        let k2 = SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 2,
            ..Default::default()
        };
        for _ in 0..50 {
            let t = sample_token(&logits, &k2, &mut rng).0;
            assert!(t == 1 || t == 3);
        }
        // Frequencies follow the softmax at temperature 1: p(1) = e^3 / (e + 2e^3 + e^2).
        let full = SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            ..Default::default()
        };
        let n = 20000;
        let c = (0..n)
            .filter(|_| sample_token(&logits, &full, &mut rng).0 == 1)
            .count();
        let expect = 3f32.exp() / (1f32.exp() + 2.0 * 3f32.exp() + 2f32.exp());
        assert!(((c as f32 / n as f32) - expect).abs() < 0.015, "{c}");
    }

    #[test]
    fn row_seeds_differ_by_prompt_and_sample() {
        assert_ne!(row_seed(1, &[1, 2], 0), row_seed(1, &[1, 2], 1));
        assert_ne!(row_seed(1, &[1, 2], 0), row_seed(1, &[2, 1], 0));
        assert_ne!(row_seed(1, &[1, 2], 0), row_seed(2, &[1, 2], 0));
        assert_eq!(row_seed(1, &[1, 2], 3), row_seed(1, &[1, 2], 3));
    }
}
