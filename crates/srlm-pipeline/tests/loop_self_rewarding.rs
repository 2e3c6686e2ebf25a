//! The loop on `FakeBackend` with the `self-rewarding` plugin: every sample, judgment and
//! pair of a 2-iteration run checked against the rule (chosen = best, rejected = worst; the
//! fake judge scores a response by its word count mod 6), errors that leave no run folder.

mod common;

use common::*;
use serde_json::json;
use srlm_core::{Judgment, PreferencePair, Sample};
use srlm_pipeline::metrics::IterationMetrics;
use srlm_pipeline::run::run_with;
use srlm_pipeline::run_dir::RunDir;
use srlm_pipeline::testing::FakeBackend;
use std::collections::BTreeMap;

#[test]
fn self_rewarding_on_the_fake_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    let mut s = strategy::<srlm_plugin_self_rewarding::SelfRewarding>(&mut c, &[]);
    assert_eq!(c.strategy_options["k"], json!(3), "k = sampling.k");
    let dir = RunDir::new(tmp.path().join("run"));
    let backend = FakeBackend::new();
    let summary = run_with(&c, &dir, &record("self-rewarding"), &mut s, &backend).unwrap();
    assert_eq!(summary.metrics.len(), 3);
    let metrics: Vec<IterationMetrics> = read(&dir.metrics());
    assert_eq!(metrics, summary.metrics);
    for it in 1..=2 {
        let files = dir.iteration(it);
        let samples: Vec<Sample> = read(&files.samples());
        let judgments: Vec<Judgment> = read(&files.judgments());
        let pairs: Vec<PreferencePair> = read(&files.pairs());
        let line = metrics[it].training.as_ref().unwrap();
        // K = 3 samples of M_i for each of the 4 prompts, each judged by word count mod 6.
        assert_eq!((samples.len(), judgments.len(), line.prompts), (12, 12, 4));
        let score: BTreeMap<&str, f64> = judgments
            .iter()
            .map(|j| (j.sample_id.as_str(), j.score.unwrap()))
            .collect();
        for s in &samples {
            assert_eq!(score[s.id.as_str()], words_mod_6(&s.text), "{}", s.text);
        }
        // Chosen = best, rejected = worst of the prompt's samples; ties dropped.
        let mut kept = 0;
        let prompt_ids: std::collections::BTreeSet<String> =
            samples.iter().map(|s| s.prompt_id.clone()).collect();
        for p in prompt_ids {
            let group: Vec<f64> = samples
                .iter()
                .filter(|s| s.prompt_id == p)
                .map(|s| words_mod_6(&s.text))
                .collect();
            let (hi, lo) = group
                .iter()
                .fold((f64::MIN, f64::MAX), |(h, l), &x| (h.max(x), l.min(x)));
            match pairs.iter().find(|q| q.prompt_id == p) {
                Some(q) => {
                    kept += 1;
                    assert_eq!((q.chosen_score, q.rejected_score), (Some(hi), Some(lo)));
                    assert_eq!(words_mod_6(&q.chosen), hi);
                }
                None => assert_eq!(
                    hi, lo,
                    "{p}: a prompt with distinct scores must give a pair"
                ),
            }
        }
        assert_eq!(line.pairs, kept);
        let tokens: usize = samples.iter().map(|s| s.token_ids.len()).sum();
        assert_eq!(line.tokens_sampled, tokens as u64);
        assert_eq!(line.tokens_judged, tokens as u64);
        let gap = line
            .chosen_score
            .zip(line.rejected_score)
            .map(|(c, r)| c - r);
        assert_eq!(line.score_gap, gap);
        assert!(files.checkpoint().is_dir());
        if kept > 0 {
            assert_eq!(line.dpo.loss, Some(std::f64::consts::LN_2));
            assert_eq!(line.dpo.steps, Some(1));
        }
        assert_eq!(metrics[it].eval.n, 3);
    }
    assert!(dir.eval_answers(2).is_file());
    // One judge per iteration and one per held-out evaluation, each batched.
    assert!(backend.calls().judge >= 2);
}

#[test]
fn judge_and_model_errors_leave_no_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    let mut s = strategy::<srlm_plugin_self_rewarding::SelfRewarding>(&mut c, &[]);
    c.judge.template = Some(tmp.path().join("nope.j2").display().to_string());
    let dir = RunDir::new(tmp.path().join("run"));
    let err = run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("judge `self`: judge template: "),
        "{err}"
    );
    assert!(!dir.root().exists());
    c.model = "missing-model".into();
    let err = run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "model `missing-model`: no such model");
    assert!(!dir.root().exists());
}
