//! Tests of the run report on fixture run folders written by the tests themselves.

use std::path::{Path, PathBuf};

use super::read::{quote_non_finite, value_text};
use super::render::PLOTS;
use super::*;
use crate::metrics::{Metric, StrategyValue};
use crate::run_dir::RunDir;

/// A fresh, empty folder under the system temp dir, unique per process and `name`.
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("srlm-report-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a run folder `parent/name` with `config.json` and `metrics.jsonl` (lines joined).
pub(crate) fn write_run(parent: &Path, name: &str, config: &str, lines: &[&str]) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let run = RunDir::new(&dir);
    std::fs::write(run.config(), config).unwrap();
    std::fs::write(run.metrics(), lines.join("\n") + "\n").unwrap();
    dir
}

/// Writes `eval/M<model>.jsonl` of a run: 20 prompts scored 0 and 5 alternately, plus
/// `shift` (so the mean is 2.5 + shift).
pub(crate) fn write_answers(run: &Path, model: usize, shift: f64) {
    let path = RunDir::new(run).eval_answers(model);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lines: String = (0..20)
        .map(|i| {
            let score = if i % 2 == 0 { 0.0 } else { 5.0 } + shift;
            format!(
                "{}\n",
                serde_json::json!({"prompt_id": format!("p{i}"), "score": score})
            )
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

#[test]
fn the_report_states_the_paired_change_and_the_detectable_size() {
    let base = fresh_dir("paired");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    write_answers(&dir, 0, 0.0);
    // M2: 1 where M0 has 0, 5 where M0 has 5: differences 1 and 0 alternately. Exact p:
    // 2 of the 2^10 sign patterns of the ten 1s reach |sum| = 10, ≈ 0.002.
    let path = RunDir::new(&dir).eval_answers(2);
    let lines: String = (0..20)
        .map(|i| {
            let score = if i % 2 == 0 { 1.0 } else { 5.0 };
            format!(
                "{}\n",
                serde_json::json!({"prompt_id": format!("p{i}"), "score": score})
            )
        })
        .collect();
    std::fs::write(path, lines).unwrap();
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    // Differences: 1 on the 10 even prompts, 0 on the odd ones: mean 0.5, sd = √(10·0.25/19)
    // ≈ 0.513, detectable ≈ 2.80 · 0.513 / √20 ≈ 0.32.
    assert!(
        md.contains("M2 − M0 on the same 20 held-out prompts: +0.500 (95% bootstrap interval [+0.30, +0.70], sign-flip permutation p = 0.002)"),
        "{md}"
    );
    assert!(md.contains("detects a difference of about ±0.32"), "{md}");
}

pub(crate) const TEMPORAL_CONFIG: &str = r#"{"strategy": "temporal",
 "strategy_options": {"anchored_rejection": true, "future_guided_chosen": false},
 "model": "default", "judge": "ifeval", "seed": 1, "iterations": 2, "k": 4,
 "max_new_tokens": 64, "dpo": {"beta": 0.1, "loss_type": "sigmoid", "lr": {"peak": 5e-6}}}"#;

/// Two iterations with every key of the contract, a NaN grad_norm, a strategy key, and an
/// iteration-0 line holding the M0 evaluation (and its wall time).
pub(crate) const TEMPORAL_METRICS: [&str; 3] = [
    r#"{"iteration": 0, "eval/score": 2.5, "eval/n": 20, "eval/parse_failure_rate": 0.1, "compute/wall_seconds": 3.5}"#,
    r#"{"iteration": 1, "prompts": 10, "pairs": 8, "pairs_per_prompt": 0.8, "score/chosen_mean": 4.25, "score/rejected_mean": 1.5, "score/gap": 2.75, "hidden_cosine": 0.8125, "dpo/loss": 0.6931, "dpo/rewards/chosen": 0.01, "dpo/rewards/rejected": -0.02, "dpo/rewards/margins": 0.03, "dpo/rewards/accuracies": 0.625, "dpo/grad_norm": 1.5, "dpo/steps": 4, "judge/parse_failure_rate": 0.0, "judge/mean": 3.0, "eval/score": 2.75, "eval/n": 20, "compute/tokens_sampled": 1000, "compute/tokens_judged": 2000, "compute/tokens_trained": 500, "compute/wall_seconds": 60.0, "strategy/future_upgrades": 3}"#,
    r#"{"iteration": 2, "prompts": 10, "pairs": 6, "pairs_per_prompt": 0.6, "score/chosen_mean": 4.0, "score/rejected_mean": 1.75, "score/gap": 2.25, "hidden_cosine": 0.875, "dpo/loss": 0.65, "dpo/rewards/chosen": null, "dpo/rewards/margins": 0.05, "dpo/rewards/accuracies": 0.75, "dpo/grad_norm": "NaN", "judge/parse_failure_rate": 0.05, "eval/score": 3.0, "eval/n": 20, "compute/tokens_sampled": 1100, "compute/tokens_judged": 2100, "compute/tokens_trained": 400, "compute/wall_seconds": 55.5, "strategy/future_upgrades": 2}"#,
];

use plots::tests::{has_text, legend_texts, plot_area, polyline_points};

/// Asserts that the report `md` has each of `lines` as a whole line.
fn assert_lines(md: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            md.lines().any(|l| l == *line),
            "missing line {line:?} in\n{md}"
        );
    }
}

