//! The run report: reads a run folder's `config.json` and `metrics.jsonl` and writes
//! `report.md` with SVG plots of the paper's diagnostics under `plots/`.
//!
//! [`write_report`] is what `srlm run` calls at the end of a run and what `srlm report RUN_DIR`
//! calls to re-render. [`read_run`] is the reader shared with [`crate::compare`].
//!
//! The reader is generic over keys: every metric may be missing (shown as `–`, its plot
//! skipped), `null` (same as missing) or non-finite. JSON has no NaN, so non-finite values are
//! accepted as the strings `"NaN"`, `"inf"`, `"-inf"` (also `"Infinity"`, `"-Infinity"`) and as
//! Python's bare `NaN` / `Infinity` / `-Infinity` tokens; they are shown as `NaN`, `inf`,
//! `-inf`. Keys the report does not know (`strategy/<name>` from plugins, and any other)
//! are listed in their own table. If an iteration appears on several lines, later lines win
//! key by key.
//!
//! Units: judge scores and held-out scores are judge points on the 0–5 scale; the hidden-state
//! cosine is unitless in [-1, 1]; DPO rewards are beta-scaled log-probability ratios (nats);
//! rates and accuracies are fractions in [0, 1]; tokens are counts; wall time is seconds.

pub(crate) mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
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

// ---------------------------------------------------------------------------------------------
// Reading

/// The resolved run config (`config.json`): a JSON object with at least `strategy`,
/// `strategy_options`, `model`, `judge`, `seed`, `iterations`, `k`; every key is optional here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunConfig {
    /// All keys of the file, in key order.
    pub fields: Map<String, Value>,
}

/// The keys the report header names; the others are listed as extras.
const HEADER_KEYS: [&str; 7] = [
    "strategy",
    "strategy_options",
    "model",
    "judge",
    "seed",
    "iterations",
    "k",
];

impl RunConfig {
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
        match self.fields.get(key) {
            None | Some(Value::Null) => "–".into(),
            Some(v) => value_text(v),
        }
    }
}

/// A config value for display: strings unquoted; an object as `k=v, …`, led by its `spec`
/// (how judges are written: `ifeval (n=3, …)`); nested objects in braces.
fn value_text(v: &Value) -> String {
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

/// One recorded metric value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A number, possibly non-finite.
    Number(f64),
    /// Anything else a plugin recorded under a `strategy/…` or unknown key (shown as text).
    Text(String),
}

/// The metrics of one iteration (iteration 0 holds the evaluation of M0 only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationMetrics {
    /// The iteration; 0 = M0.
    pub iteration: u32,
    /// Every recorded key except `iteration`; `null` values are left out.
    pub values: BTreeMap<String, MetricValue>,
}

impl IterationMetrics {
    /// The numeric value of `key`, if recorded.
    pub fn get(&self, key: &str) -> Option<f64> {
        match self.values.get(key) {
            Some(MetricValue::Number(x)) => Some(*x),
            _ => None,
        }
    }
}

/// All iterations of a run, sorted by iteration number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    /// One entry per distinct iteration, ascending.
    pub iterations: Vec<IterationMetrics>,
}

impl RunMetrics {
    /// The value of `key` at `iteration`, if recorded.
    pub fn get(&self, iteration: u32, key: &str) -> Option<f64> {
        self.iterations
            .iter()
            .find(|m| m.iteration == iteration)
            .and_then(|m| m.get(key))
    }

    /// `(iteration, value)` for every iteration that recorded `key`.
    pub fn series(&self, key: &str) -> Vec<(u32, f64)> {
        self.iterations
            .iter()
            .filter_map(|m| m.get(key).map(|v| (m.iteration, v)))
            .collect()
    }

    /// The sum of `key` over all iterations that recorded it; `None` when none did.
    pub fn total(&self, key: &str) -> Option<f64> {
        let s = self.series(key);
        (!s.is_empty()).then(|| s.iter().map(|p| p.1).sum())
    }

    /// Total pairs over total prompts, over the iterations that recorded both.
    pub fn pairs_per_prompt_overall(&self) -> Option<f64> {
        let (mut pairs, mut prompts, mut any) = (0.0, 0.0, false);
        for m in &self.iterations {
            if let (Some(a), Some(b)) = (m.get("pairs"), m.get("prompts")) {
                pairs += a;
                prompts += b;
                any = true;
            }
        }
        any.then(|| pairs / prompts)
    }
}

