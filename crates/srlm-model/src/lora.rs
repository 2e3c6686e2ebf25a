//! LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
//! arXiv 2106.09685): what an adapter is ([`LoraConfig`], [`LoraTarget`]), PEFT's naming, and
//! PEFT's file format (`adapter_config.json` + `adapter_model.safetensors`), which srlm
//! writes and reads so that PEFT, vLLM (`--lora-modules`) and TRL open srlm's adapters and
//! srlm opens theirs.
//!
//! In PEFT's format a target projection `model.layers.{i}.self_attn.q_proj` of the base gets
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` `[r, in]` and
//! `….lora_B.weight` `[out, r]`; the update is `(lora_alpha / r)·B·A` (no rsLoRA, no DoRA).
//! The model side (adapters on the projections, a frozen shared base) is in `crate::llama`.

use crate::error::{io_err, ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The adapter config file of PEFT's format.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter weights file of PEFT's format.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before the base model's tensor names.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// A linear layer of a Llama block that can carry an adapter, by PEFT's module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    QProj,
    /// `self_attn.k_proj`.
    KProj,
    /// `self_attn.v_proj`.
    VProj,
    /// `self_attn.o_proj`.
    OProj,
    /// `mlp.gate_proj`.
    GateProj,
    /// `mlp.up_proj`.
    UpProj,
    /// `mlp.down_proj`.
    DownProj,
}

impl LoraTarget {
    /// Every target, in a block's order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// PEFT's (and HF's) module name: `q_proj`, ….
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "q_proj",
            LoraTarget::KProj => "k_proj",
            LoraTarget::VProj => "v_proj",
            LoraTarget::OProj => "o_proj",
            LoraTarget::GateProj => "gate_proj",
            LoraTarget::UpProj => "up_proj",
            LoraTarget::DownProj => "down_proj",
        }
    }

    /// The module's HF path in layer `layer`: `model.layers.3.self_attn.q_proj`.
    pub fn module_path(self, layer: usize) -> String {
        let part = match self {
            LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj | LoraTarget::OProj => {
                "self_attn"
            }
            _ => "mlp",
        };
        format!("model.layers.{layer}.{part}.{}", self.name())
    }
}

impl std::str::FromStr for LoraTarget {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a Llama projection; expected one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"
                )
            })
    }
}

/// What an adapter is: rank, scaling and targets (PEFT's `LoraConfig` names).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r (≥ 1).
    pub r: usize,
    /// Scaling numerator α; the update is scaled by α / r.
    pub lora_alpha: f64,
    /// The projections that carry an adapter, in every layer; sorted, no repeats.
    pub target_modules: Vec<LoraTarget>,
}

impl LoraConfig {
    /// A config; targets are sorted and deduplicated.
    ///
    /// Errors: [`ModelError::InvalidInput`] for r = 0, a non-positive or non-finite α, or no
    /// target.
    pub fn new(r: usize, lora_alpha: f64, targets: &[LoraTarget]) -> Result<Self> {
        let mut target_modules = targets.to_vec();
        target_modules.sort();
        target_modules.dedup();
        if r == 0 {
            return Err(ModelError::InvalidInput("LoRA rank r must be >= 1".into()));
        }
        if !(lora_alpha.is_finite() && lora_alpha > 0.0) {
            return Err(ModelError::InvalidInput(format!(
                "lora_alpha must be a positive number, got {lora_alpha}"
            )));
        }
        if target_modules.is_empty() {
            return Err(ModelError::InvalidInput(
                "LoRA needs at least one target module".into(),
            ));
        }
        Ok(LoraConfig {
            r,
            lora_alpha,
            target_modules,
        })
    }

    /// α / r, the factor of B·A.
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }
}

/// `adapter_config.json` as srlm writes and reads it: PEFT's `LoraConfig` fields. Fields
/// srlm does not write are PEFT's defaults when PEFT reads the file; on reading, srlm refuses
/// the ones that change the math it implements.
#[derive(Debug, Serialize, Deserialize)]
struct AdapterConfigFile {
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: TargetModules,
    #[serde(default = "bias_none")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    modules_to_save: Option<serde_json::Value>,
    #[serde(default)]
    layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    init_lora_weights: serde_json::Value,
}

fn bias_none() -> String {
    "none".into()
}

/// PEFT writes `target_modules` as a list (or a regex string, which srlm does not read).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// An adapter folder's description: its config and the base model it was trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterInfo {
    /// Rank, scaling, targets.
    pub config: LoraConfig,
    /// `base_model_name_or_path`: the model reference the adapter applies to.
    pub base_model: Option<String>,
}

/// Reads `dir/adapter_config.json`.
///
/// Errors: [`ModelError::Io`]; [`ModelError::Weights`] naming the file and the field for a
/// config srlm cannot apply exactly (not LoRA, dropout at inference aside: rsLoRA, DoRA,
/// per-module ranks or alphas, trained biases, extra trained modules, a subset of layers,
/// Conv1D-style `fan_in_fan_out`, a regex of targets, a module that is not a Llama
/// projection).
pub fn read_adapter_config(dir: &Path) -> Result<AdapterInfo> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let bad = |field: &str, why: String| {
        ModelError::Weights(format!("{}: field `{field}`: {why}", path.display()))
    };
    let f: AdapterConfigFile = serde_json::from_str(&text)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
    if f.peft_type != "LORA" {
        return Err(bad(
            "peft_type",
            format!("`{}`, srlm reads LORA", f.peft_type),
        ));
    }
    let refuse = |field: &str, on: bool| -> Result<()> {
        match on {
            true => Err(bad(field, "not supported by srlm's LoRA".into())),
            false => Ok(()),
        }
    };
    refuse("use_rslora", f.use_rslora)?;
    refuse("use_dora", f.use_dora)?;
    refuse("fan_in_fan_out", f.fan_in_fan_out)?;
    refuse("rank_pattern", !f.rank_pattern.is_empty())?;
    refuse("alpha_pattern", !f.alpha_pattern.is_empty())?;
    refuse("bias", f.bias != "none")?;
    refuse(
        "modules_to_save",
        f.modules_to_save.as_ref().is_some_and(|v| !v.is_null()),
    )?;
    refuse(
        "layers_to_transform",
        f.layers_to_transform.as_ref().is_some_and(|v| !v.is_null()),
    )?;
    let names = match f.target_modules {
        TargetModules::List(v) => v,
        TargetModules::Pattern(p) => {
            return Err(bad(
                "target_modules",
                format!("a pattern (`{p}`); srlm reads a list of module names"),
            ))
        }
    };
    let targets = names
        .iter()
        .map(|n| n.parse::<LoraTarget>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("target_modules", e))?;
    let config =
        LoraConfig::new(f.r, f.lora_alpha, &targets).map_err(|e| bad("r", e.to_string()))?;
    Ok(AdapterInfo {
        config,
        base_model: f.base_model_name_or_path,
    })
}

/// Writes `dir/adapter_config.json` for `config`, naming `base_model` (PEFT's
/// `base_model_name_or_path`); `lora_dropout` is recorded as trained with.
pub(crate) fn write_adapter_config(
    dir: &Path,
    config: &LoraConfig,
    base_model: Option<&str>,
    lora_dropout: f64,
) -> Result<()> {
    let f = AdapterConfigFile {
        peft_type: "LORA".into(),
        task_type: Some("CAUSAL_LM".into()),
        base_model_name_or_path: base_model.map(str::to_string),
        r: config.r,
        lora_alpha: config.lora_alpha,
        lora_dropout,
        target_modules: TargetModules::List(
            config
                .target_modules
                .iter()
                .map(|t| t.name().to_string())
                .collect(),
        ),
        bias: bias_none(),
        fan_in_fan_out: false,
        use_rslora: false,
        use_dora: false,
        modules_to_save: None,
        layers_to_transform: None,
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
        inference_mode: true,
        init_lora_weights: serde_json::Value::Bool(true),
    };
    let path = dir.join(ADAPTER_CONFIG);
    std::fs::write(&path, serde_json::to_string_pretty(&f).expect("json")).map_err(io_err(&path))
}

/// The base model an adapter folder names (`base_model_name_or_path`), when `dir` holds a
/// readable adapter config that names one.
pub fn adapter_base(dir: &Path) -> Option<String> {
    is_adapter_dir(dir)
        .then(|| read_adapter_config(dir).ok()?.base_model)
        .flatten()
}

/// Whether `dir` holds a PEFT adapter (an `adapter_config.json`).
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_refuses_what_srlm_cannot_apply() {
        let d = tempfile::tempdir().unwrap();
        let c = LoraConfig::new(16, 32.0, &[LoraTarget::VProj, LoraTarget::QProj]).unwrap();
        assert_eq!(c.target_modules, vec![LoraTarget::QProj, LoraTarget::VProj]);
        assert_eq!(c.scale(), 2.0);
        write_adapter_config(d.path(), &c, Some("/m"), 0.0).unwrap();
        let back = read_adapter_config(d.path()).unwrap();
        assert_eq!(back.config, c);
        assert_eq!(back.base_model.as_deref(), Some("/m"));
        let text = std::fs::read_to_string(d.path().join(ADAPTER_CONFIG)).unwrap();
        for (from, to, field) in [
            (
                "\"use_rslora\": false",
                "\"use_rslora\": true",
                "use_rslora",
            ),
            ("\"use_dora\": false", "\"use_dora\": true", "use_dora"),
            ("\"bias\": \"none\"", "\"bias\": \"all\"", "bias"),
            ("\"q_proj\"", "\"qkv\"", "target_modules"),
            (
                "\"peft_type\": \"LORA\"",
                "\"peft_type\": \"IA3\"",
                "peft_type",
            ),
        ] {
            std::fs::write(d.path().join(ADAPTER_CONFIG), text.replace(from, to)).unwrap();
            let e = read_adapter_config(d.path()).unwrap_err().to_string();
            assert!(
                e.contains(ADAPTER_CONFIG) && e.contains(&format!("`{field}`")),
                "{e}"
            );
        }
    }
}
