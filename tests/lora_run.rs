//! A run with LoRA (`dpo.use_peft`) on srlm's own trainer, end to end on `tiny-random`
//! (seconds): every iteration's checkpoint is a PEFT adapter on M0 (no full weights), the
//! second iteration continues the first one's adapter (its first DPO loss is ln 2: policy =
//! reference = M_1), `srlm generate` and `srlm export --hf --merge` read the adapter through
//! its base, and a run resumed after losing its last iteration loads M_1's adapter onto the
//! M0 it holds and replays the same pairs, scores and adapter bytes.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

#[path = "support/tiny_run.rs"]
mod support;

fn srlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srlm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_BACKTRACE");
    c.env("SRLM_PROGRESS", "lines");
    c
}

fn succeeds(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const LORA: [&str; 10] = [
    "-c",
    "iterations=2",
    "-c",
    "dpo.use_peft=true",
    "-c",
    "dpo.lora_r=4",
    "-c",
    "dpo.learning_rate=1e-2",
    "-c",
    "dpo.lora_target_modules=[\"q_proj\",\"v_proj\",\"down_proj\"]",
];

#[test]
fn a_lora_run_saves_adapters_continues_them_and_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    succeeds(&mut support::tiny_run(srlm(), dir.path(), &out, &LORA));

    let mut adapters = Vec::new();
    for it in [1, 2] {
        let ck = out.join(format!("iter_{it}/checkpoint"));
        assert!(
            !ck.join("model.safetensors").exists(),
            "iter {it}: an adapter only"
        );
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(ck.join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 4);
        assert_eq!(config["base_model_name_or_path"], "tiny-random");
        assert_eq!(
            config["target_modules"],
            serde_json::json!(["q_proj", "v_proj", "down_proj"])
        );
        adapters.push(std::fs::read(ck.join("adapter_model.safetensors")).unwrap());
        // Each iteration starts with policy = reference (M_0 + a zero B, then M_1 continued).
        let log = lines(&out.join(format!("iter_{it}/dpo_log.jsonl")));
        let loss = log[0]["loss"].as_f64().unwrap();
        assert!(
            (loss - std::f64::consts::LN_2).abs() < 1e-6,
            "iter {it}: {loss}"
        );
    }
    assert_ne!(
        adapters[0], adapters[1],
        "iteration 2 trained the adapter further"
    );

    // The adapter is a model for every command: generate through its base, export merged.
    let ck2 = out.join("iter_2/checkpoint");
    succeeds(
        srlm()
            .args([
                "generate",
                "--prompt",
                "Question 1?",
                "--max-new-tokens",
                "4",
                "--model",
            ])
            .arg(&ck2),
    );
    let merged = dir.path().join("merged");
    let o = srlm()
        .arg("export")
        .arg(&ck2)
        .arg("--hf")
        .arg(&merged)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--merge"), "{err}");
    succeeds(
        srlm()
            .arg("export")
            .arg(&ck2)
            .arg("--hf")
            .arg(&merged)
            .arg("--merge"),
    );
    assert!(merged.join("model.safetensors").is_file() && merged.join("config.json").is_file());
    let top = |model: &Path| -> Value {
        let o = succeeds(
            srlm()
                .args([
                    "logits",
                    "--json",
                    "--top",
                    "5",
                    "--text",
                    "Question 1?",
                    "--model",
                ])
                .arg(model),
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (a, m) = (top(&ck2), top(&merged));
    assert_eq!(a["ids"], m["ids"]);
    for (x, y) in a["logits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m["logits"].as_array().unwrap())
    {
        assert!(
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-4,
            "{x} vs {y}"
        );
    }

    // Lose the last iteration (its folder and metrics line) and resume.
    let metrics = lines(&out.join("metrics.jsonl"));
    let pairs2 = std::fs::read(out.join("iter_2/pairs.jsonl")).unwrap();
    std::fs::remove_dir_all(out.join("iter_2")).unwrap();
    let kept: String = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("metrics.jsonl"), kept).unwrap();
    succeeds(srlm().arg("run").arg("--resume").arg(&out));
    assert_eq!(
        std::fs::read(out.join("iter_2/pairs.jsonl")).unwrap(),
        pairs2
    );
    assert_eq!(
        std::fs::read(out.join("iter_2/checkpoint/adapter_model.safetensors")).unwrap(),
        adapters[1]
    );
    let again = lines(&out.join("metrics.jsonl"));
    assert_eq!(again.len(), 3);
    assert_eq!(again[2]["eval"], metrics[2]["eval"]);
}

/// What a user can get wrong with adapters (found by a new-user trial): each is refused with a
/// one-line error and nothing is lost, or does what the README says.
#[test]
fn adapters_keep_their_base_and_refuse_chains_and_writes_into_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f);
    std::fs::write(
        path("pairs.jsonl"),
        "{\"prompt\":\"Name a color.\",\"chosen\":\"Blue.\",\"rejected\":\"Table.\"}\n\
         {\"prompt\":\"Say hi.\",\"chosen\":\"Hi!\",\"rejected\":\"No.\"}\n",
    )
    .unwrap();
    // A full model in an HF folder, given by a relative path.
    succeeds(
        srlm()
            .current_dir(dir.path())
            .args(["export", "tiny-random", "--hf", "base"]),
    );
    let train = |model: &str, out: &str, extra: &[&str]| {
        let mut c = srlm();
        c.current_dir(dir.path())
            .args([
                "train-dpo",
                "--no-progress",
                "--pairs",
                "pairs.jsonl",
                "--max-steps",
                "1",
            ])
            .args(["--model", model, "--out", out])
            .args(extra);
        c.output().unwrap()
    };
    let o = train("base", "adp", &["--lora-r", "4", "--lora-alpha", "8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = |d: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path(d).join("adapter_config.json")).unwrap())
            .unwrap()
    };
    // The base is recorded as an absolute path: the adapter loads from any folder.
    let base = info("adp")["base_model_name_or_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Path::new(&base).is_absolute() && Path::new(&base).ends_with("base"),
        "{base}"
    );
    succeeds(
        srlm()
            .args(["logits", "--text", "Hi", "--top", "1", "--model"])
            .arg(path("adp")),
    );

    // A bf16 base is for LoRA: on a full fine-tuning it is refused before any work, as is a
    // dtype srlm does not have; with LoRA it trains.
    for (extra, says) in [
        (&["--dtype", "bfloat16"][..], "--use-peft"),
        (
            &["--dtype", "float16", "--lora-r", "4"][..],
            "`float32` or `bfloat16`",
        ),
    ] {
        let o = train("base", "full16", extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(says),
            "{extra:?}: {err}"
        );
        assert!(!path("full16").exists());
    }
    let o = train("base", "adp16", &["--lora-r", "4", "--dtype", "bfloat16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(path("adp16").join("adapter_model.safetensors").is_file());

    // Continued without LoRA flags: the adapter's own r, α and targets, still an adapter.
    let o = train("adp", "adp2", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("continuing it"), "{err}");
    assert_eq!(info("adp2")["r"], 4);
    assert!(!path("adp2").join("model.safetensors").exists());

    // The adapter's base is not replaced, even with --overwrite.
    let weights = std::fs::read(path("base").join("model.safetensors")).unwrap();
    let o = train("adp", "base", &["--overwrite"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the base of the adapter"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(path("base").join("model.safetensors")).unwrap(),
        weights
    );

    // No export is written into the model's own folder.
    for flag in [["--gguf-lora", "adp/x.gguf"], ["--hf", "adp/merged"]] {
        let o = srlm()
            .current_dir(dir.path())
            .args(["export", "adp", flag[0], flag[1], "--merge", "--overwrite"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("inside the model folder"),
            "{err}"
        );
    }

    // An adapter whose base is an adapter (or itself) is an error, not a crash.
    let own = std::fs::canonicalize(path("adp2")).unwrap();
    let config = std::fs::read_to_string(path("adp2").join("adapter_config.json"))
        .unwrap()
        .replace(&base, own.to_str().unwrap());
    std::fs::write(path("adp2").join("adapter_config.json"), config).unwrap();
    let o = srlm()
        .args(["logits", "--text", "Hi", "--model"])
        .arg(path("adp2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("is itself a LoRA adapter"),
        "{:?}: {err}",
        o.status
    );
}
