//! [`TrainerConfig`]: the run config's `[trainer]` section — which program runs DPO.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which trainer runs each DPO step (M_{i+1} and TSR's temporary M_f).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerBackend {
    /// srlm's own trainer (srlm-dpo on candle), in the srlm process: CPUs and one GPU.
    #[default]
    Srlm,
    /// TRL's `DPOTrainer` (Hugging Face), run as a command: one process, or several under
    /// `accelerate launch` with DeepSpeed ZeRO or FSDP (`accelerate_config`).
    Trl,
    /// OpenRLHF's `openrlhf.cli.train_dpo` under the `deepspeed` launcher (GPUs only).
    Openrlhf,
}

impl TrainerBackend {
    /// The default command template of the backend (placeholders: [`TrainerConfig::command`]).
    pub fn default_command(self) -> &'static str {
        match self {
            TrainerBackend::Srlm => "",
            TrainerBackend::Trl => {
                "{python} -m accelerate.commands.launch {accelerate_args} --num_processes {num_processes} {launcher} {args}"
            }
            TrainerBackend::Openrlhf => {
                "deepspeed --num_gpus {num_processes} --module openrlhf.cli.train_dpo {args}"
            }
        }
    }

    /// The name used in configs and messages.
    pub fn name(self) -> &'static str {
        match self {
            TrainerBackend::Srlm => "srlm",
            TrainerBackend::Trl => "trl",
            TrainerBackend::Openrlhf => "openrlhf",
        }
    }
}

/// The weights type the trainer loads the model in and trains with. For srlm's own trainer
/// `bfloat16` is for LoRA (`dpo.use_peft`) only: the frozen base shared by a run's models is
/// kept in bf16, while adapters, their gradients and AdamW moments, and activations stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerDtype {
    /// f32 weights, no mixed precision: the same numbers as srlm's own trainer (CPU).
    #[default]
    Float32,
    /// bf16 weights with bf16 mixed precision: what GPUs train 8B–70B models with.
    Bfloat16,
}

/// The `[trainer]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// `srlm` (in-process, default), `trl` or `openrlhf`.
    pub backend: TrainerBackend,
    /// The command template, split like a shell line (no shell runs it); empty = the
    /// backend's default. Placeholders: `{python}`, `{launcher}` (srlm's TRL launcher script,
    /// written into the step's `trainer/` folder), `{num_processes}`, `{accelerate_args}`
    /// (`--config_file FILE` when `accelerate_config` is set, else nothing), `{args}` (the DPO
    /// settings as the trainer's flags, with the model, data and output folder). The last two
    /// stand alone as words and expand to several.
    pub command: String,
    /// The Python interpreter for `{python}`; empty = the virtualenv of
    /// `scripts/install-trl.sh` in srlm's cache when it exists, else `python3`.
    pub python: String,
    /// An accelerate config file (e.g. `configs/accelerate/zero3.yaml`, `fsdp.yaml`).
    pub accelerate_config: String,
    /// Processes (GPUs) the launcher starts on this node.
    pub num_processes: usize,
    /// Weights type of the trainer's model.
    pub dtype: TrainerDtype,
    /// More flags, appended to `{args}` (e.g. `["--ds.zero_stage", "3"]`, `["--use_cpu"]`).
    pub extra_args: Vec<String>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            backend: TrainerBackend::Srlm,
            command: String::new(),
            python: String::new(),
            accelerate_config: String::new(),
            num_processes: 1,
            dtype: TrainerDtype::Float32,
            extra_args: Vec::new(),
        }
    }
}

impl TrainerConfig {
    /// Whether DPO runs outside srlm.
    pub fn is_external(&self) -> bool {
        self.backend != TrainerBackend::Srlm
    }

    /// The command template in effect.
    pub fn command_template(&self) -> &str {
        if self.command.trim().is_empty() {
            self.backend.default_command()
        } else {
            &self.command
        }
    }

    /// What identifies the trainer's results besides the DPO config (joins the memo store's
    /// key of trained models): `None` for srlm's own trainer, so its keys stay as they were.
    pub fn trainer_id(&self) -> Option<String> {
        self.is_external().then(|| {
            format!(
                "{}:{:?}:{}",
                self.backend.name(),
                self.dtype,
                self.extra_args.join(" ")
            )
        })
    }

    /// Checks the section.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_processes == 0 {
            return Err("trainer.num_processes must be at least 1".into());
        }
        if self.backend == TrainerBackend::Openrlhf && self.dtype == TrainerDtype::Float32 {
            // OpenRLHF always trains in bf16 under DeepSpeed; f32 would be a silent lie.
            return Err(
                "trainer.backend = \"openrlhf\" trains in bf16 (DeepSpeed): set trainer.dtype = \"bfloat16\""
                    .into(),
            );
        }
        if !self.command.trim().is_empty() && shlex::split(&self.command).is_none() {
            return Err(format!(
                "trainer.command {:?}: unbalanced quotes",
                self.command
            ));
        }
        Ok(())
    }
}
