//! Tokenized pairs, truncation, and masks built from lengths (never from `id != pad`).
//!
//! A row is `prompt_ids ++ response_ids`, right-padded to the batch's longest row. The model
//! returns log-probs of *targets*: position `t` scores token `t + 1`. A row with prompt length
//! `p` and true length `n` therefore has its response targets at `t ∈ [p − 1, n − 1)`; every
//! other position (prompt targets, padding) is masked out. Because the mask comes from lengths,
//! an end token that equals the padding id is still trained (case T2) and prompt tokens never
//! leak into the response log-prob (case D1).

use crate::error::Result;
use crate::model::PolicyModel;
use crate::DpoError;
use candle_core::{DType, Device, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One preference pair, already tokenized.
///
/// `chosen_ids` and `rejected_ids` are the responses' own ids (as sampled, or encoded
/// separately), never the re-tokenized joined text (case T4); both rows share `prompt_ids`.
/// Response ids should end with the template's end token so that stopping is trained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenizedPair {
    /// Identifier reported in errors (e.g. the prompt id).
    pub id: String,
    /// The templated prompt, ending with the assistant header.
    pub prompt_ids: Vec<u32>,
    /// The preferred response.
    pub chosen_ids: Vec<u32>,
    /// The dispreferred response.
    pub rejected_ids: Vec<u32>,
}

impl TokenizedPair {
    /// Tokenizes a [`srlm_core::PreferencePair`] without ever re-tokenizing joined text (case T4).
    ///
    /// `prompt_ids` is the templated prompt (the caller renders and encodes it once, so both
    /// rows share it). Each response uses its sampled ids (`chosen_token_ids` /
    /// `rejected_token_ids`) when the pair carries them, else `encode_response(text)`, which
    /// must encode the response alone and append the template's end token. The id is the
    /// pair's `prompt_id`.
    pub fn from_preference_pair<E>(
        pair: &srlm_core::PreferencePair,
        prompt_ids: Vec<u32>,
        mut encode_response: impl FnMut(&str) -> std::result::Result<Vec<u32>, E>,
    ) -> std::result::Result<Self, E> {
        let chosen_ids = match &pair.chosen_token_ids {
            Some(ids) => ids.clone(),
            None => encode_response(&pair.chosen)?,
        };
        let rejected_ids = match &pair.rejected_token_ids {
            Some(ids) => ids.clone(),
            None => encode_response(&pair.rejected)?,
        };
        Ok(TokenizedPair {
            id: pair.prompt_id.clone(),
            prompt_ids,
            chosen_ids,
            rejected_ids,
        })
    }
}

/// What [`truncate_pairs`] did to the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FilterStats {
    /// Pairs given.
    pub total: usize,
    /// Pairs kept.
    pub kept: usize,
    /// Kept pairs whose prompt was cut from the left (`max_prompt_length`).
    pub truncated_prompt: usize,
    /// Kept pairs with at least one response cut from the right (`max_length`).
    pub truncated_response: usize,
    /// Pairs dropped because a response was empty or truncation would have emptied it.
    pub dropped_empty_response: usize,
    /// Pairs dropped because the prompt was empty (the first response token has no context).
    pub dropped_empty_prompt: usize,
    /// Pairs dropped because chosen and rejected are the same tokens (after truncation): such a
    /// pair has no gradient and only dilutes the batch's metrics.
    #[serde(default)]
    pub dropped_identical: usize,
}