fn svg(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(RunDir::new(dir).plots().join(file))
        .unwrap_or_else(|e| panic!("plots/{file}: {e}"))
}

#[test]
fn report_holds_the_exact_table_rows() {
    let base = fresh_dir("rows");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    let path = write_report(&dir).unwrap();
    assert_eq!(path, RunDir::new(&dir).report());
    let md = std::fs::read_to_string(&path).unwrap();
    assert_lines(
        &md,
        &[
            "# srlm run report: tsr",
            "| strategy | temporal |",
            "| strategy options | anchored_rejection=true, future_guided_chosen=false |",
            "| model | default |",
            "| judge | ifeval |",
            "| seed | 1 |",
            "| K (samples per prompt) | 4 |",
            "| max_new_tokens | `64` |",
            "| dpo | `beta=0.1, loss_type=sigmoid, lr={peak=5e-6}` |",
            "Held-out score: M0 2.500 → M2 3.000 (judge points, 0–5).",
            // pairs and judge scores (no M0 row: M0 has no pairs)
            "| 1 | 10 | 8 | 0.80 | 4.25 | 1.50 | 2.75 | 0.8125 | 3.00 | 0.000 |",
            "| 2 | 10 | 6 | 0.60 | 4.00 | 1.75 | 2.25 | 0.8750 | – | 0.050 |",
            "| **total** | 20 | 14 | 0.70 |  |  |  |  |  |  |",
            // held-out evaluation, M0 first
            "| 0 (M0) | 2.500 | 20 | 0.100 |",
            "| 1 | 2.750 | 20 | – |",
            "| 2 | 3.000 | 20 | – |",
            // DPO (no M0 row; null and missing are both "–"; NaN shown as such)
            "| 1 | 0.6931 | 0.0100 | -0.0200 | 0.0300 | 0.625 | 1.5000 | 4 |",
            "| 2 | 0.6500 | – | – | 0.0500 | 0.750 | NaN | – |",
            // compute, with the M0 evaluation's wall time and totals
            "| 0 (M0) | – | – | – | 3.5 |",
            "| 1 | 1000 | 2000 | 500 | 60.0 |",
            "| 2 | 1100 | 2100 | 400 | 55.5 |",
            "| **total** | 2100 | 4100 | 900 | 119.0 |",
            // plugin keys
            "| iteration | strategy/future_upgrades |",
            "| 1 | 3 |",
            "| 2 | 2 |",
            "![Held-out evaluation score (iteration 0 = M0)](plots/eval_score.svg)",
            "![Cosine of chosen vs rejected last-layer hidden states](plots/hidden_cosine.svg)",
        ],
    );
    assert_eq!(
        md.matches("| 0 (M0) |").count(),
        2,
        "M0 rows: eval and compute (M0 has no pairs, no plugin keys)"
    );
    // The fixture records no hacking rates and has no DPO step logs.
    assert!(
        md.lines().any(|l| l
            == "Not plotted (no finite values recorded): Reward-hacking diagnostic: responses \
                speaking to the grader; Response length: all samples, chosen and rejected; \
                Degeneration: responses looping (iteration 0 = M0's held-out answers); Held-out \
                answers' perplexity under M0 (iteration 0 = M0's own answers); DPO loss \
                per optimizer step; DPO rewards/margins per optimizer step; DPO \
                rewards/accuracies per optimizer step."),
        "{md}"
    );
}

