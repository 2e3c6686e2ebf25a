//! [`ServedBackend`]: the [`Generator`] port on an inference server (srlm-engine), the
//! [`Trainer`] port and the hidden-state diagnostic in-process ([`CandleBackend`]).
//!
//! - `engine.kind = "server"`: [`Generator::load`] starts one server per model from the
//!   command template (`engine/server-<id>.log` in the run folder) and
//!   [`Generator::release`] stops it. M0 is handed over as its own GGUF (llama-server) or HF
//!   folder (vLLM, SGLang); a model srlm trained is handed over as its checkpoint folder, or
//!   as a GGUF srlm writes (`engine/models/<id>.gguf`, metadata from M0's GGUF).
//! - `engine.kind = "server"` with the word `{lora}` in the command (llama-server's preset):
//!   M0's server (a [`ManagedServer`], `engine/server-base.log`) also serves every model that is
//!   a LoRA adapter on M0's GGUF — TSR's M_i and M_f — each handed over as a GGUF adapter srlm
//!   writes (`engine/models/<id>.lora.gguf`) and picked per request by its `lora` scales: one
//!   process holds the base once. Models that are not adapters on that base still get their
//!   own server.
//! - `engine.kind = "url"`: a server the user runs; it serves one model (the first loaded, M0)
//!   and a request for another model is an error that says so.
//!
//! Samples and judgments come from the server; DPO, the reference log-probs and the hidden
//! states (collapse diagnostic) are computed in-process, where the model is loaded lazily on
//! first use.

use crate::candle::CandleBackend;
use crate::ports::{
    BackendError, Generated, Generator, ModelRef, PairHidden, ResponseLogp, Trained, Trainer,
};
use srlm_core::{PreferencePair, SamplingConfig};
use srlm_dpo::DpoConfig;
use srlm_engine::{
    Client, EngineConfig, EngineError, EngineKind, ManagedServer, RemoteModel, ServerPool,
    ServerVars,
};
use srlm_judge::JudgeModel;
use srlm_model::{Device, GgufDType, ModelFiles, ModelText};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Served {
    model: RemoteModel,
    /// The server srlm started for this model alone (`None` for a user's server and for a
    /// model on the base's server); removed from the pool, so stopped, when it is released.
    own_server: Option<Arc<ManagedServer>>,
}

