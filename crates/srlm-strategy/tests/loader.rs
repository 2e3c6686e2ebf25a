//! Loader tests against real libraries: every typed loading error, name lookup on a search
//! path, option validation, one full Temporal iteration through the ABI, and a plugin built
//! against interface 1.0 before the SDK rewrite (test-plugins/abi-1.0) loading and running.

mod support;

use serde_json::json;
use srlm_strategy::{
    load_plugin, resolve_strategy,
    sdk::Source,
    testing::{prompt, FakeHost},
    FfiPrompt, FfiSource, IterationInfo, OptionsError, PluginError, PluginSearch,
    INTERFACE_VERSION,
};
use support::{built_libs, lib};

const CTX: IterationInfo = IterationInfo {
    iteration: 1,
    total_iterations: 2,
    seed: 7,
};

fn one_line(e: &PluginError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    s
}

#[test]
fn missing_file() {
    let e = load_plugin("./does-not-exist.so".as_ref()).unwrap_err();
    assert!(matches!(e, PluginError::NotFound { .. }), "{e:?}");
    assert_eq!(
        one_line(&e),
        "./does-not-exist.so: strategy plugin not found (no such file)"
    );
}

#[test]
fn file_that_is_not_a_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.so");
    std::fs::write(&path, "not an ELF file").unwrap();
    let e = load_plugin(&path).unwrap_err();
    assert!(matches!(e, PluginError::Open { .. }), "{e:?}");
    assert!(one_line(&e).starts_with(&format!(
        "{}: cannot load as a shared library",
        path.display()
    )));
}

#[test]
fn library_without_root_module() {
    let path = lib("srlm_test_plugin_not_a_plugin");
    let e = load_plugin(&path).unwrap_err();
    assert!(matches!(e, PluginError::NotAPlugin { .. }), "{e:?}");
    assert_eq!(
        one_line(&e),
        format!(
            "{}: not an srlm strategy plugin (it exports no abi_stable root module)",
            path.display()
        )
    );
}

#[test]
fn interface_version_mismatch_names_both_versions() {
    let path = lib("srlm_test_plugin_old_interface");
    let e = load_plugin(&path).unwrap_err();
    match &e {
        PluginError::InterfaceVersion { host, plugin, .. } => {
            assert_eq!(
                (host.as_str(), plugin.as_str()),
                (INTERFACE_VERSION, "0.9.0")
            );
        }
        other => panic!("expected InterfaceVersion, got {other:?}"),
    }
    let msg = one_line(&e);
    assert!(
        msg.contains("srlm uses interface 1.0.0") && msg.contains("built for interface 0.9.0"),
        "{msg}"
    );
    assert!(msg.starts_with(&path.display().to_string()));
}

