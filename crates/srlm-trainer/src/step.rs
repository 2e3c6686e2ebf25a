//! [`ExternalTrainer`]: one DPO step (M_{i+1} or M_f) run by TRL or OpenRLHF.
//!
//! In the step's folder (the run's `iter_<i>/trainer/` or `…/temporary_<n>/trainer/`):
//!
//! | file | what |
//! |---|---|
//! | `pairs.jsonl` | the pairs, tokenized and truncated by srlm ([`crate::data`]) |
//! | `trl_dpo.py` | srlm's TRL launcher (TRL only) |
//! | `command.txt` | the command line, shell-quoted |
//! | `trainer.log` | the trainer's stdout and stderr |
//! | `output/` | the trainer's output folder: the trained model (HF), moved away by the caller |
//! | `srlm_log.jsonl` | TRL's log history, one line per step (written into `output/` while it runs) |
//!
//! A step that was interrupted (srlm killed) is run again from the start: the stale `output/`
//! is removed first (srlm made it). The model is taken only when the trainer exited with 0,
//! left `config.json` and safetensors weights, and logged finite losses.

use crate::config::{TrainerBackend, TrainerConfig};
use crate::data::StepData;
use crate::error::{io_at, TrainerError};
use crate::flags::{openrlhf_args, trl_args, StepPaths};
use crate::log::{count_steps, read_step_log, StepLog};
use crate::process::{command_line, render_command, CommandVars};
use srlm_core::progress::{self, StageKind};
use srlm_core::PreferencePair;
use srlm_dpo::{DpoConfig, FilterStats, PairFailure};
use srlm_model::ModelText;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// srlm's TRL launcher, written next to each step (see the file's docstring).
pub const TRL_LAUNCHER: &str = include_str!("trl_dpo.py");

/// Where `scripts/install-trl.sh` puts its virtualenv's Python.
pub fn cached_trl_python() -> PathBuf {
    srlm_assets::cache_dir().join("tools/trl-1.16.0/venv/bin/python")
}

/// What one external step produced.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The trained model (an HF folder, inside the step folder).
    pub model_dir: PathBuf,
    /// The trainer's step log.
    pub log: StepLog,
    /// Pairs trained on (after truncation).
    pub pairs: usize,
    /// Pairs that could not be tokenized.
    pub failures: Vec<PairFailure>,
    /// What truncation did.
    pub filter: FilterStats,
    /// Tokens through the policy (prompt + response, both rows, no padding), all steps.
    pub tokens_trained: u64,
    /// Tokens through the reference model.
    pub reference_tokens: u64,
    /// Wall time of the step, seconds (the trainer's start-up included).
    pub wall_seconds: f64,
    /// The command line that ran.
    pub command: String,
}

/// A trainer run as a command.
#[derive(Debug, Clone)]
pub struct ExternalTrainer {
    config: TrainerConfig,
}

impl ExternalTrainer {
    /// A trainer for `config` (its backend must not be `srlm`).
    ///
    /// # Errors
    /// [`TrainerError::Config`].
    pub fn new(config: TrainerConfig) -> Result<Self, TrainerError> {
        config.validate().map_err(TrainerError::Config)?;
        if !config.is_external() {
            return Err(TrainerError::Config(
                "trainer.backend = \"srlm\" runs in-process, not as a command".into(),
            ));
        }
        Ok(ExternalTrainer { config })
    }

    /// A trainer that [`ExternalTrainer::train`] can run: [`ExternalTrainer::new`], refusing
    /// OpenRLHF before any work (its steps are logged only to wandb / TensorBoard, so srlm
    /// cannot take back the step log: metrics, NaN checks, token counts). OpenRLHF's command
    /// line is still available from [`ExternalTrainer::new`] and [`ExternalTrainer::argv`].
    ///
    /// # Errors
    /// [`TrainerError::Config`].
    pub fn for_run(config: TrainerConfig) -> Result<Self, TrainerError> {
        if config.backend == TrainerBackend::Openrlhf {
            return Err(openrlhf_refused());
        }
        Self::new(config)
    }

    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The Python interpreter `{python}` stands for.
    pub fn python(&self) -> String {
        if !self.config.python.trim().is_empty() {
            return self.config.python.clone();
        }
        let cached = cached_trl_python();
        if cached.is_file() {
            cached.display().to_string()
        } else {
            "python3".into()
        }
    }

