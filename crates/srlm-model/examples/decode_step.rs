//! Times the phases of batched decoding on the default model (4 prompts × K=8 rows):
//! `cargo run --release -p srlm-model --example decode_step`. For profiling sampling.

use srlm_model::{Device, KvCache, LanguageModel, Tensor};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> srlm_model::Result<()> {
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu)?;
    let rows = 32usize;
    let prompt: Vec<u32> = m.encode_prompt("Write a short poem about the sea.")?;
    let ids: Vec<u32> = (0..rows).flat_map(|_| prompt.clone()).collect();
    let mut cache = KvCache::default();
    let t = Instant::now();
    let h = m.model.forward_cached(
        &Tensor::from_vec(ids, (rows, prompt.len()), &Device::Cpu)?,
        &vec![0; rows],
        &mut cache,
    )?;
    println!(
        "prefill {rows}x{}: {:.3} s",
        prompt.len(),
        t.elapsed().as_secs_f64()
    );
    let mut x = h.narrow(1, prompt.len() - 1, 1)?.squeeze(1)?;
    let (mut t_fwd, mut t_head, mut t_host) = (0.0, 0.0, 0.0);
    let steps = 64;
    for _ in 0..steps {
        let t = Instant::now();
        let logits = m.model.lm_head_infer(&x)?;
        let t1 = Instant::now();
        let v = logits.to_vec2::<f32>()?;
        let next: Vec<u32> = v.iter().map(|r| (r.len() / 2) as u32).collect();
        let t2 = Instant::now();
        let h = m.model.forward_cached(
            &Tensor::from_vec(next, (rows, 1), &Device::Cpu)?,
            &vec![0; rows],
            &mut cache,
        )?;
        x = h.squeeze(1)?;
        let t3 = Instant::now();
        t_head += (t1 - t).as_secs_f64();
        t_host += (t2 - t1).as_secs_f64();
        t_fwd += (t3 - t2).as_secs_f64();
    }
    let n = steps as f64;
    println!(
        "per step ({rows} rows): blocks {:.1} ms, LM head {:.1} ms, logits to host {:.1} ms -> {:.0} tok/s without sampling",
        1e3 * t_fwd / n,
        1e3 * t_head / n,
        1e3 * t_host / n,
        rows as f64 * n / (t_fwd + t_head + t_host)
    );
    Ok(())
}
