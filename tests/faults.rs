//! srlm under hostile conditions, through the `srlm` binary: outputs that must never replace
//! what srlm did not create, run folders used by two processes or resumed with something else,
//! numbers that would crash or silently degrade a run, a damaged cache, bad input files, and
//! responses that try to talk their way to a higher self-judge score. Each test backs one of
//! README's reliability promises ("What srlm guarantees"). Plugin misbehaviour is tested where
//! the host resolves pairs (`srlm-strategy`'s `ffi.rs`, `srlm-pipeline/tests/loop_guard.rs`)
//! and where plugins are looked up (`srlm-strategy/tests/loader.rs`).
//!
//! Most tests use `tiny-random` (a random model that runs in seconds); the divergence guard and
//! the injection measurement need the real default model.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/tiny_run.rs"]
mod support;

fn srlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srlm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs srlm, expects failure with a one-line error, returns it.
fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "succeeded: {c:?}\n{err}");
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{err}");
    last
}

fn succeeds(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?} failed:\n{}", stderr(&o));
    o
}

/// Every file under `dir` with its bytes, for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("srlm.lock") {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn write_pairs(path: &Path) {
    let pairs = [
        ("What is 2+2?", "4", "5"),
        ("Name a color.", "Blue.", "Dog."),
        ("Capital of France?", "Paris.", "Berlin."),
        ("Say hi.", "Hi!", "Bye."),
    ];
    let text: String = pairs
        .iter()
        .map(|(p, c, r)| format!("{}\n", json!({"prompt": p, "chosen": c, "rejected": r})))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn train(pairs: &Path, out: &Path) -> Command {
    let mut c = srlm();
    c.args([
        "train-dpo",
        "--model",
        "tiny-random",
        "--max-steps",
        "1",
        "--no-progress",
    ])
    .arg("--pairs")
    .arg(pairs)
    .arg("--out")
    .arg(out);
    c
}

#[test]
fn train_dpo_never_replaces_what_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let pairs = data.join("pairs.jsonl");
    write_pairs(&pairs);
    std::fs::write(data.join("notes.txt"), "mine").unwrap();
    let before = snapshot(tmp.path());

    // The pairs' own folder, a user's folder, a regular file, the pairs file as the log.
    let e = fails(&mut train(&pairs, &data));
    assert!(e.contains("is also an input"), "{e}");
    let e = fails(train(&pairs, &data.join("notes.txt")).arg("--overwrite"));
    assert!(e.contains("is a file"), "{e}");
    let user = tmp.path().join("user");
    std::fs::create_dir(&user).unwrap();
    std::fs::write(user.join("x"), "1").unwrap();
    let e = fails(train(&pairs, &user).arg("--overwrite"));
    assert!(e.contains("not written by srlm"), "{e}");
    let e = fails(
        train(&pairs, &tmp.path().join("ck"))
            .arg("--log")
            .arg(&pairs),
    );
    assert!(e.contains("also an input of this command (--pairs)"), "{e}");
    // An unwritable location fails before the model is loaded.
    let e = fails(&mut train(&pairs, &data.join("notes.txt/ck")));
    assert!(e.contains("cannot write here"), "{e}");
    std::fs::remove_dir_all(&user).unwrap();
    assert_eq!(snapshot(tmp.path()), before, "nothing was changed");

    // A new folder is written with the marker; replacing it needs --overwrite.
    let ck = tmp.path().join("ck");
    succeeds(&mut train(&pairs, &ck));
    assert!(ck.join("srlm.json").is_file() && ck.join("model.safetensors").is_file());
    let e = fails(&mut train(&pairs, &ck));
    assert!(e.contains("pass --overwrite"), "{e}");
    succeeds(train(&pairs, &ck).arg("--overwrite"));
    assert_eq!(
        std::fs::read_to_string(data.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn train_dpo_drops_pairs_with_one_text_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs);
    let mut text = std::fs::read_to_string(&pairs).unwrap();
    text.push_str(&format!(
        "{}\n",
        json!({"prompt": "Same?", "chosen": "Yes.", "rejected": " Yes.\n"})
    ));
    std::fs::write(&pairs, text).unwrap();
    let o = succeeds(&mut train(&pairs, &tmp.path().join("ck")));
    let err = stderr(&o);
    assert!(err.contains("4 pairs from"), "{err}");
    assert!(
        err.contains("chosen and rejected have the same text"),
        "{err}"
    );
}

