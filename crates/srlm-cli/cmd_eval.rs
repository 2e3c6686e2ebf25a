//! `srlm eval`: greedy answers of a model on a prompt set, scored by a judge; prints the mean
//! score, n, the no-score rate and the judge's health, IFEval's four standard accuracies when
//! the prompts are IFEval records (whatever the judge), and — with baseline outputs (AlpacaEval's
//! GPT-4 Turbo answers, or `reference`/`chosen`/`output` fields) — the pairwise win rate
//! against them under the same judge (a score comparison under srlm's judge, not AlpacaEval's
//! length-controlled GPT-4 annotator). The logic is [`srlm_pipeline::eval::evaluate_model`].
//!
//! `--run RUN_DIR` evaluates a run's model (`--model M0|M1|…|last`) on that run's own held-out
//! prompts with its eval judge and settings ([`srlm_pipeline::run::RunEvaluation`]), so no
//! training prompt of the run is ever scored as held-out.

use srlm_judge::{JudgeMode, JudgeName, JudgeSettings, JudgeSpec};
use srlm_pipeline::candle::CandleBackend;
use srlm_pipeline::eval::{evaluate_model, load_eval_prompts, EvalOptions};
use srlm_pipeline::judges::{build_judge, load_judge_models};
use srlm_pipeline::ports::{Generator, ModelRef};
use srlm_pipeline::run::RunEvaluation;
use srlm_pipeline::run_dir::RunDir;
use std::path::PathBuf;

