//! DPO on an external trainer, for real: TRL 1.16 (Hugging Face's `DPOTrainer`, with PyTorch
//! 2.15 on the CPU) installed by `scripts/install-trl.sh` into srlm's cache on first use (about
//! 6 GB, 1.5–3 minutes; later runs reuse it), run by srlm as a command.
//!
//! - `srlm train-dpo --backend trl` on the four pairs of `tests/fixtures/smollm2-torch-logps.json`
//!   trains on exactly srlm's token ids (the data file holds the fixture's ids), its first loss
//!   is ln 2, its step-1 log-probs are PyTorch's and srlm's own within 0.05, and two steps of
//!   TRL and of srlm's trainer end at the same loss and margins (1e-4): same data, same
//!   optimizer, same numbers. The checkpoint comes back and srlm samples from it.
//! - `srlm run --config configs/smoke.toml -c trainer.backend="trl"` completes with a report and
//!   metrics of the same shape as the in-process trainer's; the trainer's records are in the run
//!   folder; `kill -9` during the external step leaves no trainer running and `--resume` re-runs
//!   only that step, to the same pairs and scores.
//! - A missing Python, a flag TRL refuses, and a trainer that leaves no model are one-line
//!   errors naming the command, the log or the missing file.
//! - LoRA through TRL (`use_peft`): the first loss is ln 2 (PEFT's B = 0), PEFT writes the
//!   adapter in its own format (checked: r, α, targets, tensor names and shapes), and srlm takes
//!   back the merged model and samples from it. srlm reads PEFT's adapter to the merged
//!   model's logits, and PEFT (`PeftModel.from_pretrained`) reads the adapter srlm's own
//!   trainer wrote to srlm's logits (2e-3).
//! - OpenRLHF (needs DeepSpeed and GPUs) is checked as a dry run: every flag of the command
//!   srlm would run is one of `openrlhf.cli.train_dpo`'s (0.11.2, from its PyPI wheel:
//!   `tests/fixtures/openrlhf-0.11.2-train_dpo-flags.txt`).

#[path = "support/tiny_run.rs"]
mod tiny_run;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs (once) and returns TRL's virtualenv python.
fn trl_python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let o = Command::new("bash")
            .arg(root().join("scripts/install-trl.sh"))
            .output()
            .expect("bash runs");
        assert!(
            o.status.success(),
            "install-trl.sh failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

fn srlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srlm"));
    c.current_dir(root()).env("SRLM_PROGRESS", "lines");
    c
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// The four pairs of `tests/fixtures/smollm2-torch-logps.json` (texts, ids, PyTorch's logps).
fn fixture_pairs() -> Vec<Value> {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/smollm2-torch-logps.json")).unwrap(),
    )
    .unwrap();
    fixture["pairs"].as_array().unwrap().clone()
}