/// A run folder read back: its path, config and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: RunConfig,
    /// `metrics.jsonl`.
    pub metrics: RunMetrics,
}

/// Reads `run_dir/config.json` and `run_dir/metrics.jsonl`.
pub fn read_run(run_dir: &Path) -> Result<Run, ReportError> {
    Ok(Run {
        dir: run_dir.to_path_buf(),
        config: read_config(&run_dir.join("config.json"))?,
        metrics: read_metrics(&run_dir.join("metrics.jsonl"))?,
    })
}

/// Reads a resolved run config; it must be a JSON object.
pub fn read_config(path: &Path) -> Result<RunConfig, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(fields)) => Ok(RunConfig { fields }),
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
fn quote_non_finite(line: &str) -> String {
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

fn non_finite_string(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Is `key` one the report reads as a number (so a non-number there is an error)?
fn is_known_numeric(key: &str) -> bool {
    TABLES
        .iter()
        .flat_map(|t| t.columns.iter())
        .any(|c| c.key == key)
}

/// Parses one metrics line (1-based `line` for errors).
fn parse_metrics_line(
    path: &Path,
    line: usize,
    text: &str,
) -> Result<IterationMetrics, ReportError> {
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
    let iteration = match obj.get("iteration") {
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
    let mut values = BTreeMap::new();
    for (key, v) in obj {
        if key == "iteration" {
            continue;
        }
        let mv = match &v {
            Value::Null => continue,
            Value::Number(n) => MetricValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => match non_finite_string(s) {
                Some(x) => MetricValue::Number(x),
                None if is_known_numeric(&key) => {
                    return Err(err(format!("`{key}` must be a number, got {v}")))
                }
                None => MetricValue::Text(s.clone()),
            },
            _ if is_known_numeric(&key) => {
                return Err(err(format!("`{key}` must be a number, got {v}")))
            }
            other => MetricValue::Text(other.to_string()),
        };
        values.insert(key, mv);
    }
    Ok(IterationMetrics { iteration, values })
}

/// Reads `metrics.jsonl`. Blank lines are skipped; a malformed line is an error naming
/// `file:line`. Lines for the same iteration are merged, later values winning.
pub fn read_metrics(path: &Path) -> Result<RunMetrics, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut by_iter: BTreeMap<u32, IterationMetrics> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m = parse_metrics_line(path, i + 1, line)?;
        by_iter
            .entry(m.iteration)
            .or_insert_with(|| IterationMetrics {
                iteration: m.iteration,
                values: BTreeMap::new(),
            })
            .values
            .extend(m.values);
    }
    Ok(RunMetrics {
        iterations: by_iter.into_values().collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// Formats a value for a table: `–` when missing, `NaN` / `inf` / `-inf` when non-finite,
/// else fixed `decimals`.
pub fn format_value(v: Option<f64>, decimals: usize) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) if x == f64::INFINITY => "inf".into(),
        Some(x) if x == f64::NEG_INFINITY => "-inf".into(),
        Some(x) => {
            let s = format!("{x:.decimals$}");
            // "-0.00" reads as a sign error; show it as zero.
            if s.trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                s.trim_start_matches('-').to_string()
            } else {
                s
            }
        }
    }
}

/// One table column: a metrics key, its header (with unit) and its decimals.
pub(crate) struct Column {
    pub(crate) key: &'static str,
    pub(crate) header: &'static str,
    pub(crate) decimals: usize,
}

const fn col(key: &'static str, header: &'static str, decimals: usize) -> Column {
    Column {
        key,
        header,
        decimals,
    }
}

/// How a table's totals row is made.
#[derive(PartialEq)]
enum Totals {
    None,
    /// Counts summed; `pairs_per_prompt` recomputed as total pairs / total prompts.
    Sum,
}

struct Table {
    title: &'static str,
    columns: &'static [Column],
    /// Show iteration 0 (M0) even when it has none of the table's keys.
    with_m0: bool,
    totals: Totals,
    /// Keys not summed in the totals row.
    not_summed: &'static [&'static str],
}

