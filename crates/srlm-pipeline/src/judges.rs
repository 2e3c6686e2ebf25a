//! Judges for a run: the adapter that lets srlm-judge's LLM judge run on a srlm-model
//! [`LanguageModel`], and construction of a judge from a spec (`ifeval`, `self`, `model:PATH`,
//! weighted sums).

use srlm_core::SamplingConfig;
use srlm_judge::{CompositeJudge, IfevalJudge, Judge, JudgeError, JudgeMode, JudgeModel, LlmJudge};
use srlm_model::LanguageModel;
use std::borrow::Borrow;

use crate::config::JudgeConfig;

/// A [`LanguageModel`] (owned or borrowed) seen as a [`JudgeModel`].
pub struct AsJudgeModel<M>(pub M);

fn model_err(e: srlm_model::ModelError) -> JudgeError {
    JudgeError::Model(e.to_string())
}

impl<M: Borrow<LanguageModel>> JudgeModel for AsJudgeModel<M> {
    fn render_user_turn(&self, user: &str) -> Result<String, JudgeError> {
        self.0.borrow().render_user_turn(user).map_err(model_err)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, JudgeError> {
        self.0.borrow().tokenizer.encode(text).map_err(model_err)
    }
    fn context_length(&self) -> usize {
        self.0.borrow().context_length()
    }
    fn sample(
        &self,
        prompts: &[Vec<u32>],
        n: usize,
        cfg: &SamplingConfig,
    ) -> Result<Vec<Vec<String>>, JudgeError> {
        let cfg = SamplingConfig {
            k: n,
            ..cfg.clone()
        };
        let gens = self.0.borrow().generate(prompts, &cfg).map_err(model_err)?;
        Ok(gens
            .into_iter()
            .map(|g| g.into_iter().map(|x| x.text).collect())
            .collect())
    }
    fn last_logits(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, JudgeError> {
        self.0.borrow().last_logits(prompts).map_err(model_err)
    }
}

/// Builds the judge named by `spec` (see [`JudgeConfig::spec`]); `self` judges with `current`,
/// `model:PATH` with the model in `external` loaded for that path.
///
/// Errors: [`JudgeError::Spec`] for an unknown name, template errors.
pub fn build_judge<'a>(
    spec: &str,
    cfg: &JudgeConfig,
    current: &'a LanguageModel,
    external: &'a std::collections::HashMap<String, LanguageModel>,
) -> Result<Box<dyn Judge + 'a>, JudgeError> {
    let one = |name: &str| -> Result<Box<dyn Judge + 'a>, JudgeError> {
        let model: &'a LanguageModel = match name {
            "ifeval" => return Ok(Box::new(IfevalJudge::new())),
            "self" => current,
            n if n.starts_with("model:") => external
                .get(&n["model:".len()..])
                .ok_or_else(|| JudgeError::Model(format!("judge model `{n}` was not loaded")))?,
            other => {
                return Err(JudgeError::Spec {
                    spec: other.to_string(),
                    message: "unknown judge (expected ifeval, self, model:PATH, or a weighted sum like 0.5*ifeval+0.5*self)".into(),
                })
            }
        };
        let mode = if cfg.mode == "expected" {
            JudgeMode::Expected
        } else {
            JudgeMode::Sampled {
                samples: cfg.samples,
            }
        };
        let mut j = LlmJudge::new(AsJudgeModel(model)).mode(mode);
        if let Some(t) = &cfg.template {
            let text = std::fs::read_to_string(t)
                .map_err(|e| JudgeError::Template(format!("{t}: {e}")))?;
            j = j.template(text)?;
        }
        Ok(Box::new(j))
    };
    let spec = spec.trim();
    if spec.contains('+') || spec.contains('*') {
        Ok(Box::new(CompositeJudge::from_spec(spec, one)?))
    } else {
        one(spec)
    }
}

/// The `model:PATH` references a spec names.
pub fn external_models(spec: &str) -> Vec<String> {
    spec.split(['+', '*'])
        .map(str::trim)
        .filter_map(|t| t.strip_prefix("model:").map(str::to_string))
        .collect()
}
