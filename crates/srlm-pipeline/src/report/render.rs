//! Rendering `report.md` and its SVG plots (the paper's diagnostics, one [`PlotSpec`] per
//! file under `plots/`) from a [`Run`] read back by [`super::read_run`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::plots::{self, Chart, XAxis, YAxis};
use super::read::{read_run, value_text, Run, RunMetrics, HEADER_KEYS};
use super::steps::{read_step_logs, step_series, STEP_PLOTS};
use super::tables::{format_value, render_components, render_strategy, render_table, TABLES};
use super::{io_err, write_file, ReportError};
use crate::metrics::Metric;
use crate::run_dir::RunDir;

/// One plot of the report: file name under `plots/`, title, y axis label, how the y range is
/// chosen, `(metric, legend)`.
pub(crate) struct PlotSpec {
    pub(crate) file: &'static str,
    pub(crate) title: &'static str,
    pub(crate) y_label: &'static str,
    pub(crate) y: YAxis,
    pub(crate) series: &'static [(Metric, &'static str)],
}

/// The per-iteration plots. The score gap has its own plot: with rejected scores at 0 it
/// equals the chosen score and would lie on top of that line.
pub(crate) const PLOTS: [PlotSpec; 13] = [
    PlotSpec {
        file: "scores.svg",
        title: "Judge scores of chosen and rejected",
        y_label: "judge points (0–5)",
        y: YAxis::JUDGE_POINTS,
        series: &[
            (Metric::ChosenScore, "chosen"),
            (Metric::RejectedScore, "rejected"),
        ],
    },
    PlotSpec {
        file: "score_gap.svg",
        title: "Judge-score gap, chosen − rejected",
        y_label: "judge points (0–5)",
        y: YAxis::JUDGE_POINTS,
        series: &[(Metric::ScoreGap, "gap")],
    },
    PlotSpec {
        file: "hidden_cosine.svg",
        title: "Cosine of chosen vs rejected last-layer hidden states",
        y_label: "cosine similarity",
        y: YAxis::COSINE,
        series: &[(Metric::HiddenCosine, "cosine")],
    },
    PlotSpec {
        file: "dpo_margins.svg",
        title: "DPO rewards/margins (mean over the iteration's steps)",
        y_label: "margin (nats, beta-scaled)",
        y: YAxis::FREE,
        series: &[(Metric::DpoRewardsMargins, "rewards/margins")],
    },
    PlotSpec {
        file: "dpo_accuracies.svg",
        title: "DPO rewards/accuracies (mean over the iteration's steps)",
        y_label: "fraction of pairs",
        y: YAxis::Fraction,
        series: &[(Metric::DpoRewardsAccuracies, "rewards/accuracies")],
    },
    PlotSpec {
        file: "grad_norm.svg",
        title: "DPO gradient norm (mean over the iteration's steps)",
        y_label: "grad_norm",
        y: YAxis::NON_NEGATIVE,
        series: &[(Metric::DpoGradNorm, "grad_norm")],
    },
    PlotSpec {
        file: "pairs_per_prompt.svg",
        title: "Pairs kept per prompt",
        y_label: "pairs / prompt",
        y: YAxis::NON_NEGATIVE,
        series: &[(Metric::PairsPerPrompt, "pairs / prompt")],
    },
    PlotSpec {
        file: "judge_parse_failure_rate.svg",
        title: "Judge parse-failure rate",
        y_label: "fraction of judgments",
        y: YAxis::Fraction,
        series: &[(Metric::JudgeParseFailureRate, "parse failures")],
    },
    PlotSpec {
        file: "hacking.svg",
        title: "Reward-hacking diagnostic: responses speaking to the grader",
        y_label: "fraction of responses",
        y: YAxis::Fraction,
        series: &[
            (Metric::HackingSamples, "all samples"),
            (Metric::HackingChosen, "chosen responses"),
        ],
    },
    PlotSpec {
        file: "length.svg",
        title: "Response length: all samples, chosen and rejected",
        y_label: "tokens",
        y: YAxis::NON_NEGATIVE,
        series: &[
            (Metric::LengthSamples, "all samples"),
            (Metric::LengthChosen, "chosen"),
            (Metric::LengthRejected, "rejected"),
        ],
    },
    PlotSpec {
        file: "degeneration.svg",
        title: "Degeneration: responses looping (iteration 0 = M0's held-out answers)",
        y_label: "fraction of responses",
        y: YAxis::Fraction,
        series: &[
            (Metric::DegenerateSamples, "samples"),
            (Metric::DegenerateChosen, "chosen"),
            (Metric::EvalDegenerate, "held-out answers"),
        ],
    },
    PlotSpec {
        file: "perplexity_under_m0.svg",
        title: "Held-out answers' perplexity under M0 (iteration 0 = M0's own answers)",
        y_label: "perplexity",
        y: YAxis::NON_NEGATIVE,
        series: &[(Metric::EvalPerplexityUnderM0, "held-out answers")],
    },
    PlotSpec {
        file: "eval_score.svg",
        title: "Held-out evaluation score (iteration 0 = M0)",
        y_label: "judge points (0–5)",
        y: YAxis::JUDGE_POINTS,
        series: &[(Metric::EvalScore, "held-out score")],
    },
];

