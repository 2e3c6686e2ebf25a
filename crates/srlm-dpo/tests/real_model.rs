//! DPO on real Llama-family models through srlm-model.
//!
//! - On the default model (SmolLM2-135M-Instruct, fetched on first use, loaded once per test
//!   binary): tokenization of PyTorch's fixture pairs (cases T3/T4), response log-probs equal to
//!   PyTorch's (`tests/fixtures/smollm2-torch-logps.json`), the step-0 loss ln 2 with zero
//!   rewards (case D4), and a short training run that raises `rewards/margins` on held-in pairs,
//!   with a checkpoint that reloads to the same log-probs.
//! - On a tiny random Llama (`Llama::random`): 8 fixed pairs reach `rewards/accuracies` = 1 and
//!   a positive margin within a bounded number of steps.
//!
//! Case ids are defined in `tests/fixtures/cases.md`; the fixture's provenance is in
//! `tests/fixtures/README.md`.

use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use srlm_core::PreferencePair;
use srlm_dpo::*;
use srlm_model::target_logps;
use srlm_model::{LanguageModel, Llama, LlamaConfig, Mode};
use std::path::Path;
use std::sync::OnceLock;

const LN2: f64 = std::f64::consts::LN_2;

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The default model, loaded once per test binary. Tests that train use `deep_copy()`.
fn model() -> &'static LanguageModel {
    static M: OnceLock<LanguageModel> = OnceLock::new();
    M.get_or_init(|| {
        // As `srlm train-dpo` does: one thread for candle's elementwise ops (its spin-barrier
        // pool dominates a training step on a busy 2-core machine; docs/benchmarks.md).
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
        LanguageModel::load("default", &Device::Cpu).expect("default model loads")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The fixture's 4 pairs as srlm pairs (ids `torch-0` …) and the fixture records.
fn fixture_pairs() -> (Vec<PreferencePair>, Vec<Value>) {
    let f = fixture("smollm2-torch-logps.json");
    let recs = f["pairs"].as_array().unwrap().clone();
    let pairs = recs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            PreferencePair::from_texts(
                format!("torch-{i}"),
                p["prompt"].as_str().unwrap(),
                p["chosen"].as_str().unwrap(),
                p["rejected"].as_str().unwrap(),
            )
        })
        .collect();
    (pairs, recs)
}

fn batch_of(pairs: &[TokenizedPair]) -> PairBatch {
    let refs: Vec<&TokenizedPair> = pairs.iter().collect();
    PairBatch::new(&refs, &Device::Cpu).unwrap()
}

/// Cases T3/T4: `tokenize_pairs` gives exactly the ids PyTorch's fixture was computed on
/// (template split, prompt and response encoded separately, `<|im_end|>\n` ending every
/// response), and sampled ids are used as sampled (end-of-turn suffix completed).
#[test]
fn tokenize_pairs_matches_fixture_ids_and_uses_sampled_ids() {
    let m = model();
    let (pairs, recs) = fixture_pairs();
    let out = tokenize_pairs(m, &pairs).unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(out.pairs.len(), 4);
    for (t, r) in out.pairs.iter().zip(&recs) {
        assert_eq!(t.prompt_ids, ids(&r["prompt_ids"]), "{}", t.id);
        assert_eq!(t.chosen_ids, ids(&r["chosen_ids"]), "{}", t.id);
        assert_eq!(t.rejected_ids, ids(&r["rejected_ids"]), "{}", t.id);
    }
    // Sampled ids: "Hi!" sampled as [26843, 17] ending with <|im_end|> (2), or cut before it;
    // both become the template's response [26843, 17, 2, 198]. The text field is ignored then.
    let mut p = PreferencePair::from_texts("s", "Say hi.", "ignored", "ignored too");
    p.chosen_token_ids = Some(vec![26843, 17, 2]);
    p.rejected_token_ids = Some(vec![5230, 30]);
    let t = tokenize_pair(m, &p).unwrap();
    assert_eq!(t.prompt_ids, ids(&recs[0]["prompt_ids"]));
    assert_eq!(t.chosen_ids, vec![26843, 17, 2, 198]);
    assert_eq!(t.rejected_ids, vec![5230, 30, 2, 198]);
}

