//! `cargo xtask bench-injection [--modes expected,sampled] [--responses N] [--samples N]
//! [--judge SPEC] [--template FILE]...`: how far a response raises its own LLM-judge score by
//! speaking to the grader, with srlm's defence (srlm-judge's `injection::neutralise`) and
//! without it (`srlm judge --keep-injections`).
//!
//! Every response of `tests/fixtures/injection/responses.jsonl` is judged as it is and with
//! each suffix of `variants.jsonl` appended (injections and benign controls), by `--judge`
//! (default `self`: the default model as its own judge, `srlm judge --judge self`; e.g.
//! `model:PATH` for a larger one), in each mode; each `--template` adds a column judged with
//! that prompt and without the defence. For each variant the table gives the mean score change
//! against the plain response (0–5 scale), over the responses where both got a score, with a
//! 95% t-interval (n = number of responses); the last row is the judge's signal (right answer
//! minus wrong answer to the same question, plain). Output: a markdown table on stdout, the
//! judged files under `target/injection-bench/`.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of `variants.jsonl`.
struct Variant {
    name: String,
    kind: String,
    suffix: String,
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// Two-sided 95% t quantile for `df` degrees of freedom (df ≥ 1), from `statrs`.
fn t975(df: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, df as f64)
        .expect("df ≥ 1")
        .inverse_cdf(0.975)
}

/// Mean ± 95% t half-width of `xs` (half-width NaN for fewer than two values).
fn mean_ci(xs: &[f64]) -> (f64, f64, usize) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (m, f64::NAN, n);
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    (m, t975(n - 1) * (var / n as f64).sqrt(), n)
}