/// Draws `chart` to `path` atomically; returns `false` (and removes a stale file) when there
/// is nothing finite to draw.
pub(crate) fn write_plot(path: &Path, chart: &Chart<'_>) -> Result<bool, ReportError> {
    let svg = plots::line_chart(chart).map_err(|message| ReportError::Plot {
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

/// `(iteration, value)` of `metric` as plot points.
pub(crate) fn points(metrics: &RunMetrics, metric: Metric) -> Vec<(f64, f64)> {
    metrics
        .series(metric)
        .into_iter()
        .map(|(i, v)| (f64::from(i), v))
        .collect()
}

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

/// The run folder's name for titles and column labels (its path when it has none).
pub(crate) fn run_name(dir: &RunDir) -> String {
    dir.root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.root().display().to_string())
}

/// The plots of a report: `(file, title)` of those drawn, per iteration and per DPO step, and
/// the titles of those skipped.
#[derive(Default)]
struct Drawn {
    per_iteration: Vec<(&'static str, &'static str)>,
    per_step: Vec<(&'static str, &'static str)>,
    skipped: Vec<&'static str>,
}

/// Renders `report.md` for `run` with the plots `drawn` (under `plots/`).
/// One line per diagnostic left out (`diagnostics/not_computed`), with its iterations and why.
fn render_not_computed(out: &mut String, m: &RunMetrics) {
    let mut by: std::collections::BTreeMap<(&str, &str), Vec<u32>> = Default::default();
    for it in &m.iterations {
        for n in it.metrics().training.iter().flat_map(|t| &t.not_computed) {
            by.entry((n.metric.as_str(), n.reason.as_str()))
                .or_default()
                .push(it.iteration());
        }
    }
    if by.is_empty() {
        return;
    }
    out.push_str(
        "Not computed (shown as `-` above, `null` in `metrics.jsonl`):

",
    );
    for ((metric, reason), its) in by {
        let its: Vec<String> = its.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "- `{metric}` in iteration{} {}: {reason}",
            if its.len() == 1 { "" } else { "s" },
            its.join(", ")
        );
    }
    out.push('\n');
}

/// A note for each iteration whose DPO lowered the log-probabilities of both the chosen and
/// the rejected responses from its first epoch to its last.
fn render_both_logps_fell(out: &mut String, m: &RunMetrics) {
    for it in &m.iterations {
        let (Some(c), Some(r)) = (
            it.get(Metric::DpoLogpsChosenChange),
            it.get(Metric::DpoLogpsRejectedChange),
        ) else {
            continue;
        };
        if c < 0.0 && r < 0.0 {
            let how = if r < c {
                "the margin grows by pushing the rejected down faster, not by raising the chosen"
            } else {
                "and the chosen fell further: the margin shrank"
            };
            let _ = writeln!(
                out,
                "**Iteration {}: DPO lowered the log-probabilities of both sides** (chosen {c:+.2}, \
                 rejected {r:+.2} nats per response from the first epoch to the last): {how} \
                 (Pal et al. 2024, arXiv 2402.13228, Sec. 3).\n",
                it.iteration()
            );
        }
    }
}

fn render_report(run: &Run, drawn: &Drawn) -> String {
    let cfg = &run.config;
    let mut out = String::new();
    let _ = writeln!(out, "# srlm run report: {}\n", run_name(&run.dir));
    let _ = writeln!(
        out,
        "Generated by `srlm report {}` from `config.json`, `metrics.jsonl` and each \
         iteration's `dpo_log.jsonl`; re-render with the same command.\n",
        run.dir.root().display()
    );
    let _ = writeln!(out, "| setting | value |\n|---|---|");
    for (label, text) in [
        ("strategy", cfg.text("strategy")),
        ("strategy options", cfg.options_text()),
        ("model", cfg.text("model")),
        ("judge", cfg.text("judge")),
        ("seed", cfg.text("seed")),
        ("iterations", cfg.text("iterations")),
        ("K (samples per prompt)", cfg.k_text()),
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
    let evals = m.series(Metric::EvalScore);
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
            if let (Some(a), Some(b)) = (
                crate::report::held_out_scores(run, first.0),
                crate::report::held_out_scores(run, last.0),
            ) {
                let (x, y) = crate::compare::paired_scores(&a, &b);
                if let Some(d) = crate::stats::paired_difference(&x, &y) {
                    if d.constant && d.interval.mean == 0.0 {
                        let _ = writeln!(
                            out,
                            "M{} and M{} scored each of the {} held-out prompts the same. At this size the eval set \
                             detects a difference of about ±{:.2} (80% power, α = 0.05, for uncorrelated scores).\n",
                            last.0, first.0, d.interval.n, d.detectable
                        );
                    } else {
                        let _ = writeln!(
                        out,
                        "M{} − M{} on the same {} held-out prompts: {:+.3} (95% bootstrap interval [{:+.2}, {:+.2}], \
                         sign-flip permutation p = {:.3}). At this size the eval set detects a difference of about \
                         ±{:.2} (80% power, α = 0.05); smaller changes are indistinguishable from noise.\n",
                        last.0,
                        first.0,
                        d.interval.n,
                        d.interval.mean,
                        d.interval.low,
                        d.interval.high,
                        d.p_value,
                        d.detectable
                    );
                    }
                }
            }
        }
    }

    let ifeval = m.series(Metric::EvalIfevalPromptStrict);
    if let (Some(first), Some(last)) = (ifeval.first(), ifeval.last()) {
        let _ = writeln!(
            out,
            "IFEval prompt-level strict accuracy: M{} {}{} (fraction of held-out prompts \
             following every instruction; IFEval's other accuracies in the held-out table).\n",
            first.0,
            format_value(Some(first.1), 3),
            if ifeval.len() > 1 {
                format!(" → M{} {}", last.0, format_value(Some(last.1), 3))
            } else {
                String::new()
            }
        );
    }

    out.push_str("## Summary per iteration\n\n");
    if m.iterations.is_empty() {
        out.push_str("_`metrics.jsonl` holds no iteration yet._\n\n");
    }
    for t in &TABLES {
        render_table(&mut out, t, m);
    }
    render_not_computed(&mut out, m);
    render_components(&mut out, m);
    render_both_logps_fell(&mut out, m);
    render_strategy(&mut out, m);

    out.push_str("## Plots\n\n");
    for (file, title) in &drawn.per_iteration {
        let _ = writeln!(out, "### {title}\n\n![{title}](plots/{file})\n");
    }
    if !drawn.per_step.is_empty() {
        out.push_str(
            "### DPO per optimizer step\n\nEach iteration's steps, one after the other (one \
             line per iteration, dashed lines between iterations), from `iter_<i>/dpo_log.jsonl`. \
             Temporary models keep only a summary (`temporary_<n>.json`) and have no curve.\n\n",
        );
    }
    for (file, title) in &drawn.per_step {
        let _ = writeln!(out, "![{title}](plots/{file})\n");
    }
    if !drawn.skipped.is_empty() {
        let _ = writeln!(
            out,
            "Not plotted (no finite values recorded): {}.\n",
            drawn.skipped.join("; ")
        );
    }
    out.push_str(HOW_TO_READ);
    out
}

