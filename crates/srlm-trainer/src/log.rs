//! The external trainer's step log (`srlm_log.jsonl`, TRL's log history as srlm's launcher
//! writes it) read back as srlm's [`StepMetrics`] (TRL's names: `loss`, `rewards/margins`,
//! `logps/chosen`, …).

use crate::error::TrainerError;
use serde_json::Value;
use srlm_dpo::StepMetrics;
use std::path::Path;

/// The training steps of a TRL log history and its end-of-training line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLog {
    /// One entry per logged optimizer step (`logging_steps = 1`: every step), in order.
    pub steps: Vec<StepMetrics>,
    /// `train_runtime` of TRL's last line (seconds), when training ended.
    pub train_runtime: Option<f64>,
}

/// Lines in the log so far (for progress while the trainer runs).
pub fn count_steps(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains("\"loss\"")).count() as u64)
        .unwrap_or(0)
}

/// Reads `path`. A line with `loss` is a step; TRL's cumulative `num_tokens` becomes the
/// step's `tokens` (its difference to the previous step); `tokens_per_second` is the run's
/// mean (TRL logs no per-step time).
///
/// # Errors
/// [`TrainerError::NonFinite`] for a NaN or infinite `loss` or `grad_norm` (logged as `null`
/// by the launcher), [`TrainerError::Log`] for a line that is not JSON or lacks a metric,
/// [`TrainerError::Io`].
pub fn read_step_log(path: &Path) -> Result<StepLog, TrainerError> {
    let text = std::fs::read_to_string(path).map_err(crate::error::io_at(path))?;
    let mut log = StepLog::default();
    let mut tokens_before = 0u64;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrainerError::Log {
            file: path.to_path_buf(),
            line: lineno,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if let Some(t) = v.get("train_runtime").and_then(Value::as_f64) {
            log.train_runtime = Some(t);
        }
        if v.get("loss").is_none() {
            continue;
        }
        let step = v
            .get("step")
            .and_then(Value::as_u64)
            .unwrap_or(log.steps.len() as u64 + 1);
        for key in ["loss", "grad_norm"] {
            match v.get(key) {
                Some(x) if x.as_f64().is_some_and(f64::is_finite) => {}
                Some(x) if !x.is_null() && x.as_f64().is_none() => {
                    return Err(bad(format!("`{key}` is not a number: {x}")))
                }
                None if key == "grad_norm" => {}
                other => {
                    return Err(TrainerError::NonFinite {
                        file: path.to_path_buf(),
                        line: lineno,
                        key: key.into(),
                        value: other.map_or("missing".into(), |x| x.to_string()),
                        step,
                    })
                }
            }
        }
        let num = |key: &str| -> Result<f64, TrainerError> {
            v.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(format!("no number `{key}` in a step line")))
        };
        let tokens_total = v.get("num_tokens").and_then(Value::as_f64).unwrap_or(0.0) as u64;
        log.steps.push(StepMetrics {
            step,
            epoch: num("epoch")?,
            loss: num("loss")?,
            rewards_chosen: num("rewards/chosen")?,
            rewards_rejected: num("rewards/rejected")?,
            rewards_margins: num("rewards/margins")?,
            rewards_accuracies: num("rewards/accuracies")?,
            logps_chosen: num("logps/chosen")?,
            logps_rejected: num("logps/rejected")?,
            grad_norm: v
                .get("grad_norm")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN),
            learning_rate: num("learning_rate")?,
            tokens: tokens_total.saturating_sub(tokens_before),
            tokens_per_second: 0.0,
        });
        tokens_before = tokens_total;
    }
    if let Some(runtime) = log.train_runtime.filter(|t| *t > 0.0) {
        let rate = tokens_before as f64 / runtime;
        for s in &mut log.steps {
            s.tokens_per_second = rate;
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("srlm_log.jsonl");
        std::fs::write(&p, lines).unwrap();
        (dir, p)
    }

    const STEP: &str = r#"{"step": STEP, "loss": 0.6931, "grad_norm": 3.5, "learning_rate": 1e-06, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0, "rewards/margins": 0.0, "logps/chosen": -11.95, "logps/rejected": -17.11, "num_tokens": TOKENS, "epoch": 0.5}"#;

    #[test]
    fn steps_are_read_with_trl_names_and_token_counts_per_step() {
        let text = format!(
            "{}\n{}\n{}\n",
            STEP.replace("STEP", "1").replace("TOKENS", "80.0"),
            STEP.replace("STEP", "2").replace("TOKENS", "200.0"),
            r#"{"step": 2, "train_runtime": 4.0, "train_loss": 0.69, "epoch": 1.0}"#
        );
        let (_d, p) = write(&text);
        let log = read_step_log(&p).unwrap();
        assert_eq!(log.steps.len(), 2);
        assert_eq!(log.steps[0].tokens, 80);
        assert_eq!(log.steps[1].tokens, 120);
        assert_eq!(log.steps[1].tokens_per_second, 50.0);
        assert_eq!(log.steps[0].logps_chosen, -11.95);
        assert_eq!(log.train_runtime, Some(4.0));
        assert_eq!(count_steps(&p), 2);
    }

    #[test]
    fn a_nan_loss_is_an_error_naming_file_line_and_step() {
        let text = format!(
            "{}\n{}\n",
            STEP.replace("STEP", "1").replace("TOKENS", "80.0"),
            STEP.replace("STEP", "2")
                .replace("TOKENS", "200.0")
                .replace("0.6931", "null")
        );
        let (_d, p) = write(&text);
        let e = read_step_log(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("loss = null at step 2"),
            "{e}"
        );
        let (_d, p) = write("not json\n");
        let e = read_step_log(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
