//! DPO throughput on the default model (SmolLM2-135M-Instruct, f32, CPU): the figures of
//! `docs/benchmarks.md`, section "DPO training". Ignored by default (minutes of CPU); run
//!
//! ```sh
//! CARGO_TARGET_DIR=target-dpo cargo test --release -p srlm-dpo --test bench_dpo -- \
//!     --ignored --nocapture --test-threads 1 step_2x256     # or epoch_64_pairs
//! ```
//!
//! LoRA against full fine-tuning: `lora_vs_full_step_2x256` (also on a Q4_1 and a bf16 frozen
//! base), and `epoch_64_pairs` with `SRLM_BENCH_LORA=qv` or `all` (and `SRLM_BENCH_BASE=gguf`
//! or `bf16` for the base's form).
//!
//! Each test prints `BENCH` lines: seconds, tokens/s, pairs/s, GFLOP/s (model FLOPs 6·N per
//! trained token + 2·N per reference-only token, N = 134.5M parameters), the share of a
//! 340 GFLOP/s f32 GEMM ceiling, the ratio to PyTorch's 2.75 s/step anchor, and the process's
//! peak RSS (`VmHWM`). Environment: `SRLM_BENCH_STEPS` (default 5) for `step_2x256`.

use candle_core::Device;
use candle_nn::ParamsAdamW;
use srlm_dpo::*;
use srlm_model::target_logps;
use srlm_model::{LanguageModel, Mode};
use std::time::Instant;

/// The `srlm` binary's allocator and its setting (see `srlm_model::init_process`), so the
/// figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parameters of SmolLM2-135M (embedding tied with the LM head, counted once).
const N_PARAMS: f64 = 134.5e6;
/// OpenBLAS f32 sgemm ceiling measured on this machine (2 threads), FLOP/s.
const GEMM_CEILING: f64 = 340e9;
/// PyTorch 2.15 eager, 2 threads, f32: fwd+bwd+AdamW on 2 × 256 tokens, seconds per step.
const TORCH_STEP_S: f64 = 2.75;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `n` real token ids of ordinary English text (the content does not matter for speed).
fn filler(m: &LanguageModel, n: usize) -> Vec<u32> {
    let text = "The quick brown fox jumps over the lazy dog while the sea is wide and calm \
                today, and children walk to school along the river, counting boats and birds. ";
    let one = m.tokenizer.encode(text).unwrap();
    one.iter().copied().cycle().take(n).collect()
}

/// One pair whose chosen and rejected rows are exactly `len` tokens (`prompt` of them prompt).
/// The rejected response is the chosen one reversed: the same tokens and length, never
/// token-identical to it (the trainer drops such pairs; slices of the periodic filler could
/// be).
fn pair(m: &LanguageModel, id: &str, prompt: usize, len: usize, shift: usize) -> TokenizedPair {
    let all = filler(m, len + shift);
    let chosen = all[shift + prompt..shift + len].to_vec();
    TokenizedPair {
        id: id.into(),
        prompt_ids: all[shift..shift + prompt].to_vec(),
        rejected_ids: chosen.iter().rev().copied().collect(),
        chosen_ids: chosen,
    }
}

fn line(what: &str, secs: f64, trained_tokens: f64, ref_tokens: f64, pairs: f64) {
    let flops = 6.0 * N_PARAMS * trained_tokens + 2.0 * N_PARAMS * ref_tokens;
    println!(
        "BENCH {what}: {secs:.3} s, {:.1} trained tokens/s, {:.3} pairs/s, {:.1} GFLOP/s = {:.1}% \
         of the 340 GFLOP/s GEMM ceiling; peak RSS {:.0} MiB",
        trained_tokens / secs,
        pairs / secs,
        flops / secs / 1e9,
        100.0 * flops / secs / GEMM_CEILING,
        peak_rss_mib()
    );
}

