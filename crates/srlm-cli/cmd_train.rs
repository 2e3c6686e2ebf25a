//! `srlm train-dpo`: DPO (Rafailov et al. 2023) on a preference-pair file, M_{i+1} = DPO(M_i,
//! pairs) with M_i as the reference (its log-probs precomputed once, TRL's default).
//!
//! Settings: the defaults of [`srlm_dpo::DpoConfig`] (TRL names), then `--config FILE.toml`,
//! then the named flags (`--beta`, …), then every `--set key=value` in order. Outputs:
//! the trained model as an HF-style checkpoint in `--out DIR` (loadable by
//! `srlm generate --model DIR`; written atomically), and the per-step metrics log (TRL keys,
//! one JSON object a line) **beside** it, `DIR.dpo_log.jsonl`, so the checkpoint folder stays a
//! clean HF directory (`--log FILE` overrides). Both locations are claimed before any work
//! ([`srlm_core::output`]): a folder srlm did not write is never replaced, an earlier srlm
//! checkpoint or log only with `--overwrite`, and neither may be the pairs file. A progress bar
//! runs on stderr and one summary line goes to stdout.

use anyhow::Context;
use srlm_dpo::{
    read_preference_pairs, tokenize_pairs, DpoConfig, DpoTrainer, MetricsWriter, TrainSummary,
};
use srlm_model::{default_device, LanguageModel};
use srlm_trainer::{ExternalTrainer, TrainerBackend, TrainerConfig, TrainerDtype};
use std::path::{Path, PathBuf};

/// Arguments of `srlm train-dpo`.
#[derive(clap::Args)]
pub struct TrainDpoArgs {
    /// Model to train, also the reference M_i: `default`, a .gguf file, or an HF-style
    /// directory (e.g. an earlier checkpoint).
    #[arg(long, default_value = "default")]
    model: String,
    /// Preference pairs, JSONL: TRL's `{"prompt","chosen","rejected"}` (strings or chat
    /// messages) or srlm's pair records (sampled token ids used as sampled).
    #[arg(long, value_name = "FILE.jsonl")]
    pairs: PathBuf,
    /// Checkpoint folder to write (HF layout). Must be new, empty, or (with `--overwrite`) an
    /// earlier srlm checkpoint.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace an earlier srlm checkpoint at `--out` and its metrics log.
    #[arg(long)]
    overwrite: bool,
    /// Metrics log (JSONL, one line per optimizer step). Default: `<DIR>.dpo_log.jsonl`.
    #[arg(long, value_name = "FILE.jsonl")]
    log: Option<PathBuf>,
    /// Preference loss: `sigmoid` (DPO), `robust`, `hinge`, `ipo` (config `loss_type`).
    #[arg(long)]
    loss_type: Option<String>,
    /// β, strength of the pull towards the reference (config `beta`; default 0.1).
    #[arg(long)]
    beta: Option<f64>,
    /// Peak AdamW learning rate (config `learning_rate`; default 1e-6).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Total optimizer steps; overrides `--epochs` (config `max_steps`).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Passes over the pairs (config `num_train_epochs`; default 1).
    #[arg(long)]
    epochs: Option<u32>,
    /// Pairs per forward/backward pass (config `per_device_train_batch_size`; default 2).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Keep every activation instead of recomputing the attention sublayers in the backward
    /// pass: ~10% faster, ~1 GB more at 4 × 256 tokens (config `gradient_checkpointing`,
    /// default true; this sets it false).
    #[arg(long)]
    no_gradient_checkpointing: bool,
    /// Train a LoRA adapter on the frozen model instead of every weight (config `use_peft`).
    /// The checkpoint is the adapter in PEFT's format. A `--model` that is an adapter is
    /// continued with its own r, α and targets (this flag and the LoRA flags may be left out).
    #[arg(long)]
    use_peft: bool,
    /// LoRA rank r (config `lora_r`; default 8). Implies `--use-peft`.
    #[arg(long)]
    lora_r: Option<usize>,
    /// LoRA α: the update is scaled by α / r (config `lora_alpha`; default 8). Implies
    /// `--use-peft`.
    #[arg(long)]
    lora_alpha: Option<usize>,
    /// Projections that get adapters, by PEFT's names (config `lora_target_modules`; default
    /// `q_proj v_proj`; `all-linear` for all seven). Implies `--use-peft`.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    lora_target_modules: Option<Vec<String>>,
    /// The dtype the model's weights are kept in (TRL's `--dtype`): `float32` (default) or
    /// `bfloat16`. With srlm's own trainer `bfloat16` needs LoRA: the frozen base is kept in
    /// bf16 (half its memory) while the adapter, its AdamW moments and the activations stay
    /// f32. TRL trains in bf16 (`--bf16`); OpenRLHF always does.
    #[arg(long, value_name = "float32|bfloat16")]
    dtype: Option<String>,
    /// TOML file of config fields under TRL's names (`beta = 0.1`, `loss_type = "ipo"`, …).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Sets any config field, applied last and in order: `--set warmup_ratio=0.1`. The value is
    /// JSON (`3`, `0.5`, `null`, `"x"`), or a bare string when it does not parse as JSON.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Which trainer runs DPO: `srlm` (in-process), `trl` (TRL's DPOTrainer as a command:
    /// `scripts/install-trl.sh` installs it) or `openrlhf` (dry run only: `--dry-run`).
    #[arg(long, default_value = "srlm")]
    backend: String,
    /// Print the external trainer's command line and stop (`--backend trl|openrlhf`).
    #[arg(long)]
    dry_run: bool,
    /// Python for the external trainer (default: `scripts/install-trl.sh`'s virtualenv when
    /// installed, else `python3`).
    #[arg(long, value_name = "PYTHON")]
    python: Option<String>,
    /// An accelerate config file for TRL (DeepSpeed ZeRO-3, FSDP: `configs/accelerate/`).
    #[arg(long, value_name = "FILE.yaml")]
    accelerate_config: Option<String>,
    /// Processes (GPUs) the external trainer's launcher starts.
    #[arg(long, default_value_t = 1)]
    num_processes: usize,
}

