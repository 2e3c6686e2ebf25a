//! Tests of the Llama: hand-computed RMSNorm gradients and RoPE values (cases C1, C2), the
//! training, inference and KV-cache paths agreeing (case C3), gradients reaching every weight,
//! fused and composed kernels agreeing, and gradient checkpointing changing no gradient.

use super::ops::{rms_norm, rope, rope_tables};
use super::*;
use candle_core::D;

fn tiny_config() -> LlamaConfig {
    LlamaConfig::tiny()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{x} vs {y}");
    }
}

#[test]
fn rms_norm_gradient_case_c1() {
    // Case C1: x = [[1,2,3]], weight [1,1,1], eps 1e-5, loss = y[0,0].
    let dev = Device::Cpu;
    let x = Var::new(&[[1f32, 2., 3.]], &dev).unwrap();
    let w = Var::new(&[1f32, 1., 1.], &dev).unwrap();
    let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5, Mode::Train).unwrap();
    let loss = y.get(0).unwrap().get(0).unwrap();
    let g = loss.backward().unwrap();
    let gw = g.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    close(&gw[..1], &[0.462910], 1e-5);
    close(&gx[0][..2], &[0.429845, -0.066130], 1e-5);
}

#[test]
fn rope_half_split_case_c2() {
    // Case C2: head_dim 4, base 10000, position 1, x = [1,0,0,0] → [cos 1, 0, sin 1, 0].
    let mut cfg = tiny_config();
    cfg.head_dim = 4;
    let (cos, sin) = rope_tables(&cfg, &Device::Cpu).unwrap();
    let x = Tensor::new(&[1f32, 0., 0., 0.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 1, 4))
        .unwrap();
    let c = cos.narrow(0, 1, 1).unwrap().unsqueeze(0).unwrap();
    let s = sin.narrow(0, 1, 1).unwrap().unsqueeze(0).unwrap();
    for mode in [Mode::Train, Mode::Infer] {
        let y = rope(&x, &c, &s, mode)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        close(&y, &[0.540302, 0.0, 0.841471, 0.0], 1e-6);
    }
}

