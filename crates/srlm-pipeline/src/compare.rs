//! The strategy comparison: reads several run folders and lays their diagnostics side by side
//! (`srlm compare`, `cargo xtask bench`).
//!
//! [`compare_runs`] returns a [`ComparisonTable`] (one row per metric, one column per run, so
//! four strategies fit a terminal) and writes `comparison.md` with combined plots (one line
//! per run) under `out_dir/plots/`. Rows: the held-out score of every model M_i (M0 included),
//! IFEval's four accuracies of every M_i when a run's held-out prompts are IFEval records,
//! the chosen–rejected score gap and the hidden-state cosine per iteration, pairs kept, and
//! the compute counters summed over the run, so "same compute" comparisons are explicit.
//! Units as in [`crate::report`]: judge points 0–5, IFEval accuracies fractions 0–1, cosine
//! unitless, tokens, seconds.
//!
//! The table starts with the runs' settings (strategy, options, model, judges, held-out set,
//! seed, K, iterations) and carries [`ComparisonTable::warnings`] when runs differ in what must
//! agree for a like-for-like comparison: the model, either judge, the held-out prompts (read
//! from each run's `eval/M0.jsonl`), the seed or K.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::metrics::Metric;
use crate::ood::OodSet;
use crate::report::plots::{Chart, XAxis, YAxis};
use crate::report::{
    format_value, plots, points, read_run, run_name, write_file, write_plot, ReportError, Run,
};

/// An (iteration, value) point of a series.
type Point = (f64, f64);
/// A 95% interval (low, high).
type Interval = (f64, f64);

/// One metric across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    /// The row label, with its unit (e.g. `held-out score M1 (0–5)`).
    pub metric: String,
    /// One cell per run, in [`ComparisonTable::runs`] order; `None` when not recorded.
    pub cells: Vec<Option<f64>>,
    /// Decimals shown.
    pub decimals: usize,
    /// Each cell's 95% interval where one is known (held-out scores: bootstrap over the
    /// held-out prompts, [`crate::stats::mean_interval`]); empty for rows without intervals.
    pub intervals: Vec<Option<(f64, f64)>>,
}

/// A paired difference between two models on the same held-out prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedRow {
    /// What is compared, e.g. `run-b M2 − run-a M2` or `run-a M2 − M0`.
    pub comparison: String,
    /// The difference (judge points 0–5), its interval, p-value and detectable size.
    pub difference: crate::stats::PairedDifference,
}

/// One setting across runs, as text.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingRow {
    /// The setting (e.g. `strategy`, `held-out prompts`).
    pub setting: String,
    /// One cell per run.
    pub cells: Vec<String>,
}

/// Runs compared metric by metric. `Display` renders it as an aligned markdown table
/// (readable in a terminal): the settings rows, then the metrics, `–` for values a run did not
/// record.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonTable {
    /// The column labels: the run folder names (made unique with strategy and options).
    pub runs: Vec<String>,
    /// The runs' settings, shown above the metrics.
    pub settings: Vec<SettingRow>,
    /// The rows, in display order.
    pub rows: Vec<ComparisonRow>,
    /// Why the comparison is not like for like (one sentence each); empty when it is.
    pub warnings: Vec<String>,
    /// Paired differences of held-out scores (same prompts): each run's last model against
    /// its M0, and each run's last model against the first run's.
    pub paired: Vec<PairedRow>,
    /// When a strategy ran under several seeds: every metric per strategy group (strategy,
    /// options, iterations), the mean over its seeds with a 95% interval (held-out scores:
    /// two-level bootstrap over seeds, then prompts; other metrics: Student's t over the
    /// seeds' values). `None` when no strategy has more than one seed.
    pub over_seeds: Option<SeedTable>,
}

/// Every metric per strategy group, over its seeds (see [`ComparisonTable::over_seeds`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeedTable {
    /// The groups (`temporal (…), 2 iterations`), with their number of seeds.
    pub groups: Vec<(String, usize)>,
    /// One row per metric of the main table; cells are the mean over the group's seeds
    /// (`None` unless every seed recorded it).
    pub rows: Vec<ComparisonRow>,
}

impl ComparisonTable {
    /// The value of `metric` (a row label) for `run` (a column label).
    pub fn cell(&self, metric: &str, run: &str) -> Option<f64> {
        let col = self.runs.iter().position(|r| r == run)?;
        self.rows.iter().find(|r| r.metric == metric)?.cells[col]
    }

    /// The cell as displayed (`–`, `NaN`, or the number with the row's decimals); `None`
    /// when there is no such row or column.
    pub fn cell_text(&self, metric: &str, run: &str) -> Option<String> {
        let col = self.runs.iter().position(|r| r == run)?;
        let row = self.rows.iter().find(|r| r.metric == metric)?;
        Some(format_value(row.cells[col], row.decimals))
    }
}

impl fmt::Display for ComparisonTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut grid: Vec<Vec<String>> = vec![std::iter::once("metric".to_string())
            .chain(self.runs.iter().cloned())
            .collect()];
        for r in &self.settings {
            grid.push(
                std::iter::once(r.setting.clone())
                    .chain(r.cells.iter().cloned())
                    .collect(),
            );
        }
        for r in &self.rows {
            grid.push(
                std::iter::once(r.metric.clone())
                    .chain(r.cells.iter().enumerate().map(|(i, c)| {
                        match r.intervals.get(i).copied().flatten() {
                            Some((lo, hi)) => format!(
                                "{} [{lo:.prec$}, {hi:.prec$}]",
                                format_value(*c, r.decimals),
                                prec = r.decimals.min(2)
                            ),
                            None => format_value(*c, r.decimals),
                        }
                    }))
                    .collect(),
            );
        }
        let ncol = self.runs.len() + 1;
        let width: Vec<usize> = (0..ncol)
            .map(|c| {
                grid.iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let pad = |s: &str, w: usize, right: bool| {
            let fill = " ".repeat(w - s.chars().count());
            if right {
                format!("{fill}{s}")
            } else {
                format!("{s}{fill}")
            }
        };
        for (i, row) in grid.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, s)| pad(s, width[c], c > 0))
                .collect();
            writeln!(f, "| {} |", cells.join(" | "))?;
            if i == 0 {
                let seps: Vec<String> = width
                    .iter()
                    .enumerate()
                    .map(|(c, &w)| {
                        if c == 0 {
                            "-".repeat(w)
                        } else {
                            format!("{}:", "-".repeat(w - 1))
                        }
                    })
                    .collect();
                writeln!(f, "| {} |", seps.join(" | "))?;
            }
        }
        if let Some(t) = &self.over_seeds {
            writeln!(f)?;
            writeln!(
                f,
                "Per strategy over seeds: mean [95% interval; held-out scores: two-level bootstrap over seeds then prompts, other rows: Student's t over the seeds]"
            )?;
            writeln!(f)?;
            let head: Vec<String> = t
                .groups
                .iter()
                .map(|(g, n)| format!("{g} × {n} seeds"))
                .collect();
            writeln!(f, "| metric | {} |", head.join(" | "))?;
            writeln!(f, "|---|{}", "---:|".repeat(head.len()))?;
            for r in &t.rows {
                let cells: Vec<String> = r
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match r.intervals.get(i).copied().flatten() {
                        Some((lo, hi)) => format!(
                            "{} [{lo:.prec$}, {hi:.prec$}]",
                            format_value(*c, r.decimals),
                            prec = r.decimals.min(2)
                        ),
                        None => format_value(*c, r.decimals),
                    })
                    .collect();
                writeln!(f, "| {} | {} |", r.metric, cells.join(" | "))?;
            }
        }
        if !self.paired.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "| paired difference, same held-out prompts (0–5) | n | mean | 95% interval | p (permutation) | smallest detectable |"
            )?;
            writeln!(f, "|---|---:|---:|---:|---:|---:|")?;
            for p in &self.paired {
                let d = &p.difference;
                writeln!(
                    f,
                    "| {} | {} | {:+.3} | [{:+.2}, {:+.2}] | {:.3} | ±{:.2} |",
                    p.comparison,
                    d.interval.n,
                    d.interval.mean,
                    d.interval.low,
                    d.interval.high,
                    d.p_value,
                    d.detectable
                )?;
            }
        }
        Ok(())
    }
}

