//! The memo store: every sample / judge / train call of a run is kept in `RUN/cache/` under a
//! SHA-256 of its inputs (model snapshot hash, prompts, settings, seed), so `srlm run --resume`
//! replays finished work for free and any plugin is resumable. Files are written atomically;
//! a crash leaves at most a stray temporary file, never a half-written entry.

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A content-addressed cache folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// SHA-256 (hex) of the canonical JSON of `inputs`.
pub fn key_of(inputs: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(inputs.to_string().as_bytes()))
}

/// `inputs` with the backend's engine identity (see `Generator::engine_id`) added as
/// `"engine"`; unchanged for the in-process engine, so existing keys stay valid.
pub fn with_engine(mut inputs: serde_json::Value, engine: Option<String>) -> serde_json::Value {
    if let (Some(e), Some(obj)) = (engine, inputs.as_object_mut()) {
        obj.insert("engine".into(), serde_json::Value::String(e));
    }
    inputs
}

impl Store {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// Path of an entry: `<dir>/<kind>-<key>.json` (or a folder for models).
    pub fn path(&self, kind: &str, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{kind}-{}{ext}", &key[..16]))
    }

    /// Reads an entry if present. A present but unreadable entry (impossible with atomic writes,
    /// but a disk may lie) is treated as missing and recomputed.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let p = self.path(kind, key, ".json");
        let text = std::fs::read_to_string(&p).ok()?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("ignoring unreadable cache entry {}: {e}", p.display());
                None
            }
        }
    }

    /// Writes an entry atomically.
    pub fn put<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), srlm_core::JsonlError> {
        let bytes = serde_json::to_vec(value).expect("cache values serialise");
        srlm_core::write_atomic(&self.path(kind, key, ".json"), &bytes)
    }

    /// The folder of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