#[test]
fn perplexity_under_m0_is_a_column_and_a_plot() {
    let base = fresh_dir("perplexity");
    let lines: Vec<String> = TEMPORAL_METRICS
        .iter()
        .zip([3.25, 4.5, 12.0])
        .map(|(line, ppl)| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["eval/perplexity_under_m0"] = ppl.into();
            v.to_string()
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &lines);
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert_lines(
        &md,
        &[
            "| iteration | held-out score (0–5) | held-out prompts | eval parse failures (fraction) | answers' perplexity under M0 |",
            "| 0 (M0) | 2.500 | 20 | 0.100 | 3.25 |",
            "| 1 | 2.750 | 20 | – | 4.50 |",
            "| 2 | 3.000 | 20 | – | 12.00 |",
            "![Held-out answers' perplexity under M0 (iteration 0 = M0's own answers)](plots/perplexity_under_m0.svg)",
        ],
    );
    assert_eq!(
        polyline_points(&svg(&dir, "perplexity_under_m0.svg")),
        vec![3]
    );
}

#[test]
fn plots_are_svg_with_one_point_per_recorded_iteration() {
    let base = fresh_dir("plots");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    write_report(&dir).unwrap();
    // The fixture records no hacking rates, lengths, looping shares or perplexities: no plot
    // for them.
    let not_recorded = [
        "hacking.svg",
        "length.svg",
        "degeneration.svg",
        "perplexity_under_m0.svg",
    ];
    for file in not_recorded {
        assert!(!RunDir::new(&dir).plots().join(file).exists(), "{file}");
    }
    for p in PLOTS.iter().filter(|p| !not_recorded.contains(&p.file)) {
        let s = svg(&dir, p.file);
        assert!(
            s.starts_with("<svg"),
            "{}: {}",
            p.file,
            &s[..40.min(s.len())]
        );
        assert!(s.trim_end().ends_with("</svg>"), "{}", p.file);
    }
    // Iterations 0, 1, 2: one line of three points.
    assert_eq!(polyline_points(&svg(&dir, "eval_score.svg")), vec![3]);
    assert_eq!(polyline_points(&svg(&dir, "hidden_cosine.svg")), vec![2]);
    // grad_norm is NaN at iteration 2: the line stops at iteration 1.
    assert_eq!(polyline_points(&svg(&dir, "grad_norm.svg")), vec![1]);
    // Chosen and rejected: two series of two points, with a legend; the gap on its own.
    assert_eq!(polyline_points(&svg(&dir, "scores.svg")), vec![2; 2]);
    assert_eq!(
        legend_texts(&svg(&dir, "scores.svg")),
        ["chosen", "rejected"]
    );
    assert_eq!(polyline_points(&svg(&dir, "score_gap.svg")), vec![2]);
    assert!(has_text(&svg(&dir, "score_gap.svg"), "judge points (0–5)"));
}

