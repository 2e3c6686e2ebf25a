//! [`RemoteModel`]: one model served by an OpenAI-compatible server, seen the way srlm sees an
//! in-process model. srlm renders the chat template and encodes the prompt itself (the exact
//! ids it would use in-process) and sends token ids; K samples per prompt come from one
//! request with `n = K` and a seed derived from the run's seed and the prompt's ids, or from K
//! requests with one derived seed each (`use_n = false`). Same run seed → same requests.
//!
//! As srlm-judge's [`JudgeModel`], `last_logits` asks for one greedy token with the server's
//! top log-probs and returns a vocabulary-sized row with those log-probs at their ids and −∞
//! elsewhere: the expected score (softmax over the digit tokens' entries) is then exactly what
//! in-process logits give when every digit is listed, because a softmax over a subset does not
//! depend on the normalising constant. A digit absent from the list counts as probability 0.

use crate::client::{Client, Completion, CompletionRequest};
use crate::error::EngineError;
use crate::managed::ServerRoute;
use srlm_core::SamplingConfig;
use srlm_judge::{JudgeError, JudgeModel};
use srlm_model::ModelText;
use std::sync::Arc;

/// One sampled response, as the server returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The response text (the end token not included).
    pub text: String,
    /// Its token ids, the stop token appended when one ended it (as in-process); from the
    /// server's log-probs where it gives ids, else the text re-encoded.
    pub token_ids: Vec<u32>,
    /// Sum of the server's per-token log-probs (nats).
    pub logprob: f64,
}

/// A served model.
#[derive(Clone)]
pub struct RemoteModel {
    /// The model's tokenizer and chat template (srlm's own rendering).
    pub text: Arc<ModelText>,
    /// The server.
    pub client: Client,
    /// The `model` field of requests.
    pub model_name: String,
    /// One request with `n = K` (else K requests).
    pub use_n: bool,
    /// Top log-probs asked for in `last_logits`.
    pub top_logprobs: usize,
    /// A server srlm manages: started before a request if it is stopped, and the llama.cpp
    /// `lora` scales that pick this model on a server with adapters; `None` (a server the
    /// user runs) sends requests as they are.
    pub route: Option<ServerRoute>,
}

/// A seed for the server from the run's seed, the prompt's ids and the sample index
/// (SplitMix64 steps; kept below 2^31 because servers differ in the seed range they accept and
/// llama.cpp reads 0xFFFFFFFF as "random").
pub fn request_seed(seed: u64, prompt: &[u32], sample: usize) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut h = mix(seed);
    for &id in prompt {
        h = mix(h ^ u64::from(id));
    }
    mix(h ^ sample as u64) & 0x7FFF_FFFF
}

impl RemoteModel {
    /// Before a batch of requests: the model's server running and the requests' `lora` field
    /// (see [`ServerRoute::prepare`]); `None` for a server the user runs.
    fn prepare(&self) -> Result<Option<Vec<crate::LoraScale>>, EngineError> {
        match &self.route {
            Some(r) => r.prepare(),
            None => Ok(None),
        }
    }

    fn request(
        &self,
        prompt: Vec<u32>,
        cfg: &SamplingConfig,
        n: usize,
        seed: u64,
        logprobs: usize,
        lora: &Option<Vec<crate::LoraScale>>,
    ) -> CompletionRequest {
        CompletionRequest {
            model: self.model_name.clone(),
            prompt,
            max_tokens: cfg.max_new_tokens,
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            top_k: (cfg.top_k > 0).then_some(cfg.top_k),
            n,
            seed,
            stop: self.text.stop_texts(),
            logprobs: Some(logprobs),
            return_tokens_as_token_ids: true,
            lora: lora.clone(),
        }
    }

    /// `n` completions for each prompt given as ids.
    fn complete(
        &self,
        prompts: &[Vec<u32>],
        cfg: &SamplingConfig,
        n: usize,
    ) -> Result<Vec<Vec<Completion>>, EngineError> {
        let lora = self.prepare()?;
        if self.use_n || n == 1 {
            let reqs: Vec<_> = prompts
                .iter()
                .map(|p| self.request(p.clone(), cfg, n, request_seed(cfg.seed, p, 0), 1, &lora))
                .collect();
            return self.client.complete_all(&reqs);
        }
        let reqs: Vec<_> = prompts
            .iter()
            .flat_map(|p| (0..n).map(move |j| (p, j)))
            .map(|(p, j)| self.request(p.clone(), cfg, 1, request_seed(cfg.seed, p, j), 1, &lora))
            .collect();
        let flat = self.client.complete_all(&reqs)?;
        Ok(flat
            .chunks(n)
            .map(|c| c.iter().map(|x| x[0].clone()).collect())
            .collect())
    }