/// Column labels: folder names; where two runs share one, strategy and options are added,
/// then a counter.
fn labels(runs: &[Run]) -> Vec<String> {
    let base: Vec<String> = runs.iter().map(|r| run_name(&r.dir)).collect();
    let mut out: Vec<String> = base
        .iter()
        .zip(runs)
        .map(|(b, r)| {
            if base.iter().filter(|x| *x == b).count() > 1 {
                let strategy = r.config.strategy().unwrap_or("?");
                format!("{b} ({strategy}; {})", r.config.options_text())
            } else {
                b.clone()
            }
        })
        .collect();
    for i in 0..out.len() {
        let same = out[..i].iter().filter(|x| **x == out[i]).count();
        if same > 0 {
            out[i] = format!("{} #{}", out[i], same + 1);
        }
    }
    out
}

/// Iterations (ascending, distinct) at which any run recorded `metric`.
fn iterations_with(runs: &[Run], metric: Metric) -> Vec<u32> {
    let mut its: Vec<u32> = runs
        .iter()
        .flat_map(|r| r.metrics.series(metric).into_iter().map(|p| p.0))
        .collect();
    its.sort_unstable();
    its.dedup();
    its
}

/// One row of `metric` at iteration `i`, each cell with the 95% bootstrap interval of its
/// per-prompt values (`per_prompt`: (prompt id, value) from the run's answer files; prompts
/// without a value left out), kept only when the interval's mean is the number shown (the
/// metric's file is its source). Three decimals.
fn row_with_intervals(
    runs: &[Run],
    i: u32,
    metric: Metric,
    label: String,
    per_prompt: impl Fn(&Run) -> Option<Vec<(String, Option<f64>)>>,
) -> ComparisonRow {
    let cells: Vec<Option<f64>> = runs.iter().map(|r| r.metrics.get(i, metric)).collect();
    let intervals = runs
        .iter()
        .zip(&cells)
        .map(|(r, cell)| {
            let values: Vec<f64> = per_prompt(r)?.into_iter().filter_map(|(_, v)| v).collect();
            let iv = crate::stats::mean_interval(&values)?;
            (cell.is_some_and(|c| (c - iv.mean).abs() < 1e-6)).then_some((iv.low, iv.high))
        })
        .collect();
    ComparisonRow {
        metric: label,
        cells,
        decimals: 3,
        intervals,
    }
}

/// Builds the table from runs already read.
pub fn comparison_table(runs: &[Run]) -> ComparisonTable {
    let mut rows = Vec::new();
    // Held-out scores with their bootstrap intervals over the held-out prompts.
    for i in iterations_with(runs, Metric::EvalScore) {
        rows.push(row_with_intervals(
            runs,
            i,
            Metric::EvalScore,
            format!("held-out score M{i} (0–5)"),
            |r| crate::report::held_out_scores(r, i),
        ));
    }
    // Out-of-distribution accuracy (eval.ood) with its interval over the set's prompts.
    for (set, metric, name) in [
        (OodSet::Gsm8k, Metric::EvalGsm8kAccuracy, "GSM8K"),
        (
            OodSet::ArcChallenge,
            Metric::EvalArcChallengeAccuracy,
            "ARC-Challenge",
        ),
    ] {
        for i in iterations_with(runs, metric) {
            rows.push(row_with_intervals(
                runs,
                i,
                metric,
                format!("{name} accuracy M{i}"),
                |r| {
                    crate::report::ood_scores(r, i, set).map(|v| {
                        v.into_iter()
                            .map(|(id, s)| (id, s.map(|s| s / 5.0)))
                            .collect()
                    })
                },
            ));
        }
    }
    let mut per_iteration = |metric: Metric, name: &dyn Fn(u32) -> String, decimals: usize| {
        for i in iterations_with(runs, metric) {
            rows.push(ComparisonRow {
                metric: name(i),
                cells: runs.iter().map(|r| r.metrics.get(i, metric)).collect(),
                decimals,
                intervals: Vec::new(),
            });
        }
    };
    // IFEval's own accuracies (fractions), for runs whose held-out prompts are IFEval's.
    for (metric, what) in [
        (Metric::EvalIfevalPromptStrict, "prompt-level strict"),
        (Metric::EvalIfevalInstStrict, "inst-level strict"),
        (Metric::EvalIfevalPromptLoose, "prompt-level loose"),
        (Metric::EvalIfevalInstLoose, "inst-level loose"),
    ] {
        per_iteration(metric, &|i| format!("IFEval {what} acc M{i}"), 3);
    }
    per_iteration(
        Metric::ScoreGap,
        &|i| format!("score gap, iteration {i} (0–5)"),
        2,
    );
    per_iteration(
        Metric::HiddenCosine,
        &|i| format!("hidden cosine, iteration {i}"),
        4,
    );
    let total = |label: &str, metric: Metric, decimals: usize| ComparisonRow {
        metric: label.into(),
        cells: runs.iter().map(|r| r.metrics.total(metric)).collect(),
        decimals,
        intervals: Vec::new(),
    };
    rows.push(total("pairs kept (total)", Metric::Pairs, 0));
    rows.push(ComparisonRow {
        metric: "pairs per prompt (overall)".into(),
        cells: runs
            .iter()
            .map(|r| r.metrics.pairs_per_prompt_overall())
            .collect(),
        decimals: 2,
        intervals: Vec::new(),
    });
    rows.push(total("tokens sampled (total)", Metric::TokensSampled, 0));
    rows.push(total("tokens judged (total)", Metric::TokensJudged, 0));
    rows.push(total("tokens trained (total)", Metric::TokensTrained, 0));
    rows.push(total("wall time (s, total)", Metric::WallSeconds, 1));
    let settings = settings(runs);
    let warnings = warnings(&settings);
    let runs_labels = labels(runs);
    let paired = paired_rows(runs, &runs_labels);
    let over_seeds = seed_table(runs, &rows);
    ComparisonTable {
        runs: runs_labels,
        settings: settings.into_iter().map(|(row, _)| row).collect(),
        rows,
        warnings,
        paired,
        over_seeds,
    }
}

