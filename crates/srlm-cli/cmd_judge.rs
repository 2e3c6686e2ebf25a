//! `srlm judge`: score every line of a JSONL file with a judge and print the judge's health.
//!
//! Input lines are objects with `prompt` and `response` plus any metadata (IFEval records
//! carry `instruction_id_list` and `kwargs`); output lines are the input objects with `score`
//! (0–5, or `null` when the judge gave none) and `judgment` (the judge's details) added,
//! written atomically. The health summary (count, no-score rate, histogram, mean ± std, and for
//! composites the pairwise agreement of their parts) goes to stdout, as text or `--json`.
//!
//! The judge is built by srlm-pipeline's one judge factory ([`srlm_pipeline::judges`]); `self`
//! is the default model.

use anyhow::Context;
use serde_json::{json, Map, Value};
use srlm_judge::{
    pairwise_agreement, same_prompt_pairs, Judge, JudgeHealth, JudgeItem, JudgeMode, JudgeName,
    JudgeSettings, JudgeSpec, Verdict,
};
use srlm_pipeline::ports::ModelRef;
use std::path::{Path, PathBuf};

/// Arguments of `srlm judge`.
#[derive(clap::Args, Debug)]
pub struct JudgeArgs {
    /// The judge: `ifeval`, `self` (the default model judging), `model:PATH`, or a weighted sum
    /// of these such as `0.5*ifeval+0.5*self` (weights must sum to 1).
    #[arg(long)]
    pub judge: JudgeSpec,
    /// How model judges score: `sampled` (n judgments, each's last `Score: N` parsed, averaged;
    /// Yuan et al. 2024) or `expected` (probability-weighted mean over the digits 0-5 after a
    /// forced `Score: `, one forward pass).
    #[arg(long, default_value = "sampled")]
    pub mode: JudgeMode,
    /// Samples per item in sampled mode.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024), default_value_t = 3)]
    pub samples: usize,
    /// A minijinja template (variables `prompt`, `response`) replacing the default rubric prompt.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Input JSONL: one `{"prompt", "response", ...metadata}` object per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Output JSONL: the input lines with `score` and `judgment` added.
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an existing `--output` file.
    #[arg(long)]
    pub overwrite: bool,
    /// Judge responses as they are, without removing injected score claims and text addressed
    /// to the grader (only to measure the defence; see docs/benchmarks.md).
    #[arg(long)]
    pub keep_injections: bool,
    /// Items per judge call (model judges run one batched pass per call).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 16)]
    pub batch_size: usize,
    /// Print the health summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where model judges run (in-process, or an inference server serving the default model).
    #[command(flatten)]
    pub engine: crate::engine_args::EngineArgs,
}

/// Runs `srlm judge`.
pub fn run(args: JudgeArgs) -> anyhow::Result<()> {
    srlm_core::output::claim_file(&args.output, &[("--input", &args.input)], args.overwrite)
        .context("--output")?;
    let (records, items) = read_items(&args.input)?;
    let (backend, logs) = args.engine.backend("default")?;
    let judge = build_judge(&args, backend.as_ref())?;
    crate::progress::install();
    let stage = srlm_core::progress::stage(
        srlm_core::progress::StageKind::Judging,
        format!("judging {}", args.input.display()),
        items.len() as u64,
        "responses",
    );
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(items.len());
    for chunk in items.chunks(args.batch_size.max(1)) {
        match judge.judge_batch(chunk) {
            Ok(v) => {
                verdicts.extend(v);
                stage.advance(chunk.len() as u64);
            }
            Err(e) => {
                let kept = logs.map(|l| l.keep());
                let mut err = anyhow::Error::new(e);
                if let Some(dir) = kept {
                    err = err.context(format!("judging (server logs kept in {})", dir.display()));
                }
                return Err(err);
            }
        }
    }
    drop(stage);
    anyhow::ensure!(
        verdicts.len() == items.len(),
        "judge returned {} verdicts for {} items",
        verdicts.len(),
        items.len()
    );

    let out: Vec<Value> = records
        .into_iter()
        .zip(&verdicts)
        .map(|(mut rec, v)| {
            rec.insert("score".into(), json!(v.score));
            rec.insert("judgment".into(), v.details.clone());
            Value::Object(rec)
        })
        .collect();
    srlm_core::write_jsonl_atomic(&args.output, &out)?;

    let health = JudgeHealth::from_verdicts(verdicts.iter().map(|v| (v.score, &v.details)));
    let agreements = part_agreements(&items, &verdicts);
    if args.json {
        let agreements: Vec<Value> = agreements
            .iter()
            .map(|(a, b, r)| json!({"a": a, "b": b, "agreement": r}))
            .collect();
        let summary = json!({"judge": judge.name(), "output": args.output, "health": health, "agreement": agreements});
        out!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        out!("judge {} -> {}", judge.name(), args.output.display());
        out!("{health}");
        for (a, b, r) in &agreements {
            out!("{a} vs {b}: {r}");
        }
    }
    Ok(())
}

