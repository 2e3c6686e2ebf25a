//! The iteration loop: M0 → M1 → … → Mn with a strategy plugin, the run folder, held-out
//! evaluation and the per-iteration diagnostics of Wang et al. 2025 (arXiv 2508.06026, Sec. 2):
//! chosen/rejected score gap and hidden-state cosine similarity.
//!
//! Run folder (`--out`): `config.json` (resolved), `metrics.jsonl`, `report.md` + `plots/`,
//! `iter_<i>/{samples,judgments,pairs}.jsonl`, `iter_<i>/dpo_log.jsonl`,
//! `iter_<i>/checkpoint/` (HF safetensors), `eval/M<i>.jsonl`, and `cache/` (memoised stages).
//! Every file is written atomically. A resumed run replays the loop from the start; every
//! finished stage comes back from `cache/`, so a crash at any point loses only the stage
//! that was running.

use crate::config::RunConfig;
use crate::host::{Compute, RunHost, Snapshot};
use crate::judges::external_models;
use crate::prompts::{load_pool, split};
use crate::store::{key_of, Store};
use serde_json::{json, Value};
use srlm_core::{write_atomic, write_jsonl_atomic, PreferencePair, PromptRecord};
use srlm_model::{default_device, LanguageModel};
use srlm_strategy::{host_mut, resolve_strategy, FfiPrompt, IterationInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` (its `config.json` wins over any given config).
    pub resume: bool,
    /// `--set key=value` strategy options.
    pub set_flags: Vec<String>,
    /// Extra plugin search folders.
    pub plugin_dirs: Vec<PathBuf>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Held-out score of M0, M1, …, Mn (0–5; none when the eval judge scored nothing).
    pub eval_scores: Vec<Option<f64>>,
    /// Pairs kept per iteration.
    pub pairs: Vec<usize>,
    /// Prompts per iteration.
    pub prompts_per_iteration: usize,
    /// Wall time of the run's stages (seconds; replayed stages count their original time).
    pub wall_seconds: f64,
    /// The metrics lines.
    pub metrics: Vec<Value>,
}

/// Errors of a run: one line each, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The prompt pool.
    #[error(transparent)]
    Prompts(#[from] crate::prompts::PromptsError),
    /// The strategy plugin could not be loaded, configured or run.
    #[error(transparent)]
    Plugin(#[from] srlm_strategy::PluginError),
    /// The model.
    #[error("model: {0}")]
    Model(#[from] srlm_model::ModelError),
    /// Writing the run folder.
    #[error(transparent)]
    Io(#[from] srlm_core::JsonlError),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

fn other(ctx: &str) -> impl FnOnce(String) -> RunError + '_ {
    move |e| RunError::Other(format!("{ctx}: {e}"))
}

/// Reads or writes the run's resolved config, resolves the strategy and runs every iteration.
pub fn run(config: RunConfig, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let dir = &opts.out;
    let cfg_path = dir.join("config.json");
    let mut config = if opts.resume {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            RunError::Other(format!(
                "--resume {}: {e} (is it a run folder?)",
                cfg_path.display()
            ))
        })?;
        let mut v: Value = serde_json::from_str(&text)
            .map_err(|e| RunError::Other(format!("{}: {e}", cfg_path.display())))?;
        // Informational keys written beside the config.
        if let Some(o) = v.as_object_mut() {
            o.remove("k");
            o.remove("strategy_plugin");
        }
        serde_json::from_value::<RunConfig>(v)
            .map_err(|e| RunError::Other(format!("{}: {e}", cfg_path.display())))?
    } else {
        if cfg_path.exists() {
            return Err(RunError::Other(format!(
                "{} already holds a run; pass --resume {} to continue it, or choose another --out",
                dir.display(),
                dir.display()
            )));
        }
        config
    };
    config.validate()?;
    // Strategy: config options first, then --set flags; the plugin's `k` defaults to sampling.k.
    let mut flags: Vec<String> = config
        .strategy_options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    flags.extend(opts.set_flags.iter().cloned());
    let mut resolved = resolve_strategy(&config.strategy, &flags, &opts.plugin_dirs)?;
    if !flags.iter().any(|f| f.starts_with("k=")) && resolved.options.get("k").is_some() {
        flags.push(format!("k={}", config.sampling.k));
        resolved = resolve_strategy(&config.strategy, &flags, &opts.plugin_dirs)?;
    }
    config.strategy_options = resolved.options.as_object().cloned().unwrap_or_default();
    let plugin_name = resolved.plugin.name().to_string();
    let mut strategy = resolved.instantiate()?;

    let pool = load_pool(&config.prompts.source)?;
    let sp = split(
        pool,
        config.seed,
        config.prompts.eval,
        config.prompts.per_iteration,
        config.iterations,
    )?;
    let device = default_device();
    let store = Store::new(dir.join("cache"));
    eprintln!("srlm: loading model `{}`", config.model);
    let m0 = LanguageModel::load(&config.model, &device)?;
    let m0_id = model_identity(&config.model)?;
    let initial = Snapshot {
        model: m0,
        id: m0_id,
    };
    let mut external = HashMap::new();
    for p in external_models(&config.judge.spec) {
        external.insert(p.clone(), LanguageModel::load(&p, &device)?);
    }
    let eval_spec = if config.eval.judge == "same" {
        config.judge.spec.clone()
    } else {
        config.eval.judge.clone()
    };
    for p in external_models(&eval_spec) {
        if !external.contains_key(&p) {
            external.insert(p.clone(), LanguageModel::load(&p, &device)?);
        }
    }

    // Check the judges before anything is written, so a typo leaves no run folder behind.
    for spec in [&config.judge.spec, &eval_spec] {
        crate::judges::build_judge(spec, &config.judge, &initial.model, &external)
            .map_err(|e| RunError::Other(format!("judge `{spec}`: {e}")))?;
    }
    if !opts.resume {
        let mut v = serde_json::to_value(&config).expect("config serialises");
        v["k"] = resolved
            .options
            .get("k")
            .cloned()
            .unwrap_or(json!(config.sampling.k));
        v["strategy_plugin"] = json!({"name": plugin_name, "version": resolved.plugin.version().to_string(), "path": resolved.plugin.path().display().to_string()});
        write_atomic(
            &cfg_path,
            serde_json::to_string_pretty(&v).expect("json").as_bytes(),
        )?;
    }
    let mut metrics: Vec<Value> = Vec::new();
    let mut wall = 0.0;
    let t = Instant::now();
    let e0 = evaluate(
        &initial,
        &sp.eval,
        &config,
        &eval_spec,
        &external,
        &store,
        &dir.join("eval/M0.jsonl"),
    )?;
    let e0_wall = store_wall(&store, "evalwall", &initial.id, t.elapsed().as_secs_f64());
    wall += e0_wall;
    metrics.push(json!({"iteration": 0, "eval/score": e0.0, "eval/n": e0.1, "eval/parse_failure_rate": e0.2, "compute/wall_seconds": e0_wall}));
    write_jsonl_atomic(&dir.join("metrics.jsonl"), &metrics)?;

    let mut current: Option<Snapshot> = None;
    let mut pairs_kept = Vec::new();
    for (i, chunk) in sp.chunks.iter().enumerate() {
        let it = i + 1;
        let cur = current.as_ref().unwrap_or(&initial);
        let iter_dir = dir.join(format!("iter_{it}"));
        eprintln!(
            "srlm: iteration {it}/{}: {} prompts, strategy {plugin_name}",
            config.iterations,
            chunk.len()
        );
        let t = Instant::now();
        let iter_key = key_of(
            &json!({"current": cur.id, "prompts": chunk.iter().map(|p| &p.id).collect::<Vec<_>>(), "config": config, "iteration": it}),
        );
        let (line, pairs, next) = match (
            store.get::<(Value, Vec<PreferencePair>, String)>("iteration", &iter_key),
            iter_dir.join("checkpoint/model.safetensors").is_file(),
        ) {
            (Some((line, pairs, next_id)), true) => {
                let model = LanguageModel::load(
                    iter_dir.join("checkpoint").to_str().expect("utf-8"),
                    &device,
                )?;
                (line, pairs, Snapshot { model, id: next_id })
            }
            _ => {
                let (mut line, pairs, next) = run_iteration(
                    it,
                    chunk,
                    &initial,
                    cur,
                    &config,
                    &external,
                    &store,
                    &iter_dir,
                    &mut strategy,
                    &plugin_name,
                )?;
                let ev = evaluate(
                    &next,
                    &sp.eval,
                    &config,
                    &eval_spec,
                    &external,
                    &store,
                    &dir.join(format!("eval/M{it}.jsonl")),
                )?;
                line["eval/score"] = json!(ev.0);
                line["eval/n"] = json!(ev.1);
                line["eval/parse_failure_rate"] = json!(ev.2);
                line["compute/wall_seconds"] = json!(t.elapsed().as_secs_f64());
                store.put("iteration", &iter_key, &(&line, &pairs, &next.id))?;
                (line, pairs, next)
            }
        };
        wall += line["compute/wall_seconds"].as_f64().unwrap_or(0.0);
        pairs_kept.push(pairs.len());
        metrics.push(line);
        write_jsonl_atomic(&dir.join("metrics.jsonl"), &metrics)?;
        current = Some(next);
    }
    let eval_scores = metrics.iter().map(|m| m["eval/score"].as_f64()).collect();
    Ok(RunSummary {
        run_dir: dir.clone(),
        eval_scores,
        pairs: pairs_kept,
        prompts_per_iteration: config.prompts.per_iteration,
        wall_seconds: wall,
        metrics,
    })
}

/// Wall time of a stage, remembered across resumes (the first measurement wins).
fn store_wall(store: &Store, kind: &str, id: &str, now: f64) -> f64 {
    let key = key_of(&json!([kind, id]));
    match store.get::<f64>(kind, &key) {
        Some(w) => w,
        None => {
            let _ = store.put(kind, &key, &now);
            now
        }
    }
}

/// The identity of M0: the reference plus the SHA-256 of its main file (if it is a file).
fn model_identity(reference: &str) -> Result<String, RunError> {
    let file = match srlm_model::resolve_model(reference) {
        Ok(srlm_model::ModelFiles::Gguf(p)) => Some(p),
        Ok(srlm_model::ModelFiles::HfDir(d)) => {
            Some(d.join("model.safetensors")).filter(|p| p.is_file())
        }
        Err(_) => None,
    };
    let digest = match file {
        Some(p) => srlm_assets::sha256_file(&p).map_err(srlm_model::ModelError::from)?,
        None => String::new(),
    };
    Ok(key_of(&json!({"model": reference, "sha256": digest})))
}

#[allow(clippy::too_many_arguments)]
fn run_iteration(
    it: usize,
    chunk: &[PromptRecord],
    initial: &Snapshot,
    current: &Snapshot,
    config: &RunConfig,
    external: &HashMap<String, LanguageModel>,
    store: &Store,
    iter_dir: &Path,
    strategy: &mut srlm_strategy::LoadedStrategy,
    plugin_name: &str,
) -> Result<(Value, Vec<PreferencePair>, Snapshot), RunError> {
    let mut host = RunHost {
        initial,
        current,
        temporaries: Vec::new(),
        config,
        prompts: chunk.iter().map(|p| (p.id.clone(), p.clone())).collect(),
        external,
        store,
        iteration: it,
        samples: Default::default(),
        judgments: Default::default(),
        metrics: Default::default(),
        compute: Compute::default(),
        temporary_logs: Vec::new(),
    };
    let ffi_prompts: Vec<FfiPrompt> = chunk.iter().map(FfiPrompt::from).collect();
    let ctx = IterationInfo {
        iteration: it as u32,
        total_iterations: config.iterations as u32,
        seed: config.seed,
    };
    let ffi_pairs = strategy.run_iteration(ctx, &ffi_prompts, host_mut(&mut host))?;
    let pairs = host
        .resolve_pairs(&ffi_pairs, plugin_name)
        .map_err(|e| RunError::Other(format!("iteration {it}: {e}")))?;
    write_jsonl_atomic(
        &iter_dir.join("samples.jsonl"),
        &host.samples.values().collect::<Vec<_>>(),
    )?;
    write_jsonl_atomic(
        &iter_dir.join("judgments.jsonl"),
        &host.judgments.values().collect::<Vec<_>>(),
    )?;
    write_jsonl_atomic(&iter_dir.join("pairs.jsonl"), &pairs)?;
    for (n, log) in host.temporary_logs.iter().enumerate() {
        write_atomic(
            &iter_dir.join(format!("temporary_{n}.json")),
            serde_json::to_string_pretty(log).expect("json").as_bytes(),
        )?;
    }

    // Diagnostics (Wang et al. 2025, Sec. 2): judge-score gap and hidden-state cosine of pairs.
    let mean = |v: &[f64]| {
        if v.is_empty() {
            None
        } else {
            Some(v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    let chosen: Vec<f64> = pairs.iter().filter_map(|p| p.chosen_score).collect();
    let rejected: Vec<f64> = pairs.iter().filter_map(|p| p.rejected_score).collect();
    let (cm, rm) = (mean(&chosen), mean(&rejected));
    let cosine = hidden_cosine(&current.model, &pairs, store, &current.id)?;
    let scores: Vec<Option<f64>> = host.judgments.values().map(|j| j.score).collect();
    let failures = scores.iter().filter(|s| s.is_none()).count();
    let scored: Vec<f64> = scores.iter().flatten().copied().collect();

    // M_{i+1} = DPO(M_i, pairs), reference M_i.
    let mut compute = host.compute.clone();
    let (next, summary) = if pairs.is_empty() {
        eprintln!("srlm: iteration {it}: no pairs kept; M_{it} = M_{}", it - 1);
        (
            Snapshot {
                model: current.model.deep_copy()?,
                id: current.id.clone(),
            },
            Value::Null,
        )
    } else {
        let _ = std::fs::remove_dir_all(iter_dir.join("checkpoint"));
        let (snap, summary) = RunHost::train(
            store,
            config,
            current,
            &pairs,
            Some(&iter_dir.join("dpo_log.jsonl")),
        )
        .map_err(other("DPO"))?;
        snap.model.save(&iter_dir.join("checkpoint"))?;
        (snap, summary)
    };
    if pairs.is_empty() {
        next.model.save(&iter_dir.join("checkpoint"))?;
    }
    compute.tokens_trained += summary["tokens_trained"].as_u64().unwrap_or(0);
    let m = &summary["mean"];
    let mut line = json!({
        "iteration": it,
        "prompts": chunk.len(),
        "pairs": pairs.len(),
        "pairs_per_prompt": pairs.len() as f64 / chunk.len() as f64,
        "score/chosen_mean": cm, "score/rejected_mean": rm,
        "score/gap": cm.zip(rm).map(|(c, r)| c - r),
        "hidden_cosine": cosine,
        "dpo/loss": m["loss"], "dpo/rewards/chosen": m["rewards/chosen"], "dpo/rewards/rejected": m["rewards/rejected"],
        "dpo/rewards/margins": m["rewards/margins"], "dpo/rewards/accuracies": m["rewards/accuracies"],
        "dpo/grad_norm": m["grad_norm"], "dpo/steps": summary["steps"],
        "judge/parse_failure_rate": if scores.is_empty() { Value::Null } else { json!(failures as f64 / scores.len() as f64) },
        "judge/mean": mean(&scored),
        "compute/tokens_sampled": compute.tokens_sampled,
        "compute/tokens_judged": compute.tokens_judged,
        "compute/tokens_trained": compute.tokens_trained,
    });
    for (k, v) in &host.metrics {
        line[k] = json!(v);
    }
    Ok((line, pairs, next))
}

/// Mean cosine similarity of the chosen and rejected responses' mean last-layer hidden states
/// under `model` (unitless, in [-1, 1]); none without pairs. Memoised.
fn hidden_cosine(
    model: &LanguageModel,
    pairs: &[PreferencePair],
    store: &Store,
    model_id: &str,
) -> Result<Option<f64>, RunError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let key = key_of(&json!({"model": model_id, "pairs": pairs}));
    if let Some(v) = store.get::<f64>("cosine", &key) {
        return Ok(Some(v));
    }
    let tok = srlm_dpo::tokenize_pairs(model, pairs)
        .map_err(|e| RunError::Other(format!("cosine: {e}")))?;
    if tok.pairs.is_empty() {
        return Ok(None);
    }
    let chosen: Vec<(Vec<u32>, Vec<u32>)> = tok
        .pairs
        .iter()
        .map(|p| (p.prompt_ids.clone(), p.chosen_ids.clone()))
        .collect();
    let rejected: Vec<(Vec<u32>, Vec<u32>)> = tok
        .pairs
        .iter()
        .map(|p| (p.prompt_ids.clone(), p.rejected_ids.clone()))
        .collect();
    let hc = model.mean_response_hidden(&chosen)?;
    let hr = model.mean_response_hidden(&rejected)?;
    let c = hc
        .iter()
        .zip(&hr)
        .map(|(a, b)| srlm_model::cosine(a, b))
        .sum::<f64>()
        / hc.len() as f64;
    store.put("cosine", &key, &c)?;
    Ok(Some(c))
}

/// Greedy answers of `snap` to the held-out prompts, scored by the eval judge
/// ([`crate::eval::evaluate_model`]). Returns (mean score over scored answers, answers,
/// no-score rate). Memoised; writes `out` (JSONL, one [`crate::eval::EvalRow`] per prompt).
pub fn evaluate(
    snap: &Snapshot,
    prompts: &[PromptRecord],
    config: &RunConfig,
    spec: &str,
    external: &HashMap<String, LanguageModel>,
    store: &Store,
    out: &Path,
) -> Result<(Option<f64>, usize, Option<f64>), RunError> {
    if prompts.is_empty() {
        return Ok((None, 0, None));
    }
    let opts = crate::eval::EvalOptions {
        max_new_tokens: config.eval.max_new_tokens,
        batch_size: 32,
        baseline: false,
        progress: false,
    };
    let key = key_of(
        &json!({"model": snap.id, "prompts": prompts, "max_new_tokens": opts.max_new_tokens, "judge": spec, "judge_cfg": config.judge}),
    );
    let rows: Vec<crate::eval::EvalRow> = match store.get("eval", &key) {
        Some(v) => v,
        None => {
            eprintln!("srlm: evaluating on {} held-out prompts", prompts.len());
            let report = crate::eval::evaluate_model(
                &snap.model,
                prompts,
                spec,
                &config.judge,
                external,
                &opts,
            )
            .map_err(|e| RunError::Other(format!("evaluation: {e}")))?;
            store.put("eval", &key, &report.rows)?;
            report.rows
        }
    };
    write_jsonl_atomic(out, &rows)?;
    let scores: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
    let mean = if scores.is_empty() {
        None
    } else {
        Some(scores.iter().sum::<f64>() / scores.len() as f64)
    };
    Ok((
        mean,
        rows.len(),
        Some((rows.len() - scores.len()) as f64 / rows.len() as f64),
    ))
}