/// [`ComparisonTable::over_seeds`] from the runs and the main table's rows.
fn seed_table(runs: &[Run], rows: &[ComparisonRow]) -> Option<SeedTable> {
    let groups = seed_groups(runs);
    if !groups.iter().any(|(_, m)| m.len() > 1) {
        return None;
    }
    let index: Vec<Vec<usize>> = groups
        .iter()
        .map(|(_, members)| {
            members
                .iter()
                .filter_map(|m| runs.iter().position(|r| std::ptr::eq(r, *m)))
                .collect()
        })
        .collect();
    let held_out_model = |metric: &str| -> Option<u32> {
        metric
            .strip_prefix("held-out score M")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let rows = rows
        .iter()
        .map(|row| {
            let (cells, intervals) = index
                .iter()
                .map(|ix| {
                    let values: Vec<f64> = ix.iter().filter_map(|&i| row.cells[i]).collect();
                    if values.len() != ix.len() || values.is_empty() {
                        return (None, None);
                    }
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    let interval = match held_out_model(&row.metric) {
                        // Prompts within seeds: each seed's per-prompt scores.
                        Some(m) => ix
                            .iter()
                            .map(|&i| {
                                crate::report::held_out_scores(&runs[i], m).map(|v| {
                                    v.into_iter().filter_map(|(_, s)| s).collect::<Vec<f64>>()
                                })
                            })
                            .collect::<Option<Vec<_>>>()
                            .filter(|g| g.len() > 1)
                            .and_then(|g| crate::stats::two_level_interval(&g)),
                        None => crate::stats::seed_interval(&values),
                    };
                    (Some(mean), interval.map(|iv| (iv.low, iv.high)))
                })
                .unzip();
            ComparisonRow {
                metric: row.metric.clone(),
                cells,
                decimals: row.decimals,
                intervals,
            }
        })
        .collect();
    Some(SeedTable {
        groups: groups
            .iter()
            .map(|(name, members)| (name.clone(), members.len()))
            .collect(),
        rows,
    })
}

/// Scores of the prompts both answer sets scored, paired by prompt id (`a`'s order).
pub(crate) fn paired_scores(
    a: &[(String, Option<f64>)],
    b: &[(String, Option<f64>)],
) -> (Vec<f64>, Vec<f64>) {
    let b: std::collections::HashMap<&str, f64> = b
        .iter()
        .filter_map(|(id, s)| Some((id.as_str(), (*s)?)))
        .collect();
    a.iter()
        .filter_map(|(id, s)| Some(((*s)?, *b.get(id.as_str())?)))
        .unzip()
}

/// Each run's last model against its M0, then each run's last model against the first run's
/// (only where both answered the same held-out prompts).
fn paired_rows(runs: &[Run], labels: &[String]) -> Vec<PairedRow> {
    let last = |r: &Run| {
        r.metrics
            .series(Metric::EvalScore)
            .into_iter()
            .map(|p| p.0)
            .max()
    };
    let mut out = Vec::new();
    // A comparison of two answer sets to the same held-out prompts (else none).
    let paired = |comparison: String,
                  a: &[(String, Option<f64>)],
                  b: &[(String, Option<f64>)]|
     -> Option<PairedRow> {
        let ids = |v: &[(String, Option<f64>)]| {
            v.iter()
                .map(|x| x.0.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        if a.len() != b.len() || ids(a) != ids(b) {
            return None;
        }
        let (x, y) = paired_scores(a, b);
        Some(PairedRow {
            comparison,
            difference: crate::stats::paired_difference(&x, &y)?,
        })
    };
    for (r, label) in runs.iter().zip(labels) {
        let Some(m) = last(r).filter(|&m| m > 0) else {
            continue;
        };
        if let (Some(m0), Some(mi)) = (
            crate::report::held_out_scores(r, 0),
            crate::report::held_out_scores(r, m),
        ) {
            out.extend(paired(format!("{label}: M{m} − M0"), &m0, &mi));
        }
    }
    // Strategies run under several seeds: each group's last models against the first group's,
    // seed by seed. The interval is a two-level bootstrap (seeds, then prompts within each);
    // the p-value flips the signs of the pooled (prompt, seed) differences.
    let groups = seed_groups(runs);
    if groups.iter().any(|(_, m)| m.len() > 1) {
        let (base_name, base) = &groups[0];
        for (name, members) in groups.iter().skip(1) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            let mut per_seed = Vec::new();
            let mut seeds = 0;
            for r in members {
                let seed = r.config.text("seed");
                let Some(b) = base.iter().find(|b| b.config.text("seed") == seed) else {
                    continue;
                };
                let (Some(mb), Some(mr)) = (last(b), last(r)) else {
                    continue;
                };
                let (Some(sb), Some(sr)) = (
                    crate::report::held_out_scores(b, mb),
                    crate::report::held_out_scores(r, mr),
                ) else {
                    continue;
                };
                let (bx, ry) = paired_scores(&sb, &sr);
                per_seed.push(bx.iter().zip(&ry).map(|(a, b)| b - a).collect::<Vec<f64>>());
                x.extend(bx);
                y.extend(ry);
                seeds += 1;
            }
            if seeds > 1 {
                if let Some(mut difference) = crate::stats::paired_difference(&x, &y) {
                    if let Some(iv) = crate::stats::two_level_interval(&per_seed) {
                        difference.interval = iv;
                    }
                    out.push(PairedRow {
                        comparison: format!(
                            "{name} − {base_name}, last models, {seeds} seeds pooled"
                        ),
                        difference,
                    });
                }
            }
        }
    }
    if let Some((first, first_label)) = runs.first().zip(labels.first()) {
        if let Some(m_first) = last(first) {
            if let Some(base) = crate::report::held_out_scores(first, m_first) {
                for (r, label) in runs.iter().zip(labels).skip(1) {
                    let Some(m) = last(r) else { continue };
                    if let Some(other) = crate::report::held_out_scores(r, m) {
                        out.extend(paired(
                            format!("{label} M{m} − {first_label} M{m_first}"),
                            &base,
                            &other,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The settings rows, each with whether runs must agree on it (and the value compared).
/// Runs grouped as seeds of one setting: the same recorded config except `seed` (and the
/// sampling seed); a run whose seed its group already has starts a group of its own. Each
/// group is named by strategy, options and iterations, and by its first run's folder where
/// two groups would share that name. In first-seen order.
fn seed_groups(runs: &[Run]) -> Vec<(String, Vec<&Run>)> {
    let setting = |r: &Run| {
        let mut c = r.config.fields.clone();
        c.remove("seed");
        if let Some(serde_json::Value::Object(s)) = c.get_mut("sampling") {
            s.remove("seed");
        }
        serde_json::Value::Object(c).to_string()
    };
    let mut groups: Vec<(String, Vec<&Run>)> = Vec::new();
    for r in runs {
        let key = setting(r);
        let seed = r.config.text("seed");
        let open = groups.iter_mut().find(|(k, members)| {
            *k == key && !members.iter().any(|m| m.config.text("seed") == seed)
        });
        match open {
            Some((_, members)) => members.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let name = |r: &Run| {
        let options = r.config.options_text();
        let options = if options.starts_with('(') {
            String::new() // "(defaults)"
        } else {
            format!(" ({options})")
        };
        format!(
            "{}{options}, {} iterations",
            r.config.text("strategy"),
            r.config.text("iterations")
        )
    };
    let names: Vec<String> = groups.iter().map(|(_, m)| name(m[0])).collect();
    groups
        .iter()
        .zip(&names)
        .map(|((_, members), n)| {
            let label = if names.iter().filter(|o| *o == n).count() > 1 {
                format!("{n} [{}]", run_name(&members[0].dir))
            } else {
                n.clone()
            };
            (label, members.clone())
        })
        .collect()
}

/// The collapse figure of Wang et al. 2025 (Sec. 2, Fig. 1): score gap and hidden-state
/// cosine per iteration, one line per strategy group, its mean over seeds with a 95%
/// Student-t interval over the seeds (as the over-seeds table); one SVG with both panels. `None` when no group has
/// more than one seed or nothing is recorded.
fn collapse_figure(runs: &[Run]) -> Result<Option<String>, String> {
    let groups = seed_groups(runs);
    if !groups.iter().any(|(_, m)| m.len() > 1) {
        return Ok(None);
    }
    let mut panels = Vec::new();
    for (metric, title, y_label, y) in [
        (
            Metric::ScoreGap,
            "Score gap, chosen − rejected (mean over seeds, 95% interval)",
            "judge points (0–5)",
            YAxis::JUDGE_POINTS,
        ),
        (
            Metric::HiddenCosine,
            "Hidden-state cosine, chosen vs rejected (mean over seeds, 95% interval)",
            "cosine similarity",
            YAxis::COSINE,
        ),
    ] {
        let series: Vec<plots::Series> = groups
            .iter()
            .map(|(name, members)| {
                let iterations: std::collections::BTreeSet<u32> = members
                    .iter()
                    .flat_map(|r| r.metrics.series(metric).into_iter().map(|(i, _)| i))
                    .collect();
                let (points, intervals): (Vec<Point>, Vec<Option<Interval>>) = iterations
                    .into_iter()
                    .filter_map(|i| {
                        let values: Vec<f64> = members
                            .iter()
                            .filter_map(|r| r.metrics.get(i, metric))
                            .collect();
                        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
                        if values.is_empty() || !mean.is_finite() {
                            return None;
                        }
                        let bar = crate::stats::seed_interval(&values).map(|iv| (iv.low, iv.high));
                        Some(((f64::from(i), mean), bar))
                    })
                    .unzip();
                let label = format!("{name} × {} seeds", members.len());
                plots::Series::new(label, points).with_intervals(intervals)
            })
            .collect();
        let chart = Chart {
            title,
            x: XAxis::Iteration,
            y_label,
            y,
            series: &series,
            boundaries: &[],
        };
        if let Some(svg) = plots::line_chart(&chart)? {
            panels.push(svg);
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    plots::side_by_side(&panels).map(Some)
}

fn settings(runs: &[Run]) -> Vec<(SettingRow, Option<Vec<String>>)> {
    let row = |setting: &str, cells: Vec<String>| SettingRow {
        setting: setting.into(),
        cells,
    };
    let each = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<String>>();
    let judge = |r: &Run| {
        let j = &r.config.fields;
        j.get("judge")
            .map(crate::report::value_text)
            .unwrap_or_else(|| "–".into())
    };
    let eval_judge = |r: &Run| match r.config.fields.get("eval").and_then(|e| e.get("judge")) {
        Some(serde_json::Value::String(s)) if s == "same" => judge(r),
        Some(v) => crate::report::value_text(v),
        None => judge(r),
    };
    // A judge is shown by its spec (`ifeval`); its settings only where the runs' differ.
    let spec_only = |full: Vec<String>| -> Vec<String> {
        if full.windows(2).all(|w| w[0] == w[1]) {
            full.iter()
                .map(|f| f.split(" (").next().unwrap_or(f).to_string())
                .collect()
        } else {
            full
        }
    };
    let ids: Vec<Option<Vec<String>>> = runs
        .iter()
        .map(|r| crate::run::answered_prompt_ids(&r.dir))
        .collect();
    let held_out: Vec<String> = runs
        .iter()
        .zip(&ids)
        .map(|(r, ids)| {
            let source = r
                .config
                .fields
                .get("prompts")
                .and_then(|p| p.get("source"))
                .map(crate::report::value_text)
                .unwrap_or_else(|| "–".into());
            match ids {
                Some(ids) => format!("{} of {source}", ids.len()),
                None => format!("? of {source}"),
            }
        })
        .collect();
    // The held-out sets compared by their prompt ids where every run has them.
    let held_out_key: Vec<String> = if ids.iter().all(Option::is_some) {
        ids.iter()
            .map(|i| i.as_ref().expect("checked").join("\u{1f}"))
            .collect()
    } else {
        held_out.clone()
    };
    vec![
        (row("strategy", each(&|r| r.config.text("strategy"))), None),
        (row("options", each(&|r| r.config.options_text())), None),
        (
            row("model", each(&|r| r.config.text("model"))),
            Some(each(&|r| r.config.text("model"))),
        ),
        (row("judge", spec_only(each(&judge))), Some(each(&judge))),
        (
            row("eval judge", spec_only(each(&eval_judge))),
            Some(each(&eval_judge)),
        ),
        (row("held-out prompts", held_out), Some(held_out_key)),
        (
            row("seed", each(&|r| r.config.text("seed"))),
            Some(each(&|r| r.config.text("seed"))),
        ),
        (
            row("K", each(&|r| r.config.k_text())),
            Some(each(&|r| r.config.k_text())),
        ),
        (
            row("iterations", each(&|r| r.config.text("iterations"))),
            None,
        ),
        // What equalises training between strategies (unset: every pair, every epoch).
        (
            row(
                "pairs per iteration (at most)",
                each(&|r| or_all(r, &["max_pairs_per_iteration"])),
            ),
            None,
        ),
        (
            row(
                "DPO steps per model (at most)",
                each(&|r| or_all(r, &["dpo", "max_steps"])),
            ),
            None,
        ),
    ]
}

/// A recorded config value at `path`, or `all` when it is unset.
fn or_all(r: &Run, path: &[&str]) -> String {
    let mut v = Some(&serde_json::Value::Object(r.config.fields.clone()));
    for key in path {
        v = v.and_then(|v| v.get(*key));
    }
    match v {
        None | Some(serde_json::Value::Null) => "all".into(),
        Some(v) => crate::report::value_text(v),
    }
}

/// One warning per setting that must agree and does not.
fn warnings(settings: &[(SettingRow, Option<Vec<String>>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (row, compared) in settings {
        let Some(values) = compared else { continue };
        let mut distinct = values.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            let mut shown = row.cells.clone();
            shown.dedup();
            let what = if row.setting == "held-out prompts" {
                "held-out prompts (scores on different prompts cannot be compared)".to_string()
            } else {
                format!("{} ({})", row.setting, shown.join(" vs "))
            };
            let detail = if row.setting == "held-out prompts" {
                format!(" ({})", row.cells.join(" vs "))
            } else {
                String::new()
            };
            out.push(format!(
                "the runs differ in {what}{detail}: the comparison is not like for like"
            ));
        }
    }
    out
}

/// Reads every run folder (`config.json`, `metrics.jsonl`) and builds the table, writing
/// nothing.
pub fn load_comparison(run_dirs: &[PathBuf]) -> Result<(Vec<Run>, ComparisonTable), ReportError> {
    if run_dirs.is_empty() {
        return Err(ReportError::NoRuns);
    }
    let runs = run_dirs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    let table = comparison_table(&runs);
    Ok((runs, table))
}

/// The combined plots: file under `plots/`, title, y label, how the y range is chosen, metric.
const PLOTS: [(&str, &str, &str, YAxis, Metric); 6] = [
    (
        "compare_eval_score.svg",
        "Held-out score per iteration (0 = M0)",
        "judge points (0–5)",
        YAxis::JUDGE_POINTS,
        Metric::EvalScore,
    ),
    (
        "compare_score_gap.svg",
        "Chosen − rejected judge-score gap",
        "judge points (0–5)",
        YAxis::JUDGE_POINTS,
        Metric::ScoreGap,
    ),
    (
        "compare_hidden_cosine.svg",
        "Cosine of chosen vs rejected hidden states",
        "cosine similarity",
        YAxis::COSINE,
        Metric::HiddenCosine,
    ),
    (
        "compare_pairs_per_prompt.svg",
        "Pairs kept per prompt",
        "pairs / prompt",
        YAxis::NON_NEGATIVE,
        Metric::PairsPerPrompt,
    ),
    (
        "compare_grad_norm.svg",
        "DPO gradient norm (mean over each iteration's steps)",
        "grad_norm",
        YAxis::NON_NEGATIVE,
        Metric::DpoGradNorm,
    ),
    (
        "compare_dpo_margins.svg",
        "DPO rewards/margins (mean over each iteration's steps)",
        "margin (nats, beta-scaled)",
        YAxis::FREE,
        Metric::DpoRewardsMargins,
    ),
];

fn render(runs: &[Run], table: &ComparisonTable, drawn: &[(&str, &str)]) -> String {
    let mut out = String::from("# srlm strategy comparison\n\n");
    out.push_str(
        "Generated by `srlm compare`; every cell is read from the runs' `metrics.jsonl`. \
         `–` = not recorded.\n\n",
    );
    out.push_str("| run | folder | strategy | options | model | judge | seed | iterations | K |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for (label, r) in table.runs.iter().zip(runs) {
        let c = &r.config;
        let _ = writeln!(
            out,
            "| {label} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
            r.dir.root().display(),
            c.text("strategy"),
            c.options_text(),
            c.text("model"),
            c.text("judge"),
            c.text("seed"),
            c.text("iterations"),
            c.k_text(),
        );
    }
    out.push('\n');
    for w in &table.warnings {
        let _ = writeln!(out, "**Warning:** {w}.\n");
    }
    out.push_str("## Table\n\n");
    let _ = write!(out, "{table}");
    out.push_str(
        "\nCompute rows are totals over the run (the M0 evaluation included): compare \
         strategies at equal tokens or wall time, not only at equal iterations (the paper counts \
         2 TSR iterations as about 5 SR iterations).\n\n## Plots\n\n",
    );
    for (file, title) in drawn {
        let _ = writeln!(out, "### {title}\n\n![{title}](plots/{file})\n");
    }
    out.push_str(
        "## How to read this\n\nA shrinking score gap and a rising hidden cosine across \
         iterations are the collapse of Self-Rewarding that Temporal Self-Rewarding addresses \
         (Wang et al. 2025, arXiv 2508.06026); its ablations (past-only: anchored rejection \
         alone; future-only: future-guided chosen alone) show which component keeps the signal. \
         The held-out score says whether it pays off.\n",
    );
    out
}

/// Reads `run_dirs`, writes `out_dir/comparison.md` and combined plots (one line per run)
/// under `out_dir/plots/`, each atomically, and returns the table.
pub fn compare_runs(run_dirs: &[PathBuf], out_dir: &Path) -> Result<ComparisonTable, ReportError> {
    let (runs, table) = load_comparison(run_dirs)?;
    let mut drawn = Vec::new();
    for (file, title, y_label, y, metric) in PLOTS {
        let series: Vec<plots::Series> = table
            .runs
            .iter()
            .zip(&runs)
            .map(|(label, r)| plots::Series::new(label.clone(), points(&r.metrics, metric)))
            .collect();
        let chart = Chart {
            title,
            x: XAxis::Iteration,
            y_label,
            y,
            series: &series,
            boundaries: &[],
        };
        if write_plot(&out_dir.join("plots").join(file), &chart)? {
            drawn.push((file, title));
        }
    }
    let collapse = "compare_collapse.svg";
    let collapse_path = out_dir.join("plots").join(collapse);
    match collapse_figure(&runs).map_err(|message| ReportError::Plot {
        path: collapse_path.clone(),
        message,
    })? {
        Some(svg) => {
            crate::report::write_file(&collapse_path, svg.as_bytes())?;
            drawn.insert(
                0,
                (
                    collapse,
                    "The collapse figure: score gap and hidden cosine per iteration, mean over \
                     seeds with 95% intervals",
                ),
            );
        }
        None => {
            let _ = std::fs::remove_file(&collapse_path);
        }
    }
    let md = render(&runs, &table, &drawn);
    let path = out_dir.join("comparison.md");
    write_file(&path, md.as_bytes())?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plots::tests::{has_text, legend_texts, polyline_points};
    use crate::report::tests::{
        fresh_dir, write_answers, write_run, IFEVAL_METRICS, TEMPORAL_CONFIG, TEMPORAL_METRICS,
    };
    use crate::run_dir::RunDir;

    const SR_CONFIG: &str = r#"{"strategy": "self-rewarding", "strategy_options": {},
        "model": "default", "judge": "ifeval", "seed": 1, "iterations": 3, "k": 4}"#;
    const SR_METRICS: [&str; 4] = [
        r#"{"iteration": 0, "eval/score": 2.5, "eval/n": 20}"#,
        r#"{"iteration": 1, "prompts": 10, "pairs": 9, "score/gap": 2.0, "hidden_cosine": 0.9, "eval/score": 2.6, "compute/tokens_sampled": 500, "compute/wall_seconds": 30.0}"#,
        r#"{"iteration": 2, "prompts": 10, "pairs": 7, "score/gap": 1.0, "hidden_cosine": 0.95, "eval/score": 2.7, "compute/tokens_sampled": 500, "compute/wall_seconds": 30.0}"#,
        r#"{"iteration": 3, "prompts": 10, "pairs": 5, "score/gap": 0.25, "hidden_cosine": 0.99, "eval/score": 2.65, "compute/tokens_sampled": 500, "compute/wall_seconds": 30.0}"#,
    ];

    #[test]
    fn seeds_of_a_strategy_make_one_line_with_intervals_in_the_collapse_figure() {
        let base = fresh_dir("collapse");
        let mut dirs = Vec::new();
        for seed in [1, 2, 3] {
            let gap = |g: f64| g + 0.1 * f64::from(seed);
            let sr = SR_CONFIG.replace("\"seed\": 1", &format!("\"seed\": {seed}"));
            let lines: Vec<String> = SR_METRICS
                .iter()
                .map(|l| {
                    l.replace(
                        "\"score/gap\": 2.0",
                        &format!("\"score/gap\": {}", gap(2.0)),
                    )
                })
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            dirs.push(write_run(&base, &format!("sr-seed{seed}"), &sr, &lines));
            let tsr = TEMPORAL_CONFIG.replace("\"seed\": 1", &format!("\"seed\": {seed}"));
            dirs.push(write_run(
                &base,
                &format!("tsr-seed{seed}"),
                &tsr,
                &TEMPORAL_METRICS,
            ));
        }
        compare_runs(&dirs, &base).unwrap();
        let svg = std::fs::read_to_string(base.join("plots/compare_collapse.svg")).unwrap();
        // Two panels (gap, cosine) in one document, each with one line per strategy.
        assert_eq!(svg.matches("<svg ").count(), 3, "{svg}");
        assert!(svg.contains("× 3 seeds"), "{svg}");
        assert!(
            svg.contains(">self-rewarding, 3 iterations × 3 seeds<"),
            "{svg}"
        );
        // SR's iteration-1 gap differs by seed (2.1, 2.2, 2.3): an error bar; TSR's does not.
        assert!(svg.contains("Score gap, chosen − rejected"), "{svg}");
        let md = std::fs::read_to_string(base.join("comparison.md")).unwrap();
        assert!(md.contains("![The collapse figure"), "{md}");
        // The per-strategy table: SR's iteration-1 gaps 2.1, 2.2, 2.3: mean 2.2, s = 0.1,
        // t(0.975, 2) · 0.1 / √3 = 0.248: [1.95, 2.45]. TSR's seeds agree: a zero-width
        // interval.
        let (_, table) = load_comparison(&dirs).unwrap();
        let t = table.over_seeds.expect("several seeds");
        assert_eq!(t.groups[0], ("self-rewarding, 3 iterations".to_string(), 3));
        let gap = t
            .rows
            .iter()
            .find(|r| r.metric == "score gap, iteration 1 (0–5)")
            .unwrap();
        assert!((gap.cells[0].unwrap() - 2.2).abs() < 1e-12);
        let (lo, hi) = gap.intervals[0].unwrap();
        assert!(
            (lo - 1.9516).abs() < 1e-3 && (hi - 2.4484).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(gap.intervals[1], Some((2.75, 2.75)));
        assert!(md.contains("Per strategy over seeds"), "{md}");
        // One seed per strategy: no collapse figure (a stale one is removed).
        compare_runs(&dirs[..2], &base).unwrap();
        assert!(!base.join("plots/compare_collapse.svg").exists());
    }

    #[test]
    fn runs_of_other_settings_or_the_same_seed_are_not_seeds_of_one_strategy() {
        let base = fresh_dir("not-seeds");
        let other_lr =
            SR_CONFIG.replace("\"k\": 4", "\"k\": 4, \"dpo\": {\"learning_rate\": 1e-4}");
        let same_seed = [
            write_run(&base, "lr-a", SR_CONFIG, &SR_METRICS),
            write_run(&base, "lr-b", &other_lr, &SR_METRICS),
            write_run(&base, "again", SR_CONFIG, &SR_METRICS),
        ];
        let (_, table) = load_comparison(&same_seed).unwrap();
        assert!(table.over_seeds.is_none(), "{:?}", table.over_seeds);
        // Two seeds of one setting are.
        let seed2 = SR_CONFIG.replace("\"seed\": 1", "\"seed\": 2");
        let two = [
            same_seed[0].clone(),
            write_run(&base, "seed2", &seed2, &SR_METRICS),
        ];
        let (_, table) = load_comparison(&two).unwrap();
        assert_eq!(
            table.over_seeds.unwrap().groups,
            [("self-rewarding, 3 iterations".to_string(), 2)]
        );
    }

    #[test]
    fn held_out_scores_get_intervals_and_paired_differences() {
        let (_base, dirs) = two_runs("paired");
        // The runs' metrics: SR M0 2.5 → M3 2.65; TSR M0 2.5 → M2 3.0.
        write_answers(&dirs[0], 0, 0.0);
        write_answers(&dirs[0], 3, 0.15);
        write_answers(&dirs[1], 0, 0.0);
        write_answers(&dirs[1], 2, 0.5);
        let (_, table) = load_comparison(&dirs).unwrap();
        let m0 = table
            .rows
            .iter()
            .find(|r| r.metric == "held-out score M0 (0–5)")
            .unwrap();
        for iv in &m0.intervals {
            let (lo, hi) = iv.expect("an interval from eval/M0.jsonl");
            // Twenty 0/5 scores: se = 2.5/√20 ≈ 0.56, the interval ≈ 2.5 ± 1.1.
            assert!(lo < 1.6 && lo > 1.2 && hi > 3.4 && hi < 3.8, "{lo} {hi}");
        }
        let m1 = table
            .rows
            .iter()
            .find(|r| r.metric == "held-out score M1 (0–5)")
            .unwrap();
        assert_eq!(
            m1.intervals,
            vec![None, None],
            "no eval/M1.jsonl: no interval"
        );
        let find = |what: &str| {
            table
                .paired
                .iter()
                .find(|p| p.comparison.contains(what))
                .unwrap_or_else(|| panic!("no paired row {what}: {:?}", table.paired))
                .difference
        };
        let tsr = find("temporal: M2 − M0");
        assert!((tsr.interval.mean - 0.5).abs() < 1e-12);
        assert!((tsr.interval.low - 0.5).abs() < 1e-12 && (tsr.interval.high - 0.5).abs() < 1e-12);
        assert!(tsr.p_value < 1e-3, "{tsr:?}");
        // No spread in the differences: the uncorrelated bound, 2.80 · √(2 · 6.58) / √20.
        assert!(
            tsr.constant && (tsr.detectable - 2.27).abs() < 0.01,
            "{tsr:?}"
        );
        let sr = find("self-rewarding: M3 − M0");
        assert!((sr.interval.mean - 0.15).abs() < 1e-12);
        let across = find("temporal M2 − self-rewarding M3");
        assert!((across.interval.mean - 0.35).abs() < 1e-12);
        let text = table.to_string();
        assert!(
            text.contains("| paired difference, same held-out prompts (0–5) |"),
            "{text}"
        );
        assert!(text.contains("2.500 [1."), "{text}");
    }

    fn two_runs(name: &str) -> (PathBuf, Vec<PathBuf>) {
        let base = fresh_dir(name);
        let a = write_run(&base, "self-rewarding", SR_CONFIG, &SR_METRICS);
        let b = write_run(&base, "temporal", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
        (base, vec![a, b])
    }

    #[test]
    fn cells_come_from_each_run() {
        let (base, dirs) = two_runs("cells");
        let t = compare_runs(&dirs, &base).unwrap();
        assert_eq!(t.runs, ["self-rewarding", "temporal"]);
        let metrics: Vec<&str> = t.rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(
            metrics,
            [
                "held-out score M0 (0–5)",
                "held-out score M1 (0–5)",
                "held-out score M2 (0–5)",
                "held-out score M3 (0–5)",
                "score gap, iteration 1 (0–5)",
                "score gap, iteration 2 (0–5)",
                "score gap, iteration 3 (0–5)",
                "hidden cosine, iteration 1",
                "hidden cosine, iteration 2",
                "hidden cosine, iteration 3",
                "pairs kept (total)",
                "pairs per prompt (overall)",
                "tokens sampled (total)",
                "tokens judged (total)",
                "tokens trained (total)",
                "wall time (s, total)",
            ]
        );
        let check = |m: &str, sr: &str, tsr: &str| {
            assert_eq!(t.cell_text(m, "self-rewarding").unwrap(), sr, "{m}");
            assert_eq!(t.cell_text(m, "temporal").unwrap(), tsr, "{m}");
        };
        check("held-out score M0 (0–5)", "2.500", "2.500");
        check("held-out score M3 (0–5)", "2.650", "–");
        check("score gap, iteration 2 (0–5)", "1.00", "2.25");
        check("hidden cosine, iteration 3", "0.9900", "–");
        check("pairs kept (total)", "21", "14");
        check("pairs per prompt (overall)", "0.70", "0.70");
        check("tokens sampled (total)", "1500", "2100");
        check("tokens judged (total)", "–", "4100");
        check("wall time (s, total)", "90.0", "119.0");
        assert_eq!(t.cell("pairs kept (total)", "temporal"), Some(14.0));
        assert_eq!(t.cell("no such row", "temporal"), None);
    }

    #[test]
    fn ifeval_rows_for_runs_that_recorded_them() {
        let base = fresh_dir("cmp-ifeval");
        let a = write_run(&base, "self-rewarding", SR_CONFIG, &SR_METRICS);
        let b = write_run(&base, "temporal", TEMPORAL_CONFIG, &IFEVAL_METRICS);
        let t = compare_runs(&[a, b], &base).unwrap();
        let metrics: Vec<&str> = t.rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(
            metrics[4..12],
            [
                "IFEval prompt-level strict acc M0",
                "IFEval prompt-level strict acc M1",
                "IFEval inst-level strict acc M0",
                "IFEval inst-level strict acc M1",
                "IFEval prompt-level loose acc M0",
                "IFEval prompt-level loose acc M1",
                "IFEval inst-level loose acc M0",
                "IFEval inst-level loose acc M1",
            ]
        );
        let check = |m: &str, sr: &str, tsr: &str| {
            assert_eq!(t.cell_text(m, "self-rewarding").unwrap(), sr, "{m}");
            assert_eq!(t.cell_text(m, "temporal").unwrap(), tsr, "{m}");
        };
        check("IFEval prompt-level strict acc M0", "–", "0.333");
        check("IFEval inst-level strict acc M1", "–", "0.800");
        check("IFEval prompt-level loose acc M0", "–", "0.667");
        check("IFEval inst-level loose acc M0", "–", "0.800");
        // Neither run recorded them: no rows (see `cells_come_from_each_run`).
    }

    #[test]
    fn display_is_an_aligned_markdown_table() {
        let (base, dirs) = two_runs("display");
        let text = compare_runs(&dirs, &base).unwrap().to_string();
        let lines: Vec<&str> = text.lines().collect();
        let cells = |line: &str| -> Vec<String> {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        };
        assert_eq!(cells(lines[0]), ["metric", "self-rewarding", "temporal"]);
        // Numbers are right-aligned (`---:`), labels left.
        assert!(
            lines[1].starts_with("| ---") && lines[1].ends_with(": |"),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| cells(l) == ["pairs kept (total)", "21", "14"]),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| cells(l) == ["held-out score M3 (0–5)", "2.650", "–"]),
            "{text}"
        );
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }

    #[test]
    fn writes_comparison_md_and_one_line_per_run() {
        let (base, dirs) = two_runs("files");
        let out = base.join("out");
        let t = compare_runs(&dirs, &out).unwrap();
        let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
        assert!(md.contains(&t.to_string()), "{md}");
        assert!(md.contains("| temporal | `"), "{md}");
        assert!(
            md.contains("anchored_rejection=true, future_guided_chosen=false"),
            "{md}"
        );
        assert!(!md.contains("Warning"), "same model, judge, seed, K: {md}");
        assert!(
            md.contains("![Held-out score per iteration (0 = M0)](plots/compare_eval_score.svg)")
        );
        let svg = std::fs::read_to_string(out.join("plots/compare_eval_score.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
        // SR: M0..M3 (4 points), TSR: M0..M2 (3 points), and a legend.
        assert_eq!(polyline_points(&svg), [4, 3]);
        assert_eq!(legend_texts(&svg), ["self-rewarding", "temporal"]);
        // Only temporal recorded margins: its line, and no legend.
        let svg = std::fs::read_to_string(out.join("plots/compare_dpo_margins.svg")).unwrap();
        assert_eq!(polyline_points(&svg), [2]);
        assert!(!has_text(&svg, "self-rewarding"));
    }

    /// Two copies of one run: the second line lies on the first; both stay visible (other
    /// dash and marker) and the legend says they coincide.
    #[test]
    fn copies_of_one_run_are_told_apart() {
        let base = fresh_dir("copies");
        let a = write_run(&base.join("x"), "run", SR_CONFIG, &SR_METRICS);
        let b = write_run(&base.join("y"), "run", SR_CONFIG, &SR_METRICS);
        compare_runs(&[a, b], &base).unwrap();
        for (file, _, _, _, _) in PLOTS {
            let path = base.join("plots").join(file);
            if !path.exists() {
                continue;
            }
            let svg = std::fs::read_to_string(path).unwrap();
            assert_eq!(
                legend_texts(&svg),
                [
                    "run (self-rewarding; (defaults))",
                    "run (self-rewarding; (defaults)) #2 (same values as run \
                     (self-rewarding; (defaults)))"
                ],
                "{file}"
            );
            assert!(svg.contains("stroke-dasharray"), "{file}");
        }
    }

    #[test]
    fn differing_settings_warn_and_same_names_get_unique_labels() {
        let base = fresh_dir("labels");
        let a = write_run(&base.join("x"), "run", SR_CONFIG, &SR_METRICS);
        let other = TEMPORAL_CONFIG.replace("\"seed\": 1", "\"seed\": 2");
        let b = write_run(&base.join("y"), "run", &other, &TEMPORAL_METRICS);
        let c = write_run(&base.join("z"), "run", &other, &TEMPORAL_METRICS);
        let t = compare_runs(&[a, b, c], &base).unwrap();
        assert_eq!(
            t.runs,
            [
                "run (self-rewarding; (defaults))",
                "run (temporal; anchored_rejection=true, future_guided_chosen=false)",
                "run (temporal; anchored_rejection=true, future_guided_chosen=false) #2",
            ]
        );
        let md = std::fs::read_to_string(base.join("comparison.md")).unwrap();
        assert!(
            md.contains(
                "**Warning:** the runs differ in seed (1 vs 2): the comparison is not like for like."
            ),
            "{md}"
        );
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    }

    #[test]
    fn settings_are_rows_and_different_held_out_sets_or_judges_warn() {
        let base = fresh_dir("held-out");
        let a = write_run(&base, "sr", SR_CONFIG, &SR_METRICS);
        let other = TEMPORAL_CONFIG.replace(
            "\"judge\": \"ifeval\"",
            "\"judge\": {\"spec\": \"ifeval\", \"mode\": \"sampled\"}, \"eval\": {\"judge\": \"self\"}",
        );
        let b = write_run(&base, "tsr", &other, &TEMPORAL_METRICS);
        let answers = |dir: &Path, ids: &[&str]| {
            let lines: String = ids
                .iter()
                .map(|id| format!("{{\"prompt_id\": \"{id}\", \"score\": 2.5}}\n"))
                .collect();
            let run = RunDir::new(dir);
            std::fs::create_dir_all(run.eval_answers(0).parent().unwrap()).unwrap();
            std::fs::write(run.eval_answers(0), lines).unwrap();
        };
        answers(&a, &["p1", "p2", "p3", "p4"]);
        answers(&b, &["p1", "p2"]);
        let t = load_comparison(&[a.clone(), b.clone()]).unwrap().1;
        let setting = |name: &str| {
            t.settings
                .iter()
                .find(|r| r.setting == name)
                .unwrap_or_else(|| panic!("{name}"))
                .cells
                .clone()
        };
        assert_eq!(setting("strategy"), ["self-rewarding", "temporal"]);
        assert_eq!(setting("judge"), ["ifeval", "ifeval (mode=sampled)"]);
        assert_eq!(setting("eval judge"), ["ifeval", "self"]);
        assert_eq!(setting("held-out prompts"), ["4 of –", "2 of –"]);
        assert_eq!(
            t.warnings,
            [
                "the runs differ in judge (ifeval vs ifeval (mode=sampled)): the comparison is \
                 not like for like",
                "the runs differ in eval judge (ifeval vs self): the comparison is not like for \
                 like",
                "the runs differ in held-out prompts (scores on different prompts cannot be \
                 compared) (4 of – vs 2 of –): the comparison is not like for like",
            ]
        );
        // The terminal table shows the settings above the metrics.
        let text = t.to_string();
        let first: Vec<&str> = text
            .lines()
            .skip(2)
            .take(3)
            .map(|l| l.split('|').nth(1).unwrap().trim())
            .collect();
        assert_eq!(first, ["strategy", "options", "model"]);
        // Runs with the same judge settings show the judge by its spec alone.
        let same = load_comparison(&[b.clone(), b.clone()]).unwrap().1;
        let judges = &same
            .settings
            .iter()
            .find(|r| r.setting == "judge")
            .unwrap()
            .cells;
        assert_eq!(judges, &["ifeval", "ifeval"]);
        // Same held-out ids, another order: no warning about them.
        answers(&b, &["p4", "p3", "p2", "p1"]);
        let t = load_comparison(&[a, b]).unwrap().1;
        assert!(
            !t.warnings.iter().any(|w| w.contains("held-out")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            compare_runs(&[], Path::new(".")),
            Err(ReportError::NoRuns)
        ));
        let base = fresh_dir("cmp-bad");
        let a = write_run(&base, "a", SR_CONFIG, &[SR_METRICS[0], "{oops"]);
        let e = compare_runs(std::slice::from_ref(&a), &base)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:2: ", RunDir::new(&a).metrics().display())),
            "{e}"
        );
    }
}
