//! The run folder's guards on `FakeBackend` with the `self-rewarding` plugin: a folder in use is
//! locked; a resume with another config, plugin or initial model is refused (naming what
//! differs) and changes nothing; a new run never writes into a file or a folder srlm did not
//! create.

mod common;

use common::*;
use srlm_pipeline::run::{prepare_config, run_with, RunError};
use srlm_pipeline::run_dir::RunDir;
use srlm_pipeline::testing::FakeBackend;
use srlm_plugin_self_rewarding::SelfRewarding;

/// Every file under `dir` with its bytes (the lock file aside), for "nothing changed" checks.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("srlm.lock") {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_run_folder_in_use_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    let mut s = strategy::<SelfRewarding>(&mut c, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    std::fs::create_dir_all(dir.root()).unwrap();
    // Another process's lock (an open file description of its own).
    let holder = std::fs::File::create(dir.lock()).unwrap();
    holder.try_lock().unwrap();
    // Its pid, as srlm writes it (named in the error while that process runs).
    std::fs::write(dir.lock(), std::process::id().to_string()).unwrap();
    let err = run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap_err();
    assert!(matches!(err, RunError::Locked { .. }), "{err}");
    let pid = std::process::id();
    assert!(
        err.to_string()
            .contains(&format!("in use by another srlm process (pid {pid})")),
        "{err}"
    );
    assert!(!dir.config().exists(), "nothing written by the refused run");
    // Released (as the kernel does when the holder dies): the run goes ahead.
    drop(holder);
    let mut s = strategy::<SelfRewarding>(&mut c.clone(), &[]);
    run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
}

#[test]
fn a_resume_with_another_config_plugin_or_model_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    let mut s = strategy::<SelfRewarding>(&mut c, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
    let before = snapshot(dir.root());

    let mut changed = c.clone();
    changed.sampling.temperature = 0.3;
    changed.prompts.eval = 2;
    let mut s = strategy::<SelfRewarding>(&mut changed.clone(), &[]);
    let err = run_with(
        &changed,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RunError::Mismatch { what: "config", .. }),
        "{msg}"
    );
    assert!(msg.contains("prompts.eval: 3 → 2"), "{msg}");
    assert!(msg.contains("sampling.temperature: 0.7"), "{msg}");

    let mut other = record("self-rewarding");
    other.version = "9.9".into();
    let mut s = strategy::<SelfRewarding>(&mut c.clone(), &[]);
    let err = run_with(&c, &dir, &other, &mut s, &FakeBackend::new()).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Mismatch {
                what: "strategy plugin",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("self-rewarding test → self-rewarding 9.9"),
        "{err}"
    );

    let mut s = strategy::<SelfRewarding>(&mut c.clone(), &[]);
    let replaced = FakeBackend::with_weights_version("retrained");
    let err = run_with(&c, &dir, &record("self-rewarding"), &mut s, &replaced).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Mismatch {
                what: "initial model",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(replaced.calls().sample, 0, "refused before any work");

    assert_eq!(
        snapshot(dir.root()),
        before,
        "the refused resumes changed nothing"
    );
    // The same config still resumes.
    let mut s = strategy::<SelfRewarding>(&mut c.clone(), &[]);
    run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
}

#[test]
fn a_new_run_never_writes_into_a_file_or_a_folder_srlm_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), "self-rewarding");
    // A regular file.
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    let err = prepare_config(c.clone(), &RunDir::new(&file), false).unwrap_err();
    assert!(matches!(err, RunError::Output(_)), "{err}");
    assert!(err.to_string().contains("is a file"), "{err}");
    // A user's folder.
    let user = tmp.path().join("mine");
    std::fs::create_dir(&user).unwrap();
    std::fs::write(user.join("data.csv"), "1,2").unwrap();
    let err = prepare_config(c.clone(), &RunDir::new(&user), false).unwrap_err();
    assert!(err.to_string().contains("not written by srlm"), "{err}");
    // An empty folder and a new one are fine; an srlm run folder asks for --resume.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    prepare_config(c.clone(), &RunDir::new(tmp.path().join("empty")), false).unwrap();
    prepare_config(c.clone(), &RunDir::new(tmp.path().join("new")), false).unwrap();
    let mut c2 = c.clone();
    let mut s = strategy::<SelfRewarding>(&mut c2, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    run_with(
        &c2,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
    let err = prepare_config(c, &dir, false).unwrap_err();
    assert!(matches!(err, RunError::AlreadyARun(_)), "{err}");
    let marker = std::fs::read_to_string(dir.root().join("srlm.json")).unwrap();
    assert!(marker.contains("\"srlm_output\": \"run\""), "{marker}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    assert_eq!(
        std::fs::read_to_string(user.join("data.csv")).unwrap(),
        "1,2"
    );
}

#[test]
fn a_prompt_too_long_for_the_context_is_skipped_named_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    c.prompts.eval = 4; // 4 held out + 2 × 4: every prompt of the pool is used
                        // One prompt longer than the fake model's context (2^20 characters).
    let pool = std::path::Path::new(&c.prompts.source).to_path_buf();
    let mut lines: Vec<String> = std::fs::read_to_string(&pool)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[2] = serde_json::json!({"id": "p2", "prompt": "x".repeat(1 << 20)}).to_string();
    std::fs::write(&pool, lines.join("\n") + "\n").unwrap();
    let mut s = strategy::<SelfRewarding>(&mut c, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    let summary = run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
    let skipped: usize = summary
        .metrics
        .iter()
        .filter_map(|m| m.training.as_ref())
        .map(|t| t.prompts_skipped)
        .sum();
    // p2 lands in a training chunk under seed 7 (p5 would be held out: `eval/n` 3).
    assert_eq!((skipped, summary.metrics[0].eval.n), (1, 4));
    let all = std::fs::read_to_string(dir.metrics()).unwrap();
    assert!(all.contains("\"prompts/skipped_too_long\":1"), "{all}");
}

#[test]
fn the_reward_hacking_diagnostic_counts_samples_that_speak_to_the_grader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), "self-rewarding");
    let mut s = strategy::<SelfRewarding>(&mut c, &[]);
    let dir = RunDir::new(tmp.path().join("run"));
    let summary = run_with(
        &c,
        &dir,
        &record("self-rewarding"),
        &mut s,
        &FakeBackend::new(),
    )
    .unwrap();
    // The fake backend's responses (`r123 r123`) never speak to the grader.
    for m in summary.metrics.iter().filter_map(|m| m.training.as_ref()) {
        assert_eq!(m.hacking_samples, Some(0.0));
    }
}
