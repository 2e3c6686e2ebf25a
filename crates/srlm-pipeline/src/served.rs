//! [`ServedBackend`]: the [`Generator`] port on an inference server (srlm-engine), the
//! [`Trainer`] port and the hidden-state diagnostic in-process ([`CandleBackend`]).
//!
//! - `engine.kind = "server"`: [`Generator::load`] starts one server per model from the
//!   command template (`engine/server-<id>.log` in the run folder) and
//!   [`Generator::release`] stops it. M0 is handed over as its own GGUF (llama-server) or HF
//!   folder (vLLM, SGLang); a model srlm trained is handed over as its checkpoint folder, or
//!   as a GGUF srlm writes (`engine/models/<id>.gguf`, metadata from M0's GGUF).
//! - `engine.kind = "url"`: a server the user runs; it serves one model (the first loaded, M0)
//!   and a request for another model is an error that says so.
//!
//! Samples and judgments come from the server; DPO, the reference log-probs and the hidden
//! states (collapse diagnostic) are computed in-process, where the model is loaded lazily on
//! first use.

use crate::candle::CandleBackend;
use crate::ports::{BackendError, Generated, Generator, ModelRef, PairHidden, Trained, Trainer};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::DpoConfig;
use srlm_engine::{
    Client, EngineConfig, EngineError, EngineKind, RemoteModel, ServerProcess, ServerVars,
};
use srlm_judge::JudgeModel;
use srlm_model::{Device, GgufDType, ModelFiles, ModelText};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Served {
    model: RemoteModel,
    /// The server srlm started for it (`None` for a user's server); dropping it stops it.
    process: Option<ServerProcess>,
}

/// Sampling and judging on a server, training in-process.
pub struct ServedBackend {
    engine: EngineConfig,
    local: CandleBackend,
    work_dir: PathBuf,
    base_gguf: Option<PathBuf>,
    served: Mutex<HashMap<String, Served>>,
    url_model: Mutex<Option<ModelRef>>,
}

fn model_err(m: &ModelRef) -> impl FnOnce(EngineError) -> BackendError + '_ {
    move |e| match e {
        EngineError::Prompt { index, message } => BackendError::Prompt { index, message },
        other => BackendError::Model {
            location: m.location.clone(),
            message: other.to_string(),
        },
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(16)]
}

impl ServedBackend {
    /// A backend for `engine` (kind `server` or `url`); `work_dir` gets server logs and GGUFs;
    /// `m0` is the run's initial model reference (its GGUF supplies the metadata of the GGUFs
    /// srlm writes for trained models); `frozen_base` is the in-process models' form (see
    /// [`CandleBackend::with_frozen_base`]).
    ///
    /// # Errors
    /// [`BackendError::Model`] when `engine.kind` is `in-process` or `m0` cannot be resolved.
    pub fn new(
        engine: EngineConfig,
        device: Device,
        work_dir: &Path,
        m0: &str,
        frozen_base: Option<srlm_model::FrozenBase>,
    ) -> Result<Self, BackendError> {
        if engine.kind == EngineKind::InProcess {
            return Err(BackendError::Model {
                location: m0.to_string(),
                message: "ServedBackend needs engine.kind = \"server\" or \"url\"".into(),
            });
        }
        let base_gguf = match srlm_model::resolve_model(m0) {
            Ok(ModelFiles::Gguf(p)) => Some(p),
            _ => None,
        };
        Ok(ServedBackend {
            engine,
            local: CandleBackend::with_frozen_base(device, frozen_base),
            work_dir: work_dir.to_path_buf(),
            base_gguf,
            served: Mutex::new(HashMap::new()),
            url_model: Mutex::new(None),
        })
    }

