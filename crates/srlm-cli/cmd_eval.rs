//! `srlm eval`: greedy answers of a model on a prompt set, scored by a judge; prints the mean
//! score, n, the no-score rate and the judge's health, IFEval's four standard accuracies when
//! the prompts are IFEval records (whatever the judge), and — with baseline outputs (AlpacaEval's
//! GPT-4 Turbo answers, or `reference`/`chosen`/`output` fields) — the pairwise win rate
//! against them under the same judge (a score comparison under srlm's judge, not AlpacaEval's
//! length-controlled GPT-4 annotator). The logic is [`srlm_pipeline::eval::evaluate_model`].

use srlm_judge::{JudgeMode, JudgeName, JudgeSettings, JudgeSpec};
use srlm_pipeline::candle::CandleBackend;
use srlm_pipeline::eval::{evaluate_model, load_eval_prompts, EvalOptions};
use srlm_pipeline::judges::{build_judge, load_judge_models};
use srlm_pipeline::ports::{Generator, ModelRef};
use std::path::PathBuf;

/// Arguments of `srlm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model: `default`, a .gguf file, an HF directory, or a run's `iter_<i>/checkpoint`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Prompts: `ifeval` (IFEval's 541), `alpaca-eval` (AlpacaEval 2.0's 805 instructions with
    /// GPT-4 Turbo baseline outputs), or a file: srlm/TRL JSONL, IFEval records, AlpacaEval
    /// JSON (`instruction`, `output`).
    #[arg(long)]
    pub prompts: String,
    /// The judge: `ifeval`, `self` (the model judges its own answers), `model:PATH`, or a
    /// weighted sum such as `0.5*ifeval+0.5*self`.
    #[arg(long)]
    pub judge: JudgeSpec,
    /// Model judges: `sampled` or `expected`.
    #[arg(long, default_value = "sampled")]
    pub mode: JudgeMode,
    /// Model judges in sampled mode: samples per answer.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024), default_value_t = 3)]
    pub samples: usize,
    /// Model judges: a minijinja template (variables `prompt`, `response`) replacing the rubric.
    #[arg(long)]
    pub template: Option<String>,
    /// Evaluate only the first N prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// New tokens per greedy answer.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 96)]
    pub max_new_tokens: usize,
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
    anyhow::ensure!(a.max_new_tokens > 0, "--max-new-tokens must be at least 1");
    if let Some(out) = &a.out {
        let prompts_file = std::path::Path::new(&a.prompts);
        srlm_core::output::claim_file(out, &[("--prompts", prompts_file)], a.overwrite)
            .map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    }
    let mut prompts = load_eval_prompts(&a.prompts)?;
    if a.judge.uses(&JudgeName::Ifeval)
        && !prompts
            .iter()
            .any(|p| p.metadata.get("instruction_id_list").is_some())
    {
        anyhow::bail!(
            "judge `{}`: the ifeval judge needs IFEval records (`instruction_id_list`), and {} has none; use --judge self or model:PATH",
            a.judge,
            a.prompts
        );
    }
    if let Some(n) = a.limit {
        prompts.truncate(n);
    }
    let backend = CandleBackend::new(srlm_model::default_device(), false);
    eprintln!("srlm: loading model `{}`", a.model);
    let model = ModelRef::new("evaluated", a.model.clone());
    backend.load(&model)?;
    load_judge_models(&backend, &a.judge)?;
    let template = match &a.template {
        Some(t) => {
            Some(std::fs::read_to_string(t).map_err(|e| anyhow::anyhow!("--template {t}: {e}"))?)
        }
        None => None,
    };
    let settings = JudgeSettings {
        mode: a.mode,
        samples: a.samples,
        template,
        keep_injections: false,
    };
    let judge = build_judge(&a.judge, &settings, &backend, &model)?;
    let opts = EvalOptions {
        max_new_tokens: a.max_new_tokens,
        batch_size: a.batch_size,
        baseline: a.baseline,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    eprintln!("srlm: evaluating on {} prompts", prompts.len());
    let r = evaluate_model(&backend, &model, &prompts, judge.as_ref(), &opts)?;
    if let Some(out) = &a.out {
        srlm_core::write_jsonl_atomic(out, &r.rows)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v.as_object_mut().expect("object").remove("rows");
        v["model"] = serde_json::json!(a.model);
        v["prompts"] = serde_json::json!(a.prompts);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let f = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.3}"));
    println!(
        "model {} on {} ({} prompts), judge {}",
        a.model, a.prompts, r.n, r.judge
    );
    println!(
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
        println!(
            "win rate vs baseline: {} ({} wins, {} ties, {} losses; {} of {} pairs excluded for a missing score)",
            w.rate.map_or("–".to_string(), |x| format!("{:.1}%", 100.0 * x)),
            w.wins,
            w.ties,
            w.losses,
            w.excluded,
            w.pairs
        );
        println!("  (judge-score comparison under `{}`, not AlpacaEval's length-controlled GPT-4 annotator)", r.judge);
    }
    println!("judge health:\n{}", r.health);
    if let Some(out) = &a.out {
        println!("answers: {}", out.display());
    }
    Ok(())
}