/// Sampling and judging on a server, training in-process.
pub struct ServedBackend {
    engine: EngineConfig,
    local: CandleBackend,
    work_dir: PathBuf,
    base_gguf: Option<PathBuf>,
    /// Every server srlm started for the run (`engine.exclusive`: one running at a time).
    pool: Arc<ServerPool>,
    /// With `{lora}` in the command and a GGUF base: the one server for the base and its
    /// LoRA models.
    base_server: Option<Arc<ManagedServer>>,
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

/// The GGUF file a model reference resolves to, if it is one.
fn gguf_of(reference: &str) -> Option<PathBuf> {
    match srlm_model::resolve_model(reference) {
        Ok(ModelFiles::Gguf(p)) => Some(p.canonicalize().unwrap_or(p)),
        _ => None,
    }
}

/// The GGUF under `m0`: its own file, or the base of a LoRA adapter folder.
fn gguf_base_of(m0: &str) -> Option<PathBuf> {
    let path = Path::new(m0);
    if srlm_model::is_adapter_dir(path) {
        return gguf_of(&srlm_model::adapter_base(path)?);
    }
    gguf_of(m0)
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
        let base_gguf = gguf_base_of(m0);
        let template = engine.command_template();
        let pool = ServerPool::new(engine.exclusive);
        let base_server = match &base_gguf {
            Some(gguf)
                if engine.kind == EngineKind::Server
                    && srlm_engine::server::has_lora_word(template) =>
            {
                let vars = ServerVars {
                    gguf: Some(gguf.clone()),
                    hf_dir: None,
                    parallel: engine.parallel,
                    threads: engine.threads,
                    lora: Vec::new(),
                };
                let server = ManagedServer::new(
                    template,
                    vars,
                    &work_dir.join("server-base.log"),
                    Duration::from_secs(engine.startup_timeout_seconds),
                )
                .map_err(|e| BackendError::Model {
                    location: m0.to_string(),
                    message: e.to_string(),
                })?;
                Some(pool.add(server))
            }
            _ => None,
        };
        Ok(ServedBackend {
            engine,
            local: CandleBackend::with_frozen_base(device, frozen_base),
            work_dir: work_dir.to_path_buf(),
            base_gguf,
            pool,
            base_server,
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

    /// How `m` is served by the base's server: `Some(None)` for the base itself,
    /// `Some(Some(dir))` for a LoRA adapter folder on that base, `None` when it is not (or
    /// there is no such server).
    fn on_base(&self, m: &ModelRef) -> Option<Option<PathBuf>> {
        self.base_server.as_ref()?;
        let base = self.base_gguf.as_ref()?;
        let path = Path::new(&m.location);
        if srlm_model::is_adapter_dir(path) {
            let b = srlm_model::adapter_base(path)?;
            return (gguf_of(&b).as_ref() == Some(base)).then(|| Some(path.to_path_buf()));
        }
        (gguf_of(&m.location).as_ref() == Some(base)).then_some(None)
    }

    /// `m`'s adapter as a llama.cpp GGUF LoRA srlm writes from the trained weights (once;
    /// reused on resume).
    fn lora_gguf_for(&self, m: &ModelRef, base: &Path) -> Result<PathBuf, BackendError> {
        let out = self
            .work_dir
            .join("models")
            .join(format!("{}.lora.gguf", short(&m.id)));
        if out.is_file() {
            return Ok(out);
        }
        self.local.load(m)?;
        let model = self.local.model(m)?;
        srlm_model::write_gguf_lora(&model, base, &out).map_err(|e| BackendError::Model {
            location: m.location.clone(),
            message: format!("writing the GGUF LoRA adapter for the server: {e}"),
        })?;
        Ok(out)
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
        let mut route = None;
        let on_base = match e.kind {
            EngineKind::Server => self.on_base(m),
            _ => None,
        };
        let (client, own_server) = match e.kind {
            EngineKind::Server if on_base.is_some() => {
                let server = self.base_server.as_ref().expect("on_base checks it");
                let r = match on_base.expect("checked") {
                    None => self.pool.acquire(server, None),
                    Some(_) => {
                        let base = self.base_gguf.as_ref().expect("on_base checks it");
                        let file = self.lora_gguf_for(m, base)?;
                        self.pool.acquire(server, Some((&m.id, &file)))
                    }
                }
                .map_err(model_err(m))?;
                route = Some(r);
                (
                    server.client(self.timeout(), e.retries, e.concurrency),
                    None,
                )
            }
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
                    lora: Vec::new(),
                };
                let log = self.work_dir.join(format!("server-{}.log", short(&m.id)));
                let server = ManagedServer::new(
                    template,
                    vars,
                    &log,
                    Duration::from_secs(e.startup_timeout_seconds),
                )
                .map_err(model_err(m))?;
                let server = self.pool.add(server);
                match self.pool.acquire(&server, None) {
                    Ok(r) => route = Some(r),
                    Err(err) => {
                        self.pool.remove(&server);
                        return Err(model_err(m)(err));
                    }
                }
                let client = server.client(self.timeout(), e.retries, e.concurrency);
                (client, Some(server))
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
                route,
            },
            own_server,
        })
    }
}

impl Drop for ServedBackend {
    /// Every server srlm started stops with the backend (also when a route outlives it).
    fn drop(&mut self) {
        self.pool.suspend();
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
            own_server: Some(s),
            ..
        }) = gone
        {
            self.pool.remove(&s);
        }
        if let Some(server) = &self.base_server {
            self.pool.release(server, &m.id);
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
        // The in-process model gets the accelerator: servers start again when next used.
        self.suspend();
        self.local.load(m)?;
        self.local.pair_hidden_states(m, pairs)
    }

    fn response_logps(
        &self,
        m: &ModelRef,
        exchanges: &[(&str, &str)],
    ) -> Result<Vec<ResponseLogp>, BackendError> {
        // Servers do not all return prompt log-probs (llama-server does not): the in-process
        // model scores. The servers keep running (the run holds `m`, M0, in this process too,
        // when the hidden-state diagnostic's memory rule allows it): stopping them would cost a
        // restart after every evaluation.
        self.local.load(m)?;
        self.local.response_logps(m, exchanges)
    }

    fn judge_model(&self, m: &ModelRef) -> Result<Box<dyn JudgeModel + '_>, BackendError> {
        Ok(Box::new(self.remote(m)?))
    }

    fn suspend(&self) {
        self.pool.suspend();
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
        // The servers give the accelerator (and memory) back while DPO trains.
        self.suspend();
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
