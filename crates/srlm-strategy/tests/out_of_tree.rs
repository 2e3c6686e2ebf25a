//! A third-party plugin, as `docs/plugins.md` describes it: a crate in a temporary directory
//! with a path dependency on srlm-strategy, built with cargo as a `cdylib`, loaded with the
//! loader and run for one iteration against the fake host.

mod support;

use serde_json::json;
use srlm_strategy::{
    load_plugin, testing::FakeHost, FfiPrompt, FfiSource, IterationInfo, PluginError,
};
use support::{cargo, test_target_dir, workspace_root};

// Edition 2024, as `cargo new` writes it today (the export macro must work there too).
const LIB_RS: &str = r#"//! my-selector: best vs worst of K, only when they differ by at least `min_gap`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_strategy::{
    sdk::{best, sample_and_judge, worst, StrategyPlugin},
    FfiPair, FfiPrompt, FfiSource, HostMut, IterationInfo, StrategyError,
};

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Samples per prompt.
    pub k: u32,
    /// Smallest score gap worth a pair.
    pub min_gap: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { k: 4, min_gap: 1.0 }
    }
}

pub struct MySelector(Options);

impl StrategyPlugin for MySelector {
    const NAME: &'static str = "my-selector";
    const DESCRIPTION: &'static str = "Best vs worst of K when the gap is at least min_gap.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        Ok(MySelector(options))
    }

    fn run_iteration(
        &mut self,
        _ctx: &IterationInfo,
        prompts: &[FfiPrompt],
        host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError> {
        let ids: Vec<_> = prompts.iter().map(|p| p.id.clone()).collect();
        let groups = sample_and_judge(host, &ids, FfiSource::Current, self.0.k)?;
        let mut pairs = Vec::new();
        for p in prompts {
            let Some(group) = groups.get(p.id.as_str()) else { continue };
            if let (Some(c), Some(r)) = (best(group), worst(group)) {
                if c.score.unwrap() - r.score.unwrap() >= self.0.min_gap {
                    pairs.push(FfiPair {
                        prompt_id: p.id.clone(),
                        chosen: c.side(),
                        rejected: r.side(),
                        note: "".into(),
                    });
                }
            }
        }
        host.record_metric("my_selector/pairs".into(), pairs.len() as f64);
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(MySelector);
"#;

#[test]
fn out_of_tree_plugin_builds_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let strategy_dir = workspace_root().join("crates/srlm-strategy");
    let manifest = format!(
        r#"[package]
name = "my_selector"
version = "0.3.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
srlm-strategy = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}
schemars = "1"

[profile.release]
debug = "line-tables-only"

[workspace]
"#,
        strategy_dir.display()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), LIB_RS).unwrap();
    // srlm's lock file pins the same dependency versions, so the build reuses compiled crates.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .unwrap();

    let out = cargo()
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = test_target_dir().join("release").join(format!(
        "{}my_selector{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));

    let plugin = load_plugin(&lib).unwrap();
    assert_eq!((plugin.name(), plugin.version()), ("my-selector", "0.3.0"));
    let options = plugin
        .resolve_options(&json!({"k": 3}).as_object().unwrap().clone())
        .unwrap();
    assert_eq!(options, json!({"k": 3, "min_gap": 1.0}));
    let e = plugin
        .resolve_options(&json!({"gap": 3}).as_object().unwrap().clone())
        .unwrap_err();
    assert!(matches!(e, PluginError::Options { .. }));
    assert!(
        e.to_string()
            .contains("unknown option `gap`; valid options: k, min_gap"),
        "{e}"
    );

    let mut strategy = plugin.instantiate(&options).unwrap();
    let mut fake = FakeHost::new();
    fake.script("a", FfiSource::Current, &[Some(1.0), Some(4.5), None])
        .script("b", FfiSource::Current, &[Some(3.0), Some(3.5), Some(3.0)]);
    let ctx = IterationInfo {
        iteration: 0,
        total_iterations: 1,
        seed: 1,
    };
    let pairs = strategy
        .run_iteration(
            ctx,
            &[FfiPrompt::new("a", "q"), FfiPrompt::new("b", "q")],
            fake.host(),
        )
        .unwrap();
    let got: Vec<_> = pairs
        .iter()
        .map(|p| {
            (
                p.prompt_id.as_str(),
                p.chosen.sample_id.as_str(),
                p.rejected.sample_id.as_str(),
            )
        })
        .collect();
    assert_eq!(got, [("a", "a/current/1", "a/current/0")]);
    assert_eq!(fake.metric("my_selector/pairs"), Some(1.0));
}