/// Writes the pairs' texts as TRL's `prompt` / `chosen` / `rejected` JSONL in `dir`.
fn write_pairs(dir: &Path, pairs: &[Value]) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    let lines: String = pairs
        .iter()
        .map(|p| {
            format!(
                "{}\n",
                serde_json::json!({"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]})
            )
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn trl_trains_on_srlms_tokens_and_matches_srlms_trainer() {
    let python = trl_python();
    let fx = fixture_pairs();
    let dir = tempfile::tempdir().unwrap();
    let pairs = write_pairs(dir.path(), &fx);
    let train = |backend: &str, out: &Path| {
        let o = srlm()
            .args(["train-dpo", "--backend", backend, "--python", python])
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(out)
            .args(["--batch-size", "4", "--max-steps", "2", "--no-progress"])
            .output()
            .unwrap();
        ok(&o, &format!("train-dpo --backend {backend}"));
        jsonl(&out.with_file_name(format!(
            "{}.dpo_log.jsonl",
            out.file_name().unwrap().to_string_lossy()
        )))
    };
    let trl_out = dir.path().join("trl");
    let trl = train("trl", &trl_out);
    let native = train("srlm", &dir.path().join("native"));
    assert_eq!((trl.len(), native.len()), (2, 2));

    // The data TRL read holds the fixture's token ids (PyTorch's tokenization): T1–T4 kept.
    let data = jsonl(&dir.path().join("trl.trainer/pairs.jsonl"));
    for (d, p) in data.iter().zip(&fx) {
        for key in ["prompt_ids", "chosen_ids", "rejected_ids"] {
            assert_eq!(d[key], p[key], "{key} of {}", p["prompt"]);
        }
    }
    // Step 1: policy = reference, loss ln 2, log-probs of the same tokens under the same model.
    let ln2 = std::f64::consts::LN_2;
    assert!((f(&trl[0], "loss") - ln2).abs() < 1e-6, "{}", trl[0]);
    let mean = |key: &str| fx.iter().map(|p| f(p, key)).sum::<f64>() / fx.len() as f64;
    for key in ["logps/chosen", "logps/rejected"] {
        let (t, n, torch) = (f(&trl[0], key), f(&native[0], key), mean(key));
        assert!((t - n).abs() < 0.05, "{key}: TRL {t} vs srlm {n}");
        assert!(
            (t - torch).abs() < 0.05,
            "{key}: TRL {t} vs the fixture {torch}"
        );
    }
    assert_eq!(trl[0]["tokens"], native[0]["tokens"], "same tokens trained");
    // Step 2: after one AdamW update with the same settings, the same loss and margins.
    for key in [
        "loss",
        "rewards/margins",
        "rewards/chosen",
        "rewards/rejected",
    ] {
        let (t, n) = (f(&trl[1], key), f(&native[1], key));
        assert!((t - n).abs() < 1e-4, "step 2 {key}: TRL {t} vs srlm {n}");
    }
    // The records and the checkpoint: srlm samples from what TRL wrote.
    let command = std::fs::read_to_string(dir.path().join("trl.trainer/command.txt")).unwrap();
    assert!(command.starts_with(python), "{command}");
    assert!(command.contains("--beta 0.1") && command.contains("--max_steps 2"));
    let o = srlm()
        .args(["generate", "--model"])
        .arg(&trl_out)
        .args(["--prompt", "Name three colors.", "--max-new-tokens", "8"])
        .args(["--seed", "1", "--json"])
        .output()
        .unwrap();
    let out = ok(&o, "generate from TRL's checkpoint");
    assert!(out.contains("\"text\""), "{out}");
}

/// The tensor table of a safetensors file (its JSON header): name → (dtype, shape).
fn safetensors_header(path: &Path) -> std::collections::BTreeMap<String, (String, Vec<u64>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap());
            (
                k.clone(),
                (v["dtype"].as_str().unwrap().to_string(), shape.collect()),
            )
        })
        .collect()
}

#[test]
fn lora_through_trl_gives_a_peft_adapter_and_a_merged_checkpoint() {
    let python = trl_python();
    let fx = fixture_pairs();
    let dir = tempfile::tempdir().unwrap();
    let pairs = write_pairs(dir.path(), &fx);
    let lora = [
        "--set",
        "use_peft=true",
        "--set",
        "lora_r=8",
        "--set",
        "lora_alpha=16",
    ];

    // srlm's own trainer trains the same adapter, in PEFT's format (checked against PEFT
    // itself below).
    let native = dir.path().join("native");
    let o = srlm()
        .args(["train-dpo", "--no-progress"])
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&native)
        .args([
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--learning-rate",
            "1e-3",
        ])
        .args(lora)
        .output()
        .unwrap();
    ok(&o, "train-dpo with LoRA on srlm's trainer");
    let native_log = jsonl(&dir.path().join("native.dpo_log.jsonl"));
    assert!(
        (f(&native_log[0], "loss") - std::f64::consts::LN_2).abs() < 1e-6,
        "{}",
        native_log[0]
    );
    assert!(
        !native.join("model.safetensors").exists(),
        "an adapter, not a model"
    );

    let out = dir.path().join("lora");
    let o = srlm()
        .args([
            "train-dpo",
            "--backend",
            "trl",
            "--python",
            python,
            "--no-progress",
        ])
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .args([
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--learning-rate",
            "1e-3",
        ])
        .args(lora)
        .output()
        .unwrap();
    ok(&o, "train-dpo --backend trl with LoRA");
    let log = jsonl(&dir.path().join("lora.dpo_log.jsonl"));
    // B = 0 at the start (PEFT's initialisation): the policy is the base, the loss ln 2.
    assert!(
        (f(&log[0], "loss") - std::f64::consts::LN_2).abs() < 1e-6,
        "{}",
        log[0]
    );
    let mean = |key: &str| fx.iter().map(|p| f(p, key)).sum::<f64>() / fx.len() as f64;
    assert!((f(&log[0], "logps/chosen") - mean("logps/chosen")).abs() < 0.05);
    assert!(
        f(&log[1], "loss") < std::f64::consts::LN_2 - 1e-3,
        "the adapter learned: {}",
        log[1]
    );

    // PEFT's format, written by PEFT: r, alpha, the targets, A and B of each targeted layer.
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 8);
    assert_eq!(config["lora_alpha"], 16);
    let mut targets: Vec<&str> = config["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["q_proj", "v_proj"]);
    let tensors = safetensors_header(&out.join("adapter/adapter_model.safetensors"));
    assert_eq!(tensors.len(), 30 * 2 * 2, "30 layers × (q, v) × (A, B)");
    let get =
        |name: &str| &tensors[&format!("base_model.model.model.layers.0.self_attn.{name}.weight")];
    assert_eq!(get("q_proj.lora_A"), &("F32".to_string(), vec![8, 576]));
    assert_eq!(get("q_proj.lora_B"), &("F32".to_string(), vec![576, 8]));
    assert_eq!(
        get("v_proj.lora_B"),
        &("F32".to_string(), vec![192, 8]),
        "3 KV heads × 64"
    );

    // The merged checkpoint is a full model srlm loads and samples from.
    let merged = safetensors_header(&out.join("model.safetensors"));
    assert!(
        merged.keys().all(|k| !k.contains("lora")),
        "merged: no adapter tensors"
    );
    let o = srlm()
        .args(["generate", "--model"])
        .arg(&out)
        .args([
            "--prompt",
            "Name three colors.",
            "--max-new-tokens",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    ok(&o, "generate from the merged LoRA checkpoint");

    // srlm reads PEFT's adapter (through its base_model_name_or_path, srlm's HF export of M0)
    // and computes what TRL's merged model computes.
    let text = "The capital of France is";
    let top = |model: &Path| -> Value {
        let o = srlm()
            .args(["logits", "--json", "--top", "50", "--text", text, "--model"])
            .arg(model)
            .output()
            .unwrap();
        serde_json::from_str(&ok(&o, "logits")).unwrap()
    };
    let (merged, adapter) = (top(&out), top(&out.join("adapter")));
    assert_eq!(merged["ids"], adapter["ids"]);
    logits_close(&merged, &adapter, "merged vs srlm with PEFT's adapter");

    // PEFT reads srlm's adapter: PeftModel on the same base computes srlm's logits.
    let base = config["base_model_name_or_path"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = srlm()
        .args(["tokenize", "--json", "--text", text])
        .output()
        .unwrap();
    let ids: Value = serde_json::from_str(&ok(&ids, "tokenize")).unwrap();
    let ours = top(&native);
    let check = dir.path().join("peft_check.py");
    std::fs::write(
        &check,
        r#"import json, sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base, adapter, ids, top = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter)
with torch.no_grad():
    logits = model(torch.tensor([ids["ids"]])).logits[0, -1]
print(json.dumps({"logits": [logits[i].item() for i in top["ids"]],
                  "lora_params": sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)}))
"#,
    )
    .unwrap();
    let o = Command::new(python)
        .arg(&check)
        .arg(&base)
        .arg(&native)
        .arg(ids.to_string())
        .arg(ours.to_string())
        .output()
        .unwrap();
    let peft: Value =
        serde_json::from_str(ok(&o, "PEFT loads srlm's adapter").lines().last().unwrap()).unwrap();
    // 30 layers × (q: 8·576 + 576·8, v: 8·576 + 192·8).
    assert_eq!(peft["lora_params"], 30 * (2 * 8 * 576 + 8 * 576 + 192 * 8));
    logits_close(&ours, &peft, "srlm vs PEFT on srlm's adapter");
}

/// Asserts that two `{"logits": [...]}` answers agree entry by entry within 2e-3.
fn logits_close(a: &Value, b: &Value, what: &str) {
    let (a, b) = (
        a["logits"].as_array().unwrap(),
        b["logits"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() < 2e-3, "{what}: {x} vs {y}");
    }
}

/// Processes whose command line mentions `needle` (the trainer of a run folder).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && !text.contains("cargo") {
            found.push(text);
        }
    }
    found
}

