//! [`FakeBackend`]: both backend ports without model files, for unit tests of the loop, the
//! host and resume. It is deterministic (every output is a function of the inputs), counts
//! its calls, and can be told to fail on the n-th training call (a crash mid-run).
//!
//! - `sample`: response `j` to a prompt is `r<h> ` repeated `1 + h % 5` times, where `h` is a
//!   hash of (model id, prompt, seed, j); its token ids are its bytes; its log-prob is
//!   −(tokens)/10.
//! - `judge_model`: a judge model whose next-token logits put the digit `d` (0–5) in front,
//!   `d` = (number of words in the judged response) mod 6; so the `self` judge in expected
//!   mode scores a response by its length.
//! - `train_dpo`: writes `fake.json` (parent, number of pairs) into the checkpoint folder and
//!   logs one step whose loss is ln 2.

use crate::ports::{
    BackendError, DpoRun, Generated, Generator, ModelRef, PairHidden, ResponseLogp, Trained,
    Trainer,
};
use sha2::{Digest, Sha256};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::{DpoConfig, StepMetrics};
use srlm_judge::{JudgeError, JudgeModel};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

/// Calls a [`FakeBackend`] served, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeCalls {
    /// `sample` calls.
    pub sample: usize,
    /// `train_dpo` calls.
    pub train: usize,
    /// `last_logits` calls of its judge models.
    pub judge: usize,
    /// `load` calls that loaded a model not loaded before.
    pub loads: usize,
}

/// The fake backend.
#[derive(Debug, Default)]
pub struct FakeBackend {
    loaded: Mutex<BTreeSet<String>>,
    calls: Mutex<FakeCalls>,
    fail_train_at: Option<usize>,
    weights_version: String,
}

