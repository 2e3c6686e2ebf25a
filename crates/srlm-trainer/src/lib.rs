//! srlm-trainer: DPO steps handed to an external trainer as a command, for models that
//! outgrow srlm's own trainer (one process, f32): TRL's `DPOTrainer` (Hugging Face; one
//! process, or `accelerate launch` with DeepSpeed ZeRO-3 / FSDP over GPUs and nodes) or
//! OpenRLHF's `train_dpo` under DeepSpeed.
//!
//! srlm keeps what defines the experiment: it tokenizes the pairs ([`data`]; the same tokens as
//! its own trainer, cases T1–T4), maps its DPO settings to the trainer's flags ([`flags`]),
//! runs the command ([`process`]) with its log in the run folder, and takes back the HF
//! checkpoint and the step log with TRL's metric names ([`log`]). [`ExternalTrainer`] does one
//! step; srlm-pipeline's `external` module makes it the run's `Trainer` port.
//!
//! - [`config`]: the `[trainer]` section ([`TrainerConfig`]).
//! - [`step`]: [`ExternalTrainer`] (folder layout, failure checks).

pub mod config;
pub mod data;
pub mod error;
pub mod flags;
pub mod log;
pub mod process;
pub mod step;

pub use config::{TrainerBackend, TrainerConfig, TrainerDtype};
pub use error::TrainerError;
pub use step::{cached_trl_python, is_hf_checkpoint, ExternalTrainer, StepResult, TRL_LAUNCHER};