/// Reads the input: each line's object (kept for the output) and its [`JudgeItem`], whose
/// origin is `FILE:LINE` so judge errors name the line.
fn read_items(path: &Path) -> anyhow::Result<(Vec<Map<String, Value>>, Vec<JudgeItem>)> {
    let text = srlm_core::read_text(path)?;
    let mut records = Vec::new();
    let mut items = Vec::new();
    for (line_no, line) in srlm_core::jsonl_lines(&text) {
        let at = format!("{}:{line_no}", path.display());
        let rec: Map<String, Value> =
            serde_json::from_str(line).with_context(|| format!("{at}: not a JSON object"))?;
        let field = |name: &str| -> anyhow::Result<String> {
            match rec.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => {
                    anyhow::bail!("{at}: field `{name}`: expected a string, got {other}")
                }
                None => anyhow::bail!("{at}: field `{name}`: missing"),
            }
        };
        let (prompt, response) = (field("prompt")?, field("response")?);
        let mut metadata = rec.clone();
        metadata.remove("prompt");
        metadata.remove("response");
        items.push(
            JudgeItem::new(prompt, response)
                .with_metadata(Value::Object(metadata))
                .with_origin(at),
        );
        records.push(rec);
    }
    Ok((records, items))
}

/// Builds the judge named by `--judge` (`self` is the default model, the policy `srlm judge`
/// would train) through srlm-pipeline's judge factory.
fn build_judge<'a>(
    args: &JudgeArgs,
    backend: &'a dyn srlm_pipeline::ports::Backend,
) -> anyhow::Result<Box<dyn Judge + 'a>> {
    let current = ModelRef::new("self", "default");
    if args.judge.uses(&JudgeName::Current) {
        backend.load(&current)?;
    }
    srlm_pipeline::judges::load_judge_models(backend, &args.judge)?;
    let template = match &args.template {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--template {}", path.display()))?,
        ),
        None => None,
    };
    let settings = JudgeSettings {
        mode: args.mode,
        samples: args.samples,
        template,
        keep_injections: args.keep_injections,
    };
    Ok(srlm_pipeline::judges::build_judge(
        &args.judge,
        &settings,
        backend,
        &current,
    )?)
}

/// For a composite, the pairwise agreement of every two parts on responses to the same prompt.
fn part_agreements(
    items: &[JudgeItem],
    verdicts: &[Verdict],
) -> Vec<(String, String, srlm_judge::PairwiseAgreement)> {
    let Some(parts) = verdicts
        .first()
        .and_then(|v| v.details.get("parts"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let names: Vec<String> = parts
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("?").to_string())
        .collect();
    let scores: Vec<Vec<Option<f64>>> = (0..names.len())
        .map(|k| {
            verdicts
                .iter()
                .map(|v| v.details["parts"][k]["score"].as_f64())
                .collect()
        })
        .collect();
    let prompts: Vec<&str> = items.iter().map(|i| i.prompt.as_str()).collect();
    let pairs = same_prompt_pairs(&prompts);
    let mut out = Vec::new();
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            out.push((
                names[a].clone(),
                names[b].clone(),
                pairwise_agreement(&scores[a], &scores[b], &pairs),
            ));
        }
    }
    out
}