fn smoke(out: &Path, resume: bool) -> Command {
    let mut c = srlm();
    if resume {
        c.args(["run", "--resume"]).arg(out);
    } else {
        c.args(["run", "--config", "configs/smoke.toml"])
            .args(["-c", "trainer.backend=\"trl\"", "-c"])
            .arg(format!("trainer.python=\"{}\"", trl_python()))
            .arg("--out")
            .arg(out);
    }
    c
}

fn metric_lines(dir: &Path) -> Vec<Value> {
    jsonl(&dir.join("metrics.jsonl"))
        .into_iter()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            o.retain(|k, _| !k.contains("wall") && !k.contains("per_second"));
            v
        })
        .collect()
}

#[test]
fn a_run_with_trl_completes_and_resumes_after_a_kill_during_training() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let o = smoke(&full, false).output().unwrap();
    ok(&o, "smoke run with trainer.backend = trl");
    assert!(full.join("report.md").is_file());
    let report = std::fs::read_to_string(full.join("report.md")).unwrap();
    assert!(
        report.contains("rewards/margins") || report.contains("margin"),
        "{report}"
    );
    let step = full.join("iter_1/temporary_0_trainer");
    for file in [
        "command.txt",
        "trainer.log",
        "pairs.jsonl",
        "srlm_log.jsonl",
    ] {
        assert!(
            step.join(file).is_file(),
            "{file} missing in {}",
            step.display()
        );
    }
    let dpo = jsonl(&full.join("iter_1/dpo_log.jsonl"));
    assert!((f(&dpo[0], "loss") - std::f64::consts::LN_2).abs() < 1e-6);
    // The iteration's checkpoint is TRL's model published by hard links, not a second copy.
    {
        use std::os::unix::fs::MetadataExt;
        let weights = std::fs::metadata(full.join("iter_1/checkpoint/model.safetensors")).unwrap();
        assert!(
            weights.nlink() >= 2,
            "iter_1/checkpoint is a copy, not a link"
        );
    }

    // Same shape as the in-process trainer's run: the same metrics per line.
    let native = dir.path().join("native");
    let o = srlm()
        .args(["run", "--config", "configs/smoke.toml", "--out"])
        .arg(&native)
        .output()
        .unwrap();
    ok(&o, "native smoke run");
    let keys = |lines: &[Value]| -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|v| v.as_object().unwrap().keys().cloned().collect())
            .collect()
    };
    assert_eq!(keys(&metric_lines(&full)), keys(&metric_lines(&native)));

    // kill -9 while TRL trains; the trainer dies with srlm; --resume re-runs only that step.
    let killed = dir.path().join("killed");
    let log = std::fs::File::create(dir.path().join("killed.log")).unwrap();
    let mut child = smoke(&killed, false)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let trainer_log = killed.join("iter_1/temporary_0_trainer/trainer.log");
    let t = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before training"
        );
        let started = std::fs::read_to_string(&trainer_log).unwrap_or_default();
        if started.contains("=== srlm runs") && t.elapsed() > Duration::from_secs(1) {
            std::thread::sleep(Duration::from_secs(4));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let needle = killed.display().to_string();
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "no trainer running"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    while !processes_mentioning(&needle).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the trainer outlived srlm: {:?}",
            processes_mentioning(&needle)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = smoke(&killed, true).output().unwrap();
    ok(&o, "resume");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("from current") && !err.contains("from initial"),
        "samples of M_i and M0 were replayed, not drawn again:\n{err}"
    );
    assert!(err.contains("DPO on trl"), "the step ran again:\n{err}");
    assert_eq!(
        std::fs::read_to_string(killed.join("iter_1/pairs.jsonl")).unwrap(),
        std::fs::read_to_string(full.join("iter_1/pairs.jsonl")).unwrap()
    );
    assert_eq!(metric_lines(&killed), metric_lines(&full));
}