/// The config from defaults, `--config`, the named flags and `--set`, validated.
fn build_config(a: &TrainDpoArgs) -> anyhow::Result<DpoConfig> {
    let mut cfg = match &a.config {
        Some(path) => DpoConfig::from_toml_file(path)?,
        None => DpoConfig::default(),
    };
    let mut set = |field: &str, v: serde_json::Value, flag: &str| -> anyhow::Result<()> {
        cfg.set(field, v).with_context(|| format!("--{flag}"))
    };
    use serde_json::json;
    if let Some(v) = &a.loss_type {
        set("loss_type", json!(v), "loss-type")?;
    }
    if let Some(v) = a.beta {
        set("beta", json!(v), "beta")?;
    }
    if let Some(v) = a.learning_rate {
        set("learning_rate", json!(v), "learning-rate")?;
    }
    if let Some(v) = a.max_steps {
        set("max_steps", json!(v), "max-steps")?;
    }
    if let Some(v) = a.epochs {
        set("num_train_epochs", json!(v), "epochs")?;
    }
    if let Some(v) = a.batch_size {
        set("per_device_train_batch_size", json!(v), "batch-size")?;
    }
    if a.no_gradient_checkpointing {
        set(
            "gradient_checkpointing",
            json!(false),
            "no-gradient-checkpointing",
        )?;
    }
    let lora_flag = a.lora_r.is_some() || a.lora_alpha.is_some() || a.lora_target_modules.is_some();
    if a.use_peft || lora_flag {
        set("use_peft", json!(true), "use-peft")?;
    }
    if let Some(v) = a.lora_r {
        set("lora_r", json!(v), "lora-r")?;
    }
    if let Some(v) = a.lora_alpha {
        set("lora_alpha", json!(v), "lora-alpha")?;
    }
    if let Some(v) = &a.lora_target_modules {
        let v: Vec<&str> = match v.as_slice() {
            [one] if one == "all-linear" => srlm_model::LoraTarget::ALL
                .iter()
                .map(|t| t.name())
                .collect(),
            _ => v.iter().map(String::as_str).collect(),
        };
        set("lora_target_modules", json!(v), "lora-target-modules")?;
    }
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set `{kv}`: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| json!(v.trim()));
        set(k.trim(), value, "set")?;
    }
    // Once, after every setting: relations between fields do not depend on the flags' order.
    cfg.validate()?;
    Ok(cfg)
}

/// `<parent>/<name>.dpo_log.jsonl` for checkpoint folder `<parent>/<name>`.
fn default_log_path(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out.file_name().with_context(|| {
        format!(
            "--out {}: needs a folder name (or pass --log)",
            out.display()
        )
    })?;
    Ok(out.with_file_name(format!("{}.dpo_log.jsonl", name.to_string_lossy())))
}

