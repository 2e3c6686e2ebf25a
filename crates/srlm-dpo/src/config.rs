//! [`DpoConfig`]: every training setting, under TRL's `DPOConfig` names, with validation.

use crate::error::{config_err, Result};
use crate::loss::LossType;
use crate::schedule::LrSchedulerType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DPO training settings. Field names follow TRL's `DPOConfig` / HF `TrainingArguments`.
///
/// Unknown fields are rejected when deserialising, so a typo in `--set` fails loudly.
/// Call [`DpoConfig::validate`] (the trainer does) to check ranges; errors name the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// β, the strength of the KL penalty towards the reference (DPO's β, IPO's τ). Default 0.1.
    pub beta: f64,
    /// The preference loss (`sigmoid`, `robust`, `hinge`, `ipo`). Default `sigmoid`.
    pub loss_type: LossType,
    /// Label smoothing ε for `sigmoid` (cDPO) and `robust`, in [0, 0.5). Default 0.
    pub label_smoothing: f64,
    /// Weight of RPO's NLL term on the chosen responses (Pang et al. 2024); `None` disables it.
    pub rpo_alpha: Option<f64>,
    /// Peak AdamW learning rate. Default 1e-6, TRL's default and the DPO learning rate of
    /// Yuan et al. 2024. It moves a 135M model slowly: a few steps change the margins only a
    /// little, which is what an iteration of self-rewarding wants (stay close to M_i); raise it
    /// (e.g. 5e-6) for short smoke runs that must show learning.
    pub learning_rate: f64,
    /// Learning-rate schedule after warmup (`constant`, `linear`, `cosine`). Default `linear`
    /// (HF's default). Formulas in [`crate::lr_at`].
    pub lr_scheduler_type: LrSchedulerType,
    /// Linear warmup length in optimizer steps; when > 0 it overrides `warmup_ratio`. Default 0.
    pub warmup_steps: u64,
    /// Warmup as a fraction of the total optimizer steps (rounded up), used when
    /// `warmup_steps` is 0. Default 0.
    pub warmup_ratio: f64,
    /// Passes over the data. Default 1. Ignored when `max_steps` is set.
    pub num_train_epochs: u32,
    /// Total optimizer steps; overrides `num_train_epochs` (the data is reshuffled and reused
    /// as often as needed). `None`: `num_train_epochs` passes.
    pub max_steps: Option<u64>,
    /// Pairs per forward/backward pass (each pair is two rows: chosen and rejected, run in one
    /// concatenated batch). Default 2.
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub gradient_accumulation_steps: usize,
    /// Clip the global L2 norm of the gradient to this value; `None` disables clipping.
    /// Default 1.0.
    pub max_grad_norm: Option<f64>,
    /// AdamW decoupled weight decay. Default 0. Note: candle-nn's AdamW decays every var
    /// (HF exempts biases and norm weights), so keep it 0 or small.
    pub weight_decay: f64,
    /// AdamW β1. Default 0.9.
    pub adam_beta1: f64,
    /// AdamW β2. Default 0.999.
    pub adam_beta2: f64,
    /// AdamW ε. Default 1e-8.
    pub adam_epsilon: f64,
    /// Maximum tokens of prompt + response per row; longer responses are cut from the right
    /// (after the prompt was cut to `max_prompt_length`). A pair whose response would become
    /// empty is dropped and counted. `None`: no limit. Default 1024 (TRL).
    pub max_length: Option<usize>,
    /// Maximum prompt tokens; longer prompts keep their last tokens (cut from the left).
    /// `None`: no limit. Default 512 (TRL).
    pub max_prompt_length: Option<usize>,
    /// Compute the reference log-probs once, before the first step, with the initial policy
    /// (or the given reference model), detached. Halves memory: no second model is kept.
    /// When `false`, a separate frozen reference model must be given to the trainer and is
    /// run at every step. Default `true`.
    pub precompute_ref_log_probs: bool,
    /// Recompute activations in the backward pass instead of keeping them (HF
    /// `TrainingArguments.gradient_checkpointing`; Chen et al. 2016, arXiv 1604.06174).
    /// srlm-model's Llama recomputes its attention sublayers
    /// (`srlm_model::Checkpointing::Attention`): a 64-pair epoch at ≤ 256 tokens peaks at
    /// 3.5 GiB instead of 4.5 GiB for ~10% more time (docs/benchmarks.md). Models without
    /// support (other devices, other `PolicyModel`s) train without it and log a warning.
    /// Default `true`, unlike TRL: srlm targets small CPU machines.
    pub gradient_checkpointing: bool,
    /// Seed of the data shuffling. Default 42 (HF).
    pub seed: u64,
    /// Train LoRA adapters (Hu et al. 2021, arXiv 2106.09685) instead of every weight (TRL's
    /// `use_peft`). Default false. srlm's own trainer puts the adapter on the model's frozen
    /// weights, shared with the other models of a run (`srlm_dpo::initial_policy`: a LoRA
    /// parent's adapter is continued), and saves it in PEFT's format; the external trainers
    /// use PEFT through TRL (the adapter merged into the checkpoint srlm takes back) or
    /// OpenRLHF's `--ds.lora.*`. The LoRA keys are left out of a config's serialised form
    /// while `use_peft` is false, so the memo-store keys of full fine-tuning runs stay as they
    /// were.
    #[serde(skip_serializing_if = "is_false")]
    pub use_peft: bool,
    /// LoRA rank r (PEFT's `r`, TRL's `lora_r`). Default 8 (PEFT).
    #[serde(skip_serializing_if = "is_default_lora_r")]
    pub lora_r: usize,
    /// LoRA scaling numerator α, an integer as in PEFT and TRL (the update is scaled by α / r).
    /// Default 8 (PEFT).
    #[serde(skip_serializing_if = "is_default_lora_alpha")]
    pub lora_alpha: usize,
    /// Dropout on the adapters' input. Default 0 (PEFT). srlm's own trainer trains without
    /// dropout and refuses a non-zero value.
    #[serde(skip_serializing_if = "is_zero")]
    pub lora_dropout: f64,
    /// Linear layers that get adapters, by PEFT's names (`q_proj k_proj v_proj o_proj
    /// gate_proj up_proj down_proj`). Default `q_proj`, `v_proj` (PEFT's default for Llama).
    #[serde(skip_serializing_if = "is_default_targets")]
    pub lora_target_modules: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_default_lora_r(r: &usize) -> bool {
    *r == 8
}
fn is_default_lora_alpha(a: &usize) -> bool {
    *a == 8
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn is_default_targets(t: &[String]) -> bool {
    t == default_lora_targets()
}
fn default_lora_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.1,
            loss_type: LossType::Sigmoid,
            label_smoothing: 0.0,
            rpo_alpha: None,
            learning_rate: 1e-6,
            lr_scheduler_type: LrSchedulerType::Linear,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            num_train_epochs: 1,
            max_steps: None,
            per_device_train_batch_size: 2,
            gradient_accumulation_steps: 1,
            max_grad_norm: Some(1.0),
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_length: Some(1024),
            max_prompt_length: Some(512),
            precompute_ref_log_probs: true,
            gradient_checkpointing: true,
            seed: 42,
            use_peft: false,
            lora_r: 8,
            lora_alpha: 8,
            lora_dropout: 0.0,
            lora_target_modules: default_lora_targets(),
        }
    }
}

