//! [`EngineConfig`]: the run config's `[engine]` section — where samples and LLM judgments
//! come from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where sampling and LLM judging run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// srlm's own candle sampler, in the training process.
    #[default]
    InProcess,
    /// A server srlm starts from `command` for each model it needs (or one for M0 and its LoRA
    /// adapters, with `{lora}`), on a free loopback port, and stops when the model is released
    /// (also on errors and Ctrl-C).
    Server,
    /// A server the user runs at `url` (it serves one model: M0).
    Url,
}

/// Known servers: each gives the default `command` and the model form it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServerPreset {
    /// llama.cpp's `llama-server` (reads a GGUF; srlm writes one for each trained model).
    #[default]
    LlamaServer,
    /// vLLM's OpenAI server (reads an HF folder).
    Vllm,
    /// SGLang's server (reads an HF folder).
    Sglang,
}

impl ServerPreset {
    /// The command template of the preset (placeholders: see [`EngineConfig::command`]).
    pub fn command(self) -> &'static str {
        match self {
            ServerPreset::LlamaServer => {
                "llama-server -m {gguf} {lora} --host 127.0.0.1 --port {port} -np {parallel} -c {ctx_size} -t {threads} --no-webui"
            }
            ServerPreset::Vllm => {
                "vllm serve {hf_dir} --host 127.0.0.1 --port {port} --served-model-name srlm --max-logprobs 20 --seed 0"
            }
            ServerPreset::Sglang => {
                "python -m sglang.launch_server --model-path {hf_dir} --host 127.0.0.1 --port {port} --served-model-name srlm"
            }
        }
    }
}

/// The `[engine]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `in-process` (candle), `server` (srlm starts `command` per model) or `url` (a server
    /// the user runs).
    pub kind: EngineKind,
    /// `kind = "server"`: which server's default command (`llama-server`, `vllm`, `sglang`).
    pub server: ServerPreset,
    /// `kind = "server"`: the command template, split like a shell line (no shell runs it);
    /// empty = the preset's. Placeholders: `{gguf}` (the model as a GGUF; srlm writes one for a
    /// trained model), `{hf_dir}` (the model as an HF folder), `{port}` (a free loopback port
    /// srlm picked), `{parallel}`, `{threads}`, `{ctx_size}` (`parallel` × 4096), and
    /// `{lora}` (llama.cpp): with it, M0's server also serves every LoRA model of the run as a
    /// GGUF adapter on M0's base (one process, restarted on the same port when a new adapter
    /// is needed: llama-server loads adapter files only at start) instead of one server per
    /// model.
    pub command: String,
    /// `kind = "url"`: the OpenAI API base, e.g. `http://127.0.0.1:8080/v1`.
    pub url: String,
    /// The `model` field of requests; empty = the first model the server lists at `/v1/models`.
    pub model_name: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// `{parallel}`: the server's decoding slots (llama-server `-np`).
    pub parallel: usize,
    /// `{threads}`: the server's CPU threads (0 = all cores).
    pub threads: usize,
    /// Ask for K samples with one request (`n = K`); `false` sends K requests with seeds
    /// derived from the run's seed (for servers that refuse `n > 1`).
    pub use_n: bool,
    /// Top log-probs asked for in expected-score judging (vLLM's default cap `max_logprobs`
    /// is 20); a digit missing from them counts as probability 0 and the judgment says so.
    pub top_logprobs: usize,
    /// Seconds one request may take.
    pub timeout_seconds: u64,
    /// Retries (with exponential backoff from 0.5 s) on HTTP 429/503 and connection errors.
    pub retries: u32,
    /// Seconds a started server may take to answer its health check.
    pub startup_timeout_seconds: u64,
    /// Weight type of the GGUF srlm writes for a trained model (`f32` or `f16`).
    pub gguf_dtype: String,
    /// `kind = "server"`: at most one server runs at a time — for one GPU that holds one
    /// model: a model's server is stopped when another model is used and started again on
    /// its port when it is next used. Every server also stops while DPO trains (always).
    pub exclusive: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kind: EngineKind::InProcess,
            server: ServerPreset::LlamaServer,
            command: String::new(),
            url: String::new(),
            model_name: String::new(),
            concurrency: 8,
            parallel: 4,
            threads: 0,
            use_n: true,
            top_logprobs: 20,
            timeout_seconds: 600,
            retries: 4,
            startup_timeout_seconds: 300,
            gguf_dtype: "f32".into(),
            exclusive: false,
        }
    }
}

impl EngineConfig {
    /// The command template in force (`command`, else the preset's).
    pub fn command_template(&self) -> &str {
        if self.command.trim().is_empty() {
            self.server.command()
        } else {
            &self.command
        }
    }

    /// Checks the values that cannot be typed.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind == EngineKind::Url
            && !(self.url.starts_with("http://") || self.url.starts_with("https://"))
        {
            return Err(format!("engine.url = {:?}: expected an http(s):// URL (the OpenAI API base, e.g. http://127.0.0.1:8080/v1)", self.url));
        }
        if self.kind == EngineKind::Server {
            let words = shlex::split(self.command_template()).ok_or_else(|| {
                format!(
                    "engine.command {:?}: unbalanced quotes",
                    self.command_template()
                )
            })?;
            if words.is_empty() {
                return Err("engine.command is empty".into());
            }
            if !self.command_template().contains("{port}") {
                return Err("engine.command has no {port}: srlm picks the port".into());
            }
        }
        for (key, v) in [
            ("engine.concurrency", self.concurrency),
            ("engine.parallel", self.parallel),
            ("engine.top_logprobs", self.top_logprobs),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.timeout_seconds == 0 || self.startup_timeout_seconds == 0 {
            return Err(
                "engine.timeout_seconds and engine.startup_timeout_seconds must be at least 1"
                    .into(),
            );
        }
        self.gguf_dtype
            .parse::<srlm_model::GgufDType>()
            .map_err(|e| format!("engine.gguf_dtype: {e}"))?;
        Ok(())
    }
}
