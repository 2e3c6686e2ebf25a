//! [`RunDir`]: the one owner of a run folder's layout. Every path inside a run folder — for
//! the loop, the report, `srlm compare`, the CLI and xtask — is built here.
//!
//! ```text
//! RUN/srlm.json                      srlm's output marker (kind "run")
//! RUN/srlm.lock                      held (OS file lock) by the srlm process running the run
//! RUN/config.json                    the resolved config (+ the plugin that ran)
//! RUN/metrics.jsonl                  one IterationMetrics per line (line 0 = M0's evaluation)
//! RUN/report.md, RUN/plots/*.svg     the report
//! RUN/iter_<i>/samples.jsonl         every sample served in iteration i
//! RUN/iter_<i>/judgments.jsonl       every judgment made
//! RUN/iter_<i>/pairs.jsonl           the preference pairs (TRL format + provenance)
//! RUN/iter_<i>/dpo_log.jsonl         M_i's DPO log (TRL metric names)
//! RUN/iter_<i>/checkpoint/           M_i (HF safetensors)
//! RUN/iter_<i>/temporary_<n>.json    the DPO summary of the n-th temporary model
//! RUN/eval/M<i>.jsonl                M_i's greedy held-out answers with scores
//! RUN/cache/                         the memo store
//! RUN/cache/identity.json            what the cache was computed for (config, plugin, M0's sha256)
//! ```

use std::path::{Path, PathBuf};

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`: the resolved run config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `report.md`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }

    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// `cache/`: the memo store.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// `srlm.lock`: locked by the process that runs the run.
    pub fn lock(&self) -> PathBuf {
        self.root.join("srlm.lock")
    }

    /// `cache/identity.json`: the config, plugin and initial model the cache was computed for
    /// (a resume with anything else is refused).
    pub fn identity(&self) -> PathBuf {
        self.cache().join("identity.json")
    }

    /// `engine/`: server logs and the GGUFs srlm writes for a server (engine = server).
    pub fn engine(&self) -> PathBuf {
        self.root.join("engine")
    }

    /// `eval/M<i>.jsonl`: M_i's held-out answers.
    pub fn eval_answers(&self, model: usize) -> PathBuf {
        self.root.join("eval").join(format!("M{model}.jsonl"))
    }

    /// `eval/M<model>.<set>.jsonl`: M_model's greedy answers to an out-of-distribution set
    /// (`gsm8k`, `arc-challenge`) with the `answer` judge's verdicts.
    pub fn ood_answers(&self, model: usize, set: &str) -> PathBuf {
        self.root.join("eval").join(format!("M{model}.{set}.jsonl"))
    }

    /// The folder of iteration `i` (1-based).
    pub fn iteration(&self, i: usize) -> IterationDir {
        IterationDir(self.root.join(format!("iter_{i}")))
    }

    /// Whether `path` looks like a run folder (it has a `config.json`).
    pub fn exists(&self) -> bool {
        self.config().is_file()
    }
}

/// `RUN/iter_<i>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterationDir(PathBuf);

impl IterationDir {
    /// The folder.
    pub fn root(&self) -> &Path {
        &self.0
    }
    /// `samples.jsonl`.
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples.jsonl")
    }
    /// `judgments.jsonl`.
    pub fn judgments(&self) -> PathBuf {
        self.0.join("judgments.jsonl")
    }
    /// `pairs.jsonl`.
    pub fn pairs(&self) -> PathBuf {
        self.0.join("pairs.jsonl")
    }
    /// `dpo_log.jsonl`.
    pub fn dpo_log(&self) -> PathBuf {
        self.0.join("dpo_log.jsonl")
    }
    /// `checkpoint/`: the model this iteration ends with.
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    /// `temporary_<n>.json`.
    pub fn temporary_summary(&self, n: usize) -> PathBuf {
        self.0.join(format!("temporary_{n}.json"))
    }
    /// `trainer/`: an external trainer's records of the DPO step to M_{i+1} (command line,
    /// log, data, output).
    pub fn trainer(&self) -> PathBuf {
        self.0.join("trainer")
    }
    /// `temporary_<n>_trainer/`: the same for temporary model n (0-based, as `temporary_<n>.json`).
    pub fn temporary_trainer(&self, n: usize) -> PathBuf {
        self.0.join(format!("temporary_{n}_trainer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = RunDir::new("runs/x");
        let it = d.iteration(2);
        let got = [
            d.config(),
            d.metrics(),
            d.report(),
            d.plots(),
            d.cache(),
            d.lock(),
            d.identity(),
            d.eval_answers(0),
            it.samples(),
            it.judgments(),
            it.pairs(),
            it.dpo_log(),
            it.checkpoint(),
            it.temporary_summary(1),
        ];
        let want = [
            "runs/x/config.json",
            "runs/x/metrics.jsonl",
            "runs/x/report.md",
            "runs/x/plots",
            "runs/x/cache",
            "runs/x/srlm.lock",
            "runs/x/cache/identity.json",
            "runs/x/eval/M0.jsonl",
            "runs/x/iter_2/samples.jsonl",
            "runs/x/iter_2/judgments.jsonl",
            "runs/x/iter_2/pairs.jsonl",
            "runs/x/iter_2/dpo_log.jsonl",
            "runs/x/iter_2/checkpoint",
            "runs/x/iter_2/temporary_1.json",
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g, Path::new(w));
        }
    }
}