#[test]
fn layout_mismatch() {
    let path = lib("srlm_test_plugin_bad_layout");
    let e = load_plugin(&path).unwrap_err();
    match &e {
        PluginError::LayoutMismatch {
            version, detail, ..
        } => {
            assert_eq!(version, INTERFACE_VERSION);
            assert!(!detail.is_empty());
        }
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    assert!(one_line(&e).contains("type layout mismatch"));
}

#[test]
fn constructor_errors() {
    let panicky = load_plugin(&lib("srlm_test_plugin_panicky")).unwrap();
    let e = panicky
        .instantiate(&json!({"fail_in_new": true}))
        .err()
        .unwrap();
    assert!(matches!(e, PluginError::Constructor { .. }), "{e:?}");
    assert!(one_line(&e)
        .ends_with("strategy `test-panicky` rejected its options: panicky: asked to fail in new"));

    // Bypassing the host's schema check, the plugin's own parser still refuses bad options.
    let temporal = load_plugin(&lib("srlm_plugin_temporal")).unwrap();
    let e = temporal.instantiate(&json!({"k": "many"})).err().unwrap();
    assert!(matches!(e, PluginError::Constructor { .. }), "{e:?}");
    assert!(
        one_line(&e).contains("invalid type: string \"many\""),
        "{e}"
    );
    let e = temporal.instantiate(&json!({"k": 0})).err().unwrap();
    assert!(
        one_line(&e).ends_with("rejected its options: k must be at least 1"),
        "{e}"
    );
}

#[test]
fn panics_become_errors() {
    let path = lib("srlm_test_plugin_panicky");
    let plugin = load_plugin(&path).unwrap();
    let e = plugin
        .instantiate(&json!({"panic_in_new": true}))
        .err()
        .unwrap();
    match &e {
        PluginError::Panicked {
            during, message, ..
        } => {
            assert_eq!(
                (*during, message.as_str()),
                ("new", "panicky: asked to panic in new")
            );
        }
        other => panic!("expected Panicked, got {other:?}"),
    }

    let mut strategy = plugin.instantiate(&json!({})).unwrap();
    let mut fake = FakeHost::new();
    let e = strategy
        .run_iteration(CTX, &[FfiPrompt::new("p", "q")], fake.host())
        .unwrap_err();
    assert_eq!(
        one_line(&e),
        format!(
            "{}: strategy `test-panicky` panicked in run_iteration: panicky: iteration 1 exploded",
            path.display()
        )
    );
    // The process survived and the strategy can be called again.
    let e = strategy.run_iteration(CTX, &[], fake.host()).unwrap_err();
    assert!(matches!(e, PluginError::Panicked { .. }));
}

#[test]
fn metadata_of_the_three_plugins() {
    for (stem, name) in [
        ("srlm_plugin_self_rewarding", "self-rewarding"),
        ("srlm_plugin_temporal", "temporal"),
        ("srlm_plugin_spin", "spin"),
    ] {
        let p = load_plugin(&lib(stem)).unwrap();
        assert_eq!(
            (p.name(), p.version(), p.interface_version()),
            (name, "0.1.0", INTERFACE_VERSION)
        );
        assert!(p.description().contains("et al."), "{name} cites its paper");
        let schema = p.options_schema().unwrap();
        assert_eq!(schema["type"], "object");
        assert!(schema["properties"]["k"].is_object());
    }
}

#[test]
fn find_by_name_and_unknown_names() {
    // A private copy of the libraries, so other tests' builds (out_of_tree.rs) do not show up.
    let dir = tempfile::tempdir().unwrap();
    for stem in [
        "srlm_plugin_self_rewarding",
        "srlm_plugin_temporal",
        "srlm_plugin_spin",
        "srlm_test_plugin_panicky",
        "srlm_test_plugin_old_interface",
        "srlm_test_plugin_bad_layout",
        "srlm_test_plugin_not_a_plugin",
        "srlm_test_plugin_abi_1_0",
    ] {
        let src = lib(stem);
        std::fs::copy(&src, dir.path().join(src.file_name().unwrap())).unwrap();
    }
    let search = PluginSearch::new(vec![dir.path().to_path_buf()]);
    let t = search.find("temporal").unwrap();
    assert_eq!(
        t.path(),
        dir.path()
            .join(lib("srlm_plugin_temporal").file_name().unwrap())
    );

    let found = search.discover();
    let mut names: Vec<&str> = found.plugins.iter().map(|p| p.name()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "self-rewarding",
            "spin",
            "temporal",
            "test-abi-1.0",
            "test-panicky"
        ]
    );
    // old-interface and bad-layout fail; not-a-plugin is skipped silently.
    assert_eq!(found.errors.len(), 2, "{:?}", found.errors);

    let e = search.find("nope").unwrap_err();
    assert_eq!(
        one_line(&e),
        format!(
            "unknown strategy `nope`; available: self-rewarding, spin, temporal, test-abi-1.0, test-panicky; searched: {}",
            dir.path().display()
        )
    );
    // A path-looking argument is loaded as a file.
    let e = search.load("./nope.so").unwrap_err();
    assert!(matches!(e, PluginError::NotFound { .. }));
}

