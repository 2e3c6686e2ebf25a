//! Shared by the `loop_*` tests: a run config on `FakeBackend`, strategies built in-process
//! from a plugin crate's ABI root module (one plugin per test binary: each exports the same
//! root-module symbol), and readers.
#![allow(dead_code)]

use serde_json::{json, Value};
use srlm_core::read_jsonl;
use srlm_judge::JudgeSpec;
use srlm_pipeline::config::RunConfig;
use srlm_pipeline::metrics::IterationMetrics;
use srlm_pipeline::run::{merge_strategy_options, PluginRecord};
use srlm_pipeline::testing::FAKE_JUDGE_TEMPLATE;
use srlm_strategy::abi_stable::std_types::RStr;
use srlm_strategy::sdk::{root_module, StrategyPlugin};
use srlm_strategy::StrategyBox;
use std::path::Path;

/// A run config on the fake backend: 12 prompts with reference answers in `dir`, 3 held out,
/// 4 per iteration, 2 iterations, the `self` judge in expected mode.
pub fn config(dir: &Path, strategy: &str) -> RunConfig {
    let prompts = dir.join("prompts.jsonl");
    let lines: String = (0..12)
        .map(|i| format!("{}\n", json!({"id": format!("p{i}"), "prompt": format!("Question {i}?"), "reference": format!("ref {i} is a long answer")})))
        .collect();
    std::fs::write(&prompts, lines).unwrap();
    let template = dir.join("judge.j2");
    std::fs::write(&template, FAKE_JUDGE_TEMPLATE).unwrap();
    let mut c = RunConfig {
        model: "fake-m0".into(),
        strategy: strategy.into(),
        iterations: 2,
        seed: 7,
        ..RunConfig::default()
    };
    c.prompts.source = prompts.display().to_string();
    c.prompts.per_iteration = 4;
    c.prompts.eval = 3;
    c.sampling.k = 3;
    c.sampling.max_new_tokens = 8;
    c.judge.spec = JudgeSpec::parse("self").unwrap();
    c.judge.mode = srlm_judge::JudgeMode::Expected;
    c.judge.template = Some(template.display().to_string());
    c
}

/// The strategy `S` with `config.strategy_options` and `--set` flags resolved as `srlm run`
/// does (k owned by the plugin), built in-process from its root module.
pub fn strategy<S: StrategyPlugin>(config: &mut RunConfig, set: &[&str]) -> StrategyBox {
    let m = root_module::<S>("test");
    let schema: Value = serde_json::from_str(m.options_schema()().as_str()).unwrap();
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let options = merge_strategy_options(config, &set, &schema).unwrap();
    let resolved = m.resolve_options()(RStr::from_str(&Value::Object(options).to_string()))
        .unwrap()
        .to_string();
    config.strategy_options = serde_json::from_str(&resolved).unwrap();
    m.new()(RStr::from_str(&resolved)).unwrap()
}

pub fn record(name: &str) -> PluginRecord {
    PluginRecord {
        name: name.into(),
        version: "test".into(),
        path: "in-process".into(),
    }
}

pub fn words_mod_6(text: &str) -> f64 {
    (text.split_whitespace().count() % 6) as f64
}

pub fn read<T: serde::de::DeserializeOwned>(p: &Path) -> Vec<T> {
    read_jsonl(p).unwrap_or_else(|e| panic!("{e}"))
}

pub fn without_wall(m: &[IterationMetrics]) -> Vec<IterationMetrics> {
    m.iter()
        .cloned()
        .map(|mut l| {
            l.wall_seconds = None;
            l
        })
        .collect()
}