const TABLES: [Table; 4] = [
    Table {
        title: "Pairs and judge scores",
        columns: &[
            col("prompts", "prompts", 0),
            col("pairs", "pairs", 0),
            col("pairs_per_prompt", "pairs / prompt", 2),
            col("score/chosen_mean", "chosen score (0–5)", 2),
            col("score/rejected_mean", "rejected score (0–5)", 2),
            col("score/gap", "score gap (0–5)", 2),
            col("hidden_cosine", "hidden cosine", 4),
            col("judge/mean", "judge mean (0–5)", 2),
            col(
                "judge/parse_failure_rate",
                "judge parse failures (fraction)",
                3,
            ),
        ],
        with_m0: false,
        totals: Totals::Sum,
        not_summed: &[
            "score/chosen_mean",
            "score/rejected_mean",
            "score/gap",
            "hidden_cosine",
            "judge/mean",
            "judge/parse_failure_rate",
        ],
    },
    Table {
        title: "Held-out evaluation (model M_i after iteration i; 0 = M0)",
        columns: &[
            col("eval/score", "held-out score (0–5)", 3),
            col("eval/n", "held-out prompts", 0),
            col(
                "eval/parse_failure_rate",
                "eval parse failures (fraction)",
                3,
            ),
        ],
        with_m0: true,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "DPO (TRL's metric names; rewards in nats, beta-scaled)",
        columns: &[
            col("dpo/loss", "loss", 4),
            col("dpo/rewards/chosen", "rewards/chosen", 4),
            col("dpo/rewards/rejected", "rewards/rejected", 4),
            col("dpo/rewards/margins", "rewards/margins", 4),
            col("dpo/rewards/accuracies", "rewards/accuracies", 3),
            col("dpo/grad_norm", "grad_norm", 4),
            col("dpo/steps", "steps", 0),
        ],
        with_m0: false,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "Compute",
        columns: &[
            col("compute/tokens_sampled", "tokens sampled", 0),
            col("compute/tokens_judged", "tokens judged", 0),
            col("compute/tokens_trained", "tokens trained", 0),
            col("compute/wall_seconds", "wall time (s)", 1),
        ],
        with_m0: false,
        totals: Totals::Sum,
        not_summed: &[],
    },
];

fn iteration_label(i: u32) -> String {
    if i == 0 {
        "0 (M0)".into()
    } else {
        i.to_string()
    }
}

/// Writes a markdown table row.
fn row(out: &mut String, cells: &[String]) {
    out.push('|');
    for c in cells {
        let _ = write!(out, " {c} |");
    }
    out.push('\n');
}

fn header(out: &mut String, first: &str, headers: &[&str]) {
    let mut cells = vec![first.to_string()];
    cells.extend(headers.iter().map(|h| h.to_string()));
    row(out, &cells);
    let mut sep = vec!["---".to_string()];
    sep.extend(headers.iter().map(|_| "---:".to_string()));
    row(out, &sep);
}

fn render_table(out: &mut String, table: &Table, metrics: &RunMetrics) {
    let rows: Vec<&IterationMetrics> = metrics
        .iterations
        .iter()
        .filter(|m| {
            m.iteration >= 1
                || table.with_m0
                || table.columns.iter().any(|c| m.get(c.key).is_some())
        })
        .collect();
    let _ = writeln!(out, "### {}\n", table.title);
    let headers: Vec<&str> = table.columns.iter().map(|c| c.header).collect();
    header(out, "iteration", &headers);
    for m in &rows {
        let mut cells = vec![iteration_label(m.iteration)];
        cells.extend(
            table
                .columns
                .iter()
                .map(|c| format_value(m.get(c.key), c.decimals)),
        );
        row(out, &cells);
    }
    if table.totals == Totals::Sum {
        let mut cells = vec!["**total**".to_string()];
        cells.extend(table.columns.iter().map(|c| {
            if c.key == "pairs_per_prompt" {
                format_value(metrics.pairs_per_prompt_overall(), c.decimals)
            } else if table.not_summed.contains(&c.key) {
                String::new()
            } else {
                format_value(metrics.total(c.key), c.decimals)
            }
        }));
        row(out, &cells);
    }
    out.push('\n');
}

