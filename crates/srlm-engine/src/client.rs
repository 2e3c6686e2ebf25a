//! [`Client`]: `/v1/completions` and `/v1/models` of an OpenAI-compatible server (vLLM,
//! SGLang, llama.cpp's `llama-server`, mistral.rs), with a bounded pool of requests in flight,
//! timeouts, and retries with exponential backoff on HTTP 429/503 and connection errors.
//!
//! Prompts are sent as token ids (srlm renders and encodes them itself, exactly as in-process).
//! Log-probs are read in both formats servers use: llama.cpp's `logprobs.content[]` (with
//! token ids) and the OpenAI legacy `tokens` / `token_logprobs` / `top_logprobs` maps (vLLM;
//! with `return_tokens_as_token_ids` its tokens read `token_id:N`).

use crate::error::EngineError;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One `/v1/completions` request.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionRequest {
    /// The served model's name.
    pub model: String,
    /// The prompt as token ids.
    pub prompt: Vec<u32>,
    /// New tokens at most.
    pub max_tokens: usize,
    /// Softmax temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Top-k (sent only when > 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Completions for this prompt.
    pub n: usize,
    /// The sampler's seed.
    pub seed: u64,
    /// Stop strings (the template's end tokens).
    pub stop: Vec<String>,
    /// Top log-probs per generated token (`None`: no log-probs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    /// vLLM: name tokens as `token_id:N` in log-probs (other servers ignore it).
    pub return_tokens_as_token_ids: bool,
    /// llama.cpp: the scale of each LoRA adapter the server was started with (`--lora`), for
    /// this request only (scale 0 serves the base). `None` leaves the server's setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<Vec<LoraScale>>,
}

/// One adapter's scale in a llama.cpp request's `lora` field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoraScale {
    /// The adapter's index in the server's `--lora` list (0-based).
    pub id: usize,
    /// Its scale: 1 applies the adapter as trained, 0 turns it off.
    pub scale: f64,
}

/// One alternative in a top log-probs list.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    /// Its token id, where the server gives it.
    pub id: Option<u32>,
    /// Its text.
    pub token: String,
    /// Its log-probability (nats).
    pub logprob: f64,
}

/// One generated token with its log-prob and alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token's id, where the server gives it.
    pub id: Option<u32>,
    /// Its text.
    pub token: String,
    /// Its log-probability (nats).
    pub logprob: f64,
    /// The most likely alternatives at that position.
    pub top: Vec<TopLogprob>,
}

/// One returned completion (a `choices[]` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// `stop` (an end token or stop string) or `length`.
    pub finish_reason: String,
    /// Per-token log-probs when asked for.
    pub tokens: Option<Vec<TokenLogprob>>,
}

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    retries: u32,
    concurrency: usize,
    /// Tells whether a server srlm started has exited (checked on connection errors).
    liveness: Option<Arc<dyn Fn() -> Option<EngineError> + Send + Sync>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

fn server_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    });
    let msg = from_json.unwrap_or_else(|| body.trim().to_string());
    let msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        "(empty body)".into()
    } else {
        msg
    }
}

