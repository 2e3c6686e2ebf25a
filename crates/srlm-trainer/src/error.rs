//! [`TrainerError`]: what can go wrong in an external DPO step; each names the command, the
//! file or the setting concerned.

use std::path::PathBuf;

/// Errors of an external DPO step.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The `[trainer]` settings or the DPO settings cannot be run by this trainer.
    #[error("{0}")]
    Config(String),
    /// The program could not be started (not installed, not executable).
    #[error("cannot start the trainer `{command}`: {message}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        message: String,
    },
    /// The trainer exited with a non-zero status.
    #[error("the trainer exited with {status}; its log is {log}, which ends:\n{tail}")]
    Failed {
        /// The exit status.
        status: String,
        /// The log file (stdout and stderr).
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The trainer exited with 0 but left no usable model.
    #[error("the trainer exited with 0 but {dir} holds no model ({missing} is missing); its log is {log}")]
    MissingOutput {
        /// The output folder.
        dir: PathBuf,
        /// The file that is not there.
        missing: String,
        /// The log file.
        log: PathBuf,
    },
    /// The trainer's log shows a non-finite loss or gradient norm.
    #[error("{file}, line {line}: the trainer logged {key} = {value} at step {step}: the model it wrote is not used")]
    NonFinite {
        /// The step log.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
        /// The metric.
        key: String,
        /// Its value as logged (`null` for NaN/inf).
        value: String,
        /// The optimizer step.
        step: u64,
    },
    /// The trainer's step log cannot be read.
    #[error("{file}, line {line}: {message}")]
    Log {
        /// The step log.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The pairs could not be tokenized or written.
    #[error("DPO data: {0}")]
    Data(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// A closure turning an I/O error at `path` into [`TrainerError::Io`].
pub(crate) fn io_at(path: &std::path::Path) -> impl Fn(std::io::Error) -> TrainerError + '_ {
    move |error| TrainerError::Io {
        path: path.to_path_buf(),
        error,
    }
}
