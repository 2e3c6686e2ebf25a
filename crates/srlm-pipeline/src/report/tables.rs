//! The report's markdown tables: one per group of [`Metric`]s (pairs and judge scores,
//! held-out evaluation (with IFEval's own accuracies when the held-out prompts are IFEval
//! records), DPO, compute), the strategy's components (could act / acted, with a warning when
//! one never acted), the plugin's metrics in their own table, and how values are
//! formatted (`–` missing, `NaN` / `inf` / `-inf` non-finite).

use std::fmt::Write as _;

use super::read::{RecordedIteration, RunMetrics};
use crate::metrics::{IterationMetrics, Metric};
use srlm_strategy::components::ComponentUse;

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

/// One table column: a metric, its header (with unit) and its decimals.
pub(crate) struct Column {
    pub(crate) metric: Metric,
    pub(crate) header: &'static str,
    pub(crate) decimals: usize,
    /// Left out when no row has a value (metrics that only some runs have).
    pub(crate) optional: bool,
}

const fn col(metric: Metric, header: &'static str, decimals: usize) -> Column {
    Column {
        metric,
        header,
        decimals,
        optional: false,
    }
}

/// A column shown only when some row has a value.
const fn optional_col(metric: Metric, header: &'static str, decimals: usize) -> Column {
    Column {
        optional: true,
        ..col(metric, header, decimals)
    }
}

/// How a table's totals row is made.
#[derive(PartialEq)]
pub(crate) enum Totals {
    None,
    /// Counts summed; `pairs_per_prompt` recomputed as total pairs / total prompts.
    Sum,
}

pub(crate) struct Table {
    pub(crate) title: &'static str,
    pub(crate) columns: &'static [Column],
    /// Show iteration 0 (M0) even when it has none of the table's metrics.
    pub(crate) with_m0: bool,
    pub(crate) totals: Totals,
    /// Metrics not summed in the totals row.
    pub(crate) not_summed: &'static [Metric],
}

