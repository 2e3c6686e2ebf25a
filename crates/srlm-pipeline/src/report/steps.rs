//! Per-step DPO curves: each iteration's `iter_<i>/dpo_log.jsonl` (one line per optimizer step,
//! TRL metric names) read back and laid end to end on one step axis, one series per iteration,
//! with a boundary between iterations.
//!
//! Only the keys plotted ([`STEP_PLOTS`]) are read; a line that is not a JSON object, or a
//! plotted key that is not a number (non-finite strings and Python's bare tokens accepted, as
//! in `metrics.jsonl`), is an error naming `file:line` and the key. An iteration without a log
//! (no pairs kept, or a run folder from before the log existed) has no series. Temporary
//! models (`temporary_<n>.json`) keep only a summary, so they have no per-step curve.

use std::path::Path;

use serde_json::Value;

use super::plots::{Series, YAxis};
use super::read::quote_non_finite;
use super::{io_err, ReportError};
use crate::metrics::lenient;
use crate::run_dir::RunDir;

/// One per-step plot: file under `plots/`, title, y label, the TRL key, the y axis.
pub(crate) struct StepPlot {
    pub(crate) file: &'static str,
    pub(crate) title: &'static str,
    pub(crate) y_label: &'static str,
    pub(crate) key: &'static str,
    pub(crate) y: YAxis,
}

pub(crate) const STEP_PLOTS: [StepPlot; 3] = [
    StepPlot {
        file: "dpo_step_loss.svg",
        title: "DPO loss per optimizer step",
        y_label: "loss",
        key: "loss",
        y: YAxis::FREE,
    },
    StepPlot {
        file: "dpo_step_margins.svg",
        title: "DPO rewards/margins per optimizer step",
        y_label: "margin (nats, beta-scaled)",
        key: "rewards/margins",
        y: YAxis::FREE,
    },
    StepPlot {
        file: "dpo_step_accuracies.svg",
        title: "DPO rewards/accuracies per optimizer step",
        y_label: "fraction of the step's pairs",
        key: "rewards/accuracies",
        y: YAxis::Fraction,
    },
];

/// One iteration's step log: for each step (in file order) the value of each
/// [`STEP_PLOTS`] key (`None`: not recorded).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepLog {
    pub(crate) iteration: u32,
    pub(crate) steps: Vec<[Option<f64>; STEP_PLOTS.len()]>,
}

/// Reads `dpo_log.jsonl` of each iteration in `iterations` that has one (iteration 0, M0,
/// never does).
pub(crate) fn read_step_logs(
    dir: &RunDir,
    iterations: impl IntoIterator<Item = u32>,
) -> Result<Vec<StepLog>, ReportError> {
    let mut out = Vec::new();
    for iteration in iterations {
        if iteration == 0 {
            continue;
        }
        let path = dir.iteration(iteration as usize).dpo_log();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        out.push(StepLog {
            iteration,
            steps: parse_log(&path, &text)?,
        });
    }
    Ok(out)
}

fn parse_log(path: &Path, text: &str) -> Result<Vec<[Option<f64>; STEP_PLOTS.len()]>, ReportError> {
    let mut steps = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| ReportError::DpoLog {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(first) => serde_json::from_str(&quote_non_finite(line))
                .map_err(|_| err(format!("not valid JSON: {first}")))?,
        };
        let Value::Object(obj) = value else {
            return Err(err("expected a JSON object".into()));
        };
        let mut row = [None; STEP_PLOTS.len()];
        for (slot, plot) in row.iter_mut().zip(&STEP_PLOTS) {
            if let Some(v) = obj.get(plot.key) {
                *slot = lenient::opt_f64(v.clone())
                    .map_err(|_| err(format!("`{}` must be a number, got {v}", plot.key)))?;
            }
        }
        steps.push(row);
    }
    Ok(steps)
}

/// The series of plot `k` of [`STEP_PLOTS`]: one per iteration, step `n` (1-based) of an
/// iteration at x = the steps of the logs before it + n; and the boundaries between
/// iterations (half a step before each later iteration's first step).
pub(crate) fn step_series(logs: &[StepLog], k: usize) -> (Vec<Series>, Vec<f64>) {
    let (mut series, mut boundaries, mut offset) = (Vec::new(), Vec::new(), 0usize);
    for log in logs {
        if offset > 0 {
            boundaries.push(offset as f64 + 0.5);
        }
        let points = log
            .steps
            .iter()
            .enumerate()
            .map(|(n, row)| ((offset + n + 1) as f64, row[k].unwrap_or(f64::NAN)))
            .collect();
        series.push(Series::new(format!("iteration {}", log.iteration), points));
        offset += log.steps.len();
    }
    (series, boundaries)
}