/// Keys recorded by the run that no table above shows (`strategy/<name>` and any other).
fn other_keys(metrics: &RunMetrics) -> Vec<String> {
    let mut keys: Vec<String> = metrics
        .iterations
        .iter()
        .flat_map(|m| m.values.keys())
        .filter(|k| !is_known_numeric(k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn render_other(out: &mut String, metrics: &RunMetrics) {
    let keys = other_keys(metrics);
    if keys.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Other recorded metrics (strategy plugin and extras)\n"
    );
    let headers: Vec<&str> = keys.iter().map(String::as_str).collect();
    header(out, "iteration", &headers);
    for m in &metrics.iterations {
        if !keys.iter().any(|k| m.values.contains_key(k)) {
            continue;
        }
        let mut cells = vec![iteration_label(m.iteration)];
        cells.extend(keys.iter().map(|k| match m.values.get(k) {
            Some(MetricValue::Number(x)) => format_number(*x),
            Some(MetricValue::Text(t)) => t.replace('|', "\\|"),
            None => "–".into(),
        }));
        row(out, &cells);
    }
    out.push('\n');
}

/// A number whose precision we do not know: integers plainly, others with 4 significant-ish
/// decimals.
fn format_number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format_value(Some(x), 0)
    } else {
        format_value(Some(x), 4)
    }
}

// ---------------------------------------------------------------------------------------------
// Plots

/// One plot of the report: file name under `plots/`, title, y axis label, `(key, legend)`.
struct PlotSpec {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    series: &'static [(&'static str, &'static str)],
}

const PLOTS: [PlotSpec; 8] = [
    PlotSpec {
        file: "scores.svg",
        title: "Judge scores of chosen and rejected, and their gap",
        y_label: "judge points (0–5)",
        series: &[
            ("score/chosen_mean", "chosen"),
            ("score/rejected_mean", "rejected"),
            ("score/gap", "gap"),
        ],
    },
    PlotSpec {
        file: "hidden_cosine.svg",
        title: "Cosine of chosen vs rejected last-layer hidden states",
        y_label: "cosine similarity",
        series: &[("hidden_cosine", "cosine")],
    },
    PlotSpec {
        file: "dpo_margins.svg",
        title: "DPO rewards/margins",
        y_label: "margin (nats, beta-scaled)",
        series: &[("dpo/rewards/margins", "rewards/margins")],
    },
    PlotSpec {
        file: "dpo_accuracies.svg",
        title: "DPO rewards/accuracies",
        y_label: "fraction of pairs",
        series: &[("dpo/rewards/accuracies", "rewards/accuracies")],
    },
    PlotSpec {
        file: "grad_norm.svg",
        title: "DPO gradient norm",
        y_label: "grad_norm",
        series: &[("dpo/grad_norm", "grad_norm")],
    },
    PlotSpec {
        file: "pairs_per_prompt.svg",
        title: "Pairs kept per prompt",
        y_label: "pairs / prompt",
        series: &[("pairs_per_prompt", "pairs / prompt")],
    },
    PlotSpec {
        file: "judge_parse_failure_rate.svg",
        title: "Judge parse-failure rate",
        y_label: "fraction of judgments",
        series: &[("judge/parse_failure_rate", "parse failures")],
    },
    PlotSpec {
        file: "eval_score.svg",
        title: "Held-out evaluation score (iteration 0 = M0)",
        y_label: "judge points (0–5)",
        series: &[("eval/score", "held-out score")],
    },
];

/// Draws `series` to `path` atomically; returns `false` (and removes a stale file) when there
/// is nothing finite to draw.
pub(crate) fn write_plot(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[plots::Series],
) -> Result<bool, ReportError> {
    let svg = plots::line_chart(title, y_label, series).map_err(|message| ReportError::Plot {
        path: path.to_path_buf(),
        message,
    })?;
    match svg {
        Some(svg) => {
            write_file(path, svg.as_bytes())?;
            Ok(true)
        }
        None => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(path)(e)),
            }
            Ok(false)
        }
    }
}