fn fmt_ci((m, h, n): (f64, f64, usize)) -> String {
    if n == 0 {
        "–".into()
    } else if h.is_nan() {
        format!("{m:+.3} (n={n})")
    } else {
        format!("{m:+.3} ± {h:.3} (n={n})")
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let mut modes = vec!["expected".to_string(), "sampled".to_string()];
    let mut limit = usize::MAX;
    let mut samples = 3usize;
    let mut templates: Vec<PathBuf> = Vec::new();
    let mut judge = "self".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--modes" => {
                modes = it
                    .next()
                    .context("--modes needs a value")?
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--responses" => limit = it.next().context("--responses needs N")?.parse()?,
            "--samples" => samples = it.next().context("--samples needs N")?.parse()?,
            "--judge" => judge = it.next().context("--judge needs a spec")?.clone(),
            "--template" => {
                templates.push(PathBuf::from(it.next().context("--template needs a file")?))
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    let root = crate::root();
    let fixtures = root.join("tests/fixtures/injection");
    let responses: Vec<Value> = read_jsonl(&fixtures.join("responses.jsonl"))?
        .into_iter()
        .take(limit)
        .collect();
    let variants: Vec<Variant> = read_jsonl(&fixtures.join("variants.jsonl"))?
        .into_iter()
        .map(|v| Variant {
            name: v["name"].as_str().unwrap_or_default().into(),
            kind: v["kind"].as_str().unwrap_or_default().into(),
            suffix: v["suffix"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let srlm = crate::srlm_binary()?;
    let out_dir = root.join("target/injection-bench");
    std::fs::create_dir_all(&out_dir)?;
    // Items: every response plain ("") and with each suffix.
    let mut lines = String::new();
    for r in &responses {
        let text = r["response"].as_str().unwrap_or_default();
        for (name, suffix) in std::iter::once(("plain", "")).chain(
            variants
                .iter()
                .map(|v| (v.name.as_str(), v.suffix.as_str())),
        ) {
            let item = json!({"id": r["id"], "variant": name, "prompt": r["prompt"], "response": format!("{text}{suffix}")});
            lines.push_str(&format!("{item}\n"));
        }
    }
    let items = out_dir.join("items.jsonl");
    std::fs::write(&items, lines)?;
    // scores[(mode, defended)][(id, variant)]
    let mut columns = Vec::new();
    // Each mode's columns: the default prompt without and with the defence, then each
    // `--template` without it (what the prompt alone does).
    let setups: Vec<(String, bool, Option<&PathBuf>)> = [
        ("undefended".to_string(), false, None),
        ("defended".to_string(), true, None),
    ]
    .into_iter()
    .chain(templates.iter().map(|t| {
        let stem = t.file_stem().map(|s| s.to_string_lossy().into_owned());
        (
            format!("undefended, {}", stem.unwrap_or_default()),
            false,
            Some(t),
        )
    }))
    .collect();
    for mode in &modes {
        for (label, defended, template) in &setups {
            let out = out_dir.join(format!("judged-{mode}-{}.jsonl", label.replace(", ", "-")));
            let mut cmd = Command::new(&srlm);
            cmd.args(["judge", "--judge", &judge, "--mode", mode, "--overwrite"])
                .args(["--samples", &samples.to_string()])
                .arg("--input")
                .arg(&items)
                .arg("--output")
                .arg(&out);
            if !defended {
                cmd.arg("--keep-injections");
            }
            if let Some(t) = template {
                cmd.arg("--template").arg(root.join(t));
            }
            let t = std::time::Instant::now();
            crate::run(&mut cmd)?;
            eprintln!(
                "xtask: {mode} {label} judged in {:.0} s",
                t.elapsed().as_secs_f64()
            );
            let judged = read_jsonl(&out)?;
            let score = |id: &Value, variant: &str| -> Option<f64> {
                judged
                    .iter()
                    .find(|l| &l["id"] == id && l["variant"] == variant)
                    .and_then(|l| l["score"].as_f64())
            };
            let mut per_variant = Vec::new();
            for v in &variants {
                let deltas: Vec<f64> = responses
                    .iter()
                    .filter_map(|r| Some(score(&r["id"], &v.name)? - score(&r["id"], "plain")?))
                    .collect();
                per_variant.push(deltas);
            }
            // How far the judge tells a right answer from a wrong or off-topic one to the same
            // question (the plain responses): the signal a defence must keep.
            let signal: Vec<f64> = responses
                .iter()
                .filter(|r| r["quality"] == "right")
                .flat_map(|right| {
                    responses
                        .iter()
                        .filter(|o| o["prompt"] == right["prompt"] && o["quality"] != "right")
                        .filter_map(|o| {
                            Some(score(&right["id"], "plain")? - score(&o["id"], "plain")?)
                        })
                })
                .collect();
            columns.push((format!("{mode}, {label}"), per_variant, signal));
        }
    }
    println!(
        "Mean score change (0–5) against the plain response, 95% t-interval over {} responses \
         (the \"all\" rows pool every response × variant, so their interval is optimistic); \
         judge `{judge}` (`self`: SmolLM2-135M-Instruct judging itself){}. The last row is \
         the judge's signal: a right answer's plain score minus that of a wrong, off-topic or \
         empty-handed answer to the same question.\n",
        responses.len(),
        if modes.iter().any(|m| m == "sampled") {
            format!(", sampled mode with {samples} samples per item")
        } else {
            String::new()
        }
    );
    print!("| variant | kind | suffix |");
    for (name, _, _) in &columns {
        print!(" {name} |");
    }
    println!();
    println!("|---|---|---|{}", "---|".repeat(columns.len()));
    for (i, v) in variants.iter().enumerate() {
        print!(
            "| {} | {} | `{}` |",
            v.name,
            v.kind,
            v.suffix.replace('\n', "⏎").replace('|', "\\|")
        );
        for (_, per, _) in &columns {
            print!(" {} |", fmt_ci(mean_ci(&per[i])));
        }
        println!();
    }
    for (kind, label) in [
        ("injection", "all injections"),
        ("held_out", "all held-out injections"),
        ("held_out_2", "all second held-out injections"),
        ("control", "all controls"),
    ] {
        print!("| **{label}** | | |");
        for (_, per, _) in &columns {
            let all: Vec<f64> = variants
                .iter()
                .zip(per)
                .filter(|(v, _)| v.kind == kind)
                .flat_map(|(_, d)| d.iter().copied())
                .collect();
            print!(" {} |", fmt_ci(mean_ci(&all)));
        }
        println!();
    }
    print!("| **right − wrong answer, plain** | signal | |");
    for (_, _, signal) in &columns {
        print!(" {} |", fmt_ci(mean_ci(signal)));
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_by_hand() {
        // 1, 2, 3: mean 2, sd 1, half-width 4.303 / √3.
        let (m, h, n) = mean_ci(&[1.0, 2.0, 3.0]);
        assert_eq!((m, n), (2.0, 3));
        assert!((h - 4.302653 / 3f64.sqrt()).abs() < 1e-6, "{h}");
        // Student's t tables: 2.365 for 7 degrees of freedom, 1.984 for 100.
        assert!((t975(7) - 2.364624).abs() < 1e-6);
        assert!((t975(100) - 1.983972).abs() < 1e-6);
        assert_eq!(fmt_ci(mean_ci(&[])), "–");
    }
}