/// One optimizer step on one pair of 2 × 256 tokens (prompt 64, responses 192), as PyTorch's
/// anchor: the trainer's own step time, and a breakdown (network forward, log-softmax +
/// gather, DPO loss, backward, AdamW).
#[test]
#[ignore = "benchmark: minutes of CPU; run with --ignored --nocapture"]
fn step_2x256() {
    let steps: u64 = std::env::var("SRLM_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let t = Instant::now();
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu).unwrap();
    println!(
        "BENCH load: {:.2} s, peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let p = pair(&m, "bench", 64, 256, 0);
    let batch = PairBatch::new(&[&p], &Device::Cpu).unwrap();
    assert_eq!(batch.ids.dims(), &[2, 256]);
    let cfg = DpoConfig {
        per_device_train_batch_size: 1,
        max_length: Some(256),
        max_prompt_length: Some(128),
        ..DpoConfig::default()
    };

    // Breakdown, by hand, `steps` times; report the median of each phase.
    let refs = reference_logps(&m, &batch).unwrap();
    let vars = m.trainable_vars();
    let mut opt = FusedAdamW::new(vars.clone(), ParamsAdamW::default()).unwrap();
    assert!(opt.is_fused());
    let mut phases: Vec<[f64; 6]> = Vec::new();
    for _ in 0..steps {
        let t0 = Instant::now();
        let logits = m.model.forward(&batch.ids, Mode::Train).unwrap();
        let t1 = Instant::now();
        let lp = target_logps(&logits, &batch.ids).unwrap();
        let _ = masked_sum(&lp, &batch.mask)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let t2 = Instant::now();
        drop((logits, lp));
        // The trainer's path: forward again inside the loss (graph kept for backward).
        let t3 = Instant::now();
        let out = dpo_batch_loss(&m, &batch, &refs, &cfg).unwrap();
        let t4 = Instant::now();
        let grads = out.loss.backward().unwrap();
        let t5 = Instant::now();
        let g: Vec<_> = vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect();
        drop(grads);
        opt.step(&g, 1.0, 1e-6).unwrap();
        let t6 = Instant::now();
        let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
        phases.push([
            s(t0, t1),
            s(t1, t2),
            s(t3, t4),
            s(t4, t5),
            s(t5, t6),
            s(t3, t6),
        ]);
    }
    let median = |k: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "BENCH breakdown (median of {steps}): network forward {:.3} s, log-softmax+gather {:.3} s, \
         loss forward (network+log-softmax, graph kept) {:.3} s, backward {:.3} s, AdamW (fused) {:.3} s, \
         step {:.3} s",
        median(0),
        median(1),
        median(2),
        median(3),
        median(4),
        median(5)
    );
    line("hand step 2x256 (median)", median(5), 512.0, 0.0, 1.0);

    // The trainer itself (reference precomputed first, not in the step times), with and
    // without gradient checkpointing.
    let policy = m.deep_copy().unwrap();
    drop(m);
    for ckpt in [false, true] {
        let s = train_dpo(
            &policy,
            None,
            std::slice::from_ref(&p),
            DpoConfig {
                max_steps: Some(steps),
                gradient_checkpointing: ckpt,
                ..cfg.clone()
            },
        )
        .unwrap();
        let mut secs: Vec<f64> = s
            .history
            .iter()
            .map(|h| h.tokens as f64 / h.tokens_per_second)
            .collect();
        println!("BENCH trainer step times (gradient_checkpointing = {ckpt}): {secs:.3?}");
        secs.sort_by(f64::total_cmp);
        let med = secs[secs.len() / 2];
        line(
            &format!("trainer step 2x256, gradient_checkpointing = {ckpt} (median)"),
            med,
            512.0,
            0.0,
            1.0,
        );
        println!(
            "BENCH vs PyTorch (2.75 s/step, 186 tokens/s): {:.2}x PyTorch's tokens/s",
            TORCH_STEP_S / med
        );
    }
}

