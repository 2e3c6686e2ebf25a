//! Times one training forward + backward on the default model (2 × 256 tokens) by phase:
//! `cargo run --release -p srlm-model --example train_step`. For profiling the trainable path.

use srlm_model::{scoring::target_logps, Device, LanguageModel, Mode, Tensor};
use std::time::Instant;

fn main() -> srlm_model::Result<()> {
    let m = LanguageModel::load("default", &Device::Cpu)?;
    let ids: Vec<u32> = (0..512u32).map(|i| (i * 7919 + 13) % 49000 + 100).collect();
    let ids = Tensor::from_vec(ids, (2, 256), &Device::Cpu)?;
    for rep in 0..2 {
        let t = Instant::now();
        let h = m.model.hidden_states(&ids, Mode::Train)?;
        let t_body = t.elapsed().as_secs_f64();
        let logits = m.model.lm_head(&h)?;
        let t_head = t.elapsed().as_secs_f64();
        let lp = target_logps(&logits, &ids)?;
        let loss = lp.sum_all()?;
        let _ = loss.to_scalar::<f32>()?;
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let t_bwd = t.elapsed().as_secs_f64();
        drop(grads);
        println!(
            "rep {rep}: body {t_body:.2} s, head {:.2} s, logps {:.2} s, backward {:.2} s, total {t_bwd:.2} s = {:.1} tok/s",
            t_head - t_body,
            t_fwd - t_head,
            t_bwd - t_fwd,
            512.0 / t_bwd
        );
    }
    Ok(())
}
