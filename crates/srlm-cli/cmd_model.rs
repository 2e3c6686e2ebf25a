//! `srlm tokenize`, `srlm logits`, `srlm generate`: the model backend alone, in a form anyone
//! can compare with llama.cpp.

use anyhow::Context;
use srlm_core::SamplingConfig;
use srlm_model::{default_device, LanguageModel, Mode, Tensor};
use std::path::PathBuf;

/// Arguments of `srlm tokenize`.
#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// Model: `default`, a .gguf file, or an HF-style directory.
    #[arg(long, default_value = "default")]
    model: String,
    /// Text to tokenize (no BOS added; special tokens such as <|im_start|> parsed whole).
    #[arg(long)]
    text: String,
    /// Print `{"ids": [...]}` instead of one `id<TAB>token` line per token.
    #[arg(long)]
    json: bool,
}

/// Arguments of `srlm logits`.
#[derive(clap::Args)]
pub struct LogitsArgs {
    /// Model: `default`, a .gguf file, or an HF-style directory.
    #[arg(long, default_value = "default")]
    model: String,
    /// A user message, rendered with the model's chat template (generation prompt added).
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    chat: Option<String>,
    /// Raw text, tokenized as is.
    #[arg(long)]
    text: Option<String>,
    /// How many of the highest logits to print.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 10)]
    top: usize,
    /// Print `{"ids": [...], "logits": [...]}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `srlm generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Model: `default`, a .gguf file, an HF-style directory, or a checkpoint written by srlm.
    #[arg(long, default_value = "default")]
    model: String,
    /// The user message (rendered with the model's chat template).
    #[arg(long)]
    prompt: String,
    /// Number of samples (K).
    #[arg(short, long, default_value_t = 1)]
    k: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Maximum new tokens per sample.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), default_value_t = 128)]
    max_new_tokens: usize,
    /// Softmax temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Nucleus mass (1 disables).
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Keep the k most likely tokens (0 disables).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// One JSON object per sample: {"text", "token_ids", "logprob"}.
    #[arg(long)]
    json: bool,
    /// Where to sample (in-process, or an inference server).
    #[command(flatten)]
    engine: crate::engine_args::EngineArgs,
}

/// Arguments of `srlm export`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["gguf", "hf", "gguf_lora"])))]
pub struct ExportArgs {
    /// The model: a checkpoint folder srlm wrote (e.g. `RUN/iter_1/checkpoint`, an adapter
    /// when the run trained LoRA), `default`, a .gguf file, an HF-style directory or a PEFT
    /// adapter folder.
    model: String,
    /// Write it as a GGUF file here (llama.cpp's tensor names and RoPE layout).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Write it as an HF checkpoint folder here (`model.safetensors`, `config.json`, tokenizer
    /// files), loadable by transformers, vLLM and SGLang.
    #[arg(long, value_name = "DIR")]
    hf: Option<PathBuf>,
    /// For a LoRA adapter: write the adapter alone as llama.cpp's GGUF LoRA adapter
    /// (`llama-server -m BASE.gguf --lora FILE`; a request's `lora` field sets its scale, 0
    /// serves the base).
    #[arg(long, value_name = "FILE")]
    gguf_lora: Option<PathBuf>,
    /// For a LoRA adapter: write base + adapter as one model (W + (α / r)·B·A). Required for
    /// an adapter, whose own folder is already PEFT's format.
    #[arg(long)]
    merge: bool,
    /// The GGUF whose metadata (tokenizer, chat template, special tokens) the file carries: the
    /// one the model was trained from.
    #[arg(long, default_value = "default")]
    base: String,
    /// Weight type: f32 (exact) or f16 (half the size).
    #[arg(long, default_value = "f32")]
    dtype: srlm_model::GgufDType,
    /// Replace an existing file at `--gguf` or srlm checkpoint at `--hf`.
    #[arg(long)]
    overwrite: bool,
}

fn load(model: &str) -> anyhow::Result<LanguageModel> {
    LanguageModel::load(model, &default_device())
        .with_context(|| format!("loading model `{model}`"))
}