/// The trainer's step on 2 × 256 tokens with full fine-tuning and with LoRA (r = 16, α = 32;
/// PEFT's default targets `q_proj v_proj`, and all seven projections), side by side in one
/// process: rounds of one step per setting, interleaved, so load drifts hit all three alike.
/// Prints each setting's median step and its ratio to full fine-tuning. Rounds:
/// `SRLM_BENCH_STEPS` (default 5).
#[test]
#[ignore = "benchmark: minutes of CPU; run with --ignored --nocapture"]
fn lora_vs_full_step_2x256() {
    let rounds: usize = std::env::var("SRLM_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu).unwrap();
    let p = pair(&m, "bench", 64, 256, 0);
    let base = DpoConfig {
        per_device_train_batch_size: 1,
        max_length: Some(256),
        max_prompt_length: Some(128),
        max_steps: Some(1),
        ..DpoConfig::default()
    };
    let lora = |targets: &[srlm_model::LoraTarget]| DpoConfig {
        use_peft: true,
        lora_r: 16,
        lora_alpha: 32,
        lora_target_modules: targets.iter().map(|t| t.name().to_string()).collect(),
        ..base.clone()
    };
    use srlm_model::LoraTarget::{QProj, VProj};
    // The frozen base's forms: f32, the GGUF's own Q4_1 blocks, bf16.
    let gguf = m.with_quantized_base().unwrap();
    let bf16 = m.with_base_dtype(srlm_model::DType::BF16).unwrap();
    let settings = [
        ("full fine-tuning", base.clone(), &m),
        ("LoRA r 16 q_proj v_proj", lora(&[QProj, VProj]), &m),
        (
            "LoRA r 16 all seven",
            lora(&srlm_model::LoraTarget::ALL),
            &m,
        ),
        (
            "LoRA r 16 q_proj v_proj, Q4_1 base",
            lora(&[QProj, VProj]),
            &gguf,
        ),
        (
            "LoRA r 16 q_proj v_proj, bf16 base",
            lora(&[QProj, VProj]),
            &bf16,
        ),
    ];
    // One policy per setting, kept across rounds (as a run's M_i is), stepped once per round.
    let policies: Vec<LanguageModel> = settings
        .iter()
        .map(|(_, c, parent)| initial_policy(parent, c).unwrap())
        .collect();
    let settings: Vec<(&str, DpoConfig)> =
        settings.iter().map(|(w, c, _)| (*w, c.clone())).collect();
    let mut secs = vec![Vec::new(); settings.len()];
    for _ in 0..rounds + 1 {
        for (i, ((_, c), policy)) in settings.iter().zip(&policies).enumerate() {
            let s = train_dpo(policy, None, std::slice::from_ref(&p), c.clone()).unwrap();
            let h = &s.history[0];
            secs[i].push(h.tokens as f64 / h.tokens_per_second);
        }
    }
    let median = |v: &[f64]| {
        // The first round warms caches and the allocator: left out.
        let mut v = v[1..].to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let full = median(&secs[0]);
    for ((what, _), v) in settings.iter().zip(&secs) {
        let med = median(v);
        println!(
            "BENCH {what}: trainer step 2x256 median {med:.3} s over {rounds} rounds {:.3?},              {:.2}x full fine-tuning's speed",
            &v[1..],
            full / med
        );
    }
}

/// One epoch over 64 pairs at the default config (2 pairs = 4 rows a step, gradient
/// checkpointing on), rows of 160 to 256 tokens (prompt 48–96, responses to fill), reference
/// log-probs precomputed first: the wall time of the whole `train` call, and its throughput.
#[test]
#[ignore = "benchmark: minutes of CPU; run with --ignored --nocapture"]
fn epoch_64_pairs() {
    epoch(true);
}

/// As [`epoch_64_pairs`], with `gradient_checkpointing = false` (every activation kept).
#[test]
#[ignore = "benchmark: minutes of CPU; run with --ignored --nocapture"]
fn epoch_64_pairs_without_checkpointing() {
    epoch(false);
}

fn epoch(gradient_checkpointing: bool) {
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu).unwrap();
    // `SRLM_BENCH_LORA=qv` or `all`: LoRA r 16, α 32 on PEFT's default targets or on all seven
    // projections, instead of full fine-tuning. Peak RSS then counts the base once.
    let lora = std::env::var("SRLM_BENCH_LORA").unwrap_or_default();
    let targets: Vec<String> = match lora.as_str() {
        "" => Vec::new(),
        "qv" => vec!["q_proj".into(), "v_proj".into()],
        "all" => srlm_model::LoraTarget::ALL
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        other => panic!("SRLM_BENCH_LORA={other}: expected qv or all"),
    };
    let pairs: Vec<TokenizedPair> = (0..64)
        .map(|i| {
            pair(
                &m,
                &format!("p{i}"),
                48 + (i * 7) % 49,
                160 + (i * 37) % 97,
                i,
            )
        })
        .collect();
    let tokens: usize = pairs
        .iter()
        .map(|p| 2 * p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len())
        .sum();
    let mut cfg = DpoConfig {
        max_length: Some(256),
        max_prompt_length: Some(128),
        gradient_checkpointing,
        ..DpoConfig::default()
    };
    // `SRLM_BENCH_BASE=gguf` or `bf16` (with LoRA): the frozen base in the GGUF's own Q4_1
    // blocks, or in bf16, instead of f32.
    // (Taken by value: the f32 model is dropped, as a run drops it after converting M0.)
    let frozen = |m: LanguageModel, form| m.frozen_base(form).unwrap();
    let m = match std::env::var("SRLM_BENCH_BASE")
        .unwrap_or_default()
        .as_str()
    {
        "" => m,
        "gguf" => frozen(m, srlm_model::FrozenBase::Exact),
        "bf16" => frozen(m, srlm_model::FrozenBase::Bf16),
        other => panic!("SRLM_BENCH_BASE={other}: expected gguf or bf16"),
    };
    let policy = if targets.is_empty() {
        m
    } else {
        cfg.use_peft = true;
        cfg.lora_r = 16;
        cfg.lora_alpha = 32;
        cfg.lora_target_modules = targets;
        initial_policy(&m, &cfg).unwrap()
    };
    let s = train_dpo(&policy, None, &pairs, cfg).unwrap();
    assert_eq!(s.steps, 32, "{:?}", s.filter);
    assert_eq!(s.tokens_trained as usize, tokens);
    println!(
        "BENCH epoch: {} pairs, {} steps, {} trained tokens, {} reference tokens, wall {:.1} s",
        s.filter.kept, s.steps, s.tokens_trained, s.reference_tokens, s.wall_time_s
    );
    line(
        &format!(
            "epoch 64 pairs{}{} (whole call)",
            if gradient_checkpointing {
                ", gradient checkpointing"
            } else {
                ""
            },
            if lora.is_empty() {
                String::new()
            } else {
                format!(", LoRA r 16 {lora}")
            }
        ),
        s.wall_time_s,
        s.tokens_trained as f64,
        s.reference_tokens as f64,
        64.0,
    );
}

/// Same token count, different row counts: fwd+bwd of `sum(token_logps)` for `[1, 148]`,
/// `[4, 37]` and `[8, 19]` ids. If the cost grows with rows at a fixed token count, it is the
/// per-row weight gradients of broadcast matmuls (`Linear` on 3-D input, the LM head).
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn rows_vs_tokens() {
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu).unwrap();
    for (rows, len) in [(1usize, 148usize), (4, 37), (8, 19), (1, 148)] {
        let ids = filler(&m, rows * len);
        let ids = candle_core::Tensor::from_vec(ids, (rows, len), &Device::Cpu).unwrap();
        let t0 = Instant::now();
        let lp = m.token_logps(&ids).unwrap().sum_all().unwrap();
        let t1 = Instant::now();
        let g = lp.backward().unwrap();
        let t2 = Instant::now();
        drop(g);
        println!(
            "BENCH rows {rows} x {len}: forward {:.3} s, backward {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64()
        );
    }
}

