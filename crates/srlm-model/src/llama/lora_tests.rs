//! Tests of LoRA models: a fresh adapter changes nothing (B = 0), an adapter computes what its
//! merged weights compute on every path (fused and composed training, inference, KV cache),
//! the adapters' gradients are the chain rule of the merged weight's gradient
//! (dA = s·Bᵀ·dW, dB = s·dW·Aᵀ), only A and B are trainable, gradient checkpointing changes no
//! gradient, and copies share the base.

use super::*;
use crate::lora::{LoraConfig, LoraTarget};
use std::collections::HashMap;

fn all_targets() -> LoraConfig {
    LoraConfig::new(4, 8.0, &LoraTarget::ALL).unwrap()
}

/// A LoRA model whose B is random too (a fresh one has B = 0 and shows nothing).
fn trained_lora(base: &Llama, config: &LoraConfig, seed: u64) -> Llama {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let fresh = base.with_lora(config, seed).unwrap();
    let tensors: HashMap<String, Tensor> = fresh
        .named_vars()
        .into_iter()
        .map(|(n, v)| {
            let dims = v.dims().to_vec();
            let count: usize = dims.iter().product();
            let data: Vec<f32> = (0..count).map(|_| rng.gen_range(-0.3f32..0.3)).collect();
            (n, Tensor::from_vec(data, dims, &Device::Cpu).unwrap())
        })
        .collect();
    base.with_adapter(config, tensors).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

fn ids() -> Tensor {
    let v: Vec<u32> = (0..60u32).map(|i| (i * 29 + 3) % 64).collect();
    Tensor::from_vec(v, (2, 30), &Device::Cpu).unwrap()
}

#[test]
fn a_fresh_adapter_changes_nothing_and_only_a_and_b_train() {
    let base = Llama::random(LlamaConfig::tiny(), 3, &Device::Cpu).unwrap();
    let config = LoraConfig::new(8, 16.0, &[LoraTarget::QProj, LoraTarget::VProj]).unwrap();
    let lora = base.with_lora(&config, 42).unwrap();
    let (a, b) = (
        base.forward(&ids(), Mode::Train).unwrap(),
        lora.forward(&ids(), Mode::Train).unwrap(),
    );
    assert_eq!(max_diff(&a, &b), 0.0, "B = 0: the same logits exactly");
    let names: Vec<String> = lora.named_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2 * 2 * 2, "2 layers × 2 targets × (A, B)");
    assert_eq!(names[0], "model.layers.0.self_attn.q_proj.lora_A.weight");
    for (n, v) in lora.named_vars() {
        let vals = v
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        if n.ends_with("lora_B.weight") {
            assert!(vals.iter().all(|&x| x == 0.0), "{n}: B starts at 0");
        } else {
            // PEFT's kaiming_uniform_(a = √5): U(−1/√in, 1/√in), in = hidden 32.
            let bound = 1.0 / 32f32.sqrt();
            assert!(vals.iter().all(|x| x.abs() <= bound), "{n}");
            assert!(vals.iter().any(|x| x.abs() > bound / 2.0), "{n}: spread");
            assert_eq!(v.dims(), &[8, 32]);
        }
    }
    // Same seed, same adapter; another seed, another.
    let again = base.with_lora(&config, 42).unwrap();
    let other = base.with_lora(&config, 43).unwrap();
    let first = |m: &Llama| {
        m.vars()[0]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(first(&lora), first(&again));
    assert_ne!(first(&lora), first(&other));
    assert!(lora.with_lora(&config, 1).is_err(), "one adapter per model");
}

#[test]
fn an_adapter_computes_what_its_merged_weights_compute_on_every_path() {
    let mut cfg = LlamaConfig::tiny();
    cfg.attention_bias = true;
    cfg.tie_word_embeddings = false;
    let base = Llama::random(cfg, 5, &Device::Cpu).unwrap();
    let lora = trained_lora(&base, &all_targets(), 9);
    let merged = lora.merged().unwrap();
    let reference = merged.forward(&ids(), Mode::Train).unwrap();
    assert!(max_diff(&reference, &base.forward(&ids(), Mode::Train).unwrap()) > 1e-2);
    let mut composed = lora.deep_copy().unwrap();
    composed.set_fused_kernels(false);
    for (what, m, mode) in [
        ("fused training", &lora, Mode::Train),
        ("composed training", &composed, Mode::Train),
        ("inference", &lora, Mode::Infer),
    ] {
        let d = max_diff(&m.forward(&ids(), mode).unwrap(), &reference);
        assert!(d < 1e-4, "{what}: {d}");
    }
    // KV-cached decoding, one token at a time (the skinny path), against the full forward.
    let row = ids().narrow(0, 0, 1).unwrap();
    let mut cache = KvCache::default();
    let mut last = None;
    for t in 0..30 {
        let h = lora
            .forward_cached(&row.narrow(1, t, 1).unwrap(), &[0], &mut cache)
            .unwrap();
        last = Some(lora.lm_head(&h).unwrap());
    }
    let full = reference.narrow(0, 0, 1).unwrap().narrow(1, 29, 1).unwrap();
    let d = max_diff(&last.unwrap(), &full);
    assert!(d < 1e-4, "KV cache: {d}");
}

#[test]
fn adapter_gradients_are_the_chain_rule_of_the_merged_weight_gradient() {
    let base = Llama::random(LlamaConfig::tiny(), 7, &Device::Cpu).unwrap();
    let config = all_targets();
    let lora = trained_lora(&base, &config, 11);
    let merged = lora.merged().unwrap();
    let loss = |m: &Llama| {
        m.token_logps(&ids(), Mode::Train)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let g_merged = merged.backward(&loss(&merged)).unwrap();
    let merged_vars: HashMap<String, Var> = merged.named_vars().into_iter().collect();
    let run = |ckpt: Checkpointing| {
        lora.set_gradient_checkpointing(ckpt);
        let g = lora.backward(&loss(&lora)).unwrap();
        lora.named_vars()
            .into_iter()
            .map(|(n, v)| {
                let t = g
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("no gradient for {n} ({ckpt:?})"))
                    .clone();
                (n, t)
            })
            .collect::<HashMap<_, _>>()
    };
    let g = run(Checkpointing::Off);
    let s = config.scale();
    let vars: HashMap<String, Var> = lora.named_vars().into_iter().collect();
    for t in LoraTarget::ALL {
        let path = t.module_path(1);
        let dw = g_merged
            .get(merged_vars[&format!("{path}.weight")].as_tensor())
            .unwrap();
        let a = vars[&format!("{path}.lora_A.weight")].as_tensor();
        let b = vars[&format!("{path}.lora_B.weight")].as_tensor();
        let da = (b.t().unwrap().matmul(dw).unwrap() * s).unwrap();
        let db = (dw.matmul(&a.t().unwrap()).unwrap() * s).unwrap();
        let tol = |x: &Tensor| 1e-4 * max_abs(x).max(1e-2);
        let ga = &g[&format!("{path}.lora_A.weight")];
        let gb = &g[&format!("{path}.lora_B.weight")];
        assert!(
            max_diff(ga, &da) <= tol(&da),
            "{path} dA: {}",
            max_diff(ga, &da)
        );
        assert!(
            max_diff(gb, &db) <= tol(&db),
            "{path} dB: {}",
            max_diff(gb, &db)
        );
    }
    for what in [Checkpointing::Attention, Checkpointing::Blocks] {
        let gc = run(what);
        for (n, a) in &g {
            assert!(max_diff(a, &gc[n]) <= 1e-6, "{what:?} {n}");
        }
    }
    lora.set_gradient_checkpointing(Checkpointing::Off);
}

/// The address of a tensor's storage: equal for tensors that share their bytes.
fn storage_addr(t: &Tensor) -> usize {
    let (s, _) = t.storage_and_layout();
    &*s as *const candle_core::Storage as usize
}

#[test]
fn copies_share_the_base_and_own_their_adapter() {
    let base = Llama::random(LlamaConfig::tiny(), 3, &Device::Cpu).unwrap();
    let lora = trained_lora(&base, &all_targets(), 2);
    let copy = lora.deep_copy().unwrap();
    for m in [&lora, &copy] {
        assert_eq!(storage_addr(&m.embed), storage_addr(&base.embed));
        assert_eq!(
            storage_addr(&m.blocks[1].down.weight),
            storage_addr(&base.blocks[1].down.weight)
        );
    }
    let (a, b) = (&lora.vars()[0], &copy.vars()[0]);
    assert_ne!(storage_addr(a.as_tensor()), storage_addr(b.as_tensor()));
    assert_eq!(
        max_diff(
            &lora.forward(&ids(), Mode::Train).unwrap(),
            &copy.forward(&ids(), Mode::Train).unwrap()
        ),
        0.0
    );
}

/// Checks that `narrowed` (a frozen base in another form) with an adapter computes and trains
/// what `rounded` (an f32 model of exactly the narrowed weights) does with the same adapter,
/// on every path, within `tol`.
fn check_base_form(narrowed: &Llama, rounded: &Llama, tol: f32) {
    assert!(narrowed.vars().is_empty() && narrowed.base_frozen());
    let config = all_targets();
    let lora_n = trained_lora(narrowed, &config, 9);
    let adapter: HashMap<String, Tensor> = lora_n
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().copy().unwrap()))
        .collect();
    let lora_r = rounded.with_adapter(&config, adapter).unwrap();
    let composed = |m: &Llama| {
        let mut c = m.deep_copy().unwrap();
        c.set_fused_kernels(false);
        c
    };
    for (what, m, r, mode) in [
        ("fused training", &lora_n, &lora_r, Mode::Train),
        (
            "composed training",
            &composed(&lora_n),
            &composed(&lora_r),
            Mode::Train,
        ),
        ("inference", &lora_n, &lora_r, Mode::Infer),
        ("the base alone, inference", narrowed, rounded, Mode::Infer),
    ] {
        let want = r.forward(&ids(), mode).unwrap();
        let d = max_diff(&m.forward(&ids(), mode).unwrap(), &want);
        assert!(d <= tol, "{what}: {d}");
    }
    // KV-cached decoding (the skinny kernels) against the same decoding on the f32 model.
    let row = ids().narrow(0, 0, 1).unwrap();
    let decode = |m: &Llama| {
        let mut cache = KvCache::default();
        let mut last = None;
        for t in 0..30 {
            let h = m
                .forward_cached(&row.narrow(1, t, 1).unwrap(), &[0], &mut cache)
                .unwrap();
            last = Some(m.lm_head_infer(&h.squeeze(1).unwrap()).unwrap());
        }
        last.unwrap()
    };
    let d = max_diff(&decode(&lora_n), &decode(&lora_r));
    assert!(d <= tol, "KV cache: {d}");
    // The adapters' gradients, with and without gradient checkpointing.
    let loss = |m: &Llama| {
        m.token_logps(&ids(), Mode::Train)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = |m: &Llama, ckpt: Checkpointing| {
        m.set_gradient_checkpointing(ckpt);
        let g = m.backward(&loss(m)).unwrap();
        m.set_gradient_checkpointing(Checkpointing::Off);
        m.named_vars()
            .into_iter()
            .map(|(n, v)| (n, g.get(v.as_tensor()).unwrap().clone()))
            .collect::<HashMap<_, _>>()
    };
    let want = grads(&lora_r, Checkpointing::Off);
    for ckpt in [Checkpointing::Off, Checkpointing::Blocks] {
        let got = grads(&lora_n, ckpt);
        assert_eq!(got.len(), want.len());
        for (n, w) in &want {
            let d = max_diff(&got[n], w);
            assert!(d <= tol * max_abs(w).max(1e-2) * 1e2, "{ckpt:?} {n}: {d}");
        }
    }
    // One base in memory: adapters, copies and a copy of the frozen base share it.
    let copy = lora_n.deep_copy().unwrap();
    for m in [&lora_n, &copy, &narrowed.deep_copy().unwrap()] {
        assert_eq!(storage_addr(&m.lm_head), storage_addr(&narrowed.lm_head));
        let (a, b) = (&m.blocks[1].down, &narrowed.blocks[1].down);
        match (&a.quantized, &b.quantized) {
            (Some(x), Some(y)) => assert!(std::sync::Arc::ptr_eq(x, y)),
            _ => assert_eq!(storage_addr(&a.weight), storage_addr(&b.weight)),
        }
    }
    // A merge is an f32 model with trainable weights.
    let merged = lora_n.merged().unwrap();
    assert_eq!(merged.base_dtype(), DType::F32);
    assert!(!merged.vars().is_empty() && !merged.base_frozen());
    assert!(lora_n.with_base_dtype(DType::BF16).is_err());
}