/// Truncates each pair (TRL order): the prompt keeps its last `max_prompt_length` tokens, then
/// each response keeps its first `max_length − prompt_len` tokens. Truncation never empties a
/// response: such pairs (and pairs with an empty response or prompt to begin with, and pairs
/// whose two responses are the same tokens) are dropped and counted in the returned
/// [`FilterStats`].
pub fn truncate_pairs(
    pairs: &[TokenizedPair],
    max_length: Option<usize>,
    max_prompt_length: Option<usize>,
) -> (Vec<TokenizedPair>, FilterStats) {
    let mut stats = FilterStats {
        total: pairs.len(),
        ..FilterStats::default()
    };
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        if pair.prompt_ids.is_empty() {
            stats.dropped_empty_prompt += 1;
            continue;
        }
        let mut p = pair.clone();
        if let Some(mp) = max_prompt_length {
            if p.prompt_ids.len() > mp {
                p.prompt_ids.drain(..p.prompt_ids.len() - mp);
                stats.truncated_prompt += 1;
            }
        }
        let room = max_length.map(|m| m.saturating_sub(p.prompt_ids.len()));
        let mut cut = false;
        for r in [&mut p.chosen_ids, &mut p.rejected_ids] {
            if let Some(room) = room {
                if r.len() > room {
                    r.truncate(room);
                    cut = true;
                }
            }
        }
        if p.chosen_ids.is_empty() || p.rejected_ids.is_empty() {
            stats.dropped_empty_response += 1;
            continue;
        }
        if p.chosen_ids == p.rejected_ids {
            stats.dropped_identical += 1;
            continue;
        }
        stats.truncated_response += usize::from(cut);
        out.push(p);
    }
    stats.kept = out.len();
    (out, stats)
}

/// The response mask over target positions, built from lengths.
///
/// `prompt_lens[i]` ≥ 1 and `total_lens[i]` ≤ `seq_len` are row `i`'s prompt length and true
/// length (prompt + response) in tokens. Returns `[rows, seq_len − 1]` u8 on `device`, 1 where
/// `prompt_lens[i] − 1 ≤ t < total_lens[i] − 1` (target `t + 1` is a response token).
pub fn response_mask(
    prompt_lens: &[usize],
    total_lens: &[usize],
    seq_len: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    assert_eq!(
        prompt_lens.len(),
        total_lens.len(),
        "one prompt length per row"
    );
    let width = seq_len.saturating_sub(1);
    let mut m = vec![0u8; prompt_lens.len() * width];
    for (i, (&p, &n)) in prompt_lens.iter().zip(total_lens).enumerate() {
        assert!(
            p >= 1 && n <= seq_len,
            "row {i}: prompt_len {p} must be >= 1, total {n} <= {seq_len}"
        );
        for t in p - 1..n.saturating_sub(1) {
            m[i * width + t] = 1;
        }
    }
    Tensor::from_vec(m, (prompt_lens.len(), width), device)
}

/// Sums `token_logps` over the positions where `mask` is 1.
///
/// `token_logps`: `[rows, seq − 1]` f32; `mask`: `[rows, seq − 1]` u8. Returns `[rows]` f32.
/// Masked-out positions are *selected away* (`where_cond`), not multiplied by 0, so NaN or
/// −inf at padding positions cannot leak into the sum. Differentiable w.r.t. `token_logps`.
pub fn masked_sum(token_logps: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let zeros = token_logps.zeros_like()?;
    mask.where_cond(token_logps, &zeros)?.sum(1)
}

/// A micro-batch of pairs as one concatenated, right-padded batch (TRL's `concatenated_forward`):
/// rows `0..B` are the chosen sequences, rows `B..2B` the rejected ones.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `[2B, S]` u32 token ids; padding repeats each row's last real token (a valid id).
    pub ids: Tensor,
    /// `[2B, S − 1]` u8 response mask over target positions (see [`response_mask`]).
    pub mask: Tensor,
    /// `[2B]` f32 response lengths in tokens (chosen rows first).
    pub response_lens: Tensor,
    /// Pair ids, in row order of the chosen half.
    pub pair_ids: Vec<String>,
    /// Real (non-padding) tokens in the batch, prompt + response, both halves.
    pub tokens: usize,
    /// Response tokens in the batch, both halves.
    pub response_tokens: usize,
}

