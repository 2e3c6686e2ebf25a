//! Per-step training metrics under TRL's names, and an append-and-flush JSONL writer.

use crate::error::{DpoError, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Metrics of one optimizer step, averaged over the step's pairs (all accumulated
/// micro-batches). Serialised with TRL's keys (`rewards/chosen`, …).
///
/// Rewards are DPO's implicit rewards `β·(log π(y|x) − log π_ref(y|x))` in nats (for `ipo`, on
/// per-token mean log-probs, as TRL does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: u64,
    /// Epochs completed, fractional (micro-batches consumed / micro-batches per epoch).
    pub epoch: f64,
    /// Mean loss over the step's pairs (preference loss + `rpo_alpha`·NLL), nats.
    pub loss: f64,
    /// Mean implicit reward of the chosen responses, nats.
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    /// Mean implicit reward of the rejected responses, nats.
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    /// Mean of `rewards/chosen − rewards/rejected`, nats.
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    /// Fraction of pairs with chosen reward strictly above rejected reward, in [0, 1].
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    /// Mean policy log-prob of the chosen responses (summed over tokens; mean for `ipo`), nats.
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    /// Mean policy log-prob of the rejected responses (summed over tokens; mean for `ipo`), nats.
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f64,
    /// Learning rate used for this step's update.
    pub learning_rate: f64,
    /// Real tokens (prompt + response, chosen and rejected rows, no padding) through the
    /// policy's forward and backward pass in this step.
    pub tokens: u64,
    /// `tokens` divided by the step's wall time, tokens per second.
    pub tokens_per_second: f64,
}

/// Appends one JSON object per line to a file and flushes after each line, so a crash loses
/// at most the step being written and `tail -f` shows progress.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `path` for appending (creating it and its folder if missing).
    pub fn append(path: &Path) -> Result<Self> {
        let io = |source| DpoError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes `record` as one line and flushes.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("metrics serialise to JSON");
        line.push(b'\n');
        let io = |source| DpoError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.flush().map_err(io)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trl_keys_and_append() {
        let m = StepMetrics {
            step: 1,
            epoch: 0.5,
            loss: 0.693,
            rewards_chosen: 0.0,
            rewards_rejected: 0.0,
            rewards_margins: 0.0,
            rewards_accuracies: 0.0,
            logps_chosen: -3.0,
            logps_rejected: -4.0,
            grad_norm: 1.5,
            learning_rate: 1e-6,
            tokens: 10,
            tokens_per_second: 100.0,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/log.jsonl");
        MetricsWriter::append(&p).unwrap().write(&m).unwrap();
        MetricsWriter::append(&p).unwrap().write(&m).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for k in [
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
            "grad_norm",
            "learning_rate",
            "tokens_per_second",
            "step",
            "epoch",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        let back: StepMetrics = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
