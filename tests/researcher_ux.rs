//! What a researcher sees from the `srlm` binary (tiny-random runs, seconds each): a command
//! piped into `head` exits quietly, a config file given to `-c` gets a hint, progress reaches a
//! redirected log, the end-of-run summary labels every model and gives per-stage times, a
//! finished run resumes to "already complete" without loading a model, and checkpoints are
//! stored once (hard links into the cache, usual permissions) or as bf16 on request. The real
//! model's run (`tests/cli.rs`, smoke) checks `eval --run` and the temporary models' removal.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

#[path = "support/tiny_run.rs"]
mod support;

fn srlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srlm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("RUST_BACKTRACE");
    c.env_remove("SRLM_PROGRESS");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn succeeds(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o.stderr));
    o
}

/// One iteration of `spin` on tiny-random ([`support::tiny_run`]).
fn tiny_run(dir: &Path, out: &Path, extra: &[&str]) -> Command {
    support::tiny_run(srlm(), dir, out, extra)
}

#[test]
fn output_into_a_closed_pipe_exits_quietly_with_0() {
    for args in [
        &["config", "schema"][..],
        &["config", "default"],
        &["plugins", "list"],
    ] {
        let mut child = srlm()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before srlm writes, as `head` does after its lines.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
    // Through a shell pipe into `head`, as a user types it.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' config schema | head -n 2; echo \"status ${{?}}\"",
            env!("CARGO_BIN_EXE_srlm")
        ))
        .output()
        .unwrap();
    assert_eq!(text(&o.stderr), "");
    assert!(
        text(&o.stdout).ends_with("status 0\n"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_config_file_given_to_dash_c_gets_a_hint() {
    let o = srlm()
        .args(["run", "-c", "configs/smoke.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr).trim(),
        "error: override `configs/smoke.toml`: expected dotted.key=value (e.g. sampling.k=2); \
         `-c` sets one key; to read a config file, use `--config configs/smoke.toml`"
    );
}

#[test]
fn a_redirected_run_logs_progress_labels_its_summary_and_resumes_to_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = succeeds(&mut tiny_run(tmp.path(), &out, &[]));
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    // stderr is a pipe here: line mode, one line at the end of every stage.
    for line in [
        "srlm: evaluating M0: answering: 2 samples in ",
        "srlm: evaluating M0: judging: 2 responses in ",
        "srlm: iteration 1: sampling 2 prompts × K=1 from current: 2 samples in ",
        "srlm: DPO on 2 pairs: 1 steps in ",
        "srlm: hidden states of chosen and rejected responses: 2 pairs in ",
        "srlm: evaluating M1: answering: 2 samples in ",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "no line starting with {line:?} in:\n{stderr}"
        );
    }
    let summary: Vec<&str> = stdout.lines().collect();
    assert!(
        summary[1].starts_with("held-out score (0–5): M0 ") && summary[1].contains(" · M1 "),
        "{stdout}"
    );
    let times = summary
        .iter()
        .find(|l| l.starts_with("time in this process: "))
        .unwrap();
    // (spin does not judge: no judging stage in this run.)
    for stage in ["sampling ", "DPO ", "evaluation ", "diagnostics ", "other "] {
        assert!(times.contains(stage), "{times}");
    }
    // Resuming the finished run loads nothing and repeats the summary.
    let again = succeeds(srlm().arg("run").arg("--resume").arg(&out));
    let err = text(&again.stderr);
    assert!(
        err.contains("is already complete: nothing to resume"),
        "{err}"
    );
    assert!(!err.contains("loading model"), "{err}");
    assert_eq!(text(&again.stdout).lines().nth(1), Some(summary[1]));

    // M1 is stored once: the run folder's checkpoint is the cache's file under a second name,
    // with the permissions of any other file srlm writes.
    let ckpt = out.join("iter_1/checkpoint");
    let weights = std::fs::metadata(ckpt.join("model.safetensors")).unwrap();
    let cached: Vec<_> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.safetensors").is_file())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let cached_weights = std::fs::metadata(cached[0].join("model.safetensors")).unwrap();
    assert_eq!(weights.ino(), cached_weights.ino());
    assert_eq!(weights.nlink(), 2);
    let config_mode = std::fs::metadata(ckpt.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(weights.permissions().mode() & 0o777, config_mode & 0o777);
    assert_eq!(
        std::fs::metadata(out.join("metrics.jsonl"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        config_mode & 0o777
    );
}

#[test]
fn checkpoints_can_be_saved_as_bf16_and_load_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    succeeds(&mut tiny_run(
        tmp.path(),
        &out,
        &["-c", "save_dtype=\"bf16\""],
    ));
    let ckpt = out.join("iter_1/checkpoint");
    let cached = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("model.safetensors").is_file())
        .unwrap();
    let size = |p: &Path| {
        std::fs::metadata(p.join("model.safetensors"))
            .unwrap()
            .len()
    };
    // Half the bytes of the f32 model, give or take the safetensors header.
    let (half, full) = (size(&ckpt), size(&cached));
    assert!(
        half * 2 > full - 4096 && half * 2 < full + 4096,
        "{half} vs {full}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let o = succeeds(
        srlm()
            .args([
                "generate",
                "--prompt",
                "Hi",
                "--max-new-tokens",
                "3",
                "--json",
                "--model",
            ])
            .arg(&ckpt),
    );
    assert!(text(&o.stdout).contains("\"text\""), "{}", text(&o.stdout));
}