pub(crate) const TABLES: [Table; 6] = [
    Table {
        title: "Pairs and judge scores",
        columns: &[
            col(Metric::Prompts, "prompts", 0),
            col(Metric::Pairs, "pairs", 0),
            // max_pairs_per_iteration: what the strategy returned before the cap.
            optional_col(Metric::PairsBeforeSubsampling, "pairs returned", 0),
            col(Metric::PairsPerPrompt, "pairs / prompt", 2),
            col(Metric::ChosenScore, "chosen score (0–5)", 2),
            col(Metric::RejectedScore, "rejected score (0–5)", 2),
            col(Metric::ScoreGap, "score gap (0–5)", 2),
            col(Metric::HiddenCosine, "hidden cosine", 4),
            col(Metric::JudgeMean, "judge mean (0–5)", 2),
            col(
                Metric::JudgeParseFailureRate,
                "judge parse failures (fraction)",
                3,
            ),
            // Expected-mode judging on a server: a digit not in its top log-probs.
            optional_col(
                Metric::JudgeDigitsMissingRate,
                "judge digits missing (fraction)",
                3,
            ),
            // diagnostics.second_judge: agreement of the two judges over the samples.
            optional_col(
                Metric::JudgeSecondAgreement,
                "agreement with second judge (Spearman)",
                3,
            ),
            optional_col(
                Metric::JudgeSecondParseFailureRate,
                "second judge parse failures (fraction)",
                3,
            ),
        ],
        with_m0: false,
        totals: Totals::Sum,
        not_summed: &[
            Metric::ChosenScore,
            Metric::RejectedScore,
            Metric::ScoreGap,
            Metric::HiddenCosine,
            Metric::JudgeMean,
            Metric::JudgeParseFailureRate,
            Metric::JudgeDigitsMissingRate,
            Metric::JudgeSecondAgreement,
            Metric::JudgeSecondParseFailureRate,
        ],
    },
    Table {
        title:
            "Reward hacking and dropped data (text speaking to the grader: score claims, \
                pleas to the judge, fake end markers; removed before an LLM judge reads a response)",
        columns: &[
            col(
                Metric::HackingSamples,
                "samples speaking to the grader (fraction)",
                3,
            ),
            col(
                Metric::HackingChosen,
                "chosen speaking to the grader (fraction)",
                3,
            ),
            col(Metric::PromptsSkipped, "prompts skipped (too long)", 0),
            col(
                Metric::PairsDroppedSameText,
                "pairs dropped (same text both sides)",
                0,
            ),
        ],
        with_m0: false,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "Length and degeneration (response length in tokens; looping: more than half \
                of a response's word trigrams repeat, which a rule judge does not see)",
        columns: &[
            col(Metric::LengthSamples, "sample length (tokens)", 1),
            col(Metric::LengthChosen, "chosen length (tokens)", 1),
            col(Metric::LengthRejected, "rejected length (tokens)", 1),
            col(Metric::DegenerateSamples, "samples looping (fraction)", 3),
            col(Metric::DegenerateChosen, "chosen looping (fraction)", 3),
        ],
        with_m0: false,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "Held-out evaluation (model M_i after iteration i; 0 = M0)",
        columns: &[
            col(Metric::EvalScore, "held-out score (0–5)", 3),
            col(Metric::EvalN, "held-out prompts", 0),
            col(Metric::EvalNoScoreRate, "eval parse failures (fraction)", 3),
            optional_col(Metric::EvalDegenerate, "answers looping (fraction)", 3),
            optional_col(
                Metric::EvalPerplexityUnderM0,
                "answers' perplexity under M0",
                2,
            ),
            // IFEval's own metrics (Zhou et al. 2023), present when the prompts are IFEval's.
            optional_col(
                Metric::EvalIfevalPromptStrict,
                "IFEval prompt-level strict acc",
                3,
            ),
            optional_col(
                Metric::EvalIfevalInstStrict,
                "IFEval inst-level strict acc",
                3,
            ),
            optional_col(
                Metric::EvalIfevalPromptLoose,
                "IFEval prompt-level loose acc",
                3,
            ),
            optional_col(
                Metric::EvalIfevalInstLoose,
                "IFEval inst-level loose acc",
                3,
            ),
            optional_col(Metric::EvalIfevalN, "IFEval prompts", 0),
            // Out-of-distribution sets (eval.ood), final-answer exact match.
            optional_col(Metric::EvalGsm8kAccuracy, "GSM8K accuracy", 3),
            optional_col(Metric::EvalGsm8kN, "GSM8K problems", 0),
            optional_col(
                Metric::EvalArcChallengeAccuracy,
                "ARC-Challenge accuracy",
                3,
            ),
            optional_col(Metric::EvalArcChallengeN, "ARC-Challenge questions", 0),
        ],
        with_m0: true,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "DPO (TRL's metric names; rewards in nats, beta-scaled)",
        columns: &[
            col(Metric::DpoLoss, "loss", 4),
            col(Metric::DpoRewardsChosen, "rewards/chosen", 4),
            col(Metric::DpoRewardsRejected, "rewards/rejected", 4),
            col(Metric::DpoRewardsMargins, "rewards/margins", 4),
            col(Metric::DpoRewardsAccuracies, "rewards/accuracies", 3),
            col(Metric::DpoGradNorm, "grad_norm", 4),
            col(Metric::DpoSteps, "steps", 0),
            // Where training ended, next to the running means above (2 epochs or more).
            optional_col(Metric::DpoLastEpochLoss, "last-epoch loss", 4),
            optional_col(Metric::DpoLastEpochMargins, "last-epoch rewards/margins", 4),
            optional_col(
                Metric::DpoLastEpochAccuracies,
                "last-epoch rewards/accuracies",
                3,
            ),
            optional_col(
                Metric::DpoLogpsChosenChange,
                "logps/chosen change (nats)",
                2,
            ),
            optional_col(
                Metric::DpoLogpsRejectedChange,
                "logps/rejected change (nats)",
                2,
            ),
        ],
        with_m0: false,
        totals: Totals::None,
        not_summed: &[],
    },
    Table {
        title: "Compute",
        columns: &[
            col(Metric::TokensSampled, "tokens sampled", 0),
            col(Metric::TokensJudged, "tokens judged", 0),
            col(Metric::TokensTrained, "tokens trained", 0),
            col(Metric::WallSeconds, "wall time (s)", 1),
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

/// Writes one of [`TABLES`] for `metrics`.
pub(crate) fn render_table(out: &mut String, table: &Table, metrics: &RunMetrics) {
    let rows: Vec<&RecordedIteration> = metrics
        .iterations
        .iter()
        .filter(|m| {
            m.iteration() >= 1
                || table.with_m0
                || table.columns.iter().any(|c| m.get(c.metric).is_some())
        })
        .collect();
    let columns: Vec<&Column> = table
        .columns
        .iter()
        .filter(|c| !c.optional || rows.iter().any(|m| m.get(c.metric).is_some()))
        .collect();
    let _ = writeln!(out, "### {}\n", table.title);
    let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
    header(out, "iteration", &headers);
    for m in &rows {
        let mut cells = vec![iteration_label(m.iteration())];
        cells.extend(
            columns
                .iter()
                .map(|c| format_value(m.get(c.metric), c.decimals)),
        );
        row(out, &cells);
    }
    if table.totals == Totals::Sum {
        let mut cells = vec!["**total**".to_string()];
        cells.extend(columns.iter().map(|c| {
            if c.metric == Metric::PairsPerPrompt {
                format_value(metrics.pairs_per_prompt_overall(), c.decimals)
            } else if table.not_summed.contains(&c.metric) {
                String::new()
            } else {
                format_value(metrics.total(c.metric), c.decimals)
            }
        }));
        row(out, &cells);
    }
    out.push('\n');
}

/// Writes the table of the strategy's components (how often each could act and did, per
/// iteration) and a warning for each component that never acted in the run; nothing when the
/// plugin recorded no component.
pub(crate) fn render_components(out: &mut String, metrics: &RunMetrics) {
    let rows: Vec<(u32, Option<f64>, ComponentUse)> = metrics
        .iterations
        .iter()
        .flat_map(|m| {
            let prompts = m.get(Metric::Prompts);
            m.components()
                .into_iter()
                .map(move |c| (m.iteration(), prompts, c))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "### Strategy components (prompts where each part of the strategy could change the \
         pair, and where it did)\n\n",
    );
    header(
        out,
        "iteration",
        &[
            "component",
            "prompts",
            "could act",
            "acted",
            "acted / prompts",
        ],
    );
    for (it, prompts, c) in &rows {
        row(
            out,
            &[
                iteration_label(*it),
                format!("`{}`", c.name),
                format_value(*prompts, 0),
                c.could_act.to_string(),
                c.acted.to_string(),
                format_value(
                    prompts.filter(|p| *p > 0.0).map(|p| f64::from(c.acted) / p),
                    2,
                ),
            ],
        );
    }
    out.push('\n');
    for n in never_acted(metrics.iterations.iter().map(RecordedIteration::metrics)) {
        let _ = writeln!(out, "**Warning: {n}.**\n");
    }
}

/// A strategy component that acted on no prompt in a whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct NeverActed {
    /// The component (`anchored_rejection`).
    pub name: String,
    /// Prompts, over the run's iterations, on which it could have acted.
    pub could_act: u32,
    /// The run's training prompts (all iterations).
    pub prompts: usize,
}

impl std::fmt::Display for NeverActed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` never acted in this run (it could have on {} of {} prompts): every pair is one \
             the strategy would have made without it, so the run does not measure that part; a \
             judge with finer scores gives it room to act",
            self.name, self.could_act, self.prompts
        )
    }
}

/// The components a plugin recorded that acted on no prompt in any of `iterations`.
pub fn never_acted<'m>(iterations: impl Iterator<Item = &'m IterationMetrics>) -> Vec<NeverActed> {
    let mut by: std::collections::BTreeMap<String, (u32, u32, usize)> = Default::default();
    for m in iterations {
        let prompts = m.training.as_ref().map_or(0, |t| t.prompts);
        let uses = ComponentUse::from_metrics(m.strategy.iter().map(|(k, v)| (k.as_str(), v.0)));
        for c in uses {
            let e = by.entry(c.name).or_default();
            e.0 += c.could_act;
            e.1 += c.acted;
            e.2 += prompts;
        }
    }
    by.into_iter()
        .filter(|(_, (_, acted, _))| *acted == 0)
        .map(|(name, (could_act, _, prompts))| NeverActed {
            name,
            could_act,
            prompts,
        })
        .collect()
}

/// The plugin's keys (`<plugin>/<name>`) and any other key srlm does not know, sorted
/// (components have their own table).
fn strategy_keys(metrics: &RunMetrics) -> Vec<&str> {
    let mut keys: Vec<&str> = metrics
        .iterations
        .iter()
        .flat_map(|m| m.strategy().keys().map(String::as_str))
        .filter(|k| !ComponentUse::is_metric_key(k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Writes the table of the plugin's metrics (nothing when the run recorded none).
pub(crate) fn render_strategy(out: &mut String, metrics: &RunMetrics) {
    let keys = strategy_keys(metrics);
    if keys.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Other recorded metrics (strategy plugin and extras)\n"
    );
    header(out, "iteration", &keys);
    for m in &metrics.iterations {
        if !keys.iter().any(|k| m.strategy().contains_key(*k)) {
            continue;
        }
        let mut cells = vec![iteration_label(m.iteration())];
        cells.extend(keys.iter().map(|k| match m.strategy().get(*k) {
            Some(v) => v.0.map_or_else(|| "–".into(), format_number),
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
