//! `PluginSearch::standard`: `--plugin-dir`s first, then `SRLM_PLUGIN_PATH`, then the
//! executable's directory. Its own test binary, because it sets an environment variable.

mod support;

use std::path::PathBuf;

use srlm_strategy::{resolve_strategy, PluginSearch, PLUGIN_PATH_ENV};
use support::built_libs;

#[test]
fn standard_search_path_order_and_env_lookup() {
    let libs = built_libs().to_path_buf();
    std::env::set_var(
        PLUGIN_PATH_ENV,
        format!("/nonexistent-a::{}", libs.display()),
    );
    let search = PluginSearch::standard(&[PathBuf::from("/from-flag")]);
    let exe_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(
        search.dirs(),
        [
            PathBuf::from("/from-flag"),
            PathBuf::from("/nonexistent-a"),
            libs.clone(),
            exe_dir
        ]
    );
    // Found through SRLM_PLUGIN_PATH alone.
    let r = resolve_strategy("spin", &["judge=true"], &[]).unwrap();
    assert_eq!(r.options, serde_json::json!({"k": 1, "judge": true}));
    assert_eq!(r.plugin.path().parent().unwrap(), libs);
    std::env::remove_var(PLUGIN_PATH_ENV);
    let e = resolve_strategy("no-such", &[] as &[&str], &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("unknown strategy `no-such`; available: "),
        "{msg}"
    );
    assert!(
        !msg.contains(&libs.display().to_string()),
        "env entry gone: {msg}"
    );
}
