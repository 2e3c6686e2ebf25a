//! Test helper: srlm-strategy's loader test plugins (`crates/srlm-strategy/test-plugins`, e.g.
//! `test-panicky`, whose constructor rejects `fail_in_new=true`), built by the test itself.
//!
//! [`lib`] builds one package of that workspace with a nested cargo into
//! `<target>/cli-test-plugins` (a target folder of its own: the outer one is locked while tests
//! run, and these libraries must never land beside the bundled plugins, where `srlm plugins
//! list` would show them), in the profile of the test binary, and returns its library's path.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds test-plugin package `package` (e.g. `srlm-test-plugin-panicky`) and returns the path
/// of its shared library. `workspace_root` is the srlm checkout.
pub fn lib(workspace_root: &Path, package: &str) -> PathBuf {
    // This test binary is <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.ancestors().nth(2).expect("<target>/<profile>");
    let target = profile_dir.parent().expect("<target>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let plugin_target = target.join("cli-test-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args(["build", "--quiet", "-p", package, "--manifest-path"])
        .arg(workspace_root.join("crates/srlm-strategy/test-plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(&plugin_target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("running cargo to build a test plugin");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = plugin_target
        .join(if release { "release" } else { "debug" })
        .join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            package.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        ));
    assert!(lib.is_file(), "{} missing after {cmd:?}", lib.display());
    lib
}