impl Client {
    /// A client of the OpenAI API at `base` (e.g. `http://127.0.0.1:8080/v1`).
    pub fn new(base: &str, timeout: Duration, retries: u32, concurrency: usize) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(timeout)
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retries,
            concurrency: concurrency.max(1),
            liveness: None,
        }
    }

    /// The same client, checking `liveness` on connection errors (a dead server is reported as
    /// such, without retries).
    pub fn watching(
        mut self,
        liveness: Arc<dyn Fn() -> Option<EngineError> + Send + Sync>,
    ) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn dead(&self) -> Option<EngineError> {
        self.liveness.as_ref().and_then(|f| f())
    }

    /// One HTTP call with retries; the body as JSON.
    fn call(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let mut attempt = 0u32;
        loop {
            let result = match body {
                Some(b) => self.agent.post(url).send_json(b),
                None => self.agent.get(url).call(),
            };
            let retryable;
            let err = match result {
                Ok(resp) => {
                    let text = resp.into_string().map_err(|e| EngineError::Malformed {
                        url: url.to_string(),
                        message: format!("cannot read the body: {e}"),
                    })?;
                    return serde_json::from_str(&text).map_err(|e| EngineError::Malformed {
                        url: url.to_string(),
                        message: format!(
                            "not JSON ({e}); body starts: {:?}",
                            text.chars().take(120).collect::<String>()
                        ),
                    });
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    retryable = matches!(status, 429 | 502 | 503);
                    EngineError::Status {
                        method,
                        url: url.to_string(),
                        status,
                        message: server_message(&text),
                    }
                }
                Err(ureq::Error::Transport(t)) => {
                    if let Some(dead) = self.dead() {
                        return Err(dead);
                    }
                    retryable = true;
                    EngineError::Connect {
                        method,
                        url: url.to_string(),
                        message: t.to_string(),
                    }
                }
            };
            if !retryable || attempt >= self.retries {
                return Err(err);
            }
            let wait = Duration::from_millis(500u64 << attempt.min(4));
            tracing::warn!("{err}; retrying in {:.1} s", wait.as_secs_f64());
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// `GET <base>/models`: the served model names.
    ///
    /// # Errors
    /// [`EngineError::Connect`], [`EngineError::Status`], [`EngineError::Malformed`].
    pub fn models(&self) -> Result<Vec<String>, EngineError> {
        let url = format!("{}/models", self.base);
        let v = self.call("GET", &url, None)?;
        let data =
            v.get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| EngineError::Malformed {
                    url: url.clone(),
                    message: "no `data` list".into(),
                })?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
            .collect())
    }

    /// llama.cpp's native `POST /tokenize` (at the server root, beside `/v1`): the server's
    /// token ids of `text`, special tokens parsed, no BOS added. To check that the server
    /// tokenizes as srlm does.
    ///
    /// # Errors
    /// [`EngineError`]; servers without this endpoint answer 404.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        let url = format!("{root}/tokenize");
        let v = self.call(
            "POST",
            &url,
            Some(
                &serde_json::json!({"content": text, "add_special": false, "parse_special": true}),
            ),
        )?;
        v.get("tokens")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|t| t.as_u64().map(|i| i as u32)).collect())
            .ok_or_else(|| EngineError::Malformed {
                url,
                message: "no `tokens` list of ids".into(),
            })
    }

    /// Sends every request, at most `concurrency` at once; the answers in request order. The
    /// first failure stops the rest and is returned.
    ///
    /// # Errors
    /// [`EngineError`] of the first request that failed (after retries).
    pub fn complete_all(
        &self,
        requests: &[CompletionRequest],
    ) -> Result<Vec<Vec<Completion>>, EngineError> {
        let url = format!("{}/completions", self.base);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Vec<Completion>>>> = Mutex::new(vec![None; requests.len()]);
        let first_error: Mutex<Option<(usize, EngineError)>> = Mutex::new(None);
        let workers = self.concurrency.min(requests.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(i) else { return };
                    let body = serde_json::to_value(req).expect("request serialises");
                    let out = self
                        .call("POST", &url, Some(&body))
                        .and_then(|v| parse_completion(&url, &v, req.n));
                    match out {
                        Ok(c) => {
                            // Counted only where the caller opened a sampling stage.
                            srlm_core::progress::advance_samples(c.len() as u64);
                            results.lock().expect("results")[i] = Some(c);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().expect("error slot");
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                            return;
                        }
                    }
                });
            }
        });
        if let Some((_, e)) = first_error.into_inner().expect("error slot") {
            return Err(e);
        }
        Ok(results
            .into_inner()
            .expect("results")
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }
}

fn token_id_of(token: &str) -> Option<u32> {
    token.strip_prefix("token_id:").and_then(|n| n.parse().ok())
}