/// Arguments of `srlm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model: `default`, a .gguf file, an HF directory, or a run's `iter_<i>/checkpoint`;
    /// with `--run`, a model of that run: `M0`, `M1`, … or `last` (the default there).
    #[arg(long)]
    pub model: Option<String>,
    /// Evaluate a model of this run folder on the run's own held-out prompts, with its eval
    /// judge, judge settings and answer length (each can still be set here).
    #[arg(long, conflicts_with_all = ["prompts", "baseline"])]
    pub run: Option<PathBuf>,
    /// Prompts: `ifeval` (IFEval's 541), `alpaca-eval` (AlpacaEval 2.0's 805 instructions with
    /// GPT-4 Turbo baseline outputs), `gsm8k` (1,319 math problems) or `arc-challenge` (1,172
    /// multiple-choice questions; both for `--judge answer`), or a file: srlm/TRL JSONL, IFEval records, AlpacaEval
    /// JSON (`instruction`, `output`). Not with `--run`.
    #[arg(long, required_unless_present = "run")]
    pub prompts: Option<String>,
    /// The judge: `ifeval`, `answer` (final-answer exact match: `gsm8k`, `arc-challenge`),
    /// `self` (the model judges its own answers), `model:PATH`, or a weighted sum such as `0.5*ifeval+0.5*self`. With `--run`, the run's eval judge by default.
    #[arg(long, required_unless_present = "run")]
    pub judge: Option<JudgeSpec>,
    /// Model judges: `sampled` or `expected` (default: sampled, or the run's).
    #[arg(long)]
    pub mode: Option<JudgeMode>,
    /// Model judges in sampled mode: samples per answer (default: 3, or the run's).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub samples: Option<usize>,
    /// Model judges: a minijinja template (variables `prompt`, `response`) replacing the rubric.
    #[arg(long)]
    pub template: Option<String>,
    /// Evaluate only the first N prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// New tokens per greedy answer (default: 96, or the run's `eval.max_new_tokens`).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_new_tokens: Option<usize>,
    /// Prompts per generation / judge call.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 8)]
    pub batch_size: usize,
    /// Require baseline outputs and report the win rate against them (it is reported anyway
    /// whenever the prompts carry baseline outputs).
    #[arg(long)]
    pub baseline: bool,
    /// Write every answer with its scores (and the baseline's) and, for IFEval prompts,
    /// IFEval's per-instruction verdicts (`ifeval_instructions`) as JSONL.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing `--out` file.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `srlm eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let run_dir = a.run.as_ref().map(RunDir::new);
    let from_run = run_dir.as_ref().map(RunEvaluation::of).transpose()?;
    // What is evaluated: the run's held-out split and models, or the given prompts and model.
    let (prompts_name, mut prompts, model_name, judge_spec) = match (&from_run, &run_dir) {
        (Some(r), Some(dir)) => {
            let name = a.model.clone().unwrap_or_else(|| "last".into());
            let model = r.model(dir, &name)?;
            (
                format!("the held-out prompts of {}", dir.root().display()),
                r.prompts.clone(),
                model,
                a.judge.clone().unwrap_or_else(|| r.judge.clone()),
            )
        }
        _ => {
            let prompts = a
                .prompts
                .clone()
                .expect("clap requires --prompts without --run");
            (
                prompts.clone(),
                load_eval_prompts(&prompts)?,
                a.model.clone().unwrap_or_else(|| "default".into()),
                a.judge
                    .clone()
                    .expect("clap requires --judge without --run"),
            )
        }
    };
    let max_new_tokens = a
        .max_new_tokens
        .or(from_run.as_ref().map(|r| r.config.eval.max_new_tokens))
        .unwrap_or(96);
    if let Some(out) = &a.out {
        let inputs: Vec<(&str, &std::path::Path)> = match (&a.prompts, &a.run) {
            (Some(p), _) => vec![("--prompts", std::path::Path::new(p))],
            (None, Some(r)) => vec![("--run", r.as_path())],
            _ => vec![],
        };
        srlm_core::output::claim_file(out, &inputs, a.overwrite)
            .map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    }
    if judge_spec.uses(&JudgeName::Ifeval)
        && !prompts
            .iter()
            .any(|p| p.metadata.get("instruction_id_list").is_some())
    {
        anyhow::bail!(
            "judge `{judge_spec}`: the ifeval judge needs IFEval records (`instruction_id_list`), and {prompts_name} has none; use --judge self or model:PATH",
        );
    }
    if let Some(n) = a.limit {
        prompts.truncate(n);
    }
    crate::progress::install();
    let backend = CandleBackend::new(srlm_model::default_device());
    srlm_core::progress::note(format!("loading model `{model_name}`"));
    let model = ModelRef::new("evaluated", model_name.clone());
    backend.load(&model)?;
    load_judge_models(&backend, &judge_spec)?;
    let template = match &a.template {
        Some(t) => {
            Some(std::fs::read_to_string(t).map_err(|e| anyhow::anyhow!("--template {t}: {e}"))?)
        }
        None => None,
    };
    let run_settings = from_run.as_ref().map(|r| r.settings.clone());
    let settings = JudgeSettings {
        mode: a
            .mode
            .or(run_settings.as_ref().map(|s| s.mode))
            .unwrap_or(JudgeMode::Sampled),
        samples: a
            .samples
            .or(run_settings.as_ref().map(|s| s.samples))
            .unwrap_or(3),
        template: template.or(run_settings.as_ref().and_then(|s| s.template.clone())),
        keep_injections: run_settings.as_ref().is_some_and(|s| s.keep_injections),
    };
    let judge = build_judge(&judge_spec, &settings, &backend, &model)?;
    let opts = EvalOptions {
        max_new_tokens,
        batch_size: a.batch_size,
        baseline: a.baseline,
        label: format!("evaluating {model_name}"),
    };
    srlm_core::progress::note(format!("evaluating on {} prompts", prompts.len()));
    let r = evaluate_model(&backend, &model, &prompts, judge.as_ref(), &opts)?;
    if let Some(out) = &a.out {
        srlm_core::write_jsonl_atomic(out, &r.rows)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v.as_object_mut().expect("object").remove("rows");
        v["model"] = serde_json::json!(model_name);
        v["prompts"] = serde_json::json!(prompts_name);
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let f = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.3}"));
    out!(
        "model {} on {} ({} prompts), judge {}",
        model_name,
        prompts_name,
        r.n,
        r.judge
    );
    out!(
        "mean score (0–5): {}   n: {}   no-score rate: {:.1}%",
        f(r.mean),
        r.n,
        100.0 * r.no_score_rate
    );
    if let Some(i) = &r.ifeval {
        println!(
            "IFEval accuracy ({} prompts, {} instructions): prompt-level strict {:.1}%, inst-level strict {:.1}%, prompt-level loose {:.1}%, inst-level loose {:.1}%",
            i.prompts,
            i.instructions,
            100.0 * i.prompt_level_strict_acc,
            100.0 * i.inst_level_strict_acc,
            100.0 * i.prompt_level_loose_acc,
            100.0 * i.inst_level_loose_acc
        );
    }
    if let Some(w) = &r.win_rate {
        out!(
            "win rate vs baseline: {} ({} wins, {} ties, {} losses; {} of {} pairs excluded for a missing score)",
            w.rate.map_or("–".to_string(), |x| format!("{:.1}%", 100.0 * x)),
            w.wins,
            w.ties,
            w.losses,
            w.excluded,
            w.pairs
        );
        out!("  (judge-score comparison under `{}`, not AlpacaEval's length-controlled GPT-4 annotator)", r.judge);
    }
    out!("judge health:\n{}", r.health);
    if let Some(out) = &a.out {
        out!("answers: {}", out.display());
    }
    Ok(())
}
