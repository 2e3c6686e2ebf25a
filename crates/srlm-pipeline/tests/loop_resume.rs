//! Resume on `FakeBackend` with the `temporal` plugin: a second pass over a finished run
//! samples, judges and trains nothing; a crash in training resumes to the uninterrupted result.

mod common;

use common::*;
use srlm_pipeline::run::{run_with, RunError};
use srlm_pipeline::run_dir::RunDir;
use srlm_pipeline::testing::FakeBackend;

#[test]
fn resume_replays_every_finished_stage_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "temporal");
    let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    let first = FakeBackend::new();
    let a = run_with(&c, &dir, &record("temporal"), &mut s, &first).unwrap();
    assert!(first.calls().train >= 1, "{:?}", first.calls());
    // Each M_i is stored once in the cache; the temporary models (M_f) are gone once their
    // iteration is recorded.
    let model_dirs = |root: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("model-"))
            .collect();
        v.sort();
        v
    };
    let checkpoint_id = |i: usize| {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.iteration(i).checkpoint().join("fake.json")).unwrap(),
        )
        .unwrap();
        format!("model-{}", &v["id"].as_str().unwrap()[..16])
    };
    let mut kept = vec![checkpoint_id(1), checkpoint_id(2)];
    kept.sort();
    assert_eq!(model_dirs(&dir.cache()), kept);
    assert_eq!(
        first.calls().train,
        4,
        "M_f and M_i+1 in each of 2 iterations: {:?}",
        first.calls()
    );
    let pairs_before = std::fs::read(dir.iteration(2).pairs()).unwrap();
    // Everything again on a fresh backend: nothing is sampled, judged or trained.
    std::fs::remove_file(dir.metrics()).unwrap();
    std::fs::remove_file(dir.iteration(2).pairs()).unwrap();
    let second = FakeBackend::new();
    let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c.clone(), &[]);
    let b = run_with(&c, &dir, &record("temporal"), &mut s, &second).unwrap();
    assert_eq!(
        b.metrics, a.metrics,
        "a resumed run reports the same metrics, wall time included"
    );
    assert_eq!(
        std::fs::read(dir.iteration(2).pairs()).unwrap(),
        pairs_before
    );
    let calls = second.calls();
    assert_eq!(
        (calls.sample, calls.train, calls.judge),
        (0, 0, 0),
        "{calls:?}"
    );
}

#[test]
fn a_crash_in_training_resumes_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "temporal");
    let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c, &[]);
    let whole = RunDir::new(tmp.path().join("whole"));
    let a = run_with(&c, &whole, &record("temporal"), &mut s, &FakeBackend::new()).unwrap();
    let trains = FakeBackend::new();
    let crashed = RunDir::new(tmp.path().join("crashed"));
    // Count the training calls of a whole run, then crash at the last one.
    let n = {
        let d = RunDir::new(tmp.path().join("count"));
        let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c.clone(), &[]);
        run_with(&c, &d, &record("temporal"), &mut s, &trains).unwrap();
        trains.calls().train
    };
    assert!(n >= 2, "TSR trains M_f and M_i+1: {n}");
    let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c.clone(), &[]);
    let err = run_with(
        &c,
        &crashed,
        &record("temporal"),
        &mut s,
        &FakeBackend::failing_train_at(n),
    )
    .unwrap_err();
    assert!(matches!(err, RunError::Host(_)), "{err}");
    assert!(
        err.to_string().contains("fake failure at training call"),
        "{err}"
    );
    let mut s = strategy::<srlm_plugin_temporal::Temporal>(&mut c.clone(), &[]);
    let b = run_with(
        &c,
        &crashed,
        &record("temporal"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
    assert_eq!(without_wall(&b.metrics), without_wall(&a.metrics));
    for it in 1..=2 {
        assert_eq!(
            std::fs::read(crashed.iteration(it).pairs()).unwrap(),
            std::fs::read(whole.iteration(it).pairs()).unwrap()
        );
    }
}