fn finite(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(config_err(field, format!("must be finite, got {v}")))
    }
}

impl DpoConfig {
    /// Checks every range; the error names the first offending field.
    pub fn validate(&self) -> Result<()> {
        finite("beta", self.beta)?;
        if self.beta <= 0.0 {
            return Err(config_err(
                "beta",
                format!("must be > 0, got {}", self.beta),
            ));
        }
        finite("label_smoothing", self.label_smoothing)?;
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(config_err(
                "label_smoothing",
                format!("must be in [0, 0.5), got {}", self.label_smoothing),
            ));
        }
        if self.label_smoothing > 0.0 && matches!(self.loss_type, LossType::Hinge | LossType::Ipo) {
            return Err(config_err(
                "label_smoothing",
                format!(
                    "only `sigmoid` and `robust` use it, not `{}`",
                    self.loss_type
                ),
            ));
        }
        if let Some(a) = self.rpo_alpha {
            finite("rpo_alpha", a)?;
            if a < 0.0 {
                return Err(config_err("rpo_alpha", format!("must be >= 0, got {a}")));
            }
        }
        finite("learning_rate", self.learning_rate)?;
        if self.learning_rate < 0.0 {
            return Err(config_err("learning_rate", "must be >= 0"));
        }
        finite("warmup_ratio", self.warmup_ratio)?;
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(config_err("warmup_ratio", "must be in [0, 1]"));
        }
        if self.max_steps.is_none() && self.num_train_epochs == 0 {
            return Err(config_err(
                "num_train_epochs",
                "must be >= 1 when max_steps is not set",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(config_err("max_steps", "must be >= 1 (or unset)"));
        }
        if self.per_device_train_batch_size == 0 {
            return Err(config_err("per_device_train_batch_size", "must be >= 1"));
        }
        if self.gradient_accumulation_steps == 0 {
            return Err(config_err("gradient_accumulation_steps", "must be >= 1"));
        }
        if let Some(n) = self.max_grad_norm {
            finite("max_grad_norm", n)?;
            if n <= 0.0 {
                return Err(config_err(
                    "max_grad_norm",
                    "must be > 0 (or unset to disable)",
                ));
            }
        }
        finite("weight_decay", self.weight_decay)?;
        if self.weight_decay < 0.0 {
            return Err(config_err("weight_decay", "must be >= 0"));
        }
        for (field, b) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return Err(config_err(field, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(self.adam_epsilon > 0.0 && self.adam_epsilon.is_finite()) {
            return Err(config_err("adam_epsilon", "must be > 0"));
        }
        if self.max_length.is_some_and(|m| m < 2) {
            return Err(config_err(
                "max_length",
                "must be >= 2 (one prompt and one response token)",
            ));
        }
        if self.max_prompt_length == Some(0) {
            return Err(config_err("max_prompt_length", "must be >= 1"));
        }
        if self.lora_r == 0 {
            return Err(config_err("lora_r", "must be >= 1"));
        }
        if self.lora_alpha == 0 {
            return Err(config_err("lora_alpha", "must be >= 1"));
        }
        finite("lora_dropout", self.lora_dropout)?;
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(config_err("lora_dropout", "must be in [0, 1)"));
        }
        const LLAMA_LINEARS: [&str; 7] = [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ];
        if self.lora_target_modules.is_empty() {
            return Err(config_err(
                "lora_target_modules",
                "must name at least one layer",
            ));
        }
        if let Some(bad) = self
            .lora_target_modules
            .iter()
            .find(|m| !LLAMA_LINEARS.contains(&m.as_str()))
        {
            return Err(config_err(
                "lora_target_modules",
                format!(
                    "`{bad}` is not a Llama linear layer ({})",
                    LLAMA_LINEARS.join(", ")
                ),
            ));
        }
        if let (Some(l), Some(p)) = (self.max_length, self.max_prompt_length) {
            if p >= l {
                return Err(config_err(
                    "max_prompt_length",
                    format!("must be < max_length ({l}) so a response token fits, got {p}"),
                ));
            }
        }
        Ok(())
    }

    /// Parses a TOML table of config fields (TRL names, e.g. `beta = 0.1`,
    /// `loss_type = "ipo"`), starting from the defaults, then validates.
    ///
    /// `path` is only used in errors: a syntax error, an unknown field or a wrong type is
    /// [`crate::DpoError::Data`] with the file, the 1-based line and the field (`config` when
    /// TOML cannot say); an out-of-range value is [`crate::DpoError::Config`].
    pub fn from_toml_str(text: &str, path: &std::path::Path) -> Result<Self> {
        let cfg: DpoConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            let mut message = e.message().trim().to_string();
            // The field: the one an "unknown field" message names, else the key on the line.
            let key_on_line = text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.split('=').next())
                .map(|k| k.trim().trim_matches('"'))
                .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'));
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .or(key_on_line)
                .unwrap_or("config")
                .to_string();
            if field == "dpo" {
                message.push_str(
                    " (a DPO config file has the keys at the top level; the `[dpo]` table \
                     belongs in a run config, `srlm run --config`)",
                );
            }
            crate::DpoError::Data {
                path: path.to_path_buf(),
                line,
                field,
                message,
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `path` and parses it with [`DpoConfig::from_toml_str`].
    /// Errors: [`crate::DpoError::Io`] when the file cannot be read, else as `from_toml_str`.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::DpoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// The field names, as serialised (TRL names).
    pub const FIELDS: &'static [&'static str] = &[
        "beta",
        "loss_type",
        "label_smoothing",
        "rpo_alpha",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "warmup_ratio",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "max_length",
        "max_prompt_length",
        "precompute_ref_log_probs",
        "gradient_checkpointing",
        "seed",
        "use_peft",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    ];

    /// Sets one field from its TRL name and a JSON value (what `--set key=value` does). Errors
    /// name the field: an unknown name or a value of the wrong type. Ranges and relations
    /// between fields (`max_prompt_length < max_length`) are checked by [`DpoConfig::validate`],
    /// which the caller runs once after all settings, so their order does not matter.
    pub fn set(&mut self, field: &str, value: serde_json::Value) -> Result<()> {
        let Some(&name) = Self::FIELDS.iter().find(|f| **f == field) else {
            // Suggest the known field sharing the longest prefix with the typo, if any.
            let common = |f: &str| {
                f.chars()
                    .zip(field.chars())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            let hint = Self::FIELDS
                .iter()
                .max_by_key(|f| common(f))
                .filter(|f| common(f) >= 4)
                .map(|f| format!("did you mean `{f}`? "))
                .unwrap_or_default();
            return Err(config_err(
                field,
                format!("no such field; {hint}known: {}", Self::FIELDS.join(", ")),
            ));
        };
        let mut obj = serde_json::to_value(&*self).expect("config serialises");
        obj.as_object_mut()
            .expect("config is an object")
            .insert(name.to_string(), value);
        let next: DpoConfig =
            serde_json::from_value(obj).map_err(|e| config_err(name, e.to_string()))?;
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DpoError;

    fn field_of(c: DpoConfig) -> String {
        match c.validate() {
            Err(DpoError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_trl_like() {
        let c = DpoConfig::default();
        c.validate().unwrap();
        assert_eq!(c.beta, 0.1);
        assert_eq!(c.loss_type, LossType::Sigmoid);
        assert!(c.precompute_ref_log_probs);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["loss_type"], "sigmoid");
        assert_eq!(json["lr_scheduler_type"], "linear");
    }

    #[test]
    fn errors_name_the_field() {
        let d = DpoConfig::default;
        assert_eq!(field_of(DpoConfig { beta: 0.0, ..d() }), "beta");
        assert_eq!(
            field_of(DpoConfig {
                label_smoothing: 0.5,
                ..d()
            }),
            "label_smoothing"
        );
        assert_eq!(
            field_of(DpoConfig {
                label_smoothing: 0.1,
                loss_type: LossType::Ipo,
                ..d()
            }),
            "label_smoothing"
        );
        assert_eq!(
            field_of(DpoConfig {
                rpo_alpha: Some(-1.0),
                ..d()
            }),
            "rpo_alpha"
        );
        assert_eq!(
            field_of(DpoConfig {
                learning_rate: f64::NAN,
                ..d()
            }),
            "learning_rate"
        );
        assert_eq!(
            field_of(DpoConfig {
                per_device_train_batch_size: 0,
                ..d()
            }),
            "per_device_train_batch_size"
        );
        assert_eq!(
            field_of(DpoConfig {
                gradient_accumulation_steps: 0,
                ..d()
            }),
            "gradient_accumulation_steps"
        );
        assert_eq!(
            field_of(DpoConfig {
                max_grad_norm: Some(0.0),
                ..d()
            }),
            "max_grad_norm"
        );
        assert_eq!(
            field_of(DpoConfig {
                max_steps: Some(0),
                ..d()
            }),
            "max_steps"
        );
        assert_eq!(
            field_of(DpoConfig {
                max_length: Some(8),
                max_prompt_length: Some(8),
                ..d()
            }),
            "max_prompt_length"
        );
    }

    #[test]
    fn deserialises_trl_names_and_rejects_typos() {
        let c: DpoConfig = serde_json::from_str(
            r#"{"beta":0.2,"loss_type":"ipo","lr_scheduler_type":"cosine","max_steps":4}"#,
        )
        .unwrap();
        assert_eq!(
            (c.beta, c.loss_type, c.max_steps),
            (0.2, LossType::Ipo, Some(4))
        );
        assert!(serde_json::from_str::<DpoConfig>(r#"{"betta":0.2}"#).is_err());
        let mut c = DpoConfig::default();
        c.set("learning_rate", serde_json::json!(5e-6)).unwrap();
        assert_eq!(c.learning_rate, 5e-6);
        assert!(c
            .set("lerning_rate", serde_json::json!(1))
            .unwrap_err()
            .to_string()
            .contains("lerning_rate"));
        assert!(c
            .set("loss_type", serde_json::json!("dpo"))
            .unwrap_err()
            .to_string()
            .contains("loss_type"));
        // Order-independent: max_length below the current max_prompt_length, then the prompt
        // limit lowered; validated once at the end.
        let mut c = DpoConfig::default();
        c.set("max_length", serde_json::json!(64)).unwrap();
        c.set("max_prompt_length", serde_json::json!(32)).unwrap();
        c.validate().unwrap();
        assert_eq!((c.max_length, c.max_prompt_length), (Some(64), Some(32)));
    }
}

#[cfg(test)]
mod toml_tests {
    use super::*;

    #[test]
    fn toml_sets_fields_and_errors_name_line_and_field() {
        let p = std::path::Path::new("dpo.toml");
        let c = DpoConfig::from_toml_str("beta = 0.2\nloss_type = \"ipo\"\nmax_steps = 3\n", p)
            .unwrap();
        assert_eq!(
            (c.beta, c.loss_type, c.max_steps),
            (0.2, LossType::Ipo, Some(3))
        );
        assert_eq!(c.learning_rate, DpoConfig::default().learning_rate);
        let e = DpoConfig::from_toml_str("beta = 0.2\nbetta = 1\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("dpo.toml:2: `betta`:"), "{e}");
        let e = DpoConfig::from_toml_str("\nloss_type = 3\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("dpo.toml:2: `loss_type`:"), "{e}");
        let e = DpoConfig::from_toml_str("beta = 0.1\ngradient_checkpointing = \"yes\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("dpo.toml:2: `gradient_checkpointing`:"),
            "{e}"
        );
        // A run config's [dpo] table is not a DPO config file: say so.
        let e = DpoConfig::from_toml_str("[dpo]\nbeta = 0.1\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`dpo`") && e.contains("top level"), "{e}");
        let e = DpoConfig::from_toml_str("beta = -1.0\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`beta`"), "{e}");
    }

    #[test]
    fn set_names_an_unknown_field_and_suggests_the_near_one() {
        let mut c = DpoConfig::default();
        let e = c
            .set("gradient_checkpoint", serde_json::json!(true))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "`gradient_checkpoint`: no such field; did you mean `gradient_checkpointing`?"
            ),
            "{e}"
        );
        let e = c.set("zzz", serde_json::json!(1)).unwrap_err().to_string();
        assert!(e.contains("`zzz`: no such field; known: beta"), "{e}");
    }
}

#[cfg(test)]
mod field_list_tests {
    use super::*;

    #[test]
    fn json_schema_lists_every_field() {
        let schema = serde_json::to_value(schemars::schema_for!(DpoConfig)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for f in DpoConfig::FIELDS {
            assert!(props.contains_key(*f), "{f} missing from the schema");
        }
    }

    #[test]
    fn field_list_matches_serialised_keys() {
        // Every LoRA key away from its default, so that none is skipped.
        let lora = DpoConfig {
            use_peft: true,
            lora_r: 16,
            lora_alpha: 32,
            lora_dropout: 0.05,
            lora_target_modules: vec!["q_proj".into()],
            ..DpoConfig::default()
        };
        let json = serde_json::to_value(lora).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        let mut fields: Vec<_> = DpoConfig::FIELDS.iter().map(|s| s.to_string()).collect();
        keys.sort();
        fields.sort();
        assert_eq!(keys, fields);
    }

    #[test]
    fn lora_keys_are_left_out_at_their_defaults_and_set_like_any_field() {
        let json = serde_json::to_value(DpoConfig::default()).unwrap();
        assert!(json.get("use_peft").is_none() && json.get("lora_r").is_none());
        let mut c = DpoConfig::default();
        c.set("use_peft", serde_json::json!(true)).unwrap();
        c.set("lora_r", serde_json::json!(16)).unwrap();
        c.set("beta", serde_json::json!(0.2)).unwrap();
        assert!(c.use_peft);
        assert_eq!((c.lora_r, c.lora_alpha), (16, 8));
        c.lora_target_modules = vec!["qkv".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("lora_target_modules") && e.contains("`qkv`"),
            "{e}"
        );
    }
}
