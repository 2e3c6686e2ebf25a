//! Judges over a backend: the one place srlm builds a judge from a [`JudgeSpec`], for
//! `srlm run` (training and held-out judges), `srlm eval` and `srlm judge`. `self` is a model
//! the caller names (M_i in a run, the evaluated model in `srlm eval`); each `model:PATH` is
//! loaded into the backend once ([`load_judge_models`]).

use crate::config::JudgeConfig;
use crate::ports::{BackendError, Generator, ModelRef};
use srlm_judge::{Judge, JudgeError, JudgeName, JudgeSettings, JudgeSpec};

/// The model behind `model:PATH`. Its identity is its path (a fixed judge is never trained,
/// so the memo keys do not need its weights' hash).
pub fn judge_model_ref(path: &str) -> ModelRef {
    ModelRef::new(format!("judge:{path}"), path)
}

/// Loads every `model:PATH` a spec names into the backend.
///
/// # Errors
/// [`BackendError::Model`] naming the path.
pub fn load_judge_models(backend: &dyn Generator, spec: &JudgeSpec) -> Result<(), BackendError> {
    for path in spec.external_models() {
        backend.load(&judge_model_ref(path))?;
    }
    Ok(())
}

/// The LLM judges' settings of a judge config (reads the template file, if any).
///
/// # Errors
/// [`JudgeError::Template`] naming the file when it cannot be read.
pub fn judge_settings(cfg: &JudgeConfig) -> Result<JudgeSettings, JudgeError> {
    let template = match &cfg.template {
        Some(t) => Some(
            std::fs::read_to_string(t).map_err(|e| JudgeError::Template(format!("{t}: {e}")))?,
        ),
        None => None,
    };
    Ok(JudgeSettings {
        mode: cfg.mode,
        samples: cfg.samples,
        template,
        keep_injections: !cfg.neutralise_injections,
    })
}

/// Builds the judge `spec` names: `self` judges with `current`, `model:PATH` with the model
/// [`load_judge_models`] loaded for that path, `ifeval` by its rules.
///
/// # Errors
/// [`JudgeError::Spec`] (weights), [`JudgeError::Template`], [`JudgeError::Model`] when a
/// model is not loaded.
pub fn build_judge<'a>(
    spec: &JudgeSpec,
    settings: &JudgeSettings,
    backend: &'a dyn Generator,
    current: &ModelRef,
) -> Result<Box<dyn Judge + 'a>, JudgeError> {
    srlm_judge::build_judge(spec, settings, |name| {
        let model = match name {
            JudgeName::Current => current.clone(),
            JudgeName::Model(path) => judge_model_ref(path),
            JudgeName::Ifeval | JudgeName::Answer => {
                unreachable!("rule judges need no model")
            }
        };
        backend
            .judge_model(&model)
            .map_err(|e| JudgeError::Model(e.to_string()))
    })
}