    /// The command line of a step (also what `srlm run --dry-run` prints).
    ///
    /// # Errors
    /// [`TrainerError::Config`] for a setting the trainer cannot express or a bad template.
    pub fn argv(
        &self,
        dpo: &DpoConfig,
        paths: &StepPaths<'_>,
        launcher: &Path,
    ) -> Result<Vec<String>, TrainerError> {
        let args = match self.config.backend {
            TrainerBackend::Trl => trl_args(dpo, &self.config, paths),
            TrainerBackend::Openrlhf => openrlhf_args(dpo, &self.config, paths),
            TrainerBackend::Srlm => unreachable!("checked in new"),
        }
        .map_err(TrainerError::Config)?;
        let accelerate_args = if self.config.accelerate_config.trim().is_empty() {
            Vec::new()
        } else {
            vec![
                "--config_file".into(),
                self.config.accelerate_config.clone(),
            ]
        };
        render_command(
            self.config.command_template(),
            &CommandVars {
                python: self.python(),
                launcher: launcher.display().to_string(),
                num_processes: self.config.num_processes,
                accelerate_args,
                args,
            },
        )
    }

    /// Optimizer steps HF's Trainer will take for `pairs` pairs.
    pub fn expected_steps(&self, dpo: &DpoConfig, pairs: usize) -> u64 {
        if let Some(s) = dpo.max_steps {
            return s;
        }
        let batches = pairs.div_ceil(dpo.per_device_train_batch_size * self.config.num_processes);
        let per_epoch = (batches / dpo.gradient_accumulation_steps.max(1)).max(1);
        per_epoch as u64 * u64::from(dpo.num_train_epochs)
    }

