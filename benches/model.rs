//! Model-backend benchmarks (issue 2 item 12): batched sampling, single-stream decode, prefill,
//! a training fwd+bwd step, and peak RSS, on the default model (SmolLM2-135M-Instruct, Q4_1
//! GGUF dequantized to f32) on the CPU.
//!
//! Run: `cargo bench --bench model` (needs the default model in the cache: `cargo xtask fetch`).
//! A plain `harness = false` main rather than criterion: one batched-sampling run takes tens
//! of seconds and its token count varies with EOS, so each figure is the median of a few timed
//! repetitions after one warm-up. `SRLM_BENCH_REPS` overrides the repetition count (default 3);
//! `SRLM_BENCH_ONLY=batched,server,single,prefill,train,llamacpp` runs a subset;
//! `SRLM_BENCH_BASE=gguf` or `bf16` samples from a frozen base kept in the GGUF's Q4_1 blocks
//! or in bf16 (a LoRA run's M0).
//!
//! The llama.cpp anchors are measured in the same run, on the same GGUF with the same thread
//! count, by the binaries `scripts/install-llama-server.sh` builds (it is called here; cached):
//! `llama-bench -p 256 -n 128` (prefill and single-stream decode) and `llama-batched-bench
//! -npp 64 -ntg 128 -npl 1,8,32` (batched decode); the `server` section samples the batched
//! workload through `llama-server` (32 parallel slots) with srlm's server engine. The PyTorch
//! anchors (training) are still figures typed in from issue 2's measurement.
//! Figures are in `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use anyhow::Result;
use srlm_core::SamplingConfig;
use srlm_model::{Device, LanguageModel, Mode, Tensor};

/// The `srlm` binary's allocator and setting, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parameters of SmolLM2-135M (tied embeddings), for 6·N FLOPs per trained token.
const N_PARAMS: f64 = 134_515_008.0;

// Anchors typed in from issue 2 item 12 (PyTorch was measured on another day; no torch here).
const PYTORCH_TRAIN_TOKS: f64 = 186.0;
const PYTORCH_TRAIN_GFLOPS: f64 = 150.0;
const GEMM_CEILING_GFLOPS: f64 = 340.0;

const PROMPTS: [&str; 4] = [
    "Write a short poem about the sea.",
    "Explain in two sentences why the sky is blue.",
    "Give three tips for learning a new programming language.",
    "What is the capital of France, and what is it famous for?",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn vm_hwm_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Times `f` once to warm up, then `reps` times; returns (median seconds, last value).
fn timed<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, Vec<f64>, T)> {
    let mut last = f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        last = f()?;
        times.push(secs(t.elapsed()));
    }
    Ok((median(times.clone()), times, last))
}

/// A prompt of exactly `n` token ids (a chat-rendered long user turn, truncated).
fn long_prompt(m: &LanguageModel, n: usize) -> Result<Vec<u32>> {
    let text = "The history of the printing press begins in the fifteenth century, when \
                movable metal type made it possible to produce books quickly and cheaply. "
        .repeat(40);
    let mut ids = m.encode_prompt(&text)?;
    anyhow::ensure!(ids.len() >= n, "prompt has only {} tokens", ids.len());
    ids.truncate(n);
    Ok(ids)
}

/// llama.cpp's figures on the same GGUF and thread count, measured now.
#[derive(Default)]
struct LlamaCpp {
    prefill_256: f64,
    decode_128: f64,
    /// (parallel sequences, generation tok/s) from llama-batched-bench.
    batched: Vec<(u64, f64)>,
}

fn llamacpp_bin() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new("bash")
        .arg(root.join("scripts/install-llama-server.sh"))
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "install-llama-server.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(std::path::PathBuf::from(
        String::from_utf8_lossy(&o.stdout).trim(),
    ))
}

