//! `srlm run --dry-run`: the plan of a run — models, the server command srlm would start for
//! each and the form each model is handed over in, what runs in-process and its memory — with
//! nothing started, trained or written, so a GPU-scale config can be checked on a laptop.

use srlm_engine::{EngineKind, ServerVars};
use srlm_pipeline::config::{HiddenStates, RunConfig};
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
            // A folder with only its config.json (weights elsewhere) still gives the sizes.
            let shapes = std::path::Path::new(&config.model).join("config.json");
            match srlm_model::LlamaConfig::from_hf_config_file(&shapes) {
                Ok(c) => {
                    let n = c.num_parameters();
                    out!(
                        "model M0: `{}` — only its config.json is readable here: {:.2}B parameters, {} layers",
                        config.model,
                        n as f64 / 1e9,
                        c.num_hidden_layers
                    );
                    Some(n as f64)
                }
                Err(_) => {
                    out!(
                        "model M0: `{}` — not readable here ({err}); sizes unknown",
                        config.model
                    );
                    None
                }
            }
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
    if !config.eval.ood.is_empty() {
        let sets: Vec<String> = config
            .eval
            .ood
            .iter()
            .map(|s| format!("{} ({} new tokens)", s.name(), s.max_new_tokens()))
            .collect();
        out!(
            "out of distribution: each M_i answers the first {} questions of {}, scored by the `answer` judge",
            config.eval.ood_prompts,
            sets.join(" and ")
        );
    }
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
                "engine: server ({:?}): srlm starts a server per model (one for M0 and its LoRA adapters with {{lora}} in the command) on a free loopback port, waits for /health, stops it when the model is released (and on errors, Ctrl-C, kill -9); logs in {}",
                e.server,
                out.join("engine").display()
            );
            out!(
                "  every server stops while DPO trains and starts again on its port when next used; {}",
                if e.exclusive {
                    "at most one runs at a time (engine.exclusive): a model's server stops when another model is used"
                } else {
                    "servers of different models may run at the same time (engine.exclusive = true: one at a time, for one GPU)"
                }
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
            let adapters_on_m0 = config.dpo.use_peft
                && m0_gguf.is_some()
                && srlm_engine::server::has_lora_word(template);
            if adapters_on_m0 {
                let lora = out.join("engine/models/<id>.lora.gguf");
                out!(
                    "  each trained model (M_1 … M_{}{}) is a LoRA adapter on M0: M0's server also serves it, as a GGUF adapter srlm writes ({}), picked per request by its `lora` scales; llama-server reads adapters only at start, so srlm restarts that one server on the same port when a new adapter is needed",
                    config.iterations,
                    if temporal { ", and M_f in every iteration" } else { "" },
                    lora.display()
                );
                out!(
                    "    {}",
                    show(&ServerVars {
                        gguf: m0_gguf.clone(),
                        lora: vec![lora],
                        ..base.clone()
                    })
                );
            } else {
                let gguf = out.join("engine/models/<id>.gguf");
                let gguf_size =
                    params.map(|n| gb(n * if e.gguf_dtype == "f16" { 2.0 } else { 4.0 }));
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
                        ..base.clone()
                    })
                );
            }
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
    if let Some(n) = params {
        if e.kind == EngineKind::Server {
            out!(
                "memory: each server holds one model's weights, {} in bf16 (vLLM, SGLang; a GGUF's own size on llama-server) plus its KV cache; {}",
                gb(n * 2.0),
                if e.exclusive {
                    "one server at a time, none while DPO trains"
                } else {
                    "up to three at a time in TSR (M0, M_i, M_f), none while DPO trains"
                }
            );
        }
        if t.is_external() && t.dtype == srlm_trainer::TrainerDtype::Bfloat16 {
            // Mixed precision with AdamW: bf16 weights and gradients, f32 master weights and
            // two moments = 16 bytes per parameter, split over the processes by ZeRO-3.
            out!(
                "memory: the trainer's weights, gradients and AdamW state, 16 bytes per parameter = {}, are {} per process when sharded over {} processes (DeepSpeed ZeRO-3, as configs/accelerate/zero3*.yaml sets; plus activations)",
                gb(n * 16.0),
                gb(n * 16.0 / t.num_processes.max(1) as f64),
                t.num_processes
            );
        }
    }
    // What `diagnostics.hidden_states` decides here (srlm_pipeline::run's rule).
    let avail = srlm_pipeline::run::available_memory_bytes();
    let on_server = e.kind != EngineKind::InProcess;
    let decision = match (config.diagnostics.hidden_states, params, avail) {
        (HiddenStates::Off, ..) => "left out (diagnostics.hidden_states = \"off\")".to_string(),
        (HiddenStates::On, ..) => "computed (diagnostics.hidden_states = \"on\")".to_string(),
        (HiddenStates::Auto, _, _) if !on_server => {
            "computed (the in-process engine holds M_i anyway)".to_string()
        }
        (HiddenStates::Auto, Some(n), Some(a)) => {
            let need = n * 4.0;
            if need > a / 2.0 {
                format!("left out: M_i in f32 needs {}, more than half of the {} available here (\"on\" computes it anyway)", gb(need), gb(a))
            } else {
                format!("computed: M_i in f32 needs {}, at most half of the {} available here", gb(need), gb(a))
            }
        }
        (HiddenStates::Auto, ..) => {
            "computed when M_i in f32 takes at most half of the available memory (the size is unknown here)".to_string()
        }
    };
    out!("diagnostics: the hidden-state cosine is {decision}");
    Ok(())
}
