//! K has one owner, the plugin's options: `spin` declares k = 1 and keeps it under `srlm run`
//! (the run's `sampling.k` does not apply); `--set k=…` overrides `-c strategy_options.k=…`.

mod common;

use common::*;
use serde_json::json;
use srlm_core::Sample;
use srlm_pipeline::run::run_with;
use srlm_pipeline::run_dir::RunDir;
use srlm_pipeline::testing::FakeBackend;

#[test]
fn k_is_owned_by_the_plugin_and_set_overrides_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    // SPIN declares k = 1: the run's sampling.k (3) does not apply.
    let mut c = config(tmp.path(), "spin");
    let mut s = strategy::<srlm_plugin_spin::Spin>(&mut c, &[]);
    assert_eq!(c.strategy_options["k"], json!(1));
    let dir = RunDir::new(tmp.path().join("spin"));
    run_with(&c, &dir, &record("spin"), &mut s, &FakeBackend::new()).unwrap();
    let samples: Vec<Sample> = read(&dir.iteration(1).samples());
    assert_eq!(samples.len(), 4, "one sample per prompt");
    // -c strategy_options.k=3 then --set k=5: --set wins, no "given twice".
    let mut c = config(tmp.path(), "spin");
    c.strategy_options.insert("k".into(), json!(3));
    strategy::<srlm_plugin_spin::Spin>(&mut c, &["k=5"]);
    assert_eq!(c.strategy_options["k"], json!(5));
    let mut c = config(tmp.path(), "spin");
    strategy::<srlm_plugin_spin::Spin>(&mut c, &["k=2"]);
    assert_eq!(c.strategy_options["k"], json!(2));
}
