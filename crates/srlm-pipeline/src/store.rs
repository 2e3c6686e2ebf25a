//! The memo store: every sample / judge / train call of a run is kept in `RUN/cache/` under a
//! SHA-256 of its inputs (model snapshot hash, prompts, settings, seed), so `srlm run --resume`
//! replays finished work for free and any plugin is resumable. Files are written atomically;
//! a crash leaves at most a stray temporary file, never a half-written entry.
//!
//! A store can also read and write a **shared** folder (`srlm run --shared-cache DIR`): runs
//! that make the same call — the same model snapshot, prompts, settings and seed, e.g. M0's
//! samples, judgments and held-out evaluation in every strategy of a bench — compute it once.
//! Only self-contained entries are shared ([`SHARED_KINDS`]: samples, judgments,
//! evaluations, diagnostics), never models or entries that point at one; an entry found there
//! is also written to the run's own folder, so the run folder alone still resumes. Entries
//! live under a sub-folder per build of srlm ([`build_namespace`]), so a rebuilt srlm computes
//! its own.

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A content-addressed cache folder, optionally backed by a shared one.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    shared: Option<PathBuf>,
}

/// The sub-folder of a shared cache this build of srlm reads and writes: the first 16 hex
/// digits of the SHA-256 of the running executable. Keys name a call's inputs, not the code
/// that answered it, so a rebuilt srlm (a fixed judge, another sampler) never reads entries
/// an older build wrote. `unknown` when the executable cannot be read.
pub fn build_namespace() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let digest = std::env::current_exe().and_then(|exe| {
            let mut file = std::fs::File::open(exe)?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher)?;
            Ok(hex::encode(hasher.finalize()))
        });
        digest.map_or_else(|_| "unknown".into(), |d| d[..16].to_string())
    })
}

/// The kinds of entries a shared folder holds: their values are all there is (no model files
/// or paths into a run folder).
pub const SHARED_KINDS: [&str; 5] = ["sample", "judge", "eval", "cosine", "second_judge"];

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
        Store {
            dir: dir.into(),
            shared: None,
        }
    }

    /// The same store, also reading and writing [`SHARED_KINDS`] entries in `shared`.
    pub fn with_shared(mut self, shared: Option<PathBuf>) -> Self {
        self.shared = shared;
        self
    }

    fn shared_path(&self, kind: &str, key: &str) -> Option<PathBuf> {
        let dir = self
            .shared
            .as_ref()
            .filter(|_| SHARED_KINDS.contains(&kind))?;
        Some(dir.join(format!("{kind}-{}.json", &key[..16])))
    }

    /// Path of an entry: `<dir>/<kind>-<key>.json` (or a folder for models).
    pub fn path(&self, kind: &str, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{kind}-{}{ext}", &key[..16]))
    }

    /// Reads an entry if present. A present but unreadable entry (impossible with atomic writes,
    /// but a disk may lie) is treated as missing and recomputed.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let read = |p: &Path| -> Option<(T, String)> {
            let text = std::fs::read_to_string(p).ok()?;
            match serde_json::from_str(&text) {
                Ok(v) => Some((v, text)),
                Err(e) => {
                    tracing::warn!("ignoring unreadable cache entry {}: {e}", p.display());
                    None
                }
            }
        };
        let local = self.path(kind, key, ".json");
        if let Some((v, _)) = read(&local) {
            return Some(v);
        }
        let (v, text) = read(&self.shared_path(kind, key)?)?;
        // Kept in the run's own cache too, so the run folder alone replays it.
        if let Err(e) = srlm_core::write_atomic(&local, text.as_bytes()) {
            tracing::warn!("{}: {e}", local.display());
        }
        Some(v)
    }

    /// Writes an entry atomically.
    pub fn put<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), srlm_core::JsonlError> {
        let bytes = serde_json::to_vec(value).expect("cache values serialise");
        srlm_core::write_atomic(&self.path(kind, key, ".json"), &bytes)?;
        if let Some(shared) = self.shared_path(kind, key) {
            // The run's own entry is written; a shared folder that cannot be written only
            // costs the other runs a recomputation.
            let written = shared
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .map_err(|e| e.to_string())
                .and_then(|()| srlm_core::write_atomic(&shared, &bytes).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!("shared cache {}: {e}", shared.display());
            }
        }
        Ok(())
    }

    /// The folder of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_entries_are_read_once_computed_and_copied_into_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        let a = Store::new(tmp.path().join("a")).with_shared(Some(shared.clone()));
        let b = Store::new(tmp.path().join("b")).with_shared(Some(shared.clone()));
        let key = key_of(&serde_json::json!({"model": "m0", "prompts": ["p"]}));
        a.put("sample", &key, &vec![1, 2, 3]).unwrap();
        a.put("model", &key, &"a path").unwrap();
        // Another run finds the samples, and keeps its own copy.
        assert_eq!(b.get::<Vec<u32>>("sample", &key), Some(vec![1, 2, 3]));
        assert!(b.path("sample", &key, ".json").is_file());
        // Models and other kinds are never shared.
        assert_eq!(b.get::<String>("model", &key), None);
        assert!(!shared.join(format!("model-{}.json", &key[..16])).exists());
        // Without a shared folder nothing is found.
        let c = Store::new(tmp.path().join("c"));
        assert_eq!(c.get::<Vec<u32>>("sample", &key), None);
    }
}