#[test]
fn missing_metrics_are_dashes_and_their_plots_are_skipped() {
    let base = fresh_dir("missing");
    let dir = write_run(
        &base,
        "sr",
        r#"{"strategy": "self-rewarding", "strategy_options": {}, "seed": 7}"#,
        &[r#"{"iteration": 1, "pairs": 3, "prompts": 4, "score/gap": 1.0}"#],
    );
    assert_eq!(
        value_text(&serde_json::json!({"spec": "self", "n": 3, "extra": {"a": "b"}})),
        "self (extra={a=b}, n=3)"
    );
    assert_eq!(value_text(&serde_json::json!({"spec": "ifeval"})), "ifeval");
    // A stale plot from an earlier render must go.
    let plots = RunDir::new(&dir).plots();
    std::fs::create_dir_all(&plots).unwrap();
    std::fs::write(plots.join("eval_score.svg"), "<svg/>").unwrap();
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert_lines(
        &md,
        &[
            "| strategy options | (defaults) |",
            "| model | – |",
            "| 1 | 4 | 3 | – | – | – | 1.00 | – | – | – |",
            "| 1 | – | – | – |",
            "| 1 | – | – | – | – | – | – | – |",
            "| **total** | – | – | – | – |",
        ],
    );
    // pairs_per_prompt total is recomputed from the counts even when the key is missing.
    assert!(
        md.lines()
            .any(|l| l == "| **total** | 4 | 3 | 0.75 |  |  |  |  |  |  |"),
        "{md}"
    );
    assert!(
        md.contains("Not plotted (no finite values recorded): "),
        "{md}"
    );
    assert!(
        md.contains("Held-out evaluation score (iteration 0 = M0); "),
        "{md}"
    );
    assert!(!md.contains("plots/eval_score.svg"));
    assert!(!plots.join("eval_score.svg").exists(), "stale plot removed");
    assert_eq!(polyline_points(&svg(&dir, "score_gap.svg")), vec![1]);
    assert!(md.contains("Judge scores of chosen and rejected; "), "{md}");
    assert!(
        md.contains("DPO loss per optimizer step"),
        "no step log: {md}"
    );
}

#[test]
fn an_empty_metrics_file_still_renders() {
    let base = fresh_dir("empty");
    let dir = write_run(&base, "new", "{}", &[]);
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert!(md.contains("holds no iteration yet"), "{md}");
}

fn metrics_error(lines: &[&str]) -> String {
    let base = fresh_dir(&format!("bad{}", lines.len()));
    let path = RunDir::new(&base).metrics();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = read_metrics(&path).unwrap_err().to_string();
    let prefix = format!("{}:", path.display());
    assert!(err.starts_with(&prefix), "{err}");
    err[prefix.len()..].to_string()
}

#[test]
fn a_bad_line_names_file_and_line() {
    let ok = r#"{"iteration": 0, "eval/score": 1.0}"#;
    let e = metrics_error(&[ok, "", r#"{"iteration": 1, "pairs": }"#]);
    assert!(e.starts_with("3: not valid JSON"), "{e}");
    let e = metrics_error(&[ok, r#"{"pairs": 2}"#]);
    assert_eq!(e, "2: missing field `iteration`");
    let e = metrics_error(&[r#"{"iteration": -1}"#]);
    assert_eq!(e, "1: `iteration` must be a non-negative integer, got -1");
    let e = metrics_error(&[ok, ok, ok, r#"{"iteration": 1, "score/gap": "big"}"#]);
    assert_eq!(e, "4: `score/gap` must be a number, got \"big\"");
    let e = metrics_error(&[ok, "[1, 2]"]);
    assert_eq!(e, "2: expected a JSON object");
}

/// A standard key of the wrong type is an error naming file:line and the key, whatever part
/// of the typed line it belongs to (the training part is optional in
/// [`crate::metrics::IterationMetrics`], so it must not silently drop the line's training).
#[test]
fn a_wrong_typed_standard_key_names_file_line_and_key() {
    let ok = r#"{"iteration": 0, "eval/score": 1.0}"#;
    let e = metrics_error(&[
        ok,
        TEMPORAL_METRICS[1],
        r#"{"iteration": 2, "score/gap": "high"}"#,
    ]);
    assert_eq!(e, "3: `score/gap` must be a number, got \"high\"");
    let e = metrics_error(&[ok, r#"{"iteration": 1, "pairs": 2.5}"#]);
    assert_eq!(e, "2: `pairs` must be a non-negative integer, got 2.5");
    let e = metrics_error(&[r#"{"iteration": 0, "eval/n": "NaN"}"#]);
    assert_eq!(e, "1: `eval/n` must be a non-negative integer, got \"NaN\"");
    let e = metrics_error(&[ok, r#"{"iteration": 1, "dpo/loss": [0.5]}"#]);
    assert_eq!(e, "2: `dpo/loss` must be a number, got [0.5]");
    // A plugin's metrics are numbers too.
    let e = metrics_error(&[ok, r#"{"iteration": 1, "temporal/note": "ok"}"#]);
    assert_eq!(e, "2: `temporal/note` must be a number, got \"ok\"");
}

#[test]
fn errors_name_missing_files() {
    let base = fresh_dir("nofiles");
    let err = write_report(&base).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:", RunDir::new(&base).config().display())),
        "{err}"
    );
    std::fs::write(RunDir::new(&base).config(), "[]").unwrap();
    let err = write_report(&base).unwrap_err().to_string();
    assert!(
        err.ends_with("config.json: expected a JSON object"),
        "{err}"
    );
}

#[test]
fn non_finite_values_are_read_from_strings_and_python_tokens() {
    let base = fresh_dir("nonfinite");
    let path = RunDir::new(&base).metrics();
    std::fs::write(
        &path,
        concat!(
            r#"{"iteration": 1, "dpo/loss": NaN, "dpo/grad_norm": -Infinity, "hidden_cosine": Infinity, "#,
            r#""strategy/note": "NaN", "score/gap": "-inf", "strategy/flag": 1.5}"#
        ),
    )
    .unwrap();
    let m = read_metrics(&path).unwrap();
    assert!(m.get(1, Metric::DpoLoss).unwrap().is_nan());
    assert_eq!(m.get(1, Metric::DpoGradNorm), Some(f64::NEG_INFINITY));
    assert_eq!(m.get(1, Metric::HiddenCosine), Some(f64::INFINITY));
    assert_eq!(m.get(1, Metric::ScoreGap), Some(f64::NEG_INFINITY));
    // Counts the line left out are not recorded, though the typed line needs them.
    assert_eq!(m.get(1, Metric::Pairs), None);
    assert_eq!(
        m.iterations[0].metrics().training.as_ref().unwrap().pairs,
        0
    );
    let it = &m.iterations[0];
    assert!(it.strategy()["strategy/note"].0.unwrap().is_nan());
    assert_eq!(it.strategy()["strategy/flag"], StrategyValue(Some(1.5)));
    // A string with a bare token inside is left alone.
    let path = base.join("quoted.jsonl");
    std::fs::write(
        &path,
        r#"{"iteration": 0, "eval/score": NaN, "x/y": "NaN is \"fine\""}"#,
    )
    .unwrap();
    let e = read_metrics(&path).unwrap_err().to_string();
    assert!(
        e.ends_with(":1: `x/y` must be a number, got \"NaN is \\\"fine\\\"\""),
        "{e}"
    );
}

#[test]
fn repeated_iterations_merge_with_later_lines_winning() {
    let base = fresh_dir("merge");
    let path = RunDir::new(&base).metrics();
    std::fs::write(
        &path,
        "{\"iteration\": 2, \"pairs\": 1, \"prompts\": 2}\n{\"iteration\": 1, \"pairs\": 5}\n\
         {\"iteration\": 2, \"pairs\": 3}\n{\"iteration\": 2, \"prompts\": null}\n",
    )
    .unwrap();
    let m = read_metrics(&path).unwrap();
    assert_eq!(
        m.iterations
            .iter()
            .map(|i| i.iteration())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(m.get(2, Metric::Pairs), Some(3.0));
    assert_eq!(m.get(2, Metric::Prompts), Some(2.0));
    assert_eq!(m.total(Metric::Pairs), Some(8.0));
    assert_eq!(m.total(Metric::EvalScore), None);
}

#[test]
fn format_value_cases() {
    let check = |v: Option<f64>, d: usize, want: &str| assert_eq!(format_value(v, d), want);
    check(None, 2, "–");
    check(Some(f64::NAN), 2, "NaN");
    check(Some(f64::INFINITY), 0, "inf");
    check(Some(f64::NEG_INFINITY), 3, "-inf");
    check(Some(1.23456), 3, "1.235");
    check(Some(-0.0001), 2, "0.00");
    check(Some(-0.5), 1, "-0.5");
    check(Some(1234.0), 0, "1234");
}

#[test]
fn quote_non_finite_leaves_strings_alone() {
    assert_eq!(
        quote_non_finite(r#"{"a": NaN, "NaN": "Infinity \" NaN", "b": [-Infinity, Infinity]}"#),
        r#"{"a": "NaN", "NaN": "Infinity \" NaN", "b": ["-inf", "inf"]}"#
    );
}

/// M0 and M1 of a run on IFEval prompts: 3 prompts, 5 instructions (M0 follows 1 prompt and
/// 3 instructions strictly, 2 and 4 loosely; M1 2 and 4 strictly, all loosely).
pub(crate) const IFEVAL_METRICS: [&str; 2] = [
    r#"{"iteration": 0, "eval/score": 2.5, "eval/n": 3, "eval/parse_failure_rate": 0.0, "eval/ifeval/n": 3, "eval/ifeval/prompt_level_strict_acc": 0.3333333333333333, "eval/ifeval/inst_level_strict_acc": 0.6, "eval/ifeval/prompt_level_loose_acc": 0.6666666666666666, "eval/ifeval/inst_level_loose_acc": 0.8}"#,
    r#"{"iteration": 1, "prompts": 10, "pairs": 8, "pairs_per_prompt": 0.8, "eval/score": 3.5, "eval/n": 3, "eval/ifeval/n": 3, "eval/ifeval/prompt_level_strict_acc": 0.6666666666666666, "eval/ifeval/inst_level_strict_acc": 0.8, "eval/ifeval/prompt_level_loose_acc": 1.0, "eval/ifeval/inst_level_loose_acc": 1.0, "compute/tokens_sampled": 1, "compute/tokens_judged": 1, "compute/tokens_trained": 1}"#,
];

#[test]
fn ifeval_accuracies_join_the_held_out_table_only_when_recorded() {
    let base = fresh_dir("ifeval");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &IFEVAL_METRICS);
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert_lines(
        &md,
        &[
            "IFEval prompt-level strict accuracy: M0 0.333 → M1 0.667 (fraction of held-out prompts \
             following every instruction; IFEval's other accuracies in the held-out table).",
            "| iteration | held-out score (0–5) | held-out prompts | eval parse failures (fraction) \
             | IFEval prompt-level strict acc | IFEval inst-level strict acc \
             | IFEval prompt-level loose acc | IFEval inst-level loose acc | IFEval prompts |",
            "| 0 (M0) | 2.500 | 3 | 0.000 | 0.333 | 0.600 | 0.667 | 0.800 | 3 |",
            "| 1 | 3.500 | 3 | – | 0.667 | 0.800 | 1.000 | 1.000 | 3 |",
        ],
    );
    // A run without IFEval prompts shows none of these columns.
    let dir = write_run(&base, "plain", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert!(!md.contains("IFEval"), "{md}");
    assert!(md
        .lines()
        .any(|l| l == "| iteration | held-out score (0–5) | held-out prompts | eval parse failures (fraction) |"));
}

/// Writes `iter_<i>/dpo_log.jsonl` with `lines`.
fn write_log(dir: &Path, iteration: usize, lines: &[&str]) {
    let path = RunDir::new(dir).iteration(iteration).dpo_log();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The x pixel of each marker of series `i` (dots and squares: the first two series).
fn marker_xs(svg: &str, i: usize) -> Vec<f64> {
    let g = svg
        .split(&format!("<g class=\"markers\" data-series=\"{i}\">"))
        .nth(1)
        .unwrap();
    let g = &g[..g.find("</g>").unwrap()];
    let (key, shift) = if i == 0 {
        (" cx=\"", 0.0)
    } else {
        (" x=\"", 5.5)
    };
    g.split(key)
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse::<f64>().unwrap() + shift)
        .collect()
}

#[test]
fn per_step_dpo_curves_come_from_each_iterations_log() {
    let base = fresh_dir("steps");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    write_log(
        &dir,
        1,
        &[
            r#"{"step": 1, "loss": 0.6931, "rewards/margins": 0.0, "rewards/accuracies": 0.0, "grad_norm": 30.5}"#,
            r#"{"step": 2, "loss": 0.68, "rewards/margins": 0.02, "rewards/accuracies": 0.5}"#,
            r#"{"step": 3, "loss": 0.60, "rewards/margins": 0.2, "rewards/accuracies": 1.0}"#,
        ],
    );
    write_log(
        &dir,
        2,
        &[
            r#"{"step": 1, "loss": 0.69, "rewards/margins": 0.01, "rewards/accuracies": 0.5}"#,
            r#"{"step": 2, "loss": NaN, "rewards/margins": "inf", "rewards/accuracies": 1.0}"#,
        ],
    );
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    assert!(md.contains("### DPO per optimizer step"), "{md}");
    for (file, title) in [
        ("dpo_step_loss.svg", "DPO loss per optimizer step"),
        (
            "dpo_step_margins.svg",
            "DPO rewards/margins per optimizer step",
        ),
        (
            "dpo_step_accuracies.svg",
            "DPO rewards/accuracies per optimizer step",
        ),
    ] {
        assert!(md.contains(&format!("![{title}](plots/{file})")), "{md}");
        let s = svg(&dir, file);
        assert_eq!(legend_texts(&s), ["iteration 1", "iteration 2"], "{file}");
        assert_eq!(s.matches("class=\"boundary\"").count(), 1, "{file}");
    }
    // Loss: iteration 1's three steps, then iteration 2's first (its second is NaN).
    let loss = svg(&dir, "dpo_step_loss.svg");
    assert_eq!(polyline_points(&loss), [3, 1]);
    // The boundary lies between step 3 (iteration 1) and step 4 (iteration 2's first).
    let xs1 = marker_xs(&loss, 0);
    let xs2 = marker_xs(&loss, 1);
    assert_eq!((xs1.len(), xs2.len()), (3, 1));
    let b = loss.split("class=\"boundary\" x1=\"").nth(1).unwrap();
    let b: f64 = b[..b.find('"').unwrap()].parse().unwrap();
    assert!(xs1[2] < b && b < xs2[0], "{xs1:?} {b} {xs2:?}");
    // Accuracies: a fraction axis, 0 to 1.
    let acc = svg(&dir, "dpo_step_accuracies.svg");
    assert_eq!(polyline_points(&acc), [3, 2]);
    assert_eq!(
        y_tick_texts(&acc),
        ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    );
    // x ticks are whole steps.
    assert!(has_text(&acc, "5") && !has_text(&acc, "2.5"));
}

#[test]
fn a_bad_step_log_line_names_file_line_and_key() {
    let base = fresh_dir("badlog");
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &TEMPORAL_METRICS);
    write_log(&dir, 2, &[r#"{"loss": 0.5}"#, r#"{"loss": "high"}"#]);
    let e = write_report(&dir).unwrap_err().to_string();
    let path = RunDir::new(&dir).iteration(2).dpo_log();
    assert_eq!(
        e,
        format!(
            "{}:2: `loss` must be a number, got \"high\"",
            path.display()
        )
    );
    write_log(&dir, 2, &["[1]"]);
    let e = write_report(&dir).unwrap_err().to_string();
    assert!(
        e.ends_with("dpo_log.jsonl:1: expected a JSON object"),
        "{e}"
    );
}

/// The y tick labels (plotters writes them right-aligned).
fn y_tick_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter(|t| t[..t.find('>').unwrap()].contains("text-anchor=\"end\""))
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].trim().to_string()
        })
        .collect()
}

/// The main job's first iterations: rejected scores all 0 (the gap equals the chosen score),
/// a hidden cosine that moves by 0.004, no parse failures; then a single-iteration run and a
/// flat one. Every plot: distinct y tick labels, the legend below the plot, fractions on
/// [0, 1].
#[test]
fn edge_cases_draw_readable_plots() {
    let base = fresh_dir("edges");
    let zero_rejected = [
        r#"{"iteration": 0, "eval/score": 1.0417, "eval/n": 24}"#,
        r#"{"iteration": 1, "prompts": 16, "pairs": 9, "score/chosen_mean": 3.98, "score/rejected_mean": 0.0, "score/gap": 3.98, "hidden_cosine": 0.8114, "judge/parse_failure_rate": 0.0, "hacking/samples": 0.0, "hacking/chosen": 0.0, "dpo/rewards/accuracies": 0.8, "eval/score": 0.7292}"#,
        r#"{"iteration": 2, "prompts": 16, "pairs": 10, "score/chosen_mean": 3.75, "score/rejected_mean": 0.0, "score/gap": 3.75, "hidden_cosine": 0.8071, "judge/parse_failure_rate": 0.0, "hacking/samples": 0.0, "hacking/chosen": 0.0, "dpo/rewards/accuracies": 0.85, "eval/score": 1.0417}"#,
    ];
    let single = [
        r#"{"iteration": 1, "prompts": 4, "pairs": 2, "score/chosen_mean": 4.0, "score/rejected_mean": 4.0, "score/gap": 0.0, "hidden_cosine": 0.9, "judge/parse_failure_rate": 0.25, "dpo/grad_norm": "NaN"}"#,
    ];
    let flat = [
        r#"{"iteration": 1, "prompts": 4, "pairs": 2, "score/gap": 1.0, "hidden_cosine": 0.5, "dpo/rewards/margins": 0.0}"#,
        r#"{"iteration": 2, "prompts": 4, "pairs": 2, "score/gap": 1.0, "hidden_cosine": 0.5, "dpo/rewards/margins": 0.0}"#,
    ];
    for (name, lines) in [
        ("zero", &zero_rejected[..]),
        ("single", &single[..]),
        ("flat", &flat[..]),
    ] {
        let dir = write_run(&base, name, TEMPORAL_CONFIG, lines);
        write_report(&dir).unwrap();
        for p in &PLOTS {
            let Ok(s) = std::fs::read_to_string(RunDir::new(&dir).plots().join(p.file)) else {
                continue;
            };
            let ticks = y_tick_texts(&s);
            let mut sorted = ticks.clone();
            sorted.sort();
            sorted.dedup();
            assert!(
                ticks.len() >= 2 && sorted.len() == ticks.len(),
                "{name}/{}: {ticks:?}",
                p.file
            );
            if p.y == plots::YAxis::Fraction {
                assert_eq!(
                    ticks.first().map(String::as_str),
                    Some("0.0"),
                    "{name}/{}",
                    p.file
                );
                assert_eq!(
                    ticks.last().map(String::as_str),
                    Some("1.0"),
                    "{name}/{}",
                    p.file
                );
            }
            assert!(
                !ticks.iter().any(|t| t.starts_with('-')) || p.file == "dpo_margins.svg",
                "{name}/{}: {ticks:?}",
                p.file
            );
            let legend = legend_texts(&s);
            if !legend.is_empty() {
                let (_, _, _, bottom) = plot_area(&s);
                let g = s.split("<g class=\"legend\">").nth(1).unwrap();
                let first_y: f64 = g
                    .split(" y1=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(first_y > bottom + 40.0, "{name}/{}", p.file);
            }
        }
    }
    let plots = |name: &str, file: &str| svg(&base.join(name), file);
    // Rejected at 0 no longer hides anything: chosen and rejected on one plot, the gap on its
    // own.
    assert_eq!(
        legend_texts(&plots("zero", "scores.svg")),
        ["chosen", "rejected"]
    );
    assert_eq!(polyline_points(&plots("zero", "score_gap.svg")), [2]);
    // Chosen = rejected: the legend says the second lies on the first.
    assert_eq!(
        legend_texts(&plots("single", "scores.svg")),
        ["chosen", "rejected (same values as chosen)"]
    );
    // The cosine's 0.004 change on an axis at least 0.08 high, two decimals.
    assert_eq!(
        y_tick_texts(&plots("zero", "hidden_cosine.svg")),
        ["0.77", "0.78", "0.79", "0.80", "0.81", "0.82", "0.83", "0.84", "0.85"]
    );
    // All-zero hacking rates: both series, on [0, 1], the second said to coincide.
    assert_eq!(
        legend_texts(&plots("zero", "hacking.svg")),
        [
            "all samples",
            "chosen responses (same values as all samples)"
        ]
    );
    // A NaN grad_norm alone: nothing to draw.
    assert!(!RunDir::new(base.join("single"))
        .plots()
        .join("grad_norm.svg")
        .exists());
    // Flat margins at 0: a unit span around 0.
    assert_eq!(
        y_tick_texts(&plots("flat", "dpo_margins.svg")),
        ["-0.4", "-0.2", "0.0", "0.2", "0.4"]
    );
}

#[test]
fn components_get_their_table_and_one_that_never_acted_a_warning() {
    let base = fresh_dir("components");
    let lines = [
        TEMPORAL_METRICS[0],
        r#"{"iteration": 1, "prompts": 16, "pairs": 9, "pairs_per_prompt": 0.5625, "component/anchored_rejection/could_act": 3, "component/anchored_rejection/acted": 0, "component/future_guided_chosen/could_act": 16, "component/future_guided_chosen/acted": 5, "temporal/pairs_d1": 7}"#,
        r#"{"iteration": 2, "prompts": 16, "pairs": 10, "pairs_per_prompt": 0.625, "component/anchored_rejection/could_act": 1, "component/anchored_rejection/acted": 0, "component/future_guided_chosen/could_act": 15, "component/future_guided_chosen/acted": 4, "temporal/pairs_d1": 8}"#,
    ];
    let dir = write_run(&base, "tsr", TEMPORAL_CONFIG, &lines);
    let md = std::fs::read_to_string(write_report(&dir).unwrap()).unwrap();
    for line in [
        "| iteration | component | prompts | could act | acted | acted / prompts |",
        "| 1 | `anchored_rejection` | 16 | 3 | 0 | 0.00 |",
        "| 1 | `future_guided_chosen` | 16 | 16 | 5 | 0.31 |",
        "| 2 | `anchored_rejection` | 16 | 1 | 0 | 0.00 |",
        "| 2 | `future_guided_chosen` | 16 | 15 | 4 | 0.25 |",
        // Component keys stay out of the table of other metrics.
        "| iteration | temporal/pairs_d1 |",
    ] {
        assert!(md.lines().any(|l| l == line), "missing {line:?} in\n{md}");
    }
    assert!(
        md.contains(
            "**Warning: `anchored_rejection` never acted in this run (it could have on 4 of 32 prompts)"
        ),
        "{md}"
    );
    assert!(!md.contains("`future_guided_chosen` never acted"), "{md}");
}