/// `(iteration, value)` of `key` as plot points.
pub(crate) fn points(metrics: &RunMetrics, key: &str) -> Vec<(f64, f64)> {
    metrics
        .series(key)
        .into_iter()
        .map(|(i, v)| (f64::from(i), v))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The report

const HOW_TO_READ: &str = "\
## How to read this

Each iteration samples K responses per prompt, the judge scores them, the strategy picks a
chosen and a rejected response per prompt, and DPO trains the next model on those pairs. The
*score gap* (chosen minus rejected, judge points) is the preference signal DPO learns from; the
*hidden cosine* is the mean cosine similarity of the last-layer hidden states (averaged over
response tokens) of chosen and rejected. Under classic Self-Rewarding the gap **shrinks** and the
cosine **rises** from one iteration to the next: chosen and rejected become alike, and DPO's
gradient (`grad_norm`) fades. That collapse is what Temporal Self-Rewarding addresses by
anchoring the rejected response to the initial model M0 and drawing the chosen one from a
future model (Wang et al. 2025, *Temporal Self-Rewarding Language Models*, arXiv 2508.06026).
A healthy run keeps the gap and the cosine stable while the held-out score rises. A high judge
parse-failure rate means the scores themselves are unreliable. `–` = not recorded; `NaN` / `inf`
= recorded but not finite.
";

/// Renders `report.md` for `run`. `drawn` lists the plot files (under `plots/`) that exist.
fn render_report(run: &Run, drawn: &[&PlotSpec], skipped: &[&PlotSpec]) -> String {
    let cfg = &run.config;
    let name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.dir.display().to_string());
    let mut out = String::new();
    let _ = writeln!(out, "# srlm run report: {name}\n");
    let _ = writeln!(
        out,
        "Generated by `srlm report {}` from `config.json` and `metrics.jsonl`; re-render with \
         the same command.\n",
        run.dir.display()
    );
    let _ = writeln!(out, "| setting | value |\n|---|---|");
    for (label, text) in [
        ("strategy", cfg.text("strategy")),
        ("strategy options", cfg.options_text()),
        ("model", cfg.text("model")),
        ("judge", cfg.text("judge")),
        ("seed", cfg.text("seed")),
        ("iterations", cfg.text("iterations")),
        ("K (samples per prompt)", cfg.text("k")),
    ] {
        let _ = writeln!(out, "| {label} | {} |", text.replace('|', "\\|"));
    }
    for (key, v) in &cfg.fields {
        if !HEADER_KEYS.contains(&key.as_str()) {
            let _ = writeln!(out, "| {key} | `{}` |", value_text(v).replace('|', "\\|"));
        }
    }
    out.push('\n');

    let m = &run.metrics;
    let evals = m.series("eval/score");
    if let (Some(first), Some(last)) = (evals.first(), evals.last()) {
        if evals.len() > 1 {
            let _ = writeln!(
                out,
                "Held-out score: M{} {} → M{} {} (judge points, 0–5).\n",
                first.0,
                format_value(Some(first.1), 3),
                last.0,
                format_value(Some(last.1), 3)
            );
        }
    }

    out.push_str("## Summary per iteration\n\n");
    if m.iterations.is_empty() {
        out.push_str("_`metrics.jsonl` holds no iteration yet._\n\n");
    }
    for t in &TABLES {
        render_table(&mut out, t, m);
    }
    render_other(&mut out, m);

    out.push_str("## Plots\n\n");
    for p in drawn {
        let _ = writeln!(out, "### {}\n\n![{}](plots/{})\n", p.title, p.title, p.file);
    }
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|p| p.title).collect();
        let _ = writeln!(
            out,
            "Not plotted (no finite values recorded): {}.\n",
            names.join("; ")
        );
    }
    out.push_str(HOW_TO_READ);
    out
}

/// Reads `run_dir/config.json` and `run_dir/metrics.jsonl`, writes the SVG plots under
/// `run_dir/plots/` and `run_dir/report.md` (each atomically), and returns the report's path.
///
/// Metrics that were never recorded appear as `–` and their plot is skipped (a stale plot
/// file from an earlier render is removed).
pub fn write_report(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let run = read_run(run_dir)?;
    let plot_dir = run_dir.join("plots");
    let (mut drawn, mut skipped) = (Vec::new(), Vec::new());
    for spec in &PLOTS {
        let series: Vec<plots::Series> = spec
            .series
            .iter()
            .map(|(key, label)| plots::Series {
                label: (*label).to_string(),
                points: points(&run.metrics, key),
            })
            .collect();
        if write_plot(&plot_dir.join(spec.file), spec.title, spec.y_label, &series)? {
            drawn.push(spec);
        } else {
            skipped.push(spec);
        }
    }
    let path = run_dir.join("report.md");
    write_file(&path, render_report(&run, &drawn, &skipped).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
pub(crate) mod tests;
