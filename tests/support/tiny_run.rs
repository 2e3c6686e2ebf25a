//! Test helper: a one-iteration `srlm run` on `tiny-random` with the `spin` strategy (the
//! reference answer is chosen, so every prompt gives a pair and DPO trains), seconds long.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Adds the run's arguments to `srlm` (a `Command` of the srlm binary): 6 prompts with
/// reference answers written to `dir/prompts.jsonl`, 2 per iteration and 2 held out, K=2, 6 new
/// tokens, one DPO step, the `self` judge in expected mode, the run folder `out`; `extra`
/// arguments come before `--out`.
pub fn tiny_run(mut srlm: Command, dir: &Path, out: &Path, extra: &[&str]) -> Command {
    let prompts = dir.join("prompts.jsonl");
    if !prompts.exists() {
        let lines: String = (0..6)
            .map(|i| {
                format!(
                    "{}\n",
                    serde_json::json!({"id": format!("p{i}"), "prompt": format!("Question {i}?"), "reference": format!("Answer number {i}.")})
                )
            })
            .collect();
        std::fs::write(&prompts, lines).unwrap();
    }
    srlm.args(["run", "--strategy", "spin", "-c", "model=\"tiny-random\""])
        .args(["-c", "iterations=1", "-c", "prompts.per_iteration=2"])
        .args(["-c", "prompts.eval=2", "-c", "sampling.k=2"])
        .args([
            "-c",
            "sampling.max_new_tokens=6",
            "-c",
            "eval.max_new_tokens=6",
        ])
        .args(["-c", "dpo.max_steps=1", "-c", "judge.spec=\"self\""])
        .args(["-c", "judge.mode=\"expected\""])
        .arg("-c")
        .arg(format!("prompts.source=\"{}\"", prompts.display()))
        .args(extra)
        .arg("--out")
        .arg(out);
    srlm
}