/// `srlm tokenize`.
pub fn tokenize(a: TokenizeArgs) -> anyhow::Result<()> {
    let m = load(&a.model)?;
    let ids = m.tokenizer.encode(&a.text)?;
    if a.json {
        out!("{}", serde_json::json!({ "ids": ids }));
    } else {
        for id in ids {
            out!(
                "{id}\t{:?}",
                m.tokenizer.id_to_token(id).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `srlm logits`.
pub fn logits(a: LogitsArgs) -> anyhow::Result<()> {
    let m = load(&a.model)?;
    let ids = match (&a.chat, &a.text) {
        (Some(c), _) => m.encode_prompt(c)?,
        (None, Some(t)) => m.tokenizer.encode(t)?,
        (None, None) => unreachable!("clap requires one of --chat/--text"),
    };
    anyhow::ensure!(!ids.is_empty(), "the input has no tokens");
    anyhow::ensure!(
        ids.len() <= m.context_length(),
        "the input has {} tokens; the model's context is {}",
        ids.len(),
        m.context_length()
    );
    let t = Tensor::new(ids.as_slice(), m.model.device())?.unsqueeze(0)?;
    let h = m.model.hidden_states(&t, Mode::Infer)?;
    let last = m
        .model
        .lm_head(&h.get(0)?.get(ids.len() - 1)?.unsqueeze(0)?)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&x, &y| last[y].total_cmp(&last[x]));
    order.truncate(a.top.min(last.len()));
    if a.json {
        let top_ids: Vec<usize> = order.clone();
        let vals: Vec<f32> = order.iter().map(|&i| last[i]).collect();
        out!("{}", serde_json::json!({ "ids": top_ids, "logits": vals }));
    } else {
        for i in order {
            out!(
                "{i}\t{:.4}\t{:?}",
                last[i],
                m.tokenizer.id_to_token(i as u32).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `srlm generate`.
pub fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let cfg = SamplingConfig {
        k: a.k,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        max_new_tokens: a.max_new_tokens,
        seed: a.seed,
    };
    // Before any model is loaded; the flags are named as in the config (`sampling.k` is `-k`).
    cfg.validate().map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.replace("sampling.k", "-k").replace("sampling.", "--")
        )
    })?;
    let (backend, logs) = a.engine.backend(&a.model)?;
    let model = srlm_pipeline::ports::ModelRef::new("generate", a.model.clone());
    let sampled = backend
        .load(&model)
        .and_then(|()| backend.sample(&model, &[a.prompt.as_str()], &cfg));
    backend.release(&model);
    let gens = match sampled {
        Ok(g) => g,
        Err(e) => {
            let kept = logs.map(|l| l.keep());
            return Err(anyhow::Error::new(e).context(match kept {
                Some(dir) => format!(
                    "sampling from `{}` (server logs kept in {})",
                    a.model,
                    dir.display()
                ),
                None => format!("sampling from `{}`", a.model),
            }));
        }
    };
    for (i, g) in gens[0].iter().enumerate() {
        if a.json {
            out!(
                "{}",
                serde_json::json!({ "text": g.text, "token_ids": g.token_ids, "logprob": g.logprob })
            );
        } else {
            out!(
                "--- sample {i} ({} tokens, logprob {:.3})\n{}",
                g.token_ids.len(),
                g.logprob,
                g.text
            );
        }
    }
    Ok(())
}

/// The GGUF `--base` names (whose metadata an exported GGUF carries).
fn base_gguf(base: &str) -> anyhow::Result<std::path::PathBuf> {
    match srlm_model::resolve_model(base)? {
        srlm_model::ModelFiles::Gguf(p) => Ok(p),
        srlm_model::ModelFiles::HfDir(d) => anyhow::bail!(
            "--base {}: an HF folder; the GGUF's metadata comes from a GGUF (the one the model was trained from)",
            d.display()
        ),
    }
}

/// `srlm export`.
pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let model_path = std::path::Path::new(&a.model);
    let adapter = srlm_model::is_adapter_dir(model_path);
    // Nothing is written into the model's own folder (it would replace the model's files).
    for out in [&a.gguf, &a.gguf_lora, &a.hf].into_iter().flatten() {
        anyhow::ensure!(
            !(model_path.is_dir() && srlm_core::output::is_within(out, model_path)),
            "{}: inside the model folder {}; write the export beside it",
            out.display(),
            a.model
        );
    }
    anyhow::ensure!(
        !a.merge || adapter,
        "--merge: {} is not a LoRA adapter (nothing to merge)",
        a.model
    );
    if let Some(file) = &a.gguf_lora {
        anyhow::ensure!(
            adapter,
            "{}: not a LoRA adapter; --gguf writes a whole model",
            a.model
        );
        let base = base_gguf(&a.base)?;
        srlm_core::output::claim_file(file, &[("--base", base.as_path())], a.overwrite)
            .context("--gguf-lora")?;
        let m = load(&a.model)?;
        let n = srlm_model::write_gguf_lora(&m, &base, file)
            .with_context(|| format!("writing {}", file.display()))?;
        out!("{} (GGUF LoRA adapter, {n} tensors, f32)", file.display());
        return Ok(());
    }
    anyhow::ensure!(
        !adapter || a.merge,
        "{}: a LoRA adapter (PEFT's format already); --merge writes base + adapter as one model",
        a.model
    );
    if let Some(dir) = &a.hf {
        srlm_core::output::claim_dir(dir, srlm_model::CHECKPOINT, a.overwrite).context("--hf")?;
        let mut m = load(&a.model)?;
        if adapter {
            m = LanguageModel::with_text(m.model.merged()?, m.text(), m.origin.clone());
        }
        m.save(dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        out!(
            "{} (HF checkpoint, f32{})",
            dir.display(),
            if adapter { ", merged" } else { "" }
        );
        return Ok(());
    }
    let gguf = a
        .gguf
        .as_ref()
        .expect("clap requires --gguf, --hf or --gguf-lora");
    let base = base_gguf(&a.base)?;
    let mut inputs = vec![("--base", base.as_path())];
    if model_path.exists() {
        inputs.push(("the model", model_path));
    }
    srlm_core::output::claim_file(gguf, &inputs, a.overwrite).context("--gguf")?;
    let m = load(&a.model)?;
    let n = srlm_model::write_gguf(&m, &base, gguf, a.dtype)
        .with_context(|| format!("writing {}", gguf.display()))?;
    out!(
        "{} ({n} tensors, {:?}, metadata from {})",
        gguf.display(),
        a.dtype,
        base.display()
    );
    Ok(())
}