fn parse_logprobs(url: &str, lp: &Value) -> Result<Vec<TokenLogprob>, EngineError> {
    let bad = |m: &str| EngineError::Malformed {
        url: url.to_string(),
        message: format!("log-probs: {m}"),
    };
    let f = |v: &Value| {
        v.as_f64()
            .or_else(|| v.is_null().then_some(f64::NEG_INFINITY))
    };
    if let Some(content) = lp.get("content").and_then(Value::as_array) {
        // llama.cpp: [{id, token, logprob, top_logprobs: [{id, token, logprob}]}]
        return content
            .iter()
            .map(|t| {
                let top = t
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                Ok(TopLogprob {
                                    id: x.get("id").and_then(Value::as_u64).map(|i| i as u32),
                                    token: x
                                        .get("token")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string(),
                                    logprob: x
                                        .get("logprob")
                                        .and_then(f)
                                        .ok_or_else(|| bad("an alternative has no logprob"))?,
                                })
                            })
                            .collect::<Result<Vec<_>, EngineError>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                let token = t
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Ok(TokenLogprob {
                    id: t
                        .get("id")
                        .and_then(Value::as_u64)
                        .map(|i| i as u32)
                        .or_else(|| token_id_of(&token)),
                    logprob: t
                        .get("logprob")
                        .and_then(f)
                        .ok_or_else(|| bad("a token has no logprob"))?,
                    token,
                    top,
                })
            })
            .collect();
    }
    // OpenAI legacy: tokens[], token_logprobs[], top_logprobs[{token: logprob}]
    let tokens = lp
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("neither `content` nor `tokens`"))?;
    let lps = lp
        .get("token_logprobs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `token_logprobs`"))?;
    let tops = lp.get("top_logprobs").and_then(Value::as_array);
    tokens
        .iter()
        .zip(lps)
        .enumerate()
        .map(|(i, (t, l))| {
            let token = t.as_str().unwrap_or_default().to_string();
            let top = match tops.and_then(|a| a.get(i)).and_then(Value::as_object) {
                Some(m) => m
                    .iter()
                    .map(|(k, v)| {
                        Ok(TopLogprob {
                            id: token_id_of(k),
                            token: k.clone(),
                            logprob: f(v)
                                .ok_or_else(|| bad("an alternative's logprob is not a number"))?,
                        })
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?,
                None => Vec::new(),
            };
            Ok(TokenLogprob {
                id: token_id_of(&token),
                logprob: f(l).ok_or_else(|| bad("a token's logprob is not a number"))?,
                token,
                top,
            })
        })
        .collect()
}

/// Parses a `/v1/completions` answer into `n` completions in `index` order.
///
/// # Errors
/// [`EngineError::Malformed`] when `choices` is missing, has another count than `n`, or an
/// entry has no text.
pub fn parse_completion(url: &str, v: &Value, n: usize) -> Result<Vec<Completion>, EngineError> {
    let bad = |m: String| EngineError::Malformed {
        url: url.to_string(),
        message: m,
    };
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("no `choices` list in {}", truncate(&v.to_string()))))?;
    if choices.len() != n {
        return Err(bad(format!(
            "{} choices for n = {n} (a server that refuses n > 1: set engine.use_n = false)",
            choices.len()
        )));
    }
    let mut out: Vec<(usize, Completion)> = choices
        .iter()
        .enumerate()
        .map(|(pos, c)| {
            let text = c
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("choice {pos} has no `text`")))?
                .to_string();
            let index = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            let tokens = match c.get("logprobs") {
                Some(Value::Null) | None => None,
                Some(lp) => Some(parse_logprobs(url, lp)?),
            };
            Ok((
                index,
                Completion {
                    text,
                    finish_reason: c
                        .get("finish_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("stop")
                        .to_string(),
                    tokens,
                },
            ))
        })
        .collect::<Result<_, EngineError>>()?;
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llama_cpp_logprobs_with_ids() {
        let v = json!({"choices": [{"index": 0, "text": "5", "finish_reason": "length",
            "logprobs": {"content": [{"id": 37, "token": "5", "logprob": -0.5,
                "top_logprobs": [{"id": 37, "token": "5", "logprob": -0.5}, {"id": 36, "token": "4", "logprob": -1.25}]}]}}]});
        let c = parse_completion("u", &v, 1).unwrap();
        let t = &c[0].tokens.as_ref().unwrap()[0];
        assert_eq!((t.id, t.logprob), (Some(37), -0.5));
        assert_eq!(
            t.top[1],
            TopLogprob {
                id: Some(36),
                token: "4".into(),
                logprob: -1.25
            }
        );
    }

    #[test]
    fn legacy_logprobs_and_order() {
        let v = json!({"choices": [
            {"index": 1, "text": "b", "finish_reason": "stop", "logprobs": null},
            {"index": 0, "text": "a", "finish_reason": "length",
             "logprobs": {"tokens": ["token_id:9"], "token_logprobs": [-2.0], "top_logprobs": [{"token_id:9": -2.0, "token_id:3": -0.25}]}}]});
        let c = parse_completion("u", &v, 2).unwrap();
        assert_eq!(c[0].text, "a");
        assert_eq!(c[1].text, "b");
        let t = &c[0].tokens.as_ref().unwrap()[0];
        assert_eq!(t.id, Some(9));
        assert!(t.top.iter().any(|x| x.id == Some(3) && x.logprob == -0.25));
    }

    #[test]
    fn wrong_counts_and_missing_fields_are_errors() {
        let e = parse_completion(
            "http://x/v1/completions",
            &json!({"choices": [{"text": "a"}]}),
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 choices for n = 3"), "{e}");
        let e = parse_completion("u", &json!({"oops": 1}), 1).unwrap_err();
        assert!(e.to_string().contains("no `choices`"), "{e}");
        let e = parse_completion("u", &json!({"choices": [{"index": 0}]}), 1).unwrap_err();
        assert!(e.to_string().contains("no `text`"), "{e}");
    }

    #[test]
    fn server_messages() {
        assert_eq!(
            server_message(r#"{"error":{"message":"model not found","code":404}}"#),
            "model not found"
        );
        assert_eq!(server_message("File Not Found"), "File Not Found");
        assert_eq!(server_message(""), "(empty body)");
    }
}