/// A small run on `tiny-random` with the `spin` strategy ([`support::tiny_run`]).
fn tiny_run(dir: &Path, out: &Path) -> Command {
    support::tiny_run(srlm(), dir, out, &[])
}

#[test]
fn a_run_folder_is_locked_and_a_changed_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = succeeds(&mut tiny_run(tmp.path(), &out));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pairs kept per iteration: 2"));
    let before = snapshot(&out);
    // Another process runs in the folder (this test process holds its OS lock): a resume and a
    // new run into it are refused.
    let holder = std::fs::OpenOptions::new()
        .write(true)
        .open(out.join("srlm.lock"))
        .unwrap();
    holder.try_lock().unwrap();
    let e = fails(srlm().arg("run").arg("--resume").arg(&out));
    assert!(e.contains("in use by another srlm process"), "{e}");
    let e = fails(&mut tiny_run(tmp.path(), &out));
    assert!(e.contains("in use by another srlm process"), "{e}");
    drop(holder);
    // A second new run into it: refused, pointing to --resume.
    let e = fails(&mut tiny_run(tmp.path(), &out));
    assert!(e.contains("already holds a run; pass --resume"), "{e}");
    // Its config edited, then resumed: refused, naming the key.
    let config_path = out.join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let mut config: Value = serde_json::from_str(&original).unwrap();
    config["sampling"]["temperature"] = json!(0.2);
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let e = fails(srlm().arg("run").arg("--resume").arg(&out));
    assert!(e.contains("computed for another config"), "{e}");
    assert!(e.contains("sampling.temperature: 0.7 → 0.2"), "{e}");
    std::fs::write(&config_path, &original).unwrap();
    assert_eq!(snapshot(&out), before, "the refused runs changed nothing");

    // A damaged checkpoint and cached model are computed again on resume, to the same pairs.
    let model = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("model.safetensors").is_file())
        .expect("a trained model in the cache");
    std::fs::write(model.join("model.safetensors"), b"garbage").unwrap();
    std::fs::write(out.join("iter_1/checkpoint/model.safetensors"), b"garbage").unwrap();
    let o = succeeds(srlm().arg("run").arg("--resume").arg(&out));
    let err = stderr(&o);
    assert!(err.contains("computing the iteration again"), "{err}");
    assert!(err.contains("training it again"), "{err}");
    assert!(
        std::fs::metadata(out.join("iter_1/checkpoint/model.safetensors"))
            .unwrap()
            .len()
            > 1000,
        "the checkpoint was written again"
    );
    assert_eq!(
        std::fs::read(out.join("iter_1/pairs.jsonl")).unwrap(),
        before
            .iter()
            .find(|(p, _)| p.ends_with("iter_1/pairs.jsonl"))
            .unwrap()
            .1
    );
}