#[test]
fn train_and_infer_paths_agree_and_padding_changes_nothing() {
    let dev = Device::Cpu;
    let m = Llama::random(tiny_config(), 3, &dev).unwrap();
    let ids = Tensor::new(&[[5u32, 9, 17, 33], [5, 9, 17, 33]], &dev).unwrap();
    let a = m.forward(&ids, Mode::Train).unwrap();
    let b = m.forward(&ids, Mode::Infer).unwrap();
    let diff = (a.clone() - &b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "train vs infer {diff}");
    // Case C3: identical rows are identical and equal to the batch-of-one logits.
    let rows = a.to_vec3::<f32>().unwrap();
    assert_eq!(rows[0], rows[1]);
    let one = m
        .forward(&ids.narrow(0, 0, 1).unwrap(), Mode::Train)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    close(&one[0].concat(), &rows[0].concat(), 1e-5);
    // Left padding [PAD, a, b] with the cache path equals [a, b], before and after a decode step.
    let mut c1 = KvCache::default();
    let h1 = m
        .forward_cached(&Tensor::new(&[[2u32, 5, 9]], &dev).unwrap(), &[1], &mut c1)
        .unwrap();
    let mut c2 = KvCache::default();
    let h2 = m
        .forward_cached(&Tensor::new(&[[5u32, 9]], &dev).unwrap(), &[0], &mut c2)
        .unwrap();
    let l1 = m
        .lm_head(&h1.narrow(1, 1, 2).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let l2 = m
        .lm_head(&h2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    close(&l1, &l2, 1e-5);
    let s1 = m
        .forward_cached(&Tensor::new(&[[17u32]], &dev).unwrap(), &[1], &mut c1)
        .unwrap();
    let s2 = m
        .forward_cached(&Tensor::new(&[[17u32]], &dev).unwrap(), &[0], &mut c2)
        .unwrap();
    close(
        &s1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        &s2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        1e-5,
    );
    // and the cached path equals the full forward pass
    let full = m
        .hidden_states(&Tensor::new(&[[5u32, 9, 17]], &dev).unwrap(), Mode::Infer)
        .unwrap();
    close(
        &full
            .narrow(1, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        &s2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        1e-5,
    );
}

#[test]
fn gradients_reach_every_weight() {
    let dev = Device::Cpu;
    let mut cfg = tiny_config();
    cfg.tie_word_embeddings = false;
    cfg.attention_bias = true;
    let m = Llama::random(cfg, 7, &dev).unwrap();
    let ids = Tensor::new(&[[3u32, 8, 21, 40, 7]], &dev).unwrap();
    let logits = m.forward(&ids, Mode::Train).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let loss = lp
        .narrow(2, 5, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in m.named_vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: |g|² = {n}");
    }
}

/// Every weight's gradient, by HF name (panics naming a weight without one).
fn named_grads(m: &Llama, grads: &candle_core::backprop::GradStore) -> Vec<(String, Vec<f32>)> {
    m.named_vars()
        .into_iter()
        .map(|(n, v)| {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no grad {n}"));
            (n, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

#[test]
fn fused_and_composed_training_agree() {
    // Same weights, fused kernels on and off: logits, target log-probs and every weight's
    // gradient agree (grouped-query attention, biases, untied head, batch of 2, 40 tokens).
    let dev = Device::Cpu;
    let mut cfg = tiny_config();
    cfg.tie_word_embeddings = false;
    cfg.attention_bias = true;
    let fused = Llama::random(cfg, 11, &dev).unwrap();
    let mut composed = fused.deep_copy().unwrap();
    composed.set_fused_kernels(false);
    assert!(fused.fused(Mode::Train) && !composed.fused(Mode::Train));
    let ids: Vec<u32> = (0..80u32).map(|i| (i * 37 + 5) % 64).collect();
    let ids = Tensor::from_vec(ids, (2, 40), &dev).unwrap();
    let run = |m: &Llama| {
        let logits = m.forward(&ids, Mode::Train).unwrap();
        let lp = crate::scoring::target_logps(&logits, &ids).unwrap();
        let grads = lp.sum_all().unwrap().backward().unwrap();
        let g = named_grads(m, &grads);
        (logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
    };
    let (la, ga) = run(&fused);
    let (lb, gb) = run(&composed);
    close(&la, &lb, 1e-4);
    for ((name, a), (_, b)) in ga.iter().zip(&gb) {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * scale, "{name}: {x} vs {y}");
        }
    }
}

#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    let dev = Device::Cpu;
    let mut cfg = tiny_config();
    cfg.attention_bias = true;
    let m = Llama::random(cfg, 13, &dev).unwrap();
    let ids: Vec<u32> = (0..60u32).map(|i| (i * 29 + 3) % 64).collect();
    let ids = Tensor::from_vec(ids, (2, 30), &dev).unwrap();
    let run = |ckpt: Checkpointing| {
        m.set_gradient_checkpointing(ckpt);
        let lp = m.token_logps(&ids, Mode::Train).unwrap();
        let grads = m.backward(&lp.sum_all().unwrap()).unwrap();
        let g = named_grads(&m, &grads);
        (lp.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
    };
    let (la, ga) = run(Checkpointing::Off);
    for what in [Checkpointing::Attention, Checkpointing::Blocks] {
        let (lb, gb) = run(what);
        assert_eq!(la, lb, "{what:?}: log-probs");
        for ((name, a), (_, b)) in ga.iter().zip(&gb) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-6, "{what:?} {name}: {x} vs {y}");
            }
            assert!(
                a.iter().any(|&x| x != 0.0),
                "{what:?} {name}: zero gradient"
            );
        }
        // The stash is drained: a second checkpointed step gives the same gradients.
        let (_, gc) = run(what);
        for ((name, a), (_, c)) in gb.iter().zip(&gc) {
            assert_eq!(a, c, "{what:?} {name}");
        }
    }
    m.set_gradient_checkpointing(Checkpointing::Off);
}
