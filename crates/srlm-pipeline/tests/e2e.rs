//! End to end on a tiny random model (real tokenizer and chat template, random 2-layer
//! weights): every plugin runs a whole iteration through the real host, the run folder has
//! its files, and a resumed run reproduces the pairs and metrics of an uninterrupted one.
//!
//! The plugins are built by the test itself (the root's `tests/support/bundled_plugins.rs`,
//! the same build as `build.rs`'s).

use serde_json::Value;
use srlm_pipeline::config::RunConfig;
use srlm_pipeline::metrics::{IterationMetrics, Metric};
use srlm_pipeline::run::{run, RunOptions};
use std::path::{Path, PathBuf};

#[path = "../../../tests/support/bundled_plugins.rs"]
mod bundled_plugins;

fn plugin_dir() -> PathBuf {
    bundled_plugins::dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).to_path_buf()
}

/// Prompts whose instructions a random model passes or fails by chance (commas, case), so the
/// judge's scores vary and pairs get kept.
fn prompts(dir: &Path) -> PathBuf {
    let p = dir.join("prompts.jsonl");
    let mut s = String::new();
    for i in 0..10 {
        s += &serde_json::json!({
            "key": i, "prompt": format!("Write a short note number {i}. Do not use commas."),
            "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"], "kwargs": [{}, {}],
            "reference": format!("note {i}")
        })
        .to_string();
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn config(prompts: &Path, strategy: &str) -> RunConfig {
    let mut c = RunConfig::default();
    c.model = "tiny-random".into();
    c.strategy = strategy.into();
    c.iterations = 2;
    c.prompts.source = prompts.display().to_string();
    c.prompts.per_iteration = 4;
    c.prompts.eval = 2;
    c.sampling.k = 3;
    c.sampling.max_new_tokens = 6;
    c.eval.max_new_tokens = 6;
    c.dpo.learning_rate = 1e-3;
    c.dpo.max_length = Some(128);
    c.dpo.max_prompt_length = Some(96);
    c
}

fn opts(out: &Path) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        resume: false,
        set_flags: vec![],
        plugin_dirs: vec![plugin_dir()],
        shared_cache: None,
    }
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_plugin_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let pr = prompts(tmp.path());
    for strategy in ["self-rewarding", "temporal", "spin"] {
        let out = tmp.path().join(strategy);
        let s =
            run(config(&pr, strategy), &opts(&out)).unwrap_or_else(|e| panic!("{strategy}: {e}"));
        assert_eq!(s.metrics.len(), 3, "{strategy}: M0 eval + 2 iterations");
        assert_eq!(s.eval_scores.len(), 3);
        for f in [
            "config.json",
            "metrics.jsonl",
            "eval/M0.jsonl",
            "eval/M2.jsonl",
            "iter_1/samples.jsonl",
            "iter_1/judgments.jsonl",
            "iter_1/pairs.jsonl",
            "iter_2/checkpoint/model.safetensors",
        ] {
            assert!(out.join(f).is_file(), "{strategy}: {f} missing");
        }
        let pairs = lines(&out.join("iter_1/pairs.jsonl"));
        for p in &pairs {
            let (c, r) = (
                &p["provenance"]["chosen_source"],
                &p["provenance"]["rejected_source"],
            );
            match strategy {
                "spin" => assert_eq!(
                    (c.as_str(), r.as_str()),
                    (Some("reference"), Some("current"))
                ),
                "self-rewarding" => {
                    assert_eq!((c.as_str(), r.as_str()), (Some("current"), Some("current")));
                    assert!(
                        p["chosen_score"].as_f64() > p["rejected_score"].as_f64(),
                        "{p}"
                    );
                }
                _ => assert!(
                    p["chosen_score"].as_f64() > p["rejected_score"].as_f64(),
                    "{p}"
                ),
            }
        }
        let samples = lines(&out.join("iter_1/samples.jsonl"));
        let k_per_prompt = samples.iter().filter(|s| s["source"] == "current").count() / 4;
        // K is the plugin's: the run's sampling.k (3 here) for the plugins that take the run's
        // K, spin's own default of 1 for spin.
        let want_k = if strategy == "spin" { 1 } else { 3 };
        assert_eq!(k_per_prompt, want_k, "{strategy}");
        if strategy == "temporal" {
            assert!(
                samples.iter().any(|s| s["source"] == "initial"),
                "anchored rejection samples M0"
            );
            let m = &s.metrics[1];
            assert!(m.strategy["temporal/candidates"].0.unwrap() >= 1.0, "{m:?}");
        }
        let m1 = &s.metrics[1];
        // SPIN judges nothing by default (its chosen side is the data's reference answer).
        let judged: &[&str] = if strategy == "spin" {
            &[]
        } else {
            &["judge/parse_failure_rate"]
        };
        for k in ["compute/tokens_sampled", "compute/wall_seconds", "pairs"]
            .iter()
            .chain(judged)
        {
            let v = m1.get(Metric::from_key(k).unwrap());
            assert!(v.is_some_and(f64::is_finite), "{strategy}: {k} = {v:?}");
        }
        if m1.get(Metric::Pairs).unwrap() > 0.0 {
            let gap: &[&str] = if strategy == "spin" {
                &[]
            } else {
                &["score/gap"]
            };
            for k in [
                "dpo/loss",
                "dpo/rewards/margins",
                "dpo/grad_norm",
                "hidden_cosine",
            ]
            .iter()
            .chain(gap)
            {
                let v = m1.get(Metric::from_key(k).unwrap());
                assert!(v.is_some_and(f64::is_finite), "{strategy}: {k} = {v:?}");
            }
        }
    }
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let pr = prompts(tmp.path());
    let full = tmp.path().join("full");
    let a = run(config(&pr, "temporal"), &opts(&full)).unwrap();
    // A crash after iteration 1: the folder holds iteration 1's files and cache entries, but
    // nothing of iteration 2, and a stray temporary file of an interrupted write.
    let crashed = tmp.path().join("crashed");
    copy_dir(&full, &crashed);
    std::fs::remove_dir_all(crashed.join("iter_2")).unwrap();
    std::fs::remove_file(crashed.join("eval/M2.jsonl")).unwrap();
    for e in std::fs::read_dir(crashed.join("cache")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("iteration-") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    std::fs::write(crashed.join("cache/.sample-x.json.123.tmp"), b"{half").unwrap();
    let mut o = opts(&crashed);
    o.resume = true;
    let b = run(RunConfig::default(), &o).unwrap();
    let strip = |m: &[IterationMetrics]| -> Vec<IterationMetrics> {
        m.iter()
            .map(|l| IterationMetrics {
                wall_seconds: None,
                ..l.clone()
            })
            .collect()
    };
    assert_eq!(strip(&a.metrics), strip(&b.metrics));
    for it in ["iter_1", "iter_2"] {
        assert_eq!(
            std::fs::read_to_string(full.join(it).join("pairs.jsonl")).unwrap(),
            std::fs::read_to_string(crashed.join(it).join("pairs.jsonl")).unwrap(),
            "{it}"
        );
    }
    // A new run into an existing folder is refused with a hint.
    let err = run(config(&pr, "temporal"), &opts(&full))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n").unwrap();
    let err = run(config(&bad, "temporal"), &opts(&tmp.path().join("a")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("{}:2: field `prompt` must be a string", bad.display())
    );
    let pr = prompts(tmp.path());
    let err = run(
        config(&pr, "no-such-strategy"),
        &opts(&tmp.path().join("b")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("temporal") && err.contains("self-rewarding"),
        "{err}"
    );
    let mut o = opts(&tmp.path().join("c"));
    o.set_flags = vec!["bogus=1".into()];
    let err = run(config(&pr, "temporal"), &o).unwrap_err().to_string();
    assert!(err.contains("bogus"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// `diagnostics.hidden_states = "off"`: the cosine is `null`, never made up; the line names
/// it under `diagnostics/not_computed` with the reason, and so does the report. `on` (and
/// `auto` with the in-process engine) computes it.
#[test]
fn a_diagnostic_left_out_is_null_and_named_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let pr = prompts(tmp.path());
    let mut c = config(&pr, "self-rewarding");
    c.iterations = 1;
    c.diagnostics.hidden_states = srlm_pipeline::config::HiddenStates::Off;
    let out = tmp.path().join("off");
    run(c.clone(), &opts(&out)).unwrap();
    let m = lines(&out.join("metrics.jsonl"));
    assert!(m[1]["pairs"].as_u64().unwrap() > 0, "{}", m[1]);
    assert!(m[1]["hidden_cosine"].is_null(), "{}", m[1]);
    assert_eq!(
        m[1]["diagnostics/not_computed"],
        serde_json::json!([{"metric": "hidden_cosine", "reason": "diagnostics.hidden_states = \"off\""}])
    );
    let report = srlm_pipeline::report::write_report(&out).unwrap();
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains("- `hidden_cosine` in iteration 1: diagnostics.hidden_states = \"off\""),
        "{report}"
    );
    c.diagnostics.hidden_states = srlm_pipeline::config::HiddenStates::Auto;
    let out = tmp.path().join("auto");
    run(c, &opts(&out)).unwrap();
    let m = lines(&out.join("metrics.jsonl"));
    let cos = m[1]["hidden_cosine"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&cos), "{cos}");
    assert!(m[1].get("diagnostics/not_computed").is_none(), "{}", m[1]);
    let report = srlm_pipeline::report::write_report(&out).unwrap();
    let report = std::fs::read_to_string(report).unwrap();
    assert!(!report.contains("Not computed"), "{report}");
}

/// Every M_i is scored on an out-of-distribution set (`eval.ood`, fetched from PyPI) and the
/// run's lines, answers files, report and comparison agree; the run's diagnostics (lengths,
/// looping shares, TSR's components) are in every iteration's line.
#[test]
fn every_model_is_scored_on_the_ood_set_and_the_diagnostics_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let pr = prompts(tmp.path());
    let mut c = config(&pr, "temporal");
    c.eval.ood = vec![srlm_pipeline::ood::OodSet::ArcChallenge];
    c.eval.ood_prompts = 3;
    // The run's own judge as the second one: the agreement is exactly 1 (or undefined when
    // the scores are constant).
    c.diagnostics.second_judge = Some("ifeval".parse().unwrap());
    let out = tmp.path().join("ood");
    run(c, &opts(&out)).unwrap();
    let m = lines(&out.join("metrics.jsonl"));
    assert_eq!(m.len(), 3);
    let m0 = srlm_model::LanguageModel::load("tiny-random", &srlm_model::Device::Cpu).unwrap();
    for (i, line) in m.iter().enumerate() {
        // Each M_i's held-out answers scored by M0 (not by M_i): exp(−Σ log p / Σ tokens).
        let items: Vec<(Vec<u32>, Vec<u32>)> = lines(&out.join(format!("eval/M{i}.jsonl")))
            .iter()
            .map(|r| {
                m0.encode_exchange(
                    r["prompt"].as_str().unwrap(),
                    r["response"].as_str().unwrap(),
                )
                .unwrap()
            })
            .collect();
        let logps = m0.response_logps(&items).unwrap();
        let tokens: usize = logps.iter().map(|l| l.tokens.len()).sum();
        let want = (-logps.iter().map(|l| l.sum).sum::<f64>() / tokens as f64).exp();
        let got = line["eval/perplexity_under_m0"].as_f64().unwrap();
        assert!((got / want - 1.0).abs() < 1e-9, "M{i}: {got} vs {want}");
        assert!(got > 1.0, "{got}");
        let rows = lines(&out.join(format!("eval/M{i}.arc-challenge.jsonl")));
        assert_eq!(rows.len(), 3, "M{i}");
        // The first three ARC-Challenge test questions, in the package's order.
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| r["prompt_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ARC/0", "ARC/1", "ARC/2"]);
        assert_eq!(rows[0]["details"]["expected"], "C");
        let right = rows.iter().filter(|r| r["score"] == 5.0).count();
        assert_eq!(line["eval/arc_challenge/n"], 3, "{line}");
        assert_eq!(
            line["eval/arc_challenge/accuracy"].as_f64(),
            Some(right as f64 / 3.0),
            "{line}"
        );
        assert!(line.get("eval/gsm8k/accuracy").is_none(), "{line}");
        let looping = line["eval/degenerate_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&looping), "{line}");
    }
    for line in &m[1..] {
        // Lengths are token counts of the iteration's samples (6 new tokens at most).
        let len = line["length/samples_mean"].as_f64().unwrap();
        assert!(len > 0.0 && len <= 6.0, "{line}");
        for key in [
            "degenerate/samples",
            "component/anchored_rejection/could_act",
            "component/future_guided_chosen/acted",
        ] {
            assert!(line[key].is_number(), "{key}: {line}");
        }
        assert_eq!(line["judge/second_parse_failure_rate"], 0.0, "{line}");
        if let Some(r) = line.get("judge/second_agreement").and_then(Value::as_f64) {
            assert!((r - 1.0).abs() < 1e-12, "{line}");
        }
        // 2 epochs: the last epoch's means and the log-prob changes are recorded.
        if line["pairs"].as_u64().unwrap() > 0 {
            for key in [
                "dpo/last_epoch/loss",
                "dpo/logps/chosen_change",
                "dpo/logps/rejected_change",
            ] {
                assert!(line[key].is_number(), "{key}: {line}");
            }
        }
    }
    let report =
        std::fs::read_to_string(srlm_pipeline::report::write_report(&out).unwrap()).unwrap();
    assert!(report.contains("| ARC-Challenge accuracy |"), "{report}");
    assert!(report.contains("### Strategy components"), "{report}");
    let (_, table) = srlm_pipeline::compare::load_comparison(std::slice::from_ref(&out)).unwrap();
    let row = table
        .rows
        .iter()
        .find(|r| r.metric == "ARC-Challenge accuracy M2")
        .expect("an ARC row per model");
    assert_eq!(row.cells[0], m[2]["eval/arc_challenge/accuracy"].as_f64());
}

/// Two strategies through a shared cache compute M0's samples, judgments and evaluation once,
/// and a run through the shared cache writes what a run without it writes.
#[test]
fn a_shared_cache_computes_m0_once_and_changes_no_result() {
    let tmp = tempfile::tempdir().unwrap();
    let pr = prompts(tmp.path());
    let shared = tmp.path().join("shared");
    let with_shared = |strategy: &str, name: &str, shared: Option<PathBuf>| {
        let mut c = config(&pr, strategy);
        c.iterations = 1;
        let out = tmp.path().join(name);
        let o = RunOptions {
            shared_cache: shared,
            ..opts(&out)
        };
        run(c, &o).unwrap();
        out
    };
    let sr = with_shared("self-rewarding", "sr", Some(shared.clone()));
    let entries = |dir: &Path, kind: &str| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(kind))
                    .count()
            })
            .unwrap_or(0)
    };
    // Entries live under this build's own sub-folder.
    let shared_root = shared.clone();
    let shared = shared.join(srlm_pipeline::store::build_namespace());
    assert_eq!(std::fs::read_dir(&shared_root).unwrap().count(), 1);
    assert!(entries(&shared, "sample-") >= 1 && entries(&shared, "eval-") >= 2);
    assert_eq!(
        entries(&shared, "model-") + entries(&shared, "iteration-"),
        0
    );
    let before = (entries(&shared, "sample-"), entries(&shared, "eval-"));
    let tsr = with_shared("temporal", "tsr", Some(shared_root.clone()));
    // TSR's M0 evaluation and its iteration-1 samples of M0 as M_i came from SR's entries:
    // the shared folder gained only TSR's own (M0 as the anchor, M_f, M1's evaluation).
    let after = (entries(&shared, "sample-"), entries(&shared, "eval-"));
    assert_eq!(after.1, before.1 + 1, "only M1's evaluation is new");
    assert!(after.0 > before.0);
    let alone = with_shared("temporal", "tsr-alone", None);
    let strip = |p: &Path| -> Vec<Value> {
        lines(&p.join("metrics.jsonl"))
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("compute/wall_seconds");
                v
            })
            .collect()
    };
    // Equal, DPO's numbers within 1e-6 relative (a thread-order sum; README, reproducibility).
    let (a, b) = (strip(&tsr), strip(&alone));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.as_object().unwrap(), y.as_object().unwrap());
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        for (k, v) in x {
            match (v.as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => {
                    assert!((p - q).abs() <= 1e-6 * q.abs().max(1.0), "{k}: {p} vs {q}")
                }
                _ => assert_eq!(v, &y[k], "{k}"),
            }
        }
    }
    assert_eq!(
        std::fs::read(tsr.join("iter_1/pairs.jsonl")).unwrap(),
        std::fs::read(alone.join("iter_1/pairs.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read(sr.join("eval/M0.jsonl")).unwrap(),
        std::fs::read(tsr.join("eval/M0.jsonl")).unwrap()
    );
}
