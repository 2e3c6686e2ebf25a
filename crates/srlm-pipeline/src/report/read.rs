//! Reading a run folder back: `config.json` as a [`RecordedConfig`] (any run's, old or new)
//! and `metrics.jsonl` as [`RunMetrics`], one typed [`IterationMetrics`] per iteration.
//!
//! Each line is checked key by key before it is typed, so a wrong value is an error naming
//! `file:line` and the key. Lines of one iteration are merged as JSON objects (later lines
//! win key by key, `null` never overwrites) and the merged object is read as one
//! [`IterationMetrics`]. Python's bare `NaN` / `Infinity` / `-Infinity` tokens are accepted.
//! A file may leave out any standard key (hand-written fixtures, other tools): the reader
//! remembers which keys were recorded, and [`RecordedIteration::get`] answers only those.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::{io_err, ReportError};
use crate::metrics::{
    lenient, IterationMetrics, Metric, NotComputed, StrategyValue, NOT_COMPUTED_KEY,
};
use crate::run_dir::RunDir;

/// A run's recorded config (`config.json`) as written, whatever srlm version wrote it: a JSON
/// object whose keys (`strategy`, `strategy_options`, `model`, `judge`, `seed`, `iterations`,
/// `sampling`, …) are all optional here. (The config a run is started from is
/// [`crate::config::RunConfig`].)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedConfig {
    /// All keys of the file, in key order.
    pub fields: Map<String, Value>,
}

/// The keys the report header names; the others are listed as extras. (`k` is the top-level
/// K older run folders recorded.)
pub(crate) const HEADER_KEYS: [&str; 7] = [
    "strategy",
    "strategy_options",
    "model",
    "judge",
    "seed",
    "iterations",
    "k",
];

impl RecordedConfig {
    /// The strategy name or path, if recorded.
    pub fn strategy(&self) -> Option<&str> {
        self.fields.get("strategy").and_then(Value::as_str)
    }

    /// The strategy options as `key=value` pairs joined by `, ` (`–` when none recorded).
    pub fn options_text(&self) -> String {
        match self.fields.get("strategy_options") {
            Some(Value::Object(m)) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect::<Vec<_>>()
                .join(", "),
            Some(Value::Object(_)) => "(defaults)".into(),
            Some(Value::Null) | None => "–".into(),
            Some(v) => value_text(v),
        }
    }

    /// A key's value for display: strings unquoted, other values as compact JSON, `–` when
    /// missing or null.
    pub fn text(&self, key: &str) -> String {
        shown(self.fields.get(key))
    }

    /// K, the samples per prompt, for display: the strategy's `k` option, else `sampling.k`
    /// (its default), else the top-level `k` of older run folders; `–` when none.
    pub fn k_text(&self) -> String {
        let get = |table: &str| self.fields.get(table).and_then(|t| t.get("k"));
        shown(
            get("strategy_options")
                .or_else(|| get("sampling"))
                .or_else(|| self.fields.get("k")),
        )
    }
}

fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "–".into(),
        Some(v) => value_text(v),
    }
}

/// A config value for display: strings unquoted; an object as `k=v, …`, led by its `spec`
/// (how judges are written: `ifeval (n=3, …)`); nested objects in braces.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let rest: Vec<String> = m
                .iter()
                .filter(|(k, _)| k.as_str() != "spec")
                .map(|(k, v)| match v {
                    Value::Object(_) => format!("{k}={{{}}}", value_text(v)),
                    _ => format!("{k}={}", value_text(v)),
                })
                .collect();
            match m.get("spec") {
                Some(spec) if rest.is_empty() => value_text(spec),
                Some(spec) => format!("{} ({})", value_text(spec), rest.join(", ")),
                None => rest.join(", "),
            }
        }
        other => other.to_string(),
    }
}

/// One iteration of `metrics.jsonl` (its lines merged), typed, with the standard keys the
/// file recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedIteration {
    metrics: IterationMetrics,
    recorded: BTreeSet<Metric>,
}

impl RecordedIteration {
    /// The iteration; 0 = M0.
    pub fn iteration(&self) -> u32 {
        self.metrics.iteration
    }

    /// The value of `metric`, if the file recorded it (not `null`).
    pub fn get(&self, metric: Metric) -> Option<f64> {
        if self.recorded.contains(&metric) {
            self.metrics.get(metric)
        } else {
            None
        }
    }

