//! `srlm run --dry-run`: the plan of a run — models, the server command srlm would start for
//! each and the form each model is handed over in, what runs in-process and its memory — with
//! nothing started, trained or written, so a GPU-scale config can be checked on a laptop.

use srlm_engine::{EngineKind, ServerVars};
use srlm_pipeline::config::RunConfig;
use std::path::Path;

fn gb(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// Prints the plan of `config` run into `out`.
pub fn print_plan(config: &RunConfig, out: &Path) -> anyhow::Result<()> {
    config.validate()?;
    let e = &config.engine;
    out!("srlm run --dry-run: nothing is started, trained or written.");
    out!("run folder: {}", out.display());
    let files = srlm_model::resolve_model(&config.model);
    let text = srlm_model::ModelText::load(&config.model);
    let params = match &text {
        Ok(t) => {
            let n = t.config.num_parameters();
            out!(
                "model M0: `{}` ({}), {:.2}B parameters, {} layers, context {}",
                config.model,
                match &files {
                    Ok(srlm_model::ModelFiles::Gguf(p)) => format!("GGUF {}", p.display()),
                    Ok(srlm_model::ModelFiles::HfDir(d)) => format!("HF folder {}", d.display()),
                    Err(_) => "?".into(),
                },
                n as f64 / 1e9,
                t.config.num_hidden_layers,
                t.context_length()
            );
            Some(n as f64)
        }
        Err(err) => {
            out!(
                "model M0: `{}` — not readable here ({err}); sizes unknown",
                config.model
            );
            None
        }
    };
    let k = config
        .strategy_options
        .get("k")
        .and_then(|v| v.as_u64())
        .unwrap_or(config.sampling.k as u64);
    let temporal = config.strategy == "temporal";
    out!(
        "strategy: {} × {} iterations; {} prompts per iteration, {} held out; K = {k}, {} new tokens at most",
        config.strategy, config.iterations, config.prompts.per_iteration, config.prompts.eval, config.sampling.max_new_tokens
    );
    let models_sampled = if temporal {
        "M_i, M0 and the future model M_f"
    } else {
        "M_i"
    };
    out!(
        "per iteration: K samples per prompt from {models_sampled}, judged by `{}` ({:?}); held-out answers of each M_i",
        config.judge.spec, config.judge.mode
    );
    match e.kind {
        EngineKind::InProcess => {
            out!("engine: in-process (candle, f32 weights): sampling and judging in this process");
        }
        EngineKind::Url => {
            out!(
                "engine: url — the server at {} serves M0 only; a run that samples another model (a trained M_i, M_f) stops with an error",
                e.url
            );
        }
        EngineKind::Server => {
            out!(
                "engine: server ({:?}): srlm starts one server per model on a free loopback port, waits for /health, stops it when the model is released (and on errors, Ctrl-C, kill -9); logs in {}",
                e.server,
                out.join("engine").display()
            );
            let template = e.command_template();
            let (m0_gguf, m0_hf) = match &files {
                Ok(srlm_model::ModelFiles::Gguf(p)) => (Some(p.clone()), None),
                Ok(srlm_model::ModelFiles::HfDir(d)) => (None, Some(d.clone())),
                Err(_) => (None, Some(config.model.clone().into())),
            };
            let show =
                |vars: &ServerVars| match srlm_engine::server::render_command(template, vars, 0) {
                    Ok(argv) => format!(
                        "$ {}",
                        srlm_engine::server::command_line(&argv)
                            .replace("--port 0", "--port <free port>")
                    ),
                    Err(err) => format!("cannot run: {err}"),
                };
            let base = ServerVars {
                parallel: e.parallel,
                threads: e.threads,
                ..Default::default()
            };
            out!(
                "  M0 → {}",
                show(&ServerVars {
                    gguf: m0_gguf.clone(),
                    hf_dir: m0_hf,
                    ..base.clone()
                })
            );
            let ckpt = out.join("cache/model-<id>");
            let gguf = out.join("engine/models/<id>.gguf");
            let gguf_size = params.map(|n| gb(n * if e.gguf_dtype == "f16" { 2.0 } else { 4.0 }));
            out!(
                "  each trained model (M_1 … M_{}{}) is handed over as its HF checkpoint {}{}",
                config.iterations,
                if temporal {
                    ", and M_f in every iteration"
                } else {
                    ""
                },
                ckpt.display(),
                if template.contains("{gguf}") {
                    format!(
                        " and as a GGUF srlm writes, {} ({}{}), with M0's tokenizer metadata",
                        gguf.display(),
                        e.gguf_dtype,
                        gguf_size.map(|s| format!(", {s} each")).unwrap_or_default()
                    )
                } else {
                    String::new()
                }
            );
            out!(
                "    {}",
                show(&ServerVars {
                    gguf: Some(gguf),
                    hf_dir: Some(ckpt),
                    ..base
                })
            );
            out!(
                "  requests: {} in flight, K samples per request (n = K): {}; timeout {} s, {} retries",
                e.concurrency, e.use_n, e.timeout_seconds, e.retries
            );
        }
    }
    let device = srlm_model::default_device();
    let t = &config.trainer;
    if t.is_external() {
        let trainer = srlm_trainer::ExternalTrainer::new(t.clone())?;
        let records = out.join("iter_<i>/trainer");
        let data = records.join("pairs.jsonl");
        let output = records.join("output");
        let m0_hf = out.join("cache/hf/<M0 id>");
        // A GGUF is written once as an HF checkpoint; anything else is taken as the HF folder
        // it names (readable here or not).
        let m0_is_gguf = matches!(&files, Ok(srlm_model::ModelFiles::Gguf(_)))
            || config.model.ends_with(".gguf")
            || config.model == "default";
        let model = if m0_is_gguf {
            m0_hf.clone()
        } else {
            match &files {
                Ok(srlm_model::ModelFiles::HfDir(d)) => d.clone(),
                _ => std::path::PathBuf::from(&config.model),
            }
        };
        let paths = srlm_trainer::flags::StepPaths {
            model: &model,
            data: &data,
            output_dir: &output,
            longest_row: config.dpo.max_length.unwrap_or(1024),
            pairs: config.prompts.per_iteration,
        };
        let argv = trainer.argv(&config.dpo, &paths, &records.join("trl_dpo.py"))?;
        out!(
            "trainer: {} as a command for every DPO step (M_{{i+1}}{}), {} process{}, {} weights; srlm tokenizes the pairs ({}), runs it with its log in {} (temporary models: iter_<i>/temporary_<n>_trainer), and takes back the HF checkpoint and the step log",
            match t.backend {
                srlm_trainer::TrainerBackend::Trl => "TRL's DPOTrainer (trl 1.16)",
                _ => "OpenRLHF's train_dpo (openrlhf 0.11, dry run only)",
            },
            if temporal { " and M_f" } else { "" },
            t.num_processes,
            if t.num_processes == 1 { "" } else { "es" },
            match t.dtype {
                srlm_trainer::TrainerDtype::Float32 => "f32",
                srlm_trainer::TrainerDtype::Bfloat16 => "bf16",
            },
            data.display(),
            records.display()
        );
        if m0_is_gguf {
            out!(
                "  M0 is not an HF folder: srlm writes it once as an f32 HF checkpoint, {}{}",
                m0_hf.display(),
                params
                    .map(|n| format!(" ({})", gb(n * 4.0)))
                    .unwrap_or_default()
            );
        }
        out!("    {}", srlm_trainer::process::command_line(&argv));
    }
    match params {
        Some(n) if t.is_external() => out!(
            "in-process on {device:?}: no DPO (the trainer's memory is its own); the hidden-state diagnostic loads M_i in f32 ({})",
            gb(n * 4.0)
        ),
        Some(n) => {
            // f32 policy + reference + gradients + two AdamW moments = 5 copies of 4 bytes.
            let train = n * 20.0;
            let hold = if e.kind == EngineKind::InProcess {
                // Sampling in-process keeps up to M_i, M0 and M_f (f32) besides training.
                n * 4.0 * if temporal { 3.0 } else { 1.0 }
            } else {
                0.0
            };
            out!(
                "in-process on {device:?}: DPO with full fine-tuning in f32 (policy, reference, gradients, 2 AdamW moments: 20 bytes per parameter) ≈ {} + activations{}; the hidden-state diagnostic loads M_i in f32 ({})",
                gb(train),
                if hold > 0.0 { format!(", plus {} for the models sampled in-process", gb(hold)) } else { String::new() },
                gb(n * 4.0)
            );
        }
        None if t.is_external() => out!("in-process on {device:?}: no DPO (the trainer's memory is its own); the hidden-state diagnostic loads M_i in f32 (4 bytes per parameter)"),
        None => out!("in-process on {device:?}: DPO (full fine-tuning, f32) and the hidden-state diagnostic: 20 bytes per parameter + activations"),
    }
    Ok(())
}