#[test]
fn a_new_run_is_never_written_into_a_file_or_a_foreign_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("results.txt");
    std::fs::write(&file, "mine").unwrap();
    let e = fails(&mut tiny_run(tmp.path(), &file));
    assert!(e.contains("is a file"), "{e}");
    let e = fails(&mut tiny_run(tmp.path(), tmp.path()));
    assert!(e.contains("not written by srlm"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

#[test]
fn numbers_that_would_crash_or_degrade_a_run_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for (flag, needle) in [
        ("sampling.temperature=nan", "numbers must be finite"),
        (
            "sampling.temperature=-1.0",
            "sampling.temperature = -1 must be a finite number ≥ 0",
        ),
        (
            "sampling.k=100000000000",
            "sampling.k = 100000000000 must be in 1..=1024",
        ),
        ("sampling.top_p=0", "sampling.top_p = 0 must be in (0, 1]"),
    ] {
        let e = fails(tiny_run(tmp.path(), &out).args(["-c", flag]));
        assert!(e.contains(needle), "{flag}: {e}");
        assert!(!out.exists(), "{flag}: a run folder was created");
    }
    let config = tmp.path().join("nan.toml");
    std::fs::write(&config, "[sampling]\ntemperature = nan\n").unwrap();
    let e = fails(
        srlm()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    assert!(e.contains("sampling.temperature = NaN"), "{e}");
    assert!(!out.exists());
    let e = fails(srlm().args([
        "generate",
        "--model",
        "tiny-random",
        "--prompt",
        "x",
        "--temperature",
        "NaN",
    ]));
    assert!(e.contains("--temperature = NaN"), "{e}");
    let e = fails(srlm().args([
        "generate",
        "--model",
        "tiny-random",
        "--prompt",
        "x",
        "-k",
        "99999999",
    ]));
    assert!(e.contains("-k = 99999999 must be in 1..=1024"), "{e}");
}

#[test]
fn a_model_with_nan_weights_is_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs);
    let ck = tmp.path().join("ck");
    succeeds(&mut train(&pairs, &ck));
    // Every weight byte pattern set to a NaN (safetensors: 8-byte header size, header, data).
    let path = ck.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for w in bytes[8 + header..].chunks_exact_mut(4) {
        w.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let e = fails(
        srlm()
            .args([
                "generate",
                "--prompt",
                "hi",
                "--max-new-tokens",
                "4",
                "--model",
            ])
            .arg(&ck),
    );
    assert!(e.contains("logits contain NaN"), "{e}");
}

#[test]
fn training_that_collapses_the_model_stops_before_a_checkpoint() {
    // The real model at learning rate 1e3: uniform logits, a zero gradient from step 2.
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs);
    let ck = tmp.path().join("ck");
    let e = fails(
        srlm()
            .args([
                "train-dpo",
                "--learning-rate",
                "1000",
                "--max-steps",
                "4",
                "--batch-size",
                "2",
            ])
            .args(["--no-progress", "--pairs"])
            .arg(&pairs)
            .arg("--out")
            .arg(&ck),
    );
    assert!(e.contains("training diverged at optimizer step 2"), "{e}");
    assert!(!ck.exists(), "no checkpoint written");
}