    /// Encodes each chat-rendered prompt and checks it fits the context with `max_new` tokens.
    ///
    /// # Errors
    /// [`EngineError::Prompt`] naming the prompt's index.
    pub fn encode_prompts(
        &self,
        prompts: &[&str],
        max_new: usize,
    ) -> Result<Vec<Vec<u32>>, EngineError> {
        prompts
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let ids = self.text.encode_prompt(p).map_err(|e| EngineError::Prompt { index, message: e.to_string() })?;
                let ctx = self.text.context_length();
                if ids.len() + max_new > ctx {
                    return Err(EngineError::Prompt {
                        index,
                        message: format!("{} prompt tokens + {max_new} new tokens exceed the model's context of {ctx}", ids.len()),
                    });
                }
                Ok(ids)
            })
            .collect()
    }

    /// `cfg.k` samples per prompt (a user turn, rendered with the model's chat template).
    ///
    /// # Errors
    /// [`EngineError::Prompt`], and every error of the server.
    pub fn sample(
        &self,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Sampled>>, EngineError> {
        cfg.validate().map_err(EngineError::Config)?;
        let ids = self.encode_prompts(prompts, cfg.max_new_tokens)?;
        let out = self.complete(&ids, cfg, cfg.k)?;
        out.into_iter()
            .map(|cs| cs.into_iter().map(|c| self.sampled(c)).collect())
            .collect()
    }

    fn sampled(&self, c: Completion) -> Result<Sampled, EngineError> {
        let listed: Option<Vec<u32>> = c
            .tokens
            .as_ref()
            .and_then(|t| t.iter().map(|x| x.id).collect());
        let logprob = c.tokens.as_ref().map_or(0.0, |t| {
            t.iter().map(|x| x.logprob).filter(|x| x.is_finite()).sum()
        });
        let mut token_ids = match listed {
            Some(ids) => ids,
            None => self
                .text
                .tokenizer
                .encode(&c.text)
                .map_err(|e| EngineError::Malformed {
                    url: self.client.base().to_string(),
                    message: format!("cannot encode the returned text: {e}"),
                })?,
        };
        // Servers leave the end token out of the text and (mostly) out of the log-probs;
        // in-process samples carry it, so compute accounting counts it the same way.
        let stop = self.text.stop_ids.first().copied();
        if c.finish_reason == "stop" {
            if let Some(s) = stop {
                if token_ids
                    .last()
                    .is_none_or(|l| !self.text.stop_ids.contains(l))
                {
                    token_ids.push(s);
                }
            }
        } else if let Some(l) = token_ids.last() {
            if self.text.stop_ids.contains(l) {
                token_ids.pop();
            }
        }
        let text = self.text.stop_texts().iter().fold(c.text, |t, s| {
            t.strip_suffix(s.as_str()).map(String::from).unwrap_or(t)
        });
        Ok(Sampled {
            text,
            token_ids,
            logprob,
        })
    }
}

fn judge_err(e: EngineError) -> JudgeError {
    JudgeError::Model(e.to_string())
}

impl JudgeModel for RemoteModel {
    fn render_user_turn(&self, user: &str) -> Result<String, JudgeError> {
        self.text
            .render_user_turn(user)
            .map_err(|e| JudgeError::Model(e.to_string()))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, JudgeError> {
        self.text
            .tokenizer
            .encode(text)
            .map_err(|e| JudgeError::Model(e.to_string()))
    }

    fn context_length(&self) -> usize {
        self.text.context_length()
    }

    fn sample(
        &self,
        prompts: &[Vec<u32>],
        n: usize,
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<String>>, JudgeError> {
        let out = self.complete(prompts, cfg, n).map_err(judge_err)?;
        out.into_iter()
            .map(|cs| {
                cs.into_iter()
                    .map(|c| self.sampled(c).map(|s| s.text).map_err(judge_err))
                    .collect()
            })
            .collect()
    }

    fn last_logits(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, JudgeError> {
        let cfg = SamplingConfig {
            k: 1,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 1,
            seed: 0,
        };
        let lora = self.prepare().map_err(judge_err)?;
        let reqs: Vec<_> = prompts
            .iter()
            .map(|p| self.request(p.clone(), &cfg, 1, 0, self.top_logprobs, &lora))
            .collect();
        let out = self.client.complete_all(&reqs).map_err(judge_err)?;
        let vocab = self
            .text
            .tokenizer
            .vocab_size()
            .max(self.text.config.vocab_size);
        out.into_iter()
            .map(|cs| {
                let c = &cs[0];
                let first = c.tokens.as_ref().and_then(|t| t.first()).ok_or_else(|| {
                    JudgeError::Model(format!(
                        "{}: the answer has no log-probs (does the server support `logprobs`?)",
                        self.client.base()
                    ))
                })?;
                let mut row = vec![f32::NEG_INFINITY; vocab];
                let mut put = |id: Option<u32>, token: &str, lp: f64| {
                    let id = id.or_else(|| self.text.tokenizer.token_id(token));
                    if let Some(slot) = id.and_then(|i| row.get_mut(i as usize)) {
                        *slot = lp as f32;
                    }
                };
                put(first.id, &first.token, first.logprob);
                for t in &first.top {
                    put(t.id, &t.token, t.logprob);
                }
                Ok(row)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable_and_distinct() {
        assert_eq!(
            request_seed(1, &[1, 2, 3], 0),
            request_seed(1, &[1, 2, 3], 0)
        );
        assert_ne!(
            request_seed(1, &[1, 2, 3], 0),
            request_seed(1, &[1, 2, 3], 1)
        );
        assert_ne!(
            request_seed(1, &[1, 2, 3], 0),
            request_seed(2, &[1, 2, 3], 0)
        );
        assert_ne!(
            request_seed(1, &[1, 2, 3], 0),
            request_seed(1, &[1, 2, 4], 0)
        );
        assert!(request_seed(7, &[9], 3) < 1 << 31);
    }
}
