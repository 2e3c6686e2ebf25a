//! The DPO settings as an external trainer's command-line flags.
//!
//! srlm's [`DpoConfig`] uses TRL's `DPOConfig` / HF `TrainingArguments` names, so the TRL
//! flags are the same words; OpenRLHF's `train_dpo` (0.11) names them differently
//! (`--model.beta`, `--adam.lr`, `--train.max_epochs`, …) and lacks some settings, which are
//! refused rather than dropped. `tests/fixtures/openrlhf-0.11.2-train_dpo-flags.txt` lists
//! OpenRLHF's flags (read from its PyPI wheel by `scripts/openrlhf-flags.py`); a test checks
//! every flag srlm emits against it.

use crate::config::{TrainerConfig, TrainerDtype};
use srlm_dpo::{DpoConfig, LossType, LrSchedulerType};
use std::path::Path;

/// The inputs of one external DPO step.
#[derive(Debug, Clone)]
pub struct StepPaths<'a> {
    /// The policy's starting point and reference: an HF checkpoint folder.
    pub model: &'a Path,
    /// The pairs (JSONL written by [`crate::data::write_pairs`]).
    pub data: &'a Path,
    /// Where the trainer writes the trained model.
    pub output_dir: &'a Path,
    /// The longest row (prompt + response tokens) of the data, after srlm's truncation.
    pub longest_row: usize,
    /// Pairs in the data (OpenRLHF needs the step count for a warmup given in steps).
    pub pairs: usize,
}

fn num(x: f64) -> String {
    // Shortest form that parses back to the same f64 (e.g. 1e-6, 0.1).
    format!("{x:?}")
}

fn flag(args: &mut Vec<String>, name: &str, value: impl Into<String>) {
    args.push(format!("--{name}"));
    args.push(value.into());
}

/// TRL's `trl dpo` flags (also those of srlm's launcher, which parses them with TRL's own
/// `TrlParser`) for one step. `max_prompt_length` is not passed: srlm truncated the data
/// already, and `max_length` is set to the data's longest row when srlm has no limit (TRL
/// would cut at its default 1024).
///
/// # Errors
/// A message for a setting TRL 1.16 cannot express.
pub fn trl_args(
    dpo: &DpoConfig,
    trainer: &TrainerConfig,
    paths: &StepPaths<'_>,
) -> Result<Vec<String>, String> {
    let mut a = Vec::new();
    flag(
        &mut a,
        "model_name_or_path",
        paths.model.display().to_string(),
    );
    flag(&mut a, "dataset_name", paths.data.display().to_string());
    flag(&mut a, "output_dir", paths.output_dir.display().to_string());
    match trainer.dtype {
        TrainerDtype::Float32 => {
            flag(&mut a, "dtype", "float32");
            flag(&mut a, "bf16", "false");
        }
        TrainerDtype::Bfloat16 => {
            flag(&mut a, "dtype", "bfloat16");
            flag(&mut a, "bf16", "true");
        }
    }
    flag(&mut a, "beta", num(dpo.beta));
    match dpo.rpo_alpha {
        // RPO (Pang et al. 2024) in TRL 1.x: the DPO loss plus the chosen NLL ("sft") weighted.
        Some(alpha) => {
            a.extend([
                "--loss_type".into(),
                dpo.loss_type.as_str().into(),
                "sft".into(),
            ]);
            a.extend(["--loss_weights".into(), "1.0".into(), num(alpha)]);
        }
        None => flag(&mut a, "loss_type", dpo.loss_type.as_str()),
    }
    flag(&mut a, "label_smoothing", num(dpo.label_smoothing));
    flag(&mut a, "learning_rate", num(dpo.learning_rate));
    flag(
        &mut a,
        "lr_scheduler_type",
        match dpo.lr_scheduler_type {
            // srlm's `constant` keeps its warmup; HF's plain `constant` would ignore it.
            LrSchedulerType::Constant => "constant_with_warmup",
            LrSchedulerType::Linear => "linear",
            LrSchedulerType::Cosine => "cosine",
        },
    );
    // transformers 5 has one `warmup_steps`: a count when ≥ 1, a fraction of the steps
    // (rounded up, as srlm does) when below 1.
    if dpo.warmup_steps > 0 {
        flag(&mut a, "warmup_steps", dpo.warmup_steps.to_string());
    } else if dpo.warmup_ratio >= 1.0 {
        return Err("warmup_ratio = 1 cannot be given to transformers 5 (it reads warmup_steps ≥ 1 as a step count); use warmup_steps".into());
    } else {
        flag(&mut a, "warmup_steps", num(dpo.warmup_ratio));
    }
    flag(&mut a, "num_train_epochs", dpo.num_train_epochs.to_string());
    flag(
        &mut a,
        "max_steps",
        dpo.max_steps.map_or("-1".into(), |s| s.to_string()),
    );
    flag(
        &mut a,
        "per_device_train_batch_size",
        dpo.per_device_train_batch_size.to_string(),
    );
    flag(
        &mut a,
        "gradient_accumulation_steps",
        dpo.gradient_accumulation_steps.to_string(),
    );
    // HF clips only when max_grad_norm > 0.
    flag(
        &mut a,
        "max_grad_norm",
        num(dpo.max_grad_norm.unwrap_or(0.0)),
    );
    flag(&mut a, "weight_decay", num(dpo.weight_decay));
    flag(&mut a, "adam_beta1", num(dpo.adam_beta1));
    flag(&mut a, "adam_beta2", num(dpo.adam_beta2));
    flag(&mut a, "adam_epsilon", num(dpo.adam_epsilon));
    flag(
        &mut a,
        "max_length",
        dpo.max_length
            .unwrap_or(paths.longest_row)
            .max(paths.longest_row)
            .to_string(),
    );
    flag(
        &mut a,
        "precompute_ref_log_probs",
        dpo.precompute_ref_log_probs.to_string(),
    );
    flag(
        &mut a,
        "gradient_checkpointing",
        dpo.gradient_checkpointing.to_string(),
    );
    flag(&mut a, "seed", dpo.seed.to_string());
    if dpo.use_peft {
        // TRL's ModelConfig names; PEFT's LoraConfig underneath.
        flag(&mut a, "use_peft", "true");
        flag(&mut a, "lora_r", dpo.lora_r.to_string());
        flag(&mut a, "lora_alpha", dpo.lora_alpha.to_string());
        flag(&mut a, "lora_dropout", num(dpo.lora_dropout));
        a.push("--lora_target_modules".into());
        a.extend(dpo.lora_target_modules.iter().cloned());
    }
    flag(&mut a, "logging_steps", "1");
    flag(&mut a, "save_strategy", "no");
    flag(&mut a, "report_to", "none");
    a.extend(trainer.extra_args.iter().cloned());
    Ok(a)
}

