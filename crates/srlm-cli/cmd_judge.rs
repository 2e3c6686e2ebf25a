//! `srlm judge`: score every line of a JSONL file with a judge and print the judge's health.
//!
//! Input lines are objects with `prompt` and `response` plus any metadata (IFEval records
//! carry `instruction_id_list` and `kwargs`); output lines are the input objects with `score`
//! (0–5, or `null` when the judge gave none) and `judgment` (the judge's details) added,
//! written atomically. The health summary (count, no-score rate, histogram, mean ± std, and for
//! composites the pairwise agreement of their parts) goes to stdout, as text or `--json`.
//!
//! Model judges (`self`, `model:PATH`) are built by [`model_judge`] from any
//! [`JudgeModel`]; [`load_judge_model`] is the single place where the model backend plugs in.

use anyhow::Context;
use serde_json::{json, Map, Value};
use srlm_judge::{
    pairwise_agreement, same_prompt_pairs, CompositeJudge, IfevalJudge, Judge, JudgeError,
    JudgeHealth, JudgeItem, JudgeMode, JudgeModel, LlmJudge, Verdict,
};
use std::path::{Path, PathBuf};

/// How model judges score (ignored by rule judges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// n sampled judgments, each's last `Score: N` line parsed, averaged (Yuan et al. 2024).
    Sampled,
    /// Probability-weighted mean over the digits 0-5 after a forced `Score: ` (one forward pass).
    Expected,
}

/// Arguments of `srlm judge`.
#[derive(clap::Args, Debug)]
pub struct JudgeArgs {
    /// The judge: `ifeval`, `self` (the default model judging), `model:PATH`, or a weighted sum
    /// of these such as `0.5*ifeval+0.5*self` (weights must sum to 1).
    #[arg(long)]
    pub judge: String,
    /// How model judges score.
    #[arg(long, value_enum, default_value = "sampled")]
    pub mode: ModeArg,
    /// Samples per item in sampled mode.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 3)]
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
    /// Items per judge call (model judges run one batched pass per call).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 16)]
    pub batch_size: usize,
    /// Print the health summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `srlm judge`.
pub fn run(args: JudgeArgs) -> anyhow::Result<()> {
    let (records, items) = read_items(&args.input)?;
    let judge = build_judge(&args)?;
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(items.len());
    for chunk in items.chunks(args.batch_size.max(1)) {
        verdicts.extend(judge.judge_batch(chunk)?);
    }
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

    let scores: Vec<Option<f64>> = verdicts.iter().map(|v| v.score).collect();
    let health = JudgeHealth::from_scores(&scores);
    let agreements = part_agreements(&items, &verdicts);
    if args.json {
        let agreements: Vec<Value> = agreements
            .iter()
            .map(|(a, b, r)| json!({"a": a, "b": b, "agreement": r}))
            .collect();
        let summary = json!({"judge": judge.name(), "output": args.output, "health": health, "agreement": agreements});
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("judge {} -> {}", judge.name(), args.output.display());
        println!("{health}");
        for (a, b, r) in &agreements {
            println!("{a} vs {b}: {r}");
        }
    }
    Ok(())
}

/// Reads the input: each line's object (kept for the output) and its [`JudgeItem`], whose
/// origin is `FILE:LINE` so judge errors name the line.
fn read_items(path: &Path) -> anyhow::Result<(Vec<Map<String, Value>>, Vec<JudgeItem>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
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

/// Builds the judge named by `--judge` (a single name or a composite spec).
fn build_judge(args: &JudgeArgs) -> anyhow::Result<Box<dyn Judge>> {
    let spec = args.judge.trim();
    if !spec.contains('+') && !spec.contains('*') {
        return Ok(resolve(spec, args)?);
    }
    Ok(Box::new(CompositeJudge::from_spec(spec, |name| {
        resolve(name, args)
    })?))
}

/// One judge by name.
fn resolve(name: &str, args: &JudgeArgs) -> Result<Box<dyn Judge>, JudgeError> {
    match name {
        "ifeval" => Ok(Box::new(IfevalJudge::new())),
        "self" => model_judge(load_judge_model(name)?, args),
        n if n.starts_with("model:") && n.len() > "model:".len() => model_judge(load_judge_model(name)?, args),
        other => Err(JudgeError::Spec {
            spec: other.to_string(),
            message: "unknown judge (expected ifeval, self, model:PATH, or a weighted sum like 0.5*ifeval+0.5*self)".into(),
        }),
    }
}

/// The model behind `self` (here: the default model, the policy `srlm judge` would train) or
/// `model:PATH`, through srlm-pipeline's adapter of srlm-model to [`JudgeModel`].
///
/// This is the one function the model backend replaces: load the model and return it as a
/// [`JudgeModel`] (srlm-model's adapter implements the trait).
pub fn load_judge_model(which: &str) -> Result<Box<dyn JudgeModel>, JudgeError> {
    let reference = if which == "self" {
        "default"
    } else {
        which.strip_prefix("model:").unwrap_or(which)
    };
    let model = srlm_model::LanguageModel::load(reference, &srlm_model::default_device())
        .map_err(|e| JudgeError::Model(format!("loading judge model `{reference}`: {e}")))?;
    Ok(Box::new(srlm_pipeline::judges::AsJudgeModel(model)))
}

/// An LLM judge over `model` with the command line's mode, samples and template.
pub fn model_judge<'a>(
    model: Box<dyn JudgeModel + 'a>,
    args: &JudgeArgs,
) -> Result<Box<dyn Judge + 'a>, JudgeError> {
    let mode = match args.mode {
        ModeArg::Sampled => JudgeMode::Sampled {
            samples: args.samples,
        },
        ModeArg::Expected => JudgeMode::Expected,
    };
    let mut judge = LlmJudge::new(model).mode(mode);
    if let Some(path) = &args.template {
        let text = std::fs::read_to_string(path)
            .map_err(|e| JudgeError::Template(format!("{}: {e}", path.display())))?;
        judge = judge.template(text)?;
    }
    Ok(Box::new(judge))
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