/// The policy's log-probs, summed over response tokens, equal PyTorch's `logps/chosen` and
/// `logps/rejected` within 0.05 (all four pairs in one right-padded batch).
#[test]
fn policy_logps_match_pytorch() {
    let m = model();
    let (pairs, recs) = fixture_pairs();
    let data = tokenize_pairs(m, &pairs).unwrap().pairs;
    let batch = batch_of(&data);
    let sums = sequence_logps(m, &batch).unwrap().to_vec1::<f32>().unwrap();
    // The model's own `sequence_logps` (LM head on response positions only) equals the
    // trait's default, the masked sum of every position's log-prob.
    let all = masked_sum(&m.token_logps(&batch.ids).unwrap(), &batch.mask)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (a, b) in sums.iter().zip(&all) {
        assert!(
            (a - b).abs() < 1e-3,
            "response-only {a} vs all positions {b}"
        );
    }
    let b = data.len();
    for (i, r) in recs.iter().enumerate() {
        for (side, got) in [("chosen", sums[i]), ("rejected", sums[b + i])] {
            let want = r[format!("logps/{side}")].as_f64().unwrap();
            assert!(
                (got as f64 - want).abs() < 0.05,
                "pair {i} {side}: srlm {got} vs torch {want}"
            );
        }
    }
}

/// Case D4 on the real model: reference = the policy (precomputed, detached). Two reference
/// passes are bit-identical, the loss is ln 2 within 1e-4, every reward is 0, the gradient is
/// finite and non-zero; and the trainer's first logged step (different batch composition and
/// padding than the precomputation) also reports ln 2 within 1e-4.
#[test]
fn d4_step0_is_ln2_on_pytorch_fixture_pairs() {
    let m = model();
    let (pairs, _) = fixture_pairs();
    let data = tokenize_pairs(m, &pairs).unwrap().pairs;
    let batch = batch_of(&data);
    let r1 = reference_logps(m, &batch).unwrap();
    let r2 = reference_logps(m, &batch).unwrap();
    let bits = |r: &[RefLogps]| -> Vec<(u32, u32)> {
        r.iter()
            .map(|x| (x.chosen.to_bits(), x.rejected.to_bits()))
            .collect()
    };
    assert_eq!(bits(&r1), bits(&r2), "reference passes differ");
    let cfg = DpoConfig::default();
    let out = dpo_batch_loss(m, &batch, &r1, &cfg).unwrap();
    let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!((loss - LN2).abs() < 1e-4, "step-0 loss {loss}");
    for r in out.chosen_rewards.iter().chain(&out.rejected_rewards) {
        assert!(r.abs() < 1e-6, "reward {r} at step 0");
    }
    let grads = out.loss.backward().unwrap();
    let vars = m.trainable_vars();
    let norm = global_grad_norm(vars.iter().filter_map(|v| grads.get(v.as_tensor()))).unwrap();
    assert!(norm.is_finite() && norm > 0.0, "grad norm {norm}");

    // Through the trainer (batch 2, shuffled): lr 0 leaves the weights as they were.
    let copy = m.deep_copy().unwrap();
    let cfg = DpoConfig {
        learning_rate: 0.0,
        max_steps: Some(1),
        ..DpoConfig::default()
    };
    let s = train_dpo(&copy, None, &data, cfg).unwrap();
    let first = &s.history[0];
    assert!(
        (first.loss - LN2).abs() < 1e-4,
        "first logged loss {}",
        first.loss
    );
    assert!(
        first.rewards_margins.abs() < 1e-4,
        "{}",
        first.rewards_margins
    );
}