#[test]
fn a_broken_library_named_after_the_strategy_reports_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "{}srlm_plugin_old{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    std::fs::copy(
        lib("srlm_test_plugin_old_interface"),
        dir.path().join(&name),
    )
    .unwrap();
    let e = PluginSearch::new(vec![dir.path().to_path_buf()])
        .find("old")
        .unwrap_err();
    assert!(matches!(e, PluginError::InterfaceVersion { .. }), "{e:?}");
}

#[test]
fn resolve_strategy_validates_set_flags_before_running() {
    let dirs = [built_libs().to_path_buf()];
    let r = resolve_strategy("temporal", &["anchored_rejection=false"], &dirs).unwrap();
    assert_eq!(
        r.options,
        json!({"k": null, "anchored_rejection": false, "future_guided_chosen": true})
    );
    // k unset: srlm run fills in the run's sampling.k.
    let r = resolve_strategy("self-rewarding", &[] as &[&str], &dirs).unwrap();
    assert_eq!(r.options, json!({"k": null}));

    let path = lib("srlm_plugin_temporal").display().to_string();
    let table: &[(&str, String)] = &[
        ("bogus=1", format!("{path}: unknown option `bogus`; valid options: anchored_rejection, future_guided_chosen, k (run settings such as `dpo.beta` are set with -c KEY=VALUE)")),
        ("k=abc", format!("{path}: option `k` expects integer or null, got string \"abc\"")),
        ("k=0", format!("{path}: option `k`: must be >= 1, got 0")),
        ("anchored_rejection=1", format!("{path}: option `anchored_rejection` expects boolean, got integer 1")),
        ("k", format!("{path}: --set `k`: expected key=value")),
    ];
    for (flag, want) in table {
        let e = resolve_strategy("temporal", &[*flag], &dirs).unwrap_err();
        assert!(matches!(e, PluginError::Options { .. }), "{flag}: {e:?}");
        assert_eq!(&one_line(&e), want, "flag {flag}");
    }
    let e = resolve_strategy("temporal", &["bogus=1"], &dirs).unwrap_err();
    assert!(matches!(
        e,
        PluginError::Options {
            error: OptionsError::UnknownKey { .. },
            ..
        }
    ));
}

#[test]
fn full_temporal_iteration_through_the_loaded_library() {
    let r = resolve_strategy("temporal", &["k=2"], &[built_libs().to_path_buf()]).unwrap();
    let mut strategy = r.instantiate().unwrap();
    let mut fake = FakeHost::new();
    fake.script("a", Source::Current, &[Some(2.0), Some(4.0)])
        .script("a", Source::Initial, &[Some(1.0), None])
        .script("a", Source::Temporary(0), &[Some(5.0), Some(3.0)])
        .script("b", Source::Current, &[Some(3.0), Some(3.0)])
        .script("b", Source::Initial, &[Some(3.0), Some(4.0)])
        .script("b", Source::Temporary(0), &[Some(2.0), None]);
    let prompts = [FfiPrompt::new("a", "q"), FfiPrompt::new("b", "q")];
    let pairs = strategy.run_iteration(CTX, &prompts, fake.host()).unwrap();
    assert_eq!(pairs.len(), 1);
    let p = &pairs[0];
    assert_eq!(p.prompt_id.as_str(), "a");
    assert_eq!(
        (p.chosen.sample_id.as_str(), p.chosen.score.into_option()),
        ("a/temporary:0/0", Some(5.0))
    );
    assert_eq!(
        (p.rejected.sample_id.as_str(), p.rejected.source),
        ("a/initial/0", FfiSource::Initial)
    );
    assert_eq!(p.note.as_str(), "anchored+future-upgraded");
    assert_eq!(fake.metric("temporal/pairs_d2"), Some(1.0));
    // The host side resolves the pair from its own records.
    let records = [prompt("a", "q"), prompt("b", "q")];
    let resolved = fake.resolve(&pairs, &records, "temporal").unwrap();
    assert_eq!(
        (resolved[0].chosen.as_str(), resolved[0].chosen_score),
        ("temporary:0 answer 0 to a", Some(5.0))
    );
}