fn measure_llamacpp(gguf: &std::path::Path, threads: usize) -> Result<LlamaCpp> {
    let bin = llamacpp_bin()?;
    let t = threads.to_string();
    let o = std::process::Command::new(bin.join("llama-bench"))
        .args([
            "-p", "256", "-n", "128", "-r", "3", "-t", &t, "-o", "json", "-m",
        ])
        .arg(gguf)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "llama-bench: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)?;
    let mut out = LlamaCpp::default();
    for r in &rows {
        let ts = r["avg_ts"].as_f64().unwrap_or(f64::NAN);
        match (r["n_prompt"].as_u64(), r["n_gen"].as_u64()) {
            (Some(256), Some(0)) => out.prefill_256 = ts,
            (Some(0), Some(128)) => out.decode_128 = ts,
            _ => {}
        }
    }
    let o = std::process::Command::new(bin.join("llama-batched-bench"))
        .args([
            "-npp", "64", "-ntg", "128", "-npl", "1,8,32", "-c", "8192", "-t", &t,
        ])
        .args(["--output-format", "jsonl", "-m"])
        .arg(gguf)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "llama-batched-bench: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let (Some(pl), Some(tg)) = (v["pl"].as_u64(), v["speed_tg"].as_f64()) {
                out.batched.push((pl, tg));
            }
        }
    }
    println!(
        "llama.cpp (same GGUF, {threads} threads): prefill 256 {:.1} tok/s, decode 128 {:.1} tok/s, batched decode {}",
        out.prefill_256,
        out.decode_128,
        out.batched
            .iter()
            .map(|(pl, tg)| format!("{pl} seq {tg:.1} tok/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(out)
}

/// The batched workload through llama-server (32 slots, `threads` threads) with srlm's
/// server engine: (median tok/s, median generated tokens).
fn measure_server(
    gguf: &std::path::Path,
    threads: usize,
    reps: usize,
    cfg: &SamplingConfig,
) -> Result<(f64, f64)> {
    llamacpp_bin()?;
    let dir = tempfile::tempdir()?;
    let server = srlm_engine::ServerProcess::start(
        "llama-server -m {gguf} --host 127.0.0.1 --port {port} -np {parallel} -c 16384 -t {threads} --no-webui",
        &srlm_engine::ServerVars {
            gguf: Some(gguf.to_path_buf()),
            hf_dir: None,
            parallel: 32,
            threads,
            lora: Vec::new(),
        },
        &dir.path().join("server.log"),
        Duration::from_secs(120),
    )?;
    let remote = srlm_engine::RemoteModel {
        text: std::sync::Arc::new(srlm_model::ModelText::load("default")?),
        client: server.client(Duration::from_secs(600), 0, 32),
        model_name: "default".into(),
        use_n: true,
        top_logprobs: 20,
        route: None,
    };
    let mut rates = Vec::new();
    let mut tokens = Vec::new();
    let (_, _, _) = timed(reps, || {
        let t = Instant::now();
        let out = remote.sample(&PROMPTS, cfg)?;
        let el = secs(t.elapsed());
        let n: usize = out.iter().flatten().map(|g| g.token_ids.len()).sum();
        rates.push(n as f64 / el);
        tokens.push(n as f64);
        Ok(())
    })?;
    Ok((median(rates[1..].to_vec()), median(tokens[1..].to_vec())))
}

fn main() -> Result<()> {
    srlm_model::init_process();
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let reps: usize = std::env::var("SRLM_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let only = std::env::var("SRLM_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    let hwm = |stage: &str| {
        if let Some(r) = vm_hwm_mib() {
            println!("  VmHWM after {stage}: {r:.0} MiB");
        }
    };
    let (mut batch_rate, mut single_rate, mut prefill_rate) = (f64::NAN, f64::NAN, f64::NAN);
    let (mut train_rate, mut train_gflops) = (f64::NAN, f64::NAN);
    let mut server_rate = f64::NAN;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gguf = match srlm_model::resolve_model("default")? {
        srlm_model::ModelFiles::Gguf(p) => p,
        srlm_model::ModelFiles::HfDir(d) => {
            anyhow::bail!("default model is a folder: {}", d.display())
        }
    };
    let anchors = if run("llamacpp") {
        match measure_llamacpp(&gguf, threads) {
            Ok(a) => Some(a),
            Err(e) => {
                println!("llama.cpp anchors not measured: {e}");
                None
            }
        }
    } else {
        None
    };
    let dev = Device::Cpu;
    let t = Instant::now();
    let m = LanguageModel::load("default", &dev)?;
    // `SRLM_BENCH_BASE=gguf` or `bf16`: the weights kept frozen in the GGUF's own blocks (the
    // f32 model's numbers) or in bf16, as a LoRA run's base is; the training section then
    // has nothing to train.
    // (Taken by value: the f32 model is dropped, as a run drops it after converting M0.)
    let frozen = |m: LanguageModel, form| m.frozen_base(form);
    let m = match std::env::var("SRLM_BENCH_BASE")
        .unwrap_or_default()
        .as_str()
    {
        "" => m,
        "gguf" => frozen(m, srlm_model::FrozenBase::Exact)?,
        "bf16" => frozen(m, srlm_model::FrozenBase::Bf16)?,
        other => anyhow::bail!("SRLM_BENCH_BASE={other}: expected gguf or bf16"),
    };
    println!(
        "load: {:.2} s ({}), reps = {reps}",
        secs(t.elapsed()),
        m.origin
    );

    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| m.encode_prompt(p))
        .collect::<std::result::Result<_, _>>()?;

    // 1. Batched sampling: 4 prompts × K=8 × 128 new tokens.
    let cfg = SamplingConfig {
        k: 8,
        temperature: 0.7,
        top_p: 0.9,
        top_k: 0,
        max_new_tokens: 128,
        seed: 1,
    };
    if run("batched") {
        let mut batch_rates = Vec::new();
        let mut batch_tokens = Vec::new();
        let (batch_s, _, _) = timed(reps, || {
            let t = Instant::now();
            let out = m.generate(&prompts, &cfg)?;
            let el = secs(t.elapsed());
            let n: usize = out.iter().flatten().map(|g| g.token_ids.len()).sum();
            batch_rates.push(n as f64 / el);
            batch_tokens.push(n as f64);
            Ok(())
        })?;
        // The first entry is the warm-up.
        batch_rate = median(batch_rates[1..].to_vec());
        let batch_tok = median(batch_tokens[1..].to_vec());
        println!(
        "batched sampling 4x8x128: {batch_tok:.0} generated tokens (of {} max) in {batch_s:.2} s \
         median -> {batch_rate:.1} tok/s (runs: {:?})",
        4 * 8 * 128,
        batch_rates[1..].iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>()
    );

        hwm("batched sampling");
    }

    // 1b. The same workload through llama-server (srlm's server engine).
    if run("server") {
        let (rate, tok) = measure_server(&gguf, threads, reps, &cfg)?;
        server_rate = rate;
        println!("llama-server 4x8x128 (32 slots, {threads} threads, srlm's server engine): {tok:.0} generated tokens -> {rate:.1} tok/s");
    }

    // 2. Single-stream decode: 1 prompt, K=1, 128 tokens (time includes the short prefill).
    if run("single") {
        let cfg1 = SamplingConfig {
            k: 1,
            ..cfg.clone()
        };
        let mut single_rates = Vec::new();
        let mut single_tokens = Vec::new();
        let (single_s, _, _) = timed(reps, || {
            let t = Instant::now();
            let out = m.generate(&prompts[..1], &cfg1)?;
            let el = secs(t.elapsed());
            let n: usize = out.iter().flatten().map(|g| g.token_ids.len()).sum();
            single_rates.push(n as f64 / el);
            single_tokens.push(n as f64);
            Ok(())
        })?;
        single_rate = median(single_rates[1..].to_vec());
        println!(
        "single-stream decode 1x1x128: {:.0} tokens in {single_s:.2} s median -> {single_rate:.1} tok/s",
        median(single_tokens[1..].to_vec())
    );

        hwm("single-stream decode");
    }

    // 3. Prefill: forward(Mode::Infer) over a [1, 256] prompt.
    if run("prefill") {
        let ids256 = long_prompt(&m, 256)?;
        let x = Tensor::from_vec(ids256, (1, 256), &dev)?;
        let (prefill_s, _, _) = timed(reps.max(5), || {
            let l = m.model.forward(&x, Mode::Infer)?;
            Ok(l.dims().to_vec())
        })?;
        prefill_rate = 256.0 / prefill_s;
        println!("prefill [1,256] Infer: {prefill_s:.3} s median -> {prefill_rate:.1} tok/s");

        hwm("prefill");
    }

    // 4. Training step fwd+bwd on 2 × 256 tokens (Mode::Train; no optimizer).
    if run("train") {
        let long = long_prompt(&m, 256)?;
        let mut two = long.clone();
        two.extend(long.iter().rev());
        let x2 = Tensor::from_vec(two, (2, 256), &dev)?;
        let mut fwd_times = Vec::new();
        let mut bwd_times = Vec::new();
        let (train_s, _, _) = timed(reps, || {
            let t = Instant::now();
            let loss = m.model.token_logps(&x2, Mode::Train)?.sum_all()?;
            let _ = loss.to_scalar::<f32>()?;
            fwd_times.push(secs(t.elapsed()));
            let t = Instant::now();
            let grads = loss.backward()?;
            bwd_times.push(secs(t.elapsed()));
            drop(grads);
            Ok(())
        })?;
        let train_tokens = 512.0;
        train_rate = train_tokens / train_s;
        train_gflops = 6.0 * N_PARAMS * train_tokens / train_s / 1e9;
        let fwd_s = median(fwd_times[1..].to_vec());
        let bwd_s = median(bwd_times[1..].to_vec());
        println!(
        "train step [2,256] fwd+bwd: {train_s:.2} s median (fwd {fwd_s:.2} s, bwd {bwd_s:.2} s) \
         -> {train_rate:.1} tok/s, {train_gflops:.1} GFLOP/s (6N/token)"
    );

        hwm("training step");
    }

    // 5. Peak RSS.
    let rss = vm_hwm_mib();
    match rss {
        Some(r) => println!("peak RSS (VmHWM): {r:.0} MiB"),
        None => println!("peak RSS: unavailable (/proc/self/status)"),
    }

    println!();
    println!("(llama.cpp anchors: measured above, this run; PyTorch anchors: issue 2 item 12, typed in; the PyTorch step includes AdamW, this one does not)");
    println!("| figure | srlm | anchor | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    // `target` NaN: no target (the figure is reported for comparison only).
    let row = |name: &str, v: f64, unit: &str, anchor: f64, aname: &str, target: f64| {
        if v.is_nan() {
            return; // section not run (SRLM_BENCH_ONLY)
        }
        let r = v / anchor;
        if target.is_nan() {
            println!("| {name} | {v:.1} {unit} | {anchor:.0} {unit} ({aname}) | {r:.2}x | - | - |");
            return;
        }
        println!(
            "| {name} | {v:.1} {unit} | {anchor:.0} {unit} ({aname}) | {r:.2}x | >= {target}x | {} |",
            if r >= target { "yes" } else { "no" }
        );
    };
    if let Some(a) = &anchors {
        let batched32 = a
            .batched
            .iter()
            .find(|(pl, _)| *pl == 32)
            .map_or(f64::NAN, |x| x.1);
        row(
            "batched sampling 4x8x128",
            batch_rate,
            "tok/s",
            batched32,
            "llama.cpp batched decode, 32 seq",
            f64::NAN,
        );
        row(
            "llama-server 4x8x128 via srlm",
            server_rate,
            "tok/s",
            batched32,
            "llama.cpp batched decode, 32 seq",
            f64::NAN,
        );
        row(
            "single-stream decode",
            single_rate,
            "tok/s",
            a.decode_128,
            "llama-bench -n 128",
            f64::NAN,
        );
        row(
            "prefill 256",
            prefill_rate,
            "tok/s",
            a.prefill_256,
            "llama-bench -p 256",
            f64::NAN,
        );
        if !batch_rate.is_nan() && !server_rate.is_nan() {
            println!(
                "srlm in-process / llama-server (same workload): {:.2}x",
                batch_rate / server_rate
            );
        }
    }
    row(
        "train fwd+bwd 2x256",
        train_rate,
        "tok/s",
        PYTORCH_TRAIN_TOKS,
        "PyTorch step",
        1.0,
    );
    row(
        "train GFLOP/s",
        train_gflops,
        "GFLOP/s",
        PYTORCH_TRAIN_GFLOPS,
        "PyTorch",
        1.0,
    );
    row(
        "train GFLOP/s vs GEMM",
        train_gflops,
        "GFLOP/s",
        GEMM_CEILING_GFLOPS,
        "sgemm ceiling",
        0.5,
    );
    println!(
        "batched / single-stream: {:.2}x; peak RSS {} MiB",
        batch_rate / single_rate,
        rss.map(|r| format!("{r:.0}")).unwrap_or_else(|| "?".into())
    );
    Ok(())
}