impl PairBatch {
    /// Builds the batch on `device`. Every pair must have non-empty prompt and responses
    /// (as [`truncate_pairs`] guarantees).
    pub fn new(pairs: &[&TokenizedPair], device: &Device) -> Result<Self> {
        let b = pairs.len();
        let mut rows: Vec<(usize, Vec<u32>)> = Vec::with_capacity(2 * b);
        for side in 0..2 {
            for p in pairs {
                let resp = if side == 0 {
                    &p.chosen_ids
                } else {
                    &p.rejected_ids
                };
                if p.prompt_ids.is_empty() || resp.is_empty() {
                    return Err(DpoError::InvalidPair {
                        id: p.id.clone(),
                        message: "empty prompt or response (filter with truncate_pairs)".into(),
                    });
                }
                let mut ids = p.prompt_ids.clone();
                ids.extend_from_slice(resp);
                rows.push((p.prompt_ids.len(), ids));
            }
        }
        let seq = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(2);
        let mut flat = Vec::with_capacity(rows.len() * seq);
        for (_, r) in &rows {
            flat.extend_from_slice(r);
            let last = *r.last().expect("non-empty row");
            flat.extend(std::iter::repeat_n(last, seq - r.len()));
        }
        let prompt_lens: Vec<usize> = rows.iter().map(|(p, _)| *p).collect();
        let total_lens: Vec<usize> = rows.iter().map(|(_, r)| r.len()).collect();
        let resp: Vec<f32> = rows.iter().map(|(p, r)| (r.len() - p) as f32).collect();
        Ok(PairBatch {
            ids: Tensor::from_vec(flat, (rows.len(), seq), device)?,
            mask: response_mask(&prompt_lens, &total_lens, seq, device)?,
            response_lens: Tensor::from_vec(resp.clone(), rows.len(), device)?,
            pair_ids: pairs.iter().map(|p| p.id.clone()).collect(),
            tokens: total_lens.iter().sum(),
            response_tokens: resp.iter().map(|&x| x as usize).sum(),
        })
    }

    /// Number of pairs B (the batch has 2B rows).
    pub fn pairs(&self) -> usize {
        self.pair_ids.len()
    }
}