#[test]
fn a_plugin_built_against_interface_1_0_before_the_sdk_rewrite_loads_and_runs() {
    let path = lib("srlm_test_plugin_abi_1_0");
    let plugin = load_plugin(&path).unwrap();
    assert_eq!(
        (plugin.name(), plugin.version(), plugin.interface_version()),
        ("test-abi-1.0", "1.0.0", "1.0.0")
    );
    let options = plugin.resolve_options(&Default::default()).unwrap();
    assert_eq!(options, json!({}));
    let mut strategy = plugin.instantiate(&options).unwrap();
    let mut fake = FakeHost::new();
    fake.script("a", Source::Current, &[Some(1.0), Some(4.0)])
        .script("b", Source::Current, &[Some(3.0), Some(3.0)]);
    let prompts = [FfiPrompt::new("a", "qa"), FfiPrompt::new("b", "qb")];
    let pairs = strategy.run_iteration(CTX, &prompts, fake.host()).unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(fake.metric("abi_1_0/pairs"), Some(1.0));
    let resolved = fake
        .resolve(
            &pairs,
            &[prompt("a", "qa"), prompt("b", "qb")],
            "test-abi-1.0",
        )
        .unwrap();
    let p = &resolved[0];
    assert_eq!(
        (
            p.chosen_sample_id.as_deref(),
            p.rejected_sample_id.as_deref()
        ),
        (Some("a/current/1"), Some("a/current/0"))
    );
    assert_eq!((p.chosen_score, p.rejected_score), (Some(4.0), Some(1.0)));
    assert_eq!(p.provenance.as_ref().unwrap().note, "abi-1.0");
}

/// Builds a shared library whose constructor aborts the process (a hostile or unrelated `.so`
/// in a plugin folder) with the system C compiler.
fn aborting_library(dir: &std::path::Path, file: &str) -> std::path::PathBuf {
    let src = dir.join("abort.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n",
    )
    .unwrap();
    let out = dir.join(file);
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed to build the hostile library");
    assert!(status.success());
    std::fs::remove_file(src).unwrap();
    out
}

#[cfg(target_os = "linux")]
#[test]
fn looking_up_a_plugin_by_name_loads_only_the_library_named_after_it() {
    // The child: looks up `temporal` in a folder that also holds a library whose constructor
    // aborts. Loading that library would kill the child.
    if let Ok(dir) = std::env::var("SRLM_TEST_PLUGIN_DIR") {
        let p = PluginSearch::new(vec![dir.into()])
            .find("temporal")
            .unwrap();
        assert_eq!(p.name(), "temporal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = lib("srlm_plugin_temporal");
    std::fs::copy(&src, dir.path().join(src.file_name().unwrap())).unwrap();
    // Sorted before the plugin, so loading everything in order would hit it first.
    aborting_library(dir.path(), "liba_unrelated.so");
    let run = |test: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("SRLM_TEST_PLUGIN_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = run("looking_up_a_plugin_by_name_loads_only_the_library_named_after_it");
    assert!(
        out.status.success(),
        "the lookup loaded the aborting library: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The control: discovering every library does load it (so the test can fail).
    let out = run("discovery_loads_every_library_child");
    assert!(!out.status.success(), "the aborting library did not abort");
}

/// Only a child of the test above (no-op in a normal run): lists every plugin.
#[test]
fn discovery_loads_every_library_child() {
    if let Ok(dir) = std::env::var("SRLM_TEST_PLUGIN_DIR") {
        let _ = PluginSearch::new(vec![dir.into()]).discover();
    }
}