/// OpenRLHF's `openrlhf.cli.train_dpo` flags (version 0.11) for one step. The data goes as
/// rendered text (`prompt`, `chosen`, `rejected` keys, no `--data.apply_chat_template`):
/// OpenRLHF takes no token ids, joins prompt and response before tokenizing, and ends each
/// response at the tokenizer's EOS (ChatML: `<|im_end|>` without the newline srlm trains).
///
/// # Errors
/// A message naming a setting OpenRLHF cannot express (`hinge` and `robust` losses,
/// `max_steps`, no gradient clipping, an f32 run).
pub fn openrlhf_args(
    dpo: &DpoConfig,
    trainer: &TrainerConfig,
    paths: &StepPaths<'_>,
) -> Result<Vec<String>, String> {
    let refuse = |what: &str| Err(format!("trainer.backend = \"openrlhf\": {what}"));
    let mut a = Vec::new();
    flag(
        &mut a,
        "model.model_name_or_path",
        paths.model.display().to_string(),
    );
    flag(&mut a, "data.dataset", paths.data.display().to_string());
    flag(&mut a, "data.prompt_key", "prompt");
    flag(&mut a, "data.chosen_key", "chosen");
    flag(&mut a, "data.rejected_key", "rejected");
    flag(
        &mut a,
        "ckpt.output_dir",
        paths.output_dir.display().to_string(),
    );
    if trainer.dtype != TrainerDtype::Bfloat16 {
        return refuse("OpenRLHF trains in bf16 under DeepSpeed; set trainer.dtype = \"bfloat16\"");
    }
    flag(&mut a, "ds.param_dtype", "bf16");
    flag(&mut a, "model.beta", num(dpo.beta));
    match dpo.loss_type {
        LossType::Sigmoid => {}
        LossType::Ipo => a.push("--model.ipo_enable".into()),
        other => {
            return refuse(&format!(
                "loss_type = \"{}\" has no OpenRLHF equivalent (sigmoid, ipo)",
                other.as_str()
            ))
        }
    }
    flag(&mut a, "model.label_smoothing", num(dpo.label_smoothing));
    if let Some(alpha) = dpo.rpo_alpha {
        flag(&mut a, "model.nll_loss_coef", num(alpha));
    }
    flag(&mut a, "adam.lr", num(dpo.learning_rate));
    a.extend([
        "--adam.betas".into(),
        num(dpo.adam_beta1),
        num(dpo.adam_beta2),
    ]);
    flag(&mut a, "adam.eps", num(dpo.adam_epsilon));
    flag(&mut a, "adam.weight_decay", num(dpo.weight_decay));
    flag(
        &mut a,
        "lr_scheduler",
        match dpo.lr_scheduler_type {
            LrSchedulerType::Constant => "constant_with_warmup",
            LrSchedulerType::Linear => "linear",
            LrSchedulerType::Cosine => "cosine",
        },
    );
    let global_batch =
        dpo.per_device_train_batch_size * dpo.gradient_accumulation_steps * trainer.num_processes;
    let warmup_ratio = if dpo.warmup_steps > 0 {
        let steps_per_epoch = paths.pairs.div_ceil(global_batch.max(1)).max(1);
        let total = steps_per_epoch as f64 * f64::from(dpo.num_train_epochs.max(1));
        (dpo.warmup_steps as f64 / total).min(1.0)
    } else {
        dpo.warmup_ratio
    };
    flag(&mut a, "lr_warmup_ratio", num(warmup_ratio));
    // srlm's schedules decay to 0 (HF); OpenRLHF's min_lr_ratio only acts on its own
    // `cosine_with_min_lr`, which srlm does not use.
    if dpo.max_steps.is_some() {
        return refuse("max_steps has no OpenRLHF equivalent; use num_train_epochs");
    }
    flag(&mut a, "train.max_epochs", dpo.num_train_epochs.to_string());
    flag(
        &mut a,
        "train.micro_batch_size",
        dpo.per_device_train_batch_size.to_string(),
    );
    flag(&mut a, "train.batch_size", global_batch.to_string());
    match dpo.max_grad_norm {
        Some(n) => flag(&mut a, "max_norm", num(n)),
        None => return refuse("gradient clipping cannot be turned off (max_grad_norm)"),
    }
    flag(
        &mut a,
        "data.max_len",
        dpo.max_length
            .unwrap_or(paths.longest_row)
            .max(paths.longest_row)
            .to_string(),
    );
    if dpo.gradient_checkpointing {
        a.push("--model.gradient_checkpointing_enable".into());
    }
    flag(&mut a, "train.seed", dpo.seed.to_string());
    if dpo.use_peft {
        flag(&mut a, "ds.lora.rank", dpo.lora_r.to_string());
        flag(&mut a, "ds.lora.alpha", dpo.lora_alpha.to_string());
        flag(&mut a, "ds.lora.dropout", num(dpo.lora_dropout));
        a.push("--ds.lora.target_modules".into());
        a.extend(dpo.lora_target_modules.iter().cloned());
    }
    flag(&mut a, "logger.logging_steps", "1");
    a.extend(trainer.extra_args.iter().cloned());
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> StepPaths<'static> {
        StepPaths {
            model: Path::new("/m"),
            data: Path::new("/d.jsonl"),
            output_dir: Path::new("/o"),
            longest_row: 300,
            pairs: 10,
        }
    }

    fn value<'a>(args: &'a [String], name: &str) -> &'a str {
        let i = args
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        &args[i + 1]
    }

    #[test]
    fn trl_flags_carry_every_setting_under_trls_names() {
        let dpo = DpoConfig {
            beta: 0.25,
            learning_rate: 5e-6,
            num_train_epochs: 2,
            max_length: None,
            max_grad_norm: None,
            lr_scheduler_type: LrSchedulerType::Constant,
            ..DpoConfig::default()
        };
        let a = trl_args(&dpo, &TrainerConfig::default(), &paths()).unwrap();
        assert_eq!(value(&a, "--beta"), "0.25");
        assert_eq!(value(&a, "--learning_rate"), "5e-6");
        assert_eq!(value(&a, "--num_train_epochs"), "2");
        assert_eq!(value(&a, "--max_steps"), "-1");
        assert_eq!(
            value(&a, "--max_length"),
            "300",
            "no limit: the longest row"
        );
        assert_eq!(
            value(&a, "--max_grad_norm"),
            "0.0",
            "HF: 0 turns clipping off"
        );
        assert_eq!(value(&a, "--lr_scheduler_type"), "constant_with_warmup");
        assert_eq!(value(&a, "--warmup_steps"), "0.0");
        let ratio = DpoConfig {
            warmup_ratio: 0.1,
            ..DpoConfig::default()
        };
        let r = trl_args(&ratio, &TrainerConfig::default(), &paths()).unwrap();
        assert_eq!(value(&r, "--warmup_steps"), "0.1", "below 1: a fraction");
        assert_eq!(value(&a, "--dtype"), "float32");
        assert_eq!(value(&a, "--bf16"), "false");
        assert_eq!(value(&a, "--loss_type"), "sigmoid");
        assert_eq!(value(&a, "--per_device_train_batch_size"), "2");
        assert_eq!(value(&a, "--seed"), "42");
        assert_eq!(value(&a, "--precompute_ref_log_probs"), "true");
    }

    #[test]
    fn lora_settings_become_trl_and_openrlhf_flags() {
        let dpo = DpoConfig {
            use_peft: true,
            lora_r: 16,
            lora_alpha: 32,
            lora_target_modules: vec!["q_proj".into(), "k_proj".into()],
            ..DpoConfig::default()
        };
        let a = trl_args(&dpo, &TrainerConfig::default(), &paths()).unwrap();
        assert_eq!(value(&a, "--use_peft"), "true");
        assert_eq!(value(&a, "--lora_r"), "16");
        assert_eq!(value(&a, "--lora_alpha"), "32");
        let i = a.iter().position(|x| x == "--lora_target_modules").unwrap();
        assert_eq!(a[i + 1..i + 3], ["q_proj", "k_proj"]);
        let orl = TrainerConfig {
            backend: crate::TrainerBackend::Openrlhf,
            dtype: TrainerDtype::Bfloat16,
            ..TrainerConfig::default()
        };
        let a = openrlhf_args(&dpo, &orl, &paths()).unwrap();
        assert_eq!(value(&a, "--ds.lora.rank"), "16");
        assert_eq!(value(&a, "--ds.lora.alpha"), "32");
        let plain = trl_args(&DpoConfig::default(), &TrainerConfig::default(), &paths()).unwrap();
        assert!(!plain
            .iter()
            .any(|x| x.contains("lora") || x == "--use_peft"));
    }

    #[test]
    fn rpo_is_sigmoid_plus_a_weighted_sft_term() {
        let dpo = DpoConfig {
            rpo_alpha: Some(0.5),
            ..DpoConfig::default()
        };
        let a = trl_args(&dpo, &TrainerConfig::default(), &paths()).unwrap();
        let i = a.iter().position(|x| x == "--loss_type").unwrap();
        assert_eq!(a[i + 1..i + 3], ["sigmoid", "sft"]);
        let i = a.iter().position(|x| x == "--loss_weights").unwrap();
        assert_eq!(a[i + 1..i + 3], ["1.0", "0.5"]);
    }

    #[test]
    fn openrlhf_maps_names_and_refuses_what_it_cannot_do() {
        let trainer = TrainerConfig {
            backend: crate::TrainerBackend::Openrlhf,
            dtype: TrainerDtype::Bfloat16,
            num_processes: 8,
            ..TrainerConfig::default()
        };
        let dpo = DpoConfig {
            gradient_accumulation_steps: 4,
            warmup_steps: 1,
            ..DpoConfig::default()
        };
        let a = openrlhf_args(&dpo, &trainer, &paths()).unwrap();
        assert_eq!(value(&a, "--train.batch_size"), "64", "2 × 4 × 8 GPUs");
        assert_eq!(value(&a, "--train.micro_batch_size"), "2");
        assert_eq!(value(&a, "--adam.lr"), "1e-6");
        assert_eq!(value(&a, "--model.beta"), "0.1");
        assert_eq!(
            value(&a, "--lr_warmup_ratio"),
            "1.0",
            "1 of 1 step (10 pairs, batch 64)"
        );
        for bad in [
            DpoConfig {
                loss_type: LossType::Hinge,
                ..DpoConfig::default()
            },
            DpoConfig {
                max_steps: Some(3),
                ..DpoConfig::default()
            },
            DpoConfig {
                max_grad_norm: None,
                ..DpoConfig::default()
            },
        ] {
            let e = openrlhf_args(&bad, &trainer, &paths()).unwrap_err();
            assert!(e.starts_with("trainer.backend = \"openrlhf\""), "{e}");
        }
        let f32 = TrainerConfig {
            dtype: TrainerDtype::Float32,
            ..trainer
        };
        assert!(openrlhf_args(&DpoConfig::default(), &f32, &paths()).is_err());
    }
}