/// Summed response log-probs of every row of `batch` under `model`: `[2B]` f32 in nats
/// (chosen rows first), differentiable w.r.t. the model's trainable vars. Checks the model's
/// output shape and dtype.
pub fn sequence_logps(model: &dyn PolicyModel, batch: &PairBatch) -> Result<Tensor> {
    let lp = model.sequence_logps(&batch.ids, &batch.mask)?;
    let rows = batch.ids.dim(0)?;
    if lp.dims() != [rows] || lp.dtype() != DType::F32 {
        return Err(DpoError::ModelOutput {
            expected: format!("sequence_logps of [{rows}] f32"),
            got: format!("{:?} {:?}", lp.dims(), lp.dtype()),
        });
    }
    Ok(lp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, p: &[u32], c: &[u32], r: &[u32]) -> TokenizedPair {
        TokenizedPair {
            id: id.into(),
            prompt_ids: p.to_vec(),
            chosen_ids: c.to_vec(),
            rejected_ids: r.to_vec(),
        }
    }

    /// Case D1: ids [5,6,7,8,0], response mask over ids [0,0,1,1,0] (prompt 2, true length 4),
    /// target log-probs (of 6,7,8,0) [-0.1,-0.2,-0.3,-0.4]: the response log-prob is -0.5.
    #[test]
    fn d1_target_alignment() {
        let d = Device::Cpu;
        let mask = response_mask(&[2], &[4], 5, &d).unwrap();
        assert_eq!(mask.to_vec2::<u8>().unwrap(), vec![vec![0, 1, 1, 0]]);
        let lp = Tensor::new(&[[-0.1f32, -0.2, -0.3, -0.4]], &d).unwrap();
        let s = masked_sum(&lp, &mask).unwrap().to_vec1::<f32>().unwrap();
        assert!((s[0] + 0.5).abs() < 1e-6, "{s:?}");
    }

    /// Case T2: pad = eos = 2, row [1,7,8,2,2,2], true length 4, prompt length 2: the targets
    /// 8 and the first 2 (the EOS) are trained; the last two 2s are padding.
    #[test]
    fn t2_eos_trained_when_pad_is_eos() {
        let d = Device::Cpu;
        let ids = [1u32, 7, 8, 2, 2, 2];
        let mask = response_mask(&[2], &[4], ids.len(), &d)
            .unwrap()
            .to_vec2::<u8>()
            .unwrap();
        assert_eq!(mask, vec![vec![0, 1, 1, 0, 0]]);
        let targets: Vec<u32> = mask[0]
            .iter()
            .enumerate()
            .filter(|(_, &m)| m == 1)
            .map(|(t, _)| ids[t + 1])
            .collect();
        assert_eq!(targets, vec![8, 2]);
        // The same through PairBatch, with pad == eos inside a longer batch.
        let a = pair("a", &[1, 7], &[8, 2], &[9, 2]);
        let b = pair("b", &[1, 7], &[8, 8, 8, 2], &[2]);
        let batch = PairBatch::new(&[&a, &b], &d).unwrap();
        assert_eq!(
            batch.mask.to_vec2::<u8>().unwrap(),
            vec![
                vec![0, 1, 1, 0, 0],
                vec![0, 1, 1, 1, 1],
                vec![0, 1, 1, 0, 0],
                vec![0, 1, 0, 0, 0],
            ]
        );
        assert_eq!(
            batch.ids.to_vec2::<u32>().unwrap()[0],
            vec![1, 7, 8, 2, 2, 2]
        );
        assert_eq!(
            batch.response_lens.to_vec1::<f32>().unwrap(),
            vec![2.0, 4.0, 2.0, 1.0]
        );
        assert_eq!((batch.tokens, batch.response_tokens), (4 + 6 + 4 + 3, 9));
    }

    #[test]
    fn masked_sum_ignores_nan_padding() {
        let d = Device::Cpu;
        let lp = Tensor::new(&[[-1.0f32, f32::NAN, f32::NEG_INFINITY]], &d).unwrap();
        let mask = Tensor::new(&[[1u8, 0, 0]], &d).unwrap();
        assert_eq!(
            masked_sum(&lp, &mask).unwrap().to_vec1::<f32>().unwrap(),
            vec![-1.0]
        );
    }

    #[test]
    fn truncation_left_prompt_right_response_never_empty() {
        let pairs = vec![
            pair("keep", &[1, 2, 3, 4], &[5, 6, 7], &[8]),
            pair("cut", &[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10], &[11, 12]),
            pair("empty", &[1], &[], &[3]),
            pair("noprompt", &[], &[2], &[3]),
            pair("same", &[1], &[2, 3], &[2, 3]),
            pair("same-after-cut", &[1, 2, 3, 4], &[5, 6, 7], &[5, 6, 8]),
        ];
        let (out, st) = truncate_pairs(&pairs, Some(6), Some(4));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], pairs[0].clone().tap(|p| p.chosen_ids = vec![5, 6]));
        assert_eq!(out[1], pair("cut", &[3, 4, 5, 6], &[7, 8], &[11, 12]));
        assert_eq!(
            st,
            FilterStats {
                total: 6,
                kept: 2,
                truncated_prompt: 1,
                truncated_response: 2,
                dropped_empty_response: 1,
                dropped_empty_prompt: 1,
                dropped_identical: 2,
            }
        );
        // A prompt that fills max_length leaves no room: dropped, never an empty response.
        let (out, st) = truncate_pairs(&[pair("full", &[1, 2, 3], &[4], &[5])], Some(3), None);
        assert!(out.is_empty());
        assert_eq!(st.dropped_empty_response, 1);
    }

    /// Case T4: sampled ids are used as they are; only missing sides are encoded, alone.
    #[test]
    fn t4_from_preference_pair_never_joins_text() {
        let mut pp = srlm_core::PreferencePair::from_texts("p1", "Total: ", "7", "$7");
        pp.chosen_token_ids = Some(vec![22, 2]);
        let mut seen = Vec::new();
        let t = TokenizedPair::from_preference_pair(&pp, vec![1, 5, 6], |text| {
            seen.push(text.to_string());
            Ok::<_, ()>(vec![30, 31, 2])
        })
        .unwrap();
        assert_eq!(
            seen,
            vec!["$7".to_string()],
            "only the rejected text is encoded, alone"
        );
        assert_eq!(t, pair("p1", &[1, 5, 6], &[22, 2], &[30, 31, 2]));
    }

    trait Tap: Sized {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
    impl Tap for TokenizedPair {}
}