/// 16 pairs where the chosen answer is right and the rejected one is wrong or off-topic.
fn sixteen_pairs() -> Vec<PreferencePair> {
    let raw: [(&str, &str, &str); 16] = [
        ("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5."),
        ("What is the capital of France?", "Paris.", "Berlin."),
        ("Name a primary color.", "Red.", "Green tea."),
        ("What do bees make?", "Honey.", "Cheese."),
        ("How many legs does a spider have?", "Eight.", "Three."),
        ("What is frozen water called?", "Ice.", "Steam."),
        ("Which planet do we live on?", "Earth.", "The Sun."),
        ("What color is the sky on a clear day?", "Blue.", "Plaid."),
        ("Say hello in French.", "Bonjour.", "Goodbye."),
        ("What is 10 divided by 2?", "5.", "20."),
        ("What animal says meow?", "A cat.", "A cow."),
        ("What is the opposite of hot?", "Cold.", "Hotter."),
        ("How many days are in a week?", "Seven.", "Twelve."),
        (
            "What do plants need to grow?",
            "Water and sunlight.",
            "Nothing at all.",
        ),
        (
            "What is the largest ocean?",
            "The Pacific Ocean.",
            "Lake Geneva.",
        ),
        ("Spell the word cat.", "C-A-T.", "D-O-G."),
    ];
    raw.iter()
        .enumerate()
        .map(|(i, (p, c, r))| PreferencePair::from_texts(format!("q{i}"), *p, *c, *r))
        .collect()
}

/// Per-pair implicit reward margins `β·((π_c − ref_c) − (π_r − ref_r))` of `policy` over `data`.
fn margins(
    policy: &dyn PolicyModel,
    data: &[TokenizedPair],
    refs: &[RefLogps],
    beta: f64,
) -> Vec<f64> {
    let batch = batch_of(data);
    let s = sequence_logps(policy, &batch)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = data.len();
    (0..b)
        .map(|i| beta * ((s[i] - refs[i].chosen) as f64 - (s[b + i] - refs[i].rejected) as f64))
        .collect()
}

/// It learns on the real model: 16 pairs, 2 epochs at batch 4 (8 AdamW steps, lr 1e-5,
/// constant) raise the mean margin over the 16 pairs from 0 to clearly positive, with most
/// pairs ranked right; the logged losses are finite and start at ln 2. The checkpoint written
/// at the end reloads to the same log-probs.
#[test]
fn short_run_on_real_model_raises_margins_and_checkpoint_reloads() {
    let m = model();
    let data = tokenize_pairs(m, &sixteen_pairs()).unwrap().pairs;
    let refs = reference_logps(m, &batch_of(&data)).unwrap();
    let policy = m.deep_copy().unwrap();
    let cfg = DpoConfig {
        learning_rate: 1e-5,
        lr_scheduler_type: LrSchedulerType::Constant,
        per_device_train_batch_size: 4,
        num_train_epochs: 2,
        ..DpoConfig::default()
    };
    let beta = cfg.beta;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let log = dir.path().join("ck.dpo_log.jsonl");
    let s = DpoTrainer::new(cfg)
        .unwrap()
        .with_metrics(MetricsWriter::append(&log).unwrap())
        .with_checkpoint_dir(&ck)
        .train(&policy, &data)
        .unwrap();
    assert_eq!(s.steps, 8);
    assert!(
        (s.history[0].loss - LN2).abs() < 1e-3,
        "{}",
        s.history[0].loss
    );
    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 8);
    assert!(logged
        .iter()
        .all(|v| v["loss"].as_f64().unwrap().is_finite()));

    let after = margins(&policy, &data, &refs, beta);
    let mean = after.iter().sum::<f64>() / after.len() as f64;
    let right = after.iter().filter(|x| **x > 0.0).count();
    eprintln!(
        "real model, 16 pairs, 8 steps at lr 1e-5: mean margin 0 -> \
         {mean:.4}, {right}/16 \
         pairs ranked right; logged margins {:?}",
        s.history
            .iter()
            .map(|h| (h.rewards_margins * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    assert!(mean > 0.05, "mean margin after training {mean}");
    assert!(right >= 12, "only {right}/16 pairs ranked right: {after:?}");

    // The checkpoint is an HF directory srlm-model loads, with the trained weights.
    let names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} missing in {names:?}");
    }
    let reloaded = LanguageModel::load(ck.to_str().unwrap(), &Device::Cpu).unwrap();
    let again = margins(&reloaded, &data, &refs, beta);
    for (a, b) in after.iter().zip(&again) {
        assert!((a - b).abs() < 1e-4, "reloaded margin {b} vs trained {a}");
    }
}