/// Reads the run folder's `config.json`, `metrics.jsonl` and the iterations' `dpo_log.jsonl`,
/// writes the SVG plots under its `plots/` and its `report.md` (each atomically), and returns
/// the report's path.
///
/// Metrics that were never recorded appear as `–` and their plot is skipped (a stale plot
/// file from an earlier render is removed).
pub fn write_report(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let run = read_run(run_dir)?;
    let logs = read_step_logs(
        &run.dir,
        run.metrics.iterations.iter().map(|m| m.iteration()),
    )?;
    let plot_dir = run.dir.plots();
    let mut drawn = Drawn::default();
    for spec in &PLOTS {
        let series: Vec<plots::Series> = spec
            .series
            .iter()
            .map(|(metric, label)| plots::Series::new(*label, points(&run.metrics, *metric)))
            .collect();
        let chart = Chart {
            title: spec.title,
            x: XAxis::Iteration,
            y_label: spec.y_label,
            y: spec.y,
            series: &series,
            boundaries: &[],
        };
        if write_plot(&plot_dir.join(spec.file), &chart)? {
            drawn.per_iteration.push((spec.file, spec.title));
        } else {
            drawn.skipped.push(spec.title);
        }
    }
    for (k, spec) in STEP_PLOTS.iter().enumerate() {
        let (series, boundaries) = step_series(&logs, k);
        let chart = Chart {
            title: spec.title,
            x: XAxis::Step,
            y_label: spec.y_label,
            y: spec.y,
            series: &series,
            boundaries: &boundaries,
        };
        if write_plot(&plot_dir.join(spec.file), &chart)? {
            drawn.per_step.push((spec.file, spec.title));
        } else {
            drawn.skipped.push(spec.title);
        }
    }
    let path = run.dir.report();
    write_file(&path, render_report(&run, &drawn).as_bytes())?;
    Ok(path)
}
