//! srlm-engine: sampling and LLM judging on an inference server through the OpenAI-compatible
//! API (vLLM, SGLang, llama.cpp's `llama-server`, mistral.rs), so that models too large for
//! srlm's in-process f32 sampler — and TSR's three models per iteration, M_i, M0 and M_f — are
//! served by the tools people already run.
//!
//! - [`config`]: the run config's `[engine]` section ([`EngineConfig`]).
//! - [`client`]: `/v1/completions` with a bounded pool, timeouts, retries.
//! - [`server`]: a server process srlm starts per model (port, log, health, stop).
//! - [`managed`]: the servers of a run — restarted on their port when needed, one at a time
//!   if asked, stopped while DPO trains — and llama.cpp's LoRA adapters of M0's base.
//! - [`remote`]: a served model with srlm's own prompt rendering, as srlm-judge's `JudgeModel`.
//!
//! The pipeline's `Generator` port over this crate is `srlm_pipeline::served::ServedBackend`.

#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod managed;
pub mod remote;
pub mod server;

pub use client::{Client, Completion, CompletionRequest, LoraScale};
pub use config::{EngineConfig, EngineKind, ServerPreset};
pub use error::EngineError;
pub use managed::{ManagedServer, ServerPool, ServerRoute};
pub use remote::{request_seed, RemoteModel, Sampled};
pub use server::{ServerProcess, ServerVars};