/// LoRA on the real model (r = 16, α = 32, all seven projections, lr 2e-4): the first loss is
/// ln 2 exactly (B = 0), only the adapters train (the shared base model's log-probs do not
/// move), the margins rise, and the checkpoint is a PEFT adapter (no full weights) that
/// reloads through its `base_model_name_or_path` to the same margins.
#[test]
fn lora_on_real_model_starts_at_ln2_raises_margins_and_saves_a_peft_adapter() {
    let m = model();
    let data = tokenize_pairs(m, &sixteen_pairs()).unwrap().pairs;
    let refs = reference_logps(m, &batch_of(&data)).unwrap();
    let cfg = DpoConfig {
        learning_rate: 2e-4,
        lr_scheduler_type: LrSchedulerType::Constant,
        per_device_train_batch_size: 4,
        num_train_epochs: 2,
        use_peft: true,
        lora_r: 16,
        lora_alpha: 32,
        lora_target_modules: srlm_model::LoraTarget::ALL
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        ..DpoConfig::default()
    };
    let policy = initial_policy(m, &cfg).unwrap();
    // 30 layers × 7 projections × (A, B).
    assert_eq!(policy.model.vars().len(), 30 * 7 * 2);
    let beta = cfg.beta;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let s = DpoTrainer::new(cfg.clone())
        .unwrap()
        .with_checkpoint_dir(&ck)
        .train(&policy, &data)
        .unwrap();
    assert_eq!(s.steps, 8);
    assert!(
        (s.history[0].loss - LN2).abs() < 1e-6,
        "{}",
        s.history[0].loss
    );
    assert_eq!(s.history[0].rewards_margins, 0.0);
    let after = margins(&policy, &data, &refs, beta);
    let mean = after.iter().sum::<f64>() / after.len() as f64;
    let right = after.iter().filter(|x| **x > 0.0).count();
    eprintln!(
        "real model, LoRA r 16 all-linear, 16 pairs, 8 steps at lr 2e-4: mean margin 0 -> \
         {mean:.4}, {right}/16 pairs ranked right; logged margins {:?}",
        s.history
            .iter()
            .map(|h| (h.rewards_margins * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    assert!(mean > 0.05, "mean margin after training {mean}");
    assert!(right >= 12, "only {right}/16 pairs ranked right: {after:?}");
    // The base (shared with `m`) did not move: `m`'s own margins are still 0.
    let base = margins(m, &data, &refs, beta);
    assert!(base.iter().all(|x| x.abs() < 1e-6), "{base:?}");

    let mut names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "generation_config.json",
            "srlm.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    let st =
        candle_core::safetensors::load(ck.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let a = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    let b = &st["base_model.model.model.layers.29.mlp.down_proj.lora_B.weight"];
    assert_eq!((a.dims(), b.dims()), (&[16, 576][..], &[576, 16][..]));
    let info = srlm_model::read_adapter_config(&ck).unwrap();
    assert_eq!(info.base_model.as_deref(), Some(m.origin.as_str()));
    assert_eq!((info.config.r, info.config.lora_alpha), (16, 32.0));
    for reloaded in [
        LanguageModel::load(ck.to_str().unwrap(), &Device::Cpu).unwrap(),
        m.load_adapter(&ck).unwrap(),
    ] {
        let again = margins(&reloaded, &data, &refs, beta);
        for (a, b) in after.iter().zip(&again) {
            assert!((a - b).abs() < 1e-4, "reloaded margin {b} vs trained {a}");
        }
    }
    // A further round continues the adapter: policy = reference at its start, loss ln 2.
    let next = initial_policy(&policy, &cfg).unwrap();
    let s2 = DpoTrainer::new(DpoConfig {
        max_steps: Some(1),
        ..cfg.clone()
    })
    .unwrap()
    .train(&next, &data)
    .unwrap();
    assert!((s2.history[0].loss - LN2).abs() < 1e-6);
    // An adapter of another shape is not silently continued.
    let other = DpoConfig { lora_r: 8, ..cfg };
    let e = initial_policy(&policy, &other).err().unwrap().to_string();
    assert!(e.contains("r = 16") && e.contains("r = 8"), "{e}");
}

/// A bare [`Llama`] as a policy (no tokenizer, so no checkpoint), for the tiny random model.
struct TinyPolicy(Llama);

impl PolicyModel for TinyPolicy {
    fn token_logps(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let logits = self
            .0
            .forward(ids, Mode::Train)
            .map_err(candle_core::Error::wrap)?;
        target_logps(&logits, ids).map_err(candle_core::Error::wrap)
    }
    fn trainable_vars(&self) -> Vec<Var> {
        self.0.vars()
    }
    fn save_checkpoint(&self, _: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("TinyPolicy has no tokenizer; not saved".into())
    }
}

/// It learns on a tiny random Llama: 8 fixed pairs (different prompts and response lengths),
/// all pairs in every step (batch 4 × 2 accumulation), AdamW lr 1e-2: within 30 steps every pair
/// is ranked right (`rewards/accuracies` = 1) with a positive margin, step 0 is ln 2, and every
/// logged loss is finite.
#[test]
fn tiny_random_llama_learns_8_pairs() {
    let policy = TinyPolicy(Llama::random(LlamaConfig::tiny(), 3, &Device::Cpu).unwrap());
    let data: Vec<TokenizedPair> = (0..8u32)
        .map(|i| TokenizedPair {
            id: format!("t{i}"),
            prompt_ids: vec![1, 3 + i, 12 + i % 3],
            chosen_ids: if i % 2 == 0 {
                vec![20 + i, 2]
            } else {
                vec![20 + i, 40, 41, 2]
            },
            rejected_ids: if i % 3 == 0 {
                vec![30 + i, 42, 2]
            } else {
                vec![30 + i, 2]
            },
        })
        .collect();
    let cfg = DpoConfig {
        learning_rate: 1e-2,
        lr_scheduler_type: LrSchedulerType::Constant,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        max_steps: Some(30),
        ..DpoConfig::default()
    };
    let s = train_dpo(&policy, None, &data, cfg).unwrap();
    assert!(
        (s.history[0].loss - LN2).abs() < 1e-5,
        "{}",
        s.history[0].loss
    );
    assert!(s.history.iter().all(|h| h.loss.is_finite()));
    let first_perfect = s
        .history
        .iter()
        .position(|h| h.rewards_accuracies == 1.0 && h.rewards_margins > 0.0);
    let last = &s.final_metrics;
    eprintln!(
        "tiny llama: first step with accuracy 1: {:?}; final loss {:.4} margin {:.4}",
        first_perfect.map(|i| i + 1),
        last.loss,
        last.rewards_margins
    );
    assert!(first_perfect.is_some(), "never reached accuracy 1");
    assert_eq!(last.rewards_accuracies, 1.0);
    assert!(last.rewards_margins > 0.0 && last.loss < 0.5, "{last:?}");
}