fn tiny(extra: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec!["-c", "trainer.backend=\"trl\""];
    args.extend_from_slice(extra);
    let o = tiny_run::tiny_run(srlm(), dir.path(), &out, &args)
        .output()
        .unwrap();
    (dir, o)
}

#[test]
fn trainer_failures_are_one_line_errors_naming_the_cause() {
    let python = format!("trainer.python=\"{}\"", trl_python());
    let (_d, o) = tiny(&["-c", "trainer.python=\"/nonexistent/python3\""]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("`/nonexistent/python3` not found"), "{err}");

    let (_d, o) = tiny(&[
        "-c",
        &python,
        "-c",
        "trainer.extra_args=[\"--no_such_flag\", \"1\"]",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("the trainer exited with exit status: 1"),
        "{err}"
    );
    assert!(
        err.contains("no_such_flag") && err.contains("trainer.log"),
        "{err}"
    );

    let (_d, o) = tiny(&["-c", &python, "-c", "trainer.command=\"{python} -c pass\""]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("holds no model (config.json is missing)"),
        "{err}"
    );
}

#[test]
fn openrlhf_dry_run_uses_only_openrlhf_flags() {
    let known: Vec<String> =
        std::fs::read_to_string(root().join("tests/fixtures/openrlhf-0.11.2-train_dpo-flags.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect();
    let dir = tempfile::tempdir().unwrap();
    let o = srlm()
        .args([
            "train-dpo",
            "--backend",
            "openrlhf",
            "--dry-run",
            "--num-processes",
            "8",
        ])
        .args([
            "--pairs",
            "pairs.jsonl",
            "--model",
            "/models/llama-3.1-70b-instruct",
        ])
        .arg("--out")
        .arg(dir.path().join("m1"))
        .output()
        .unwrap();
    let line = ok(&o, "train-dpo --backend openrlhf --dry-run");
    let argv: Vec<String> = shlex::split(line.trim()).unwrap();
    assert_eq!(
        argv[..5],
        [
            "deepspeed",
            "--num_gpus",
            "8",
            "--module",
            "openrlhf.cli.train_dpo"
        ]
    );
    let flags: Vec<&String> = argv[5..].iter().filter(|a| a.starts_with("--")).collect();
    assert!(flags.len() > 15, "{line}");
    for flag in flags {
        assert!(
            known.contains(flag),
            "{flag} is not a flag of openrlhf 0.11.2's train_dpo"
        );
    }
    let value = |name: &str| &argv[argv.iter().position(|a| a == name).unwrap() + 1];
    assert_eq!(
        value("--model.model_name_or_path"),
        "/models/llama-3.1-70b-instruct"
    );
    assert_eq!(value("--train.batch_size"), "16", "2 per GPU × 8 GPUs");
    assert_eq!(value("--adam.lr"), "1e-6");
    assert!(!dir.path().join("m1").exists(), "a dry run writes nothing");
}

/// `PathBuf` of a config in the checkout.
fn config(name: &str) -> PathBuf {
    root().join("configs").join(name)
}

#[test]
fn paper_scale_configs_print_complete_plans() {
    for (name, expect) in [
        (
            "paper-llama-3.1-8b.toml",
            "--config_file configs/accelerate/zero3.yaml --num_processes 8",
        ),
        (
            "paper-llama-3.1-70b.toml",
            "--config_file configs/accelerate/zero3-2nodes.yaml --num_processes 16",
        ),
    ] {
        let o = srlm()
            .args(["run", "--config"])
            .arg(config(name))
            .arg("--dry-run")
            .output()
            .unwrap();
        let plan = ok(&o, name);
        assert!(
            plan.contains("trainer: TRL's DPOTrainer"),
            "{name}:\n{plan}"
        );
        assert!(plan.contains("engine: server"), "{name}:\n{plan}");
        assert!(
            plan.contains(expect) && plan.contains("trl_dpo.py"),
            "{name}:\n{plan}"
        );
        assert!(
            plan.contains("--dtype bfloat16 --bf16 true"),
            "{name}:\n{plan}"
        );
        assert!(
            plan.contains("--model_name_or_path /path/to/Llama-3.1-"),
            "{name}:\n{plan}"
        );
        assert!(plan.contains("no DPO"), "{name}:\n{plan}");
        // One GPU serves one model at a time, and no server runs while TRL trains.
        assert!(
            plan.contains("every server stops while DPO trains")
                && plan.contains("at most one runs at a time (engine.exclusive)"),
            "{name}:\n{plan}"
        );
        assert!(
            plan.contains("diagnostics: the hidden-state cosine is"),
            "{name}:\n{plan}"
        );
    }
}

/// The 8B paper config's plan with the model's shapes known (a folder holding only
/// Llama-3.1-8B-Instruct's config.json; its values are the model card's, the shapes table of
/// docs/memory-plan.md): 8.03B parameters; each vLLM server 16.1 GB of bf16 weights, one at a
/// time; TRL's 16 bytes per parameter sharded over 8 processes, 16.1 GB each — a plan for 8
/// GPUs of 80 GB; the hidden-state diagnostic 32.1 GB in f32 in srlm's process.
#[test]
fn the_8b_paper_plan_states_what_each_part_needs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("Llama-3.1-8B-Instruct");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
            "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "max_position_embeddings": 131072, "tie_word_embeddings": false,
            "attention_bias": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
            "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    let o = srlm()
        .args(["run", "--config"])
        .arg(config("paper-llama-3.1-8b.toml"))
        .arg("-c")
        .arg(format!("model={:?}", model.display().to_string()))
        .arg("--dry-run")
        .output()
        .unwrap();
    let plan = ok(&o, "8b");
    for expect in [
        "only its config.json is readable here: 8.03B parameters, 32 layers",
        "each server holds one model's weights, 16.1 GB in bf16",
        "one server at a time, none while DPO trains",
        "16 bytes per parameter = 128.5 GB, are 16.1 GB per process when sharded over 8 processes",
        "M_i in f32 needs 32.1 GB",
    ] {
        assert!(plan.contains(expect), "{expect:?} not in:\n{plan}");
    }
}