/// The token-independent part of the backward: one LM-head-sized weight `[49152, 576]` (28M)
/// applied to `[2, 74, 576]` activations, three ways: candle-nn `Linear` on 3-D input (weight
/// broadcast over the batch, then transposed), `broadcast_matmul(w.t())` (srlm-model's LM head),
/// and `w.matmul(x2.t()).t()` with x flattened to 2-D (the weight enters the graph as is).
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn weight_side_views_in_backward() {
    use candle_core::{Module, Tensor, Var};
    let d = Device::Cpu;
    let w = Var::randn(0f32, 0.02, (49152, 576), &d).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 74, 576), &d).unwrap();
    for round in 0..2 {
        for way in ["linear-3d", "broadcast_matmul", "w-matmul-x2t"] {
            let t0 = Instant::now();
            let y = match way {
                "linear-3d" => candle_nn::Linear::new(w.as_tensor().clone(), None)
                    .forward(&x)
                    .unwrap(),
                "broadcast_matmul" => x.broadcast_matmul(&w.as_tensor().t().unwrap()).unwrap(),
                _ => w
                    .as_tensor()
                    .matmul(&x.reshape((148, 576)).unwrap().t().unwrap())
                    .unwrap()
                    .t()
                    .unwrap()
                    .reshape((2, 74, 49152))
                    .unwrap(),
            };
            let loss = y.sqr().unwrap().sum_all().unwrap();
            let t1 = Instant::now();
            let g = loss.backward().unwrap();
            let gw = g.get(w.as_tensor()).unwrap().sum_all().unwrap();
            let t2 = Instant::now();
            println!(
                "BENCH round {round} {way}: forward {:.3} s, backward {:.3} s (grad sum {:.3})",
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                gw.to_scalar::<f32>().unwrap()
            );
        }
    }
}