#[test]
fn a_bf16_base_computes_and_trains_what_its_rounded_weights_do_and_is_shared() {
    let mut cfg = LlamaConfig::tiny();
    cfg.attention_bias = true;
    cfg.tie_word_embeddings = false;
    let base = Llama::random(cfg.clone(), 5, &Device::Cpu).unwrap();
    let bf16 = base.with_base_dtype(DType::BF16).unwrap();
    assert_eq!(bf16.base_dtype(), DType::BF16);
    assert_eq!(bf16.blocks[0].gate.weight.dtype(), DType::BF16);
    assert_eq!(bf16.norm.dtype(), DType::F32, "norms stay f32");
    // The f32 model of exactly the weights the bf16 base holds (widening bf16 is exact).
    let rounded = Llama::from_tensors(cfg, bf16.named_tensors().unwrap(), &Device::Cpu).unwrap();
    let rounding = max_diff(&rounded.embed, &base.embed);
    assert!(
        rounding > 0.0 && rounding < 1e-3,
        "bf16 rounding: {rounding}"
    );
    check_base_form(&bf16, &rounded, 1e-4);
    assert!(base.with_base_dtype(DType::F16).is_err());
    // Tied embeddings stay one tensor.
    let tied = Llama::random(LlamaConfig::tiny(), 3, &Device::Cpu)
        .unwrap()
        .with_base_dtype(DType::BF16)
        .unwrap();
    assert!(tied.cfg.tie_word_embeddings);
    assert_eq!(storage_addr(&tied.embed), storage_addr(&tied.lm_head));
}

