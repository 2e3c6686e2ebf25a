//! The run report: reads a run folder's `config.json` and `metrics.jsonl` and writes
//! `report.md` with SVG plots of the paper's diagnostics under `plots/`.
//!
//! [`write_report`] is what `srlm run` calls at the end of a run and what `srlm report RUN_DIR`
//! calls to re-render. [`read_run`] is the reader shared with [`crate::compare`]; it reads
//! each iteration as a typed [`crate::metrics::IterationMetrics`], and tables, plots and
//! totals name their values by [`crate::metrics::Metric`].
//!
//! Every metric may be missing (shown as `–`, its plot skipped), `null` (same as missing) or
//! non-finite. JSON has no NaN, so non-finite values are accepted as the strings `"NaN"`,
//! `"inf"`, `"-inf"` (also `"Infinity"`, `"-Infinity"`) and as Python's bare `NaN` /
//! `Infinity` / `-Infinity` tokens; they are shown as `NaN`, `inf`, `-inf`. A value of the
//! wrong type is an error naming `file:line` and the key. Keys srlm does not know (the
//! strategy plugin's `<plugin>/<name>`, and any other; numbers) are listed in their own
//! table. If an iteration appears on several lines, later lines win key by key.
//!
//! Units: judge scores and held-out scores are judge points on the 0–5 scale; the hidden-state
//! cosine is unitless in [-1, 1]; DPO rewards are beta-scaled log-probability ratios (nats);
//! rates and accuracies are fractions in [0, 1]; tokens are counts; wall time is seconds.
//!
//! Files: the reader (`report/read.rs`), the tables (`report/tables.rs`), the
//! markdown and plots (`report/render.rs`, `report/plots.rs`), the per-step DPO curves from
//! each iteration's `dpo_log.jsonl` (`report/steps.rs`).

pub(crate) mod plots;
mod read;
mod render;
mod steps;
mod tables;

use std::path::{Path, PathBuf};

pub(crate) use read::value_text;
pub use read::{
    held_out_scores, ood_scores, read_config, read_metrics, read_run, RecordedConfig,
    RecordedIteration, Run, RunMetrics,
};
pub use render::write_report;
pub(crate) use render::{points, run_name, write_plot};
pub use tables::{format_value, never_acted, NeverActed};

/// What can go wrong reading a run folder or writing its report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not chained, so anyhow prints one line).
        error: std::io::Error,
    },
    /// A line of `metrics.jsonl` is not a metrics record.
    #[error("{}:{line}: {message}", path.display())]
    Metrics {
        /// The metrics file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A line of an iteration's `dpo_log.jsonl` is not a step record.
    #[error("{}:{line}: {message}", path.display())]
    DpoLog {
        /// The step log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// `config.json` is not a JSON object.
    #[error("{}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// plotters could not draw a chart.
    #[error("{}: cannot draw the plot: {message}", path.display())]
    Plot {
        /// The SVG file being drawn.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// [`crate::compare::compare_runs`] was given no run folder.
    #[error("no run folders to compare")]
    NoRuns,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |error| ReportError::Io {
        path: path.to_path_buf(),
        error,
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    srlm_core::write_atomic(path, bytes).map_err(|e| match e {
        srlm_core::JsonlError::Io {
            path,
            error: source,
        } => ReportError::Io {
            path,
            error: source,
        },
        other => ReportError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(other.to_string()),
        },
    })
}

#[cfg(test)]
pub(crate) mod tests;
