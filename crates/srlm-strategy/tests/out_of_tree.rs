//! A third-party plugin, as `docs/plugins.md` describes it: a crate in a temporary directory
//! whose only dependency is srlm-strategy (by path), edition 2024 as `cargo new` writes it
//! today. Its own tests run (`cargo test`: the example's unit test and the serde/schemars
//! derive checks of `out_of_tree/derives.rs`), then it is built as a `cdylib`, loaded with the
//! loader and run for one iteration against the fake host.

mod support;

use serde_json::json;
use srlm_strategy::{
    load_plugin,
    sdk::Source,
    testing::{prompt, FakeHost},
    FfiPrompt, IterationInfo, PluginError,
};
use support::{cargo, test_target_dir, workspace_root};

/// The plugin `docs/plugins.md` shows, byte for byte (`cargo xtask tidy` checks the doc's
/// copy against this file).
const LIB_RS: &str = include_str!("out_of_tree/my_selector.rs");
/// Derives through srlm-strategy's re-exports and `Options = ()`: the crate's integration test.
const DERIVES_RS: &str = include_str!("out_of_tree/derives.rs");

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
crate-type = ["cdylib", "rlib"]

[dependencies]
srlm-strategy = {{ path = "{}" }}

[profile.release]
debug = "line-tables-only"

[workspace]
"#,
        strategy_dir.display()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), LIB_RS).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/derives.rs"), DERIVES_RS).unwrap();
    // srlm's lock file pins the same dependency versions, so the build reuses compiled crates.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .unwrap();

    for command in ["test", "build"] {
        let out = cargo()
            .args([command, "--release", "--quiet", "--manifest-path"])
            .arg(dir.path().join("Cargo.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {command}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
    fake.script("a", Source::Current, &[Some(1.0), Some(4.5), None])
        .script("b", Source::Current, &[Some(3.0), Some(3.5), Some(3.0)]);
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
    let resolved = fake
        .resolve(&pairs, &[prompt("a", "q"), prompt("b", "q")], "my-selector")
        .unwrap();
    assert_eq!(
        (resolved[0].chosen_score, resolved[0].rejected_score),
        (Some(4.5), Some(1.0))
    );
}