fn hash(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

impl FakeBackend {
    /// A fake backend.
    pub fn new() -> Self {
        FakeBackend::default()
    }

    /// A fake backend whose `n`-th `train_dpo` call (1-based) fails.
    pub fn failing_train_at(n: usize) -> Self {
        FakeBackend {
            fail_train_at: Some(n),
            ..FakeBackend::default()
        }
    }

    /// A fake backend whose model files have other weights (another `weights_digest`), as if
    /// the file behind the model reference had been replaced.
    pub fn with_weights_version(version: &str) -> Self {
        FakeBackend {
            weights_version: version.into(),
            ..FakeBackend::default()
        }
    }

    /// The calls served so far.
    pub fn calls(&self) -> FakeCalls {
        self.calls.lock().expect("calls").clone()
    }

    /// Identities of the models loaded now.
    pub fn loaded(&self) -> BTreeSet<String> {
        self.loaded.lock().expect("loaded").clone()
    }

    fn check(&self, m: &ModelRef) -> Result<(), BackendError> {
        if self.loaded.lock().expect("loaded").contains(&m.id) {
            Ok(())
        } else {
            Err(BackendError::NotLoaded(m.location.clone()))
        }
    }

    /// The fake response `j` of `model` to `prompt` under `seed`.
    pub fn response(model: &str, prompt: &str, seed: u64, j: usize) -> String {
        let h = hash(&[model, prompt, &seed.to_string(), &j.to_string()]);
        format!("r{} ", h % 1000)
            .repeat(1 + (h % 5) as usize)
            .trim_end()
            .to_string()
    }
}

impl Generator for FakeBackend {
    fn weights_digest(&self, reference: &str) -> Result<String, BackendError> {
        Ok(format!(
            "{:016x}",
            hash(&["weights", reference, &self.weights_version])
        ))
    }

    fn load(&self, m: &ModelRef) -> Result<(), BackendError> {
        if m.location.contains("missing") {
            return Err(BackendError::Model {
                location: m.location.clone(),
                message: "no such model".into(),
            });
        }
        if self.loaded.lock().expect("loaded").insert(m.id.clone()) {
            self.calls.lock().expect("calls").loads += 1;
        }
        Ok(())
    }

    fn release(&self, m: &ModelRef) {
        self.loaded.lock().expect("loaded").remove(&m.id);
    }

    fn sample(
        &self,
        m: &ModelRef,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generated>>, BackendError> {
        self.check(m)?;
        self.calls.lock().expect("calls").sample += 1;
        Ok(prompts
            .iter()
            .map(|p| {
                (0..cfg.k)
                    .map(|j| {
                        let text = FakeBackend::response(&m.id, p, cfg.seed, j);
                        let token_ids: Vec<u32> = text.bytes().map(u32::from).collect();
                        Generated {
                            logprob: -(token_ids.len() as f64) / 10.0,
                            text,
                            token_ids,
                        }
                    })
                    .collect()
            })
            .collect())
    }

    fn pair_hidden_states(
        &self,
        m: &ModelRef,
        pairs: &[PreferencePair],
    ) -> Result<Vec<PairHidden>, BackendError> {
        self.check(m)?;
        let v = |t: &str| vec![t.len() as f32, 1.0];
        Ok(pairs
            .iter()
            .map(|p| (v(&p.chosen), v(&p.rejected)))
            .collect())
    }

    /// One token per byte plus the end-of-turn token, each at `-(1 + h/100)` nats with `h`
    /// a hash of (model, prompt, response) modulo 100.
    fn response_logps(
        &self,
        m: &ModelRef,
        exchanges: &[(&str, &str)],
    ) -> Result<Vec<ResponseLogp>, BackendError> {
        self.check(m)?;
        Ok(exchanges
            .iter()
            .map(|(p, r)| {
                let tokens = r.len() + 1;
                let per_token = 1.0 + (hash(&[&m.id, p, r]) % 100) as f64 / 100.0;
                ResponseLogp {
                    sum: -(tokens as f64) * per_token,
                    tokens,
                }
            })
            .collect())
    }

    fn judge_model(&self, m: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        self.check(m)?;
        Ok(Box::new(FakeJudgeModel { backend: self }))
    }
}

/// The judge model of a [`FakeBackend`] (see the module doc).
struct FakeJudgeModel<'a> {
    backend: &'a FakeBackend,
}

const RESPONSE_MARK: &str = "RESPONSE:";

impl JudgeModel for FakeJudgeModel<'_> {
    fn render_user_turn(&self, user: &str) -> Result<String, JudgeError> {
        Ok(format!("<user>{user}</user>"))
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, JudgeError> {
        Ok(text.chars().map(u32::from).collect())
    }
    fn context_length(&self) -> usize {
        1 << 20
    }
    fn sample(
        &self,
        prompts: &[Vec<u32>],
        n: usize,
        _cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<String>>, JudgeError> {
        Ok(prompts
            .iter()
            .map(|p| vec![format!("Score: {}", score_of(p)); n])
            .collect())
    }
    fn last_logits(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, JudgeError> {
        self.backend.calls.lock().expect("calls").judge += 1;
        Ok(prompts
            .iter()
            .map(|p| {
                let mut row = vec![0f32; 128];
                row['0' as usize + score_of(p)] = 1000.0;
                row
            })
            .collect())
    }
}

/// The fake judge's score of a rendered judge prompt: words of the response mod 6. The
/// response is what follows the last [`RESPONSE_MARK`] of a template that puts it there, else
/// the whole prompt.
fn score_of(prompt: &[u32]) -> usize {
    let text: String = prompt.iter().filter_map(|&c| char::from_u32(c)).collect();
    let response = text.rsplit(RESPONSE_MARK).next().unwrap_or(&text);
    let response = response.split("</user>").next().unwrap_or(response);
    response.split_whitespace().count() % 6
}

/// A judge template that puts the response last, after [`RESPONSE_MARK`], for the fake judge.
pub const FAKE_JUDGE_TEMPLATE: &str = "Question: {{ prompt }}\nRESPONSE:{{ response }}";

impl Trainer for FakeBackend {
    fn train_dpo(
        &self,
        parent: &ModelRef,
        pairs: &[PreferencePair],
        _config: &DpoConfig,
        out: &ModelRef,
        _records: Option<&Path>,
    ) -> Result<Trained, BackendError> {
        self.check(parent)?;
        let n = {
            let mut c = self.calls.lock().expect("calls");
            c.train += 1;
            c.train
        };
        if self.fail_train_at == Some(n) {
            return Err(BackendError::Dpo(format!(
                "fake failure at training call {n}"
            )));
        }
        let dir = Path::new(&out.location);
        let record = serde_json::json!({"parent": parent.id, "pairs": pairs.len()});
        srlm_core::write_atomic(&dir.join("fake.json"), record.to_string().as_bytes()).map_err(
            |e| BackendError::Model {
                location: out.location.clone(),
                message: e.to_string(),
            },
        )?;
        let tokens: u64 = pairs
            .iter()
            .map(|p| (p.prompt.len() * 2 + p.chosen.len() + p.rejected.len()) as u64)
            .sum();
        let step = StepMetrics {
            step: 1,
            epoch: 1.0,
            loss: std::f64::consts::LN_2,
            rewards_chosen: 0.0,
            rewards_rejected: 0.0,
            rewards_margins: 0.0,
            rewards_accuracies: 0.0,
            logps_chosen: -1.0,
            logps_rejected: -2.0,
            grad_norm: 1.5,
            learning_rate: 1e-5,
            tokens,
            tokens_per_second: 1.0,
        };
        let log = vec![step.clone()];
        let summary = DpoRun {
            pairs: pairs.len(),
            pairs_failed: 0,
            steps: 1,
            tokens_trained: tokens,
            reference_tokens: tokens,
            wall_seconds: 0.0,
            final_metrics: step,
            mean: crate::candle::mean_metrics(&log),
            epoch_means: crate::candle::epoch_means(&log),
        };
        self.loaded.lock().expect("loaded").insert(out.id.clone());
        Ok(Trained { summary, log })
    }

    fn save_checkpoint(
        &self,
        m: &ModelRef,
        dir: &Path,
        _dtype: srlm_model::SaveDtype,
    ) -> Result<(), BackendError> {
        self.check(m)?;
        let record: BTreeMap<&str, &str> = [("id", m.id.as_str())].into();
        srlm_core::write_atomic(
            &dir.join("fake.json"),
            serde_json::to_string(&record).expect("json").as_bytes(),
        )
        .map_err(|e| BackendError::Model {
            location: dir.display().to_string(),
            message: e.to_string(),
        })
    }
}