#[test]
fn a_quantized_base_computes_and_trains_exactly_what_its_dequantized_weights_do() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let mut cfg = LlamaConfig::tiny();
    cfg.intermediate_size = 64; // Q4_1 rows are whole blocks of 32
    let base = Llama::random(cfg.clone(), 5, &Device::Cpu).unwrap();
    let mut quantized = HashMap::new();
    let mut dequantized = base.named_tensors().unwrap();
    for i in 0..cfg.num_hidden_layers {
        for t in LoraTarget::ALL {
            let name = format!("{}.weight", t.module_path(i));
            let q = QTensor::quantize(&dequantized[&name], GgmlDType::Q4_1).unwrap();
            let q = std::sync::Arc::new(crate::quant::QWeight::new(q).unwrap());
            dequantized.insert(name.clone(), q.dequantize().unwrap());
            quantized.insert(name, q);
        }
    }
    // The f32 model of the dequantized values (what srlm loads from a Q4_1 GGUF) and the same
    // model with its projections kept in blocks.
    let rounded = Llama::from_tensors(cfg, dequantized, &Device::Cpu).unwrap();
    let q = rounded.with_quantized_base(quantized.clone()).unwrap();
    assert!(q.blocks[0].attn.q.quantized.is_some());
    assert!(q.base_size_in_bytes() < rounded.base_size_in_bytes());
    check_base_form(&q, &rounded, 0.0);
    // A projection missing or of another shape is named.
    let mut missing = quantized.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    let e = rounded
        .with_quantized_base(missing)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.layers.1.mlp.up_proj.weight"), "{e}");
}