    /// The strategy plugin's metrics (`<plugin>/<name>`) and any other key srlm does not
    /// know; none is `null`.
    pub fn strategy(&self) -> &BTreeMap<String, StrategyValue> {
        &self.metrics.strategy
    }

    /// The strategy's components recorded in this iteration (how often each could act and
    /// did; [`srlm_strategy::components`]).
    pub fn components(&self) -> Vec<srlm_strategy::components::ComponentUse> {
        srlm_strategy::components::ComponentUse::from_metrics(
            self.metrics.strategy.iter().map(|(k, v)| (k.as_str(), v.0)),
        )
    }

    /// The typed line. Counts a file left out of an iteration line that has training keys
    /// (`prompts`, `pairs`, `pairs_per_prompt`, `compute/tokens_*`) read as 0 here; use
    /// [`RecordedIteration::get`] to tell them from recorded values.
    pub fn metrics(&self) -> &IterationMetrics {
        &self.metrics
    }
}

/// All iterations of a run, sorted by iteration number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    /// One entry per distinct iteration, ascending.
    pub iterations: Vec<RecordedIteration>,
}

impl RunMetrics {
    /// The value of `metric` at `iteration`, if recorded.
    pub fn get(&self, iteration: u32, metric: Metric) -> Option<f64> {
        self.iterations
            .iter()
            .find(|m| m.iteration() == iteration)
            .and_then(|m| m.get(metric))
    }

    /// `(iteration, value)` for every iteration that recorded `metric`.
    pub fn series(&self, metric: Metric) -> Vec<(u32, f64)> {
        self.iterations
            .iter()
            .filter_map(|m| m.get(metric).map(|v| (m.iteration(), v)))
            .collect()
    }

    /// The sum of `metric` over all iterations that recorded it; `None` when none did.
    pub fn total(&self, metric: Metric) -> Option<f64> {
        let s = self.series(metric);
        (!s.is_empty()).then(|| s.iter().map(|p| p.1).sum())
    }

    /// Total pairs over total prompts, over the iterations that recorded both.
    pub fn pairs_per_prompt_overall(&self) -> Option<f64> {
        let (mut pairs, mut prompts, mut any) = (0.0, 0.0, false);
        for m in &self.iterations {
            if let (Some(a), Some(b)) = (m.get(Metric::Pairs), m.get(Metric::Prompts)) {
                pairs += a;
                prompts += b;
                any = true;
            }
        }
        any.then(|| pairs / prompts)
    }
}

/// A run folder read back: its folder, config and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run folder.
    pub dir: RunDir,
    /// `config.json`.
    pub config: RecordedConfig,
    /// `metrics.jsonl`.
    pub metrics: RunMetrics,
}

/// The held-out answers' scores of model M`model` of `run` (`eval/M<model>.jsonl`): prompt id
/// and score (`None`: the judge gave none), in the file's order; `None` when the file is
/// missing or unreadable (a report still renders from `metrics.jsonl` alone).
pub fn held_out_scores(run: &Run, model: u32) -> Option<Vec<(String, Option<f64>)>> {
    answer_scores(&run.dir.eval_answers(model as usize))
}

/// `(prompt id, score)` of M_`model`'s answers to an out-of-distribution set
/// (`eval/M<model>.<set>.jsonl`; score 5 = right, 0 = wrong); none when absent.
pub fn ood_scores(
    run: &Run,
    model: u32,
    set: crate::ood::OodSet,
) -> Option<Vec<(String, Option<f64>)>> {
    answer_scores(&run.dir.ood_answers(model as usize, set.name()))
}

fn answer_scores(path: &Path) -> Option<Vec<(String, Option<f64>)>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((v["prompt_id"].as_str()?.to_string(), v["score"].as_f64()))
        })
        .collect()
}

/// Reads the run folder's `config.json` and `metrics.jsonl`.
pub fn read_run(run_dir: &Path) -> Result<Run, ReportError> {
    let dir = RunDir::new(run_dir);
    Ok(Run {
        config: read_config(&dir.config())?,
        metrics: read_metrics(&dir.metrics())?,
        dir,
    })
}