    /// The server commands started so far and their logs (for the dry run and the report).
    pub fn remote(&self, m: &ModelRef) -> Result<RemoteModel, BackendError> {
        self.served
            .lock()
            .expect("served models")
            .get(&m.id)
            .map(|s| s.model.clone())
            .ok_or_else(|| BackendError::NotLoaded(m.location.clone()))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.engine.timeout_seconds)
    }

    /// The model as a GGUF a llama.cpp server reads: M0's own file, or one srlm writes from
    /// the trained weights (once; reused on resume).
    fn gguf_for(&self, m: &ModelRef) -> Result<PathBuf, BackendError> {
        if let Ok(ModelFiles::Gguf(p)) = srlm_model::resolve_model(&m.location) {
            return Ok(p);
        }
        let base = self.base_gguf.as_ref().ok_or_else(|| BackendError::Model {
            location: m.location.clone(),
            message: "a GGUF for the server is written with the tokenizer metadata of M0's GGUF, but M0 is not a GGUF; use a server that reads HF folders ({hf_dir}: vLLM, SGLang)".into(),
        })?;
        let out = self
            .work_dir
            .join("models")
            .join(format!("{}.gguf", short(&m.id)));
        if out.is_file() {
            return Ok(out);
        }
        self.local.load(m)?;
        let dtype: GgufDType =
            self.engine
                .gguf_dtype
                .parse()
                .map_err(|e: String| BackendError::Model {
                    location: m.location.clone(),
                    message: e,
                })?;
        let model = self.local.model(m)?;
        srlm_model::write_gguf(&model, base, &out, dtype).map_err(|e| BackendError::Model {
            location: m.location.clone(),
            message: format!("writing the GGUF for the server: {e}"),
        })?;
        Ok(out)
    }

    fn connect(&self, m: &ModelRef) -> Result<Served, BackendError> {
        let e = &self.engine;
        let (client, process) = match e.kind {
            EngineKind::Url => {
                let mut first = self.url_model.lock().expect("url model");
                match first.as_ref() {
                    Some(f) if f.id != m.id => {
                        return Err(BackendError::Model {
                            location: m.location.clone(),
                            message: format!(
                                "engine.kind = \"url\": the server at {} serves one model (`{}`), and this run also needs `{}` (a model trained during the run, e.g. TSR's future model M_f or M_1). Use engine.kind = \"server\" so that srlm starts a server for each model",
                                e.url, f.location, m.location
                            ),
                        })
                    }
                    _ => *first = Some(m.clone()),
                }
                (
                    Client::new(&e.url, self.timeout(), e.retries, e.concurrency),
                    None,
                )
            }
            EngineKind::Server => {
                let template = e.command_template();
                let gguf = if template.contains("{gguf}") {
                    Some(self.gguf_for(m)?)
                } else {
                    None
                };
                let hf_dir = match srlm_model::resolve_model(&m.location) {
                    Ok(ModelFiles::HfDir(d)) => Some(d),
                    _ => None,
                };
                let vars = ServerVars {
                    gguf,
                    hf_dir,
                    parallel: e.parallel,
                    threads: e.threads,
                };
                let log = self.work_dir.join(format!("server-{}.log", short(&m.id)));
                let p = ServerProcess::start(
                    template,
                    &vars,
                    &log,
                    Duration::from_secs(e.startup_timeout_seconds),
                )
                .map_err(model_err(m))?;
                tracing::info!(
                    "started `{}` for {} (log {})",
                    p.command(),
                    m.location,
                    log.display()
                );
                (p.client(self.timeout(), e.retries, e.concurrency), Some(p))
            }
            EngineKind::InProcess => unreachable!("checked in new()"),
        };
        let text = Arc::new(
            ModelText::load(&m.location).map_err(|e| BackendError::Model {
                location: m.location.clone(),
                message: e.to_string(),
            })?,
        );
        let model_name = if e.model_name.is_empty() {
            client
                .models()
                .map_err(model_err(m))?
                .into_iter()
                .next()
                .ok_or_else(|| BackendError::Model {
                    location: m.location.clone(),
                    message: format!("{}/models lists no model", client.base()),
                })?
        } else {
            e.model_name.clone()
        };
        Ok(Served {
            model: RemoteModel {
                text,
                client,
                model_name,
                use_n: e.use_n,
                top_logprobs: e.top_logprobs,
            },
            process,
        })
    }
}

impl Generator for ServedBackend {
    fn weights_digest(&self, reference: &str) -> Result<String, BackendError> {
        self.local.weights_digest(reference)
    }

    fn load(&self, m: &ModelRef) -> Result<(), BackendError> {
        if self
            .served
            .lock()
            .expect("served models")
            .contains_key(&m.id)
        {
            return Ok(());
        }
        let served = self.connect(m)?;
        self.served
            .lock()
            .expect("served models")
            .insert(m.id.clone(), served);
        Ok(())
    }

    fn release(&self, m: &ModelRef) {
        let gone = self.served.lock().expect("served models").remove(&m.id);
        if let Some(Served {
            process: Some(p), ..
        }) = gone
        {
            p.stop();
        }
        self.local.release(m);
    }

    fn sample(
        &self,
        m: &ModelRef,
        prompts: &[&str],
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<Generated>>, BackendError> {
        let remote = self.remote(m)?;
        let out = remote.sample(prompts, cfg).map_err(model_err(m))?;
        Ok(out
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|s| Generated {
                        text: s.text,
                        token_ids: s.token_ids,
                        logprob: s.logprob,
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
        self.local.load(m)?;
        self.local.pair_hidden_states(m, pairs)
    }

    fn judge_model(&self, m: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        Ok(Box::new(self.remote(m)?))
    }

    fn engine_id(&self) -> Option<String> {
        let e = &self.engine;
        let what = match e.kind {
            EngineKind::Url => format!("url {}", e.url),
            _ => format!("server {}", e.command_template()),
        };
        Some(format!(
            "{what}; model {:?}; n per request {}; top log-probs {}",
            e.model_name, e.use_n, e.top_logprobs
        ))
    }
}

impl Trainer for ServedBackend {
    fn train_dpo(
        &self,
        parent: &ModelRef,
        pairs: &[PreferencePair],
        config: &DpoConfig,
        out: &ModelRef,
        records: Option<&Path>,
    ) -> Result<Trained, BackendError> {
        self.local.load(parent)?;
        let trained = self.local.train_dpo(parent, pairs, config, out, records)?;
        // The port's contract: the trained model is available to the Generator afterwards.
        self.load(out)?;
        Ok(trained)
    }

    fn save_checkpoint(
        &self,
        m: &ModelRef,
        dir: &Path,
        dtype: srlm_model::SaveDtype,
    ) -> Result<(), BackendError> {
        self.local.load(m)?;
        self.local.save_checkpoint(m, dir, dtype)
    }
}