/// One summary line: steps, final metrics, throughput, wall time, where things went.
fn summary_line(s: &TrainSummary, log: &Path) -> String {
    let m = &s.final_metrics;
    let tok_s = if s.wall_time_s > 0.0 {
        s.tokens_trained as f64 / s.wall_time_s
    } else {
        0.0
    };
    format!(
        "trained {} step{} ({:.2} epochs, {} pairs): final loss {:.4}, rewards/margins {:+.4}, \
         rewards/accuracies {:.2}, {:.0} trained tokens/s, wall {:.1} s; checkpoint {}; log {}",
        s.steps,
        if s.steps == 1 { "" } else { "s" },
        s.epochs,
        s.filter.kept,
        m.loss,
        m.rewards_margins,
        m.rewards_accuracies,
        tok_s,
        s.wall_time_s,
        s.checkpoint
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        log.display()
    )
}

/// Claims the checkpoint folder and the log before any work: neither may hold something srlm
/// did not write, replace an earlier output without `--overwrite`, or be the pairs file (or
/// hold it); both must be writable.
fn claim_outputs(a: &TrainDpoArgs, log: &Path) -> anyhow::Result<()> {
    use srlm_core::output::{claim_dir, claim_file, is_within, OutputError};
    if is_within(&a.pairs, &a.out) {
        return Err(OutputError::IsInput {
            path: a.out.clone(),
            what: format!("it holds --pairs {}", a.pairs.display()),
        }
        .into());
    }
    let model = Path::new(&a.model);
    if model.exists() && is_within(model, &a.out) {
        return Err(OutputError::IsInput {
            path: a.out.clone(),
            what: format!("--model {}", a.model),
        }
        .into());
    }
    // An adapter's base is an input too: replacing it would leave the adapter without one.
    if let Some(base) = srlm_model::adapter_base(model) {
        if Path::new(&base).exists() && is_within(Path::new(&base), &a.out) {
            return Err(OutputError::IsInput {
                path: a.out.clone(),
                what: format!("the base of the adapter --model {} ({base})", a.model),
            }
            .into());
        }
    }
    if is_within(log, &a.out) {
        anyhow::bail!(
            "--log {}: inside --out {}; the checkpoint folder holds only the model (put the log beside it)",
            log.display(),
            a.out.display()
        );
    }
    claim_dir(&a.out, srlm_model::CHECKPOINT, a.overwrite).context("--out")?;
    claim_file(log, &[("--pairs", &a.pairs)], a.overwrite).context("the metrics log")?;
    Ok(())
}