/// Reads a recorded run config; it must be a JSON object.
pub fn read_config(path: &Path) -> Result<RecordedConfig, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(fields)) => Ok(RecordedConfig { fields }),
        Ok(_) => Err(ReportError::Config {
            path: path.to_path_buf(),
            message: "expected a JSON object".into(),
        }),
        Err(e) => Err(ReportError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Replaces Python's bare `NaN`, `Infinity` and `-Infinity` tokens (outside strings) by the
/// strings the reader accepts.
pub(crate) fn quote_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut rest = line;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                let n = rest.chars().take(2).map(char::len_utf8).sum();
                out.push_str(&rest[..n]);
                rest = &rest[n..];
                continue;
            }
            in_string = c != '"';
        } else if c == '"' {
            in_string = true;
        } else {
            let token = [
                ("-Infinity", "\"-inf\""),
                ("Infinity", "\"inf\""),
                ("NaN", "\"NaN\""),
            ]
            .into_iter()
            .find(|(t, _)| rest.starts_with(t));
            if let Some((t, q)) = token {
                out.push_str(q);
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Is `m` a count (a non-negative integer in the file), rather than a number that may be
/// fractional or non-finite?
fn is_count(m: Metric) -> bool {
    match m {
        Metric::Iteration
        | Metric::Prompts
        | Metric::PromptsSkipped
        | Metric::PairsDroppedSameText
        | Metric::Pairs
        | Metric::PairsBeforeSubsampling
        | Metric::DpoSteps
        | Metric::TokensSampled
        | Metric::TokensJudged
        | Metric::TokensTrained
        | Metric::EvalN
        | Metric::EvalIfevalN
        | Metric::EvalGsm8kN
        | Metric::EvalArcChallengeN => true,
        Metric::PairsPerPrompt
        | Metric::ChosenScore
        | Metric::RejectedScore
        | Metric::ScoreGap
        | Metric::HiddenCosine
        | Metric::DpoLoss
        | Metric::DpoRewardsChosen
        | Metric::DpoRewardsRejected
        | Metric::DpoRewardsMargins
        | Metric::DpoRewardsAccuracies
        | Metric::DpoGradNorm
        | Metric::JudgeParseFailureRate
        | Metric::JudgeMean
        | Metric::JudgeDigitsMissingRate
        | Metric::JudgeSecondAgreement
        | Metric::JudgeSecondParseFailureRate
        | Metric::HackingSamples
        | Metric::HackingChosen
        | Metric::DpoLastEpochLoss
        | Metric::DpoLastEpochMargins
        | Metric::DpoLastEpochAccuracies
        | Metric::DpoLogpsChosenChange
        | Metric::DpoLogpsRejectedChange
        | Metric::LengthSamples
        | Metric::LengthChosen
        | Metric::LengthRejected
        | Metric::DegenerateSamples
        | Metric::DegenerateChosen
        | Metric::EvalDegenerate
        | Metric::EvalPerplexityUnderM0
        | Metric::EvalScore
        | Metric::EvalNoScoreRate
        | Metric::EvalIfevalPromptStrict
        | Metric::EvalIfevalInstStrict
        | Metric::EvalIfevalPromptLoose
        | Metric::EvalIfevalInstLoose
        | Metric::EvalGsm8kAccuracy
        | Metric::EvalArcChallengeAccuracy
        | Metric::WallSeconds => false,
    }
}

/// Is `m` part of an iteration's training record ([`crate::metrics::TrainingMetrics`])?
fn is_training(m: Metric) -> bool {
    !matches!(
        m,
        Metric::Iteration
            | Metric::EvalScore
            | Metric::EvalN
            | Metric::EvalNoScoreRate
            | Metric::EvalDegenerate
            | Metric::EvalPerplexityUnderM0
            | Metric::EvalIfevalN
            | Metric::EvalIfevalPromptStrict
            | Metric::EvalIfevalInstStrict
            | Metric::EvalIfevalPromptLoose
            | Metric::EvalIfevalInstLoose
            | Metric::EvalGsm8kAccuracy
            | Metric::EvalGsm8kN
            | Metric::EvalArcChallengeAccuracy
            | Metric::EvalArcChallengeN
            | Metric::WallSeconds
    )
}

/// The training keys [`crate::metrics::TrainingMetrics`] requires; a line with training keys
/// that leaves them out reads them as 0 (not recorded).
const REQUIRED_TRAINING: [Metric; 6] = [
    Metric::Prompts,
    Metric::Pairs,
    Metric::PairsPerPrompt,
    Metric::TokensSampled,
    Metric::TokensJudged,
    Metric::TokensTrained,
];

/// One line of `metrics.jsonl`, checked key by key: its iteration and its non-null values.
struct Line {
    iteration: u32,
    values: Map<String, Value>,
}

/// Parses and checks one metrics line (1-based `line` for errors).
fn parse_line(path: &Path, line: usize, text: &str) -> Result<Line, ReportError> {
    let err = |message: String| ReportError::Metrics {
        path: path.to_path_buf(),
        line,
        message,
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(first) => serde_json::from_str(&quote_non_finite(text))
            .map_err(|_| err(format!("not valid JSON: {first}")))?,
    };
    let Value::Object(obj) = value else {
        return Err(err("expected a JSON object".into()));
    };
    let iteration = match obj.get(Metric::Iteration.key()) {
        None | Some(Value::Null) => return Err(err("missing field `iteration`".into())),
        Some(v) => v
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| {
                err(format!(
                    "`iteration` must be a non-negative integer, got {v}"
                ))
            })?,
    };
    let mut values = Map::new();
    for (key, v) in obj {
        if v.is_null() || key == Metric::Iteration.key() {
            continue;
        }
        if key == NOT_COMPUTED_KEY {
            // The diagnostics an iteration left out, each with its reason.
            if let Err(e) = serde_json::from_value::<Vec<NotComputed>>(v.clone()) {
                return Err(err(format!(
                    "`{key}` must be a list of {{\"metric\", \"reason\"}}: {e}"
                )));
            }
            values.insert(key, v);
            continue;
        }
        match Metric::from_key(&key) {
            Some(m) if is_count(m) => {
                if v.as_u64().is_none() {
                    return Err(err(format!(
                        "`{key}` must be a non-negative integer, got {v}"
                    )));
                }
            }
            // Standard numbers and the plugin's metrics: a number, possibly non-finite.
            _ => {
                if lenient::opt_f64(v.clone()).is_err() {
                    return Err(err(format!("`{key}` must be a number, got {v}")));
                }
            }
        }
        values.insert(key, v);
    }
    Ok(Line { iteration, values })
}

/// Types an iteration's merged values (checked by [`parse_line`]); `last_line` is the last
/// line that contributed, for errors.
fn typed(
    path: &Path,
    last_line: usize,
    iteration: u32,
    mut values: Map<String, Value>,
) -> Result<RecordedIteration, ReportError> {
    let recorded: BTreeSet<Metric> = std::iter::once(Metric::Iteration)
        .chain(values.keys().filter_map(|k| Metric::from_key(k)))
        .collect();
    let training = recorded.iter().any(|m| is_training(*m));
    if training {
        for m in REQUIRED_TRAINING {
            values.entry(m.key()).or_insert(Value::from(0));
        }
    }
    values.insert(Metric::Iteration.key().into(), Value::from(iteration));
    let metrics: IterationMetrics =
        serde_json::from_value(Value::Object(values)).map_err(|e| ReportError::Metrics {
            path: path.to_path_buf(),
            line: last_line,
            message: format!("iteration {iteration}: {e}"),
        })?;
    if training && metrics.training.is_none() {
        return Err(ReportError::Metrics {
            path: path.to_path_buf(),
            line: last_line,
            message: format!("iteration {iteration}: the training keys do not form a record"),
        });
    }
    Ok(RecordedIteration { metrics, recorded })
}

/// Reads `metrics.jsonl`. Blank lines are skipped; a malformed line is an error naming
/// `file:line` (and the key). Lines for the same iteration are merged, later values winning.
pub fn read_metrics(path: &Path) -> Result<RunMetrics, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut by_iter: BTreeMap<u32, (usize, Map<String, Value>)> = BTreeMap::new();
    for (i, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = parse_line(path, i + 1, text)?;
        let entry = by_iter.entry(line.iteration).or_default();
        entry.0 = i + 1;
        entry.1.extend(line.values);
    }
    let iterations = by_iter
        .into_iter()
        .map(|(iteration, (last, values))| typed(path, last, iteration, values))
        .collect::<Result<_, _>>()?;
    Ok(RunMetrics { iterations })
}