    /// Runs DPO(`model_dir`, `pairs`) in `work` (see the module docs). `text` is the model's
    /// tokenizer and chat template (no weights are loaded by srlm). The trained model in
    /// [`StepResult::model_dir`] carries srlm's checkpoint marker and `torch_dtype`, so srlm
    /// may replace it and publish it under a second name by hard links
    /// (`srlm_model::link_checkpoint`).
    ///
    /// # Errors
    /// Every [`TrainerError`]: data, config, start, exit status, missing output, NaN in the log;
    /// an OpenRLHF trainer (see [`ExternalTrainer::for_run`]).
    pub fn train(
        &self,
        model_dir: &Path,
        text: &ModelText,
        pairs: &[PreferencePair],
        dpo: &DpoConfig,
        work: &Path,
    ) -> Result<StepResult, TrainerError> {
        if self.config.backend == TrainerBackend::Openrlhf {
            return Err(openrlhf_refused());
        }
        let t0 = Instant::now();
        std::fs::create_dir_all(work).map_err(io_at(work))?;
        let output = work.join("output");
        if output.exists() {
            // Left by an interrupted attempt of this step: srlm's own folder.
            std::fs::remove_dir_all(&output).map_err(io_at(&output))?;
        }
        let data = StepData::prepare(text, pairs, dpo)?;
        let data_path = work.join("pairs.jsonl");
        data.write(&data_path)?;
        let launcher = work.join("trl_dpo.py");
        if self.config.backend == TrainerBackend::Trl {
            srlm_core::write_atomic(&launcher, TRL_LAUNCHER.as_bytes()).map_err(|e| {
                TrainerError::Io {
                    path: launcher.clone(),
                    error: std::io::Error::other(e.to_string()),
                }
            })?;
        }
        let paths = StepPaths {
            model: model_dir,
            data: &data_path,
            output_dir: &output,
            longest_row: data.longest_row(),
            pairs: data.pairs.len(),
        };
        let argv = self.argv(dpo, &paths, &launcher)?;
        let command = command_line(&argv);
        let command_file = work.join("command.txt");
        srlm_core::write_atomic(&command_file, format!("{command}\n").as_bytes()).map_err(|e| {
            TrainerError::Io {
                path: command_file.clone(),
                error: std::io::Error::other(e.to_string()),
            }
        })?;
        let log_file = work.join("trainer.log");
        let step_log = output.join("srlm_log.jsonl");
        let expected = self.expected_steps(dpo, data.pairs.len());
        {
            let stage = progress::stage(
                StageKind::Training,
                format!(
                    "DPO on {} ({} pairs)",
                    self.config.backend.name(),
                    data.pairs.len()
                ),
                expected,
                "steps",
            );
            let mut shown = 0;
            crate::process::run(&argv, &log_file, || {
                let now = count_steps(&step_log);
                if now > shown {
                    stage.advance(now - shown);
                    shown = now;
                }
            })?;
        }
        let missing = |what: &str| TrainerError::MissingOutput {
            dir: output.clone(),
            missing: what.into(),
            log: log_file.clone(),
        };
        if !output.join("config.json").is_file() {
            return Err(missing("config.json"));
        }
        if !is_hf_checkpoint(&output) {
            return Err(missing("model.safetensors"));
        }
        if !step_log.is_file() {
            return Err(missing("srlm_log.jsonl"));
        }
        let log = read_step_log(&step_log)?;
        if log.steps.is_empty() {
            return Err(missing("a logged step in srlm_log.jsonl"));
        }
        // The step log stays with the step's records, not in the model folder.
        let kept = work.join("srlm_log.jsonl");
        std::fs::rename(&step_log, &kept).map_err(io_at(&kept))?;
        mark_as_checkpoint(&output)?;
        let tokens_trained: u64 = log.steps.iter().map(|s| s.tokens).sum();
        let reference_tokens = if dpo.precompute_ref_log_probs {
            data.tokens_per_epoch()
        } else {
            tokens_trained
        };
        Ok(StepResult {
            model_dir: output,
            log,
            pairs: data.pairs.len(),
            failures: data.failures,
            filter: data.filter,
            tokens_trained,
            reference_tokens,
            wall_seconds: t0.elapsed().as_secs_f64(),
            command,
        })
    }
}

/// Why an OpenRLHF step is not run (see [`ExternalTrainer::for_run`]).
fn openrlhf_refused() -> TrainerError {
    TrainerError::Config(
        "trainer.backend = \"openrlhf\" gives a dry run only (the command line srlm would run: `srlm run --dry-run`, `srlm train-dpo --backend openrlhf --dry-run`); a run needs a step log OpenRLHF does not write: use trainer.backend = \"trl\" (TRL under accelerate with DeepSpeed ZeRO-3 or FSDP)"
            .into(),
    )
}

/// Whether `dir` is an HF checkpoint folder: `config.json` and safetensors weights (one file
/// or an index of shards).
pub fn is_hf_checkpoint(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

/// Marks a trainer's output folder as an srlm checkpoint and records its weights type as
/// `torch_dtype` (transformers 5 writes `dtype`; transformers reads both).
fn mark_as_checkpoint(dir: &Path) -> Result<(), TrainerError> {
    let path = dir.join("config.json");
    let io = |e: &dyn std::fmt::Display| TrainerError::Io {
        path: path.clone(),
        error: std::io::Error::other(e.to_string()),
    };
    let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(&e))?;
    if config.get("torch_dtype").and_then(|v| v.as_str()).is_none() {
        if let Some(d) = config
            .get("dtype")
            .and_then(|v| v.as_str())
            .map(String::from)
        {
            config["torch_dtype"] = serde_json::Value::String(d);
            let text = serde_json::to_string_pretty(&config).expect("json");
            srlm_core::write_atomic(&path, text.as_bytes()).map_err(|e| io(&e))?;
        }
    }
    srlm_core::output::write_marker(dir, srlm_model::CHECKPOINT).map_err(|e| io(&e))
}