/// The `[trainer]` settings the flags ask for (`backend = "srlm"` for the in-process trainer).
fn trainer_config(a: &TrainDpoArgs) -> anyhow::Result<TrainerConfig> {
    let backend: TrainerBackend =
        serde_json::from_value(serde_json::json!(a.backend)).map_err(|_| {
            anyhow::anyhow!(
                "--backend `{}`: expected `srlm`, `trl` or `openrlhf`",
                a.backend
            )
        })?;
    let dtype = match a.dtype.as_deref() {
        None if backend == TrainerBackend::Openrlhf => TrainerDtype::Bfloat16,
        None => TrainerDtype::Float32,
        Some(d) => serde_json::from_value(serde_json::json!(d))
            .map_err(|_| anyhow::anyhow!("--dtype `{d}`: expected `float32` or `bfloat16`"))?,
    };
    let config = TrainerConfig {
        backend,
        python: a.python.clone().unwrap_or_default(),
        accelerate_config: a.accelerate_config.clone().unwrap_or_default(),
        num_processes: a.num_processes,
        dtype,
        ..TrainerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// The model to train from. For LoRA (`frozen_base`), its base (an adapter's base included)
/// is kept frozen in that form under the f32 adapter (`LanguageModel::frozen_base`).
fn load_model(
    reference: &str,
    frozen_base: Option<srlm_model::FrozenBase>,
) -> Result<LanguageModel, srlm_model::ModelError> {
    let Some(form) = frozen_base else {
        return LanguageModel::load(reference, &default_device());
    };
    let dir = Path::new(reference);
    match srlm_model::adapter_base(dir) {
        // (A chain of adapters goes to `load`, which names it.)
        Some(base) if !srlm_model::is_adapter_dir(Path::new(&base)) => {
            LanguageModel::load(&base, &default_device())?
                .frozen_base(form)?
                .load_adapter(dir)
        }
        Some(_) => LanguageModel::load(reference, &default_device()),
        None => LanguageModel::load(reference, &default_device())?.frozen_base(form),
    }
}

/// `<parent>/<name>.trainer/` for checkpoint folder `<parent>/<name>`: the external trainer's
/// records (command line, log, its data; M0 as an HF folder when `--model` is not one).
fn records_path(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{name}.trainer"))
}

/// `srlm train-dpo --backend trl`: the same pairs and settings, trained by TRL (srlm-trainer).
fn run_external(
    a: &TrainDpoArgs,
    cfg: &DpoConfig,
    trainer: TrainerConfig,
    log: &Path,
) -> anyhow::Result<()> {
    use srlm_core::output::{claim_dir, write_marker};
    let external = ExternalTrainer::new(trainer)?;
    let records = records_path(&a.out);
    if a.dry_run {
        let data = records.join("pairs.jsonl");
        let output = records.join("output");
        let paths = srlm_trainer::flags::StepPaths {
            model: Path::new(&a.model),
            data: &data,
            output_dir: &output,
            longest_row: cfg.max_length.unwrap_or(1024),
            pairs: 0,
        };
        let argv = external.argv(cfg, &paths, &records.join("trl_dpo.py"))?;
        out!("{}", srlm_trainer::process::command_line(&argv));
        return Ok(());
    }
    // OpenRLHF is refused here, before anything is claimed or loaded.
    let external = ExternalTrainer::for_run(external.config().clone())?;
    claim_dir(&records, TRAINER_RECORDS, a.overwrite).context("the trainer's records")?;
    std::fs::create_dir_all(&records).with_context(|| format!("creating {}", records.display()))?;
    write_marker(&records, TRAINER_RECORDS)?;
    let pairs = read_preference_pairs(&a.pairs)?;
    let model_dir = if srlm_trainer::is_hf_checkpoint(Path::new(&a.model)) {
        PathBuf::from(&a.model)
    } else {
        // TRL cannot fine-tune a quantized GGUF: it gets srlm's f32 HF checkpoint of it.
        let dir = records.join("model");
        if !srlm_trainer::is_hf_checkpoint(&dir) {
            let model = LanguageModel::load(&a.model, &default_device())
                .with_context(|| format!("loading model `{}`", a.model))?;
            model.save(&dir)?;
        }
        dir
    };
    let text = srlm_model::ModelText::load(&model_dir.display().to_string())?;
    eprintln!(
        "train-dpo: {} pairs from {}, model {}, on {} (records in {})",
        pairs.len(),
        a.pairs.display(),
        model_dir.display(),
        external.config().backend.name(),
        records.display()
    );
    let step = external.train(&model_dir, &text, &pairs, cfg, &records)?;
    for f in &step.failures {
        eprintln!("  skipped pair `{}`: {}", f.id, f.message);
    }
    srlm_core::write_jsonl_atomic(log, &step.log.steps)?;
    // TRL's folder (marked as an srlm checkpoint by the trainer) becomes the checkpoint.
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out)
            .with_context(|| format!("replacing {}", a.out.display()))?;
    }
    std::fs::rename(&step.model_dir, &a.out)
        .with_context(|| format!("moving the trained model to {}", a.out.display()))?;
    let m = step
        .log
        .steps
        .last()
        .expect("train() checks a step was logged");
    out!(
        "trained {} step{} on {} ({} pairs): final loss {:.4}, rewards/margins {:+.4}, rewards/accuracies {:.2}, wall {:.1} s; checkpoint {}; log {}; trainer's records {}",
        step.log.steps.len(),
        if step.log.steps.len() == 1 { "" } else { "s" },
        external.config().backend.name(),
        step.pairs,
        m.loss,
        m.rewards_margins,
        m.rewards_accuracies,
        step.wall_seconds,
        a.out.display(),
        log.display(),
        records.display()
    );
    Ok(())
}

/// The marker kind of `<DIR>.trainer/`.
const TRAINER_RECORDS: &str = "trainer-records";

