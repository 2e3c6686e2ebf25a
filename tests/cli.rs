//! End-to-end tests of the `srlm` binary: the smoke config on the real default model (the
//! whole loop: sampling, judging, temporal pair selection with a temporary model, DPO,
//! evaluation, report), the one-line errors users see for bad input, and `srlm plugins check`
//! doing what `srlm run` does with its plugin before the first iteration.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

#[path = "support/test_plugins.rs"]
mod test_plugins;

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
            && stdout.contains("held-out score (0–5): M0 ")
            && stdout.contains(" · M1 ")
            && stdout.contains("wall time"),
        "{stdout}"
    );
    // Every long stage reports to a redirected log (here a pipe): a line when it ends.
    let stderr = String::from_utf8_lossy(&o.stderr);
    for start in [
        "srlm: evaluating M0: answering: ",
        "srlm: evaluating M0: judging: ",
        "srlm: iteration 1: sampling 8 prompts × K=4 from current: 32 samples in ",
        "srlm: iteration 1: sampling 8 prompts × K=4 from initial: 32 samples in ",
        "srlm: iteration 1: judging: ",
        "srlm: DPO on ",
        "srlm: evaluating M1: answering: ",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(start)),
            "no line starting with {start:?}:\n{stderr}"
        );
    }
    // One copy of each model: the temporary model M_f is gone from the cache once the
    // iteration is recorded, and the checkpoint is M1's cached file under a second name.
    let cached: Vec<_> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.safetensors").is_file())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| {
            std::fs::metadata(p.join("model.safetensors"))
                .unwrap()
                .ino()
        };
        assert_eq!(ino(&out.join("iter_1/checkpoint")), ino(&cached[0]));
    }
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
    // `eval --run` evaluates the run's M1 on the run's own held-out prompts with its judge: the
    // same answers, so the same mean score as the run recorded.
    let e = srlm()
        .args(["eval", "--json", "--model", "M1", "--run"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let v: Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["n"], m["eval/n"], "{v}");
    assert_eq!(v["mean"].as_f64(), m["eval/score"].as_f64(), "{v}");
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

/// `srlm plugins check` resolves options as `srlm run` does (`k` from `sampling.k` for a
/// plugin that declares it without a default, K bounds) and constructs the strategy: a value
/// the schema accepts but the plugin's constructor rejects is a one-line error naming the
/// plugin and the option.
#[test]
fn plugins_check_constructs_the_strategy() {
    let check = |args: &[&str]| -> Value {
        let o = srlm()
            .args(["plugins", "check"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // self-rewarding declares k without a default: the (default) config's sampling.k fills it.
    assert_eq!(check(&["self-rewarding"]), json!({"k": 4}));
    assert_eq!(
        check(&["self-rewarding", "-c", "sampling.k=6"]),
        json!({"k": 6})
    );
    assert_eq!(
        check(&["self-rewarding", "-c", "sampling.k=6", "--set", "k=3"]),
        json!({"k": 3})
    );
    // spin declares k = 1: sampling.k does not touch it.
    assert_eq!(
        check(&["spin", "-c", "sampling.k=6"]),
        json!({"k": 1, "judge": false})
    );
    // The schema's bound (k >= 2), then the run's K bound.
    let e = one_line_error(&["plugins", "check", "self-rewarding", "--set", "k=1"]);
    assert!(
        e.contains("srlm_plugin_self_rewarding") && e.contains("option `k`: must be >= 2, got 1"),
        "{e}"
    );
    let e = one_line_error(&["plugins", "check", "temporal", "--set", "k=2000"]);
    assert_eq!(
        e,
        "error: config: strategy option k = 2000 must be in 1..=1024"
    );

    // test-panicky's schema accepts fail_in_new=true; its constructor rejects it.
    let lib = test_plugins::lib(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "srlm-test-plugin-panicky",
    );
    let lib = lib.to_str().unwrap();
    assert_eq!(
        check(&[lib, "--set", "fail_in_new=false"]),
        json!({"fail_in_new": false, "panic_in_new": false})
    );
    let e = one_line_error(&["plugins", "check", lib, "--set", "fail_in_new=true"]);
    assert_eq!(
        e,
        format!(
            "error: {lib}: strategy `test-panicky` rejected its options: panicky: asked to fail in new"
        )
    );
    // A panic in the constructor fails the check too (the plugin's panic message precedes it).
    let o = srlm()
        .args(["plugins", "check", lib, "--set", "panic_in_new=true"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.lines().last(),
        Some(
            format!(
                "error: {lib}: strategy `test-panicky` panicked in new: panicky: asked to panic in new"
            )
            .as_str()
        ),
        "{err}"
    );
}