#[test]
fn bad_input_files_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A UTF-8 byte-order mark is accepted.
    let pairs = tmp.path().join("bom.jsonl");
    write_pairs(&pairs);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&pairs).unwrap());
    std::fs::write(&pairs, bytes).unwrap();
    succeeds(&mut train(&pairs, &tmp.path().join("ck")));
    // Invalid UTF-8 on line 3.
    let bad = tmp.path().join("latin1.jsonl");
    std::fs::write(
        &bad,
        b"{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n\n{\"prompt\":\"caf\xE9\"}\n",
    )
    .unwrap();
    let e = fails(&mut train(&bad, &tmp.path().join("ck2")));
    assert!(
        e.contains("latin1.jsonl:3:") && e.contains("not valid UTF-8"),
        "{e}"
    );
    // A backtrace never reaches the error line.
    let o = srlm()
        .env("RUST_BACKTRACE", "1")
        .args(["generate", "--model", "/no/such/model", "--prompt", "x"])
        .output()
        .unwrap();
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// Judge-injection variants of `tests/fixtures/injection` (four responses, the strongest
/// injections and two controls) judged by the default model as its own judge in expected
/// mode, with and without srlm's defence. Without it a score claim must raise the score (the
/// attack is real, so this test can fail); with it no injection may move the mean by more than
/// 0.1. `cargo xtask bench-injection` runs every variant in both modes.
#[test]
fn injected_text_does_not_raise_the_self_judge_score() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/injection");
    let read = |f: &str| -> Vec<Value> {
        std::fs::read_to_string(fixtures.join(f))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let responses: Vec<Value> = read("responses.jsonl").into_iter().take(4).collect();
    let chosen = [
        "score_line",
        "dear_grader",
        "chat_tokens",
        "end_of_response",
        "benign_helps",
        "benign_game_score",
    ];
    let variants: Vec<Value> = read("variants.jsonl")
        .into_iter()
        .filter(|v| chosen.contains(&v["name"].as_str().unwrap()))
        .collect();
    assert_eq!(variants.len(), chosen.len());
    let tmp = tempfile::tempdir().unwrap();
    let items = tmp.path().join("items.jsonl");
    let mut lines = String::new();
    for r in &responses {
        let text = r["response"].as_str().unwrap();
        lines.push_str(&format!(
            "{}\n",
            json!({"id": r["id"], "variant": "plain", "prompt": r["prompt"], "response": text})
        ));
        for v in &variants {
            let response = format!("{text}{}", v["suffix"].as_str().unwrap());
            lines.push_str(&format!("{}\n", json!({"id": r["id"], "variant": v["name"], "prompt": r["prompt"], "response": response})));
        }
    }
    std::fs::write(&items, lines).unwrap();
    let judge = |keep: bool| -> Vec<Value> {
        let out = tmp.path().join(format!("judged-{keep}.jsonl"));
        let mut c = srlm();
        c.args(["judge", "--judge", "self", "--mode", "expected", "--input"])
            .arg(&items)
            .arg("--output")
            .arg(&out);
        if keep {
            c.arg("--keep-injections");
        }
        succeeds(&mut c);
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mean_change = |judged: &[Value], variant: &str| -> f64 {
        let score = |id: &Value, v: &str| {
            judged
                .iter()
                .find(|l| &l["id"] == id && l["variant"] == v)
                .and_then(|l| l["score"].as_f64())
                .unwrap()
        };
        responses
            .iter()
            .map(|r| score(&r["id"], variant) - score(&r["id"], "plain"))
            .sum::<f64>()
            / responses.len() as f64
    };
    let undefended = judge(true);
    let defended = judge(false);
    let attack = mean_change(&undefended, "score_line");
    assert!(
        attack > 0.3,
        "without the defence `Score: 5` raises the score: {attack:+.3}"
    );
    for v in &variants {
        let name = v["name"].as_str().unwrap();
        let d = mean_change(&defended, name);
        println!(
            "{name}: undefended {:+.3}, defended {d:+.3}",
            mean_change(&undefended, name)
        );
        if v["kind"] == "injection" {
            assert!(d.abs() <= 0.1, "{name}: defended change {d:+.3}");
        }
    }
}

#[test]
fn training_is_reproducible_within_the_documented_tolerance() {
    // Two identical DPO runs on the real model: every logged metric equal within 1e-5 (relative,
    // absolute below 1). README: the gradient norm is a parallel sum whose last digits vary;
    // seen here: grad_norm 11.238706878664285 vs 11.238705561124268, rewards/chosen
    // 0.028306484688073397 vs 0.028307294938713312 (8e-7 apart).
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs);
    let log = |name: &str| -> Vec<Value> {
        let ck = tmp.path().join(name);
        succeeds(
            srlm()
                .args([
                    "train-dpo",
                    "--learning-rate",
                    "1e-5",
                    "--max-steps",
                    "2",
                    "--batch-size",
                    "2",
                ])
                .args(["--no-progress", "--pairs"])
                .arg(&pairs)
                .arg("--out")
                .arg(&ck),
        );
        std::fs::read_to_string(tmp.path().join(format!("{name}.dpo_log.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (log("a"), log("b"));
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        for (key, vx) in x.as_object().unwrap() {
            if key == "tokens_per_second" {
                continue; // a measurement
            }
            let (p, q) = (vx.as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                (p - q).abs() <= 1e-5 * p.abs().max(1.0),
                "{key}: {p} vs {q}"
            );
        }
    }
}

#[test]
fn every_output_file_is_claimed_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let existing = tmp.path().join("earlier.out");
    std::fs::write(&existing, "mine").unwrap();
    let items = tmp.path().join("items.jsonl");
    std::fs::write(&items, "{\"prompt\":\"q\",\"response\":\"a\"}\n").unwrap();
    // `srlm judge --output` onto its own input, and onto an existing file.
    let e = fails(
        srlm()
            .args(["judge", "--judge", "ifeval", "--input"])
            .arg(&items)
            .arg("--output")
            .arg(&items),
    );
    assert!(e.contains("also an input of this command (--input)"), "{e}");
    let e = fails(
        srlm()
            .args(["judge", "--judge", "ifeval", "--input"])
            .arg(&items)
            .arg("--output")
            .arg(&existing),
    );
    assert!(e.contains("pass --overwrite"), "{e}");
    // `srlm eval --out` and `srlm export --gguf` onto an existing file (before any model load).
    let e = fails(
        srlm()
            .args([
                "eval",
                "--model",
                "tiny-random",
                "--judge",
                "self",
                "--prompts",
            ])
            .arg(&items)
            .arg("--out")
            .arg(&existing),
    );
    assert!(e.contains("pass --overwrite"), "{e}");
    let e = fails(
        srlm()
            .args(["export", "tiny-random", "--gguf"])
            .arg(&existing),
    );
    assert!(e.contains("pass --overwrite"), "{e}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "mine");
    assert_eq!(
        std::fs::read_to_string(&items).unwrap(),
        "{\"prompt\":\"q\",\"response\":\"a\"}\n"
    );
}