/// Runs `srlm train-dpo`.
pub fn run(a: TrainDpoArgs) -> anyhow::Result<()> {
    if !a.no_progress {
        crate::progress::install();
    }
    let cfg = build_config(&a)?;
    let trainer = trainer_config(&a)?;
    let log = match &a.log {
        Some(p) => p.clone(),
        None => default_log_path(&a.out)?,
    };
    if trainer.is_external() {
        if !a.dry_run {
            claim_outputs(&a, &log)?;
        }
        return run_external(&a, &cfg, trainer, &log);
    }
    if a.dry_run {
        anyhow::bail!(
            "--dry-run shows an external trainer's command: add --backend trl or openrlhf"
        );
    }
    // The trainer's own refusals (e.g. LoRA dropout) before any file is read or model loaded.
    DpoTrainer::new(cfg.clone())?;
    let bf16_base = trainer.dtype == TrainerDtype::Bfloat16;
    let is_adapter = srlm_model::is_adapter_dir(Path::new(&a.model));
    let lora = cfg.use_peft || is_adapter;
    if bf16_base && !lora {
        anyhow::bail!(
            "--dtype bfloat16: srlm's own trainer fine-tunes every weight in float32; bfloat16 keeps the frozen base of LoRA training (add --use-peft), or train with --backend trl"
        );
    }
    claim_outputs(&a, &log)?;
    let pairs = read_preference_pairs(&a.pairs)?;
    let frozen_base = lora.then_some(match bf16_base {
        true => srlm_model::FrozenBase::Bf16,
        false => srlm_model::FrozenBase::Exact,
    });
    let model = load_model(&a.model, frozen_base)
        .with_context(|| format!("loading model `{}`", a.model))?;
    // An adapter given without LoRA settings is continued as it is (its r, α, targets).
    let mut cfg = cfg;
    if let (false, Some(have)) = (cfg.use_peft, model.model.lora_config()) {
        cfg.use_peft = true;
        cfg.lora_r = have.r;
        cfg.lora_alpha = have.lora_alpha.round() as usize;
        cfg.lora_target_modules = have
            .target_modules
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        eprintln!(
            "train-dpo: --model is a LoRA adapter (r {}, lora_alpha {}, {}): continuing it (export it with --merge first to fine-tune every weight)",
            have.r,
            have.lora_alpha,
            cfg.lora_target_modules.join(" ")
        );
    }
    // Full fine-tuning of a model without adapter trains the loaded model itself (no copy).
    let model = match cfg.use_peft || model.model.lora_config().is_some() {
        true => srlm_dpo::initial_policy(&model, &cfg)?,
        false => model,
    };
    let tok = tokenize_pairs(&model, &pairs)?;
    eprintln!(
        "train-dpo: {} pairs from {} ({} failed to tokenize), model {}, loss {} beta {} lr {}",
        tok.pairs.len(),
        a.pairs.display(),
        tok.failures.len(),
        model.origin,
        cfg.loss_type,
        cfg.beta,
        cfg.learning_rate
    );
    for f in &tok.failures {
        eprintln!("  skipped pair `{}`: {}", f.id, f.message);
    }
    // The log is written beside its final name and renamed into place when training ends, so
    // an earlier log (replaced with `--overwrite`) survives a run that fails.
    let partial = log.with_file_name(format!(
        ".{}.partial-{}",
        log.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&partial);
    eprintln!("train-dpo: metrics log {}", log.display());
    let trained = DpoTrainer::new(cfg)?
        .with_metrics(MetricsWriter::append(&partial)?)
        .with_progress(true)
        .with_checkpoint_dir(&a.out)
        .train(&model, &tok.pairs);
    let summary = match trained {
        Ok(s) => s,
        Err(e) => {
            // The steps of a failed run are kept as the log when there is no earlier one (a
            // run that failed before its first step leaves nothing).
            let steps = std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0);
            if steps && !log.exists() {
                let _ = std::fs::rename(&partial, &log);
            } else if steps {
                eprintln!(
                    "train-dpo: the failed run's steps are in {}; {} is the earlier log",
                    partial.display(),
                    log.display()
                );
            } else {
                let _ = std::fs::remove_file(&partial);
            }
            return Err(e.into());
        }
    };
    std::fs::rename(&partial, &log).with_context(|| format!("writing {}", log.display()))?;
    let f = &summary.filter;
    if f.kept < f.total {
        eprintln!(
            "train-dpo: {} of {} pairs dropped (empty response {}, empty prompt {}, chosen = rejected {})",
            f.total - f.kept,
            f.total,
            f.dropped_empty_response,
            f.dropped_empty_prompt,
            f.dropped_identical
        );
    }
    out!("{}", summary_line(&summary, &log));
    Ok(())
}
