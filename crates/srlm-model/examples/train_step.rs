//! Times one training forward + backward on the default model (2 × 256 tokens) by phase:
//! `cargo run --release -p srlm-model --example train_step`. For profiling the trainable path.

use srlm_model::{Device, LanguageModel, Mode, Tensor};
use std::time::Instant;

/// The `srlm` binary's allocator, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> srlm_model::Result<()> {
    srlm_model::init_process();
    let m = LanguageModel::load("default", &Device::Cpu)?;
    let ids: Vec<u32> = (0..512u32).map(|i| (i * 7919 + 13) % 49000 + 100).collect();
    let ids = Tensor::from_vec(ids, (2, 256), &Device::Cpu)?;
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for rep in 0..reps {
        let t = Instant::now();
        let lp = m.model.token_logps(&ids, Mode::Train)?;
        let loss = lp.sum_all()?;
        let _ = loss.to_scalar::<f32>()?;
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let t_bwd = t.elapsed().as_secs_f64();
        drop(grads);
        println!(
            "rep {rep}: forward (logps) {t_fwd:.2} s, backward {:.2} s, total {t_bwd:.2} s = {:.1} tok/s",
            t_bwd - t_fwd,
            512.0 / t_bwd
        );
    }
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        });
    println!("{}", hwm.unwrap_or_default());
    Ok(())
}
