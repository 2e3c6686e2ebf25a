//! End-to-end tests of the `srlm` binary: the smoke config on the real default model (the
//! whole loop: sampling, judging, temporal pair selection with a temporary model, DPO,
//! evaluation, report), and the one-line errors users see for bad input.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn srlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srlm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn smoke_run_on_the_default_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smoke");
    let o = srlm()
        .args(["run", "--config", "configs/smoke.toml", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("report: ")
            && stdout.contains("held-out score (0–5) M0 → M1")
            && stdout.contains("wall time"),
        "{stdout}"
    );
    for f in [
        "config.json",
        "metrics.jsonl",
        "report.md",
        "iter_1/pairs.jsonl",
        "iter_1/samples.jsonl",
        "iter_1/judgments.jsonl",
        "iter_1/checkpoint/model.safetensors",
        "eval/M1.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let svgs = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    assert!(svgs >= 4, "{svgs} SVG plots");
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 2);
    let m = &metrics[1];
    assert!(
        m["pairs"].as_u64().unwrap() > 0,
        "the smoke config keeps pairs: {m}"
    );
    // Every metric that is present is finite.
    for line in &metrics {
        for (k, v) in line.as_object().unwrap() {
            if let Some(x) = v.as_f64() {
                assert!(x.is_finite(), "{k} = {x}");
            }
        }
    }
    for k in [
        "dpo/loss",
        "dpo/rewards/margins",
        "dpo/grad_norm",
        "hidden_cosine",
        "score/gap",
        "eval/score",
        "compute/tokens_trained",
    ] {
        assert!(m[k].as_f64().is_some(), "{k} missing: {m}");
    }
    // IFEval's own accuracies next to the 0–5 score (the held-out prompts are IFEval's), and
    // each held-out answer with IFEval's per-instruction verdicts.
    for line in &metrics {
        assert_eq!(line["eval/ifeval/n"], line["eval/n"], "{line}");
        let acc = |k: &str| {
            let x = line[format!("eval/ifeval/{k}")]
                .as_f64()
                .unwrap_or_else(|| panic!("eval/ifeval/{k} missing: {line}"));
            assert!((0.0..=1.0).contains(&x), "{k} = {x}");
            x
        };
        assert!(acc("prompt_level_loose_acc") >= acc("prompt_level_strict_acc"));
        assert!(acc("inst_level_loose_acc") >= acc("inst_level_strict_acc"));
    }
    let row: Value = serde_json::from_str(
        std::fs::read_to_string(out.join("eval/M1.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        row["ifeval_instructions"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v["strict"].is_boolean())),
        "{row}"
    );
    // The pairs carry each side's source model, iteration and score.
    let pair: Value = serde_json::from_str(
        std::fs::read_to_string(out.join("iter_1/pairs.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(pair["chosen_score"].as_f64() > pair["rejected_score"].as_f64());
    assert!(
        !pair["provenance"]["chosen_source"].is_null()
            && !pair["provenance"]["rejected_source"].is_null(),
        "{pair}"
    );
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains(".svg"));
    // The checkpoint is a model srlm loads again.
    let g = srlm()
        .args([
            "generate",
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "4",
            "--json",
            "--model",
        ])
        .arg(out.join("iter_1/checkpoint"))
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
}

fn one_line_error(args: &[&str]) -> String {
    let o = srlm().args(args).output().unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn bad_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = |n: &str| tmp.path().join(n).display().to_string();
    let e = one_line_error(&[
        "run",
        "--strategy",
        "./does-not-exist.so",
        "--out",
        &out("a"),
    ]);
    assert!(e.contains("does-not-exist.so"), "{e}");
    let e = one_line_error(&["run", "--set", "bogus=1", "--out", &out("b")]);
    assert!(e.contains("bogus"), "{e}");
    let e = one_line_error(&["run", "--strategy", "nope", "--out", &out("c")]);
    assert!(
        e.contains("temporal") && e.contains("self-rewarding") && e.contains("spin"),
        "{e}"
    );
    let bad = tmp.path().join("p.jsonl");
    std::fs::write(&bad, "{\"prompt\":\"a\"}\n{\"instruction\":null}\n").unwrap();
    let e = one_line_error(&[
        "run",
        "-c",
        &format!("prompts.source=\"{}\"", bad.display()),
        "--out",
        &out("d"),
    ]);
    assert!(e.contains("p.jsonl:2:"), "{e}");
    let e = one_line_error(&["run", "-c", "sampling.kk=2", "--out", &out("e")]);
    assert!(e.contains("kk"), "{e}");
    let e = one_line_error(&["generate", "--model", "/no/such/model", "--prompt", "x"]);
    assert!(e.contains("unknown model") && e.contains("default"), "{e}");
    let e = one_line_error(&["plugins", "check", "temporal", "--set", "bogus=1"]);
    assert!(e.contains("bogus"), "{e}");
    assert!(Path::new(env!("CARGO_BIN_EXE_srlm")).exists());
}
