//! Test helper: the bundled strategy plugins (self-rewarding, temporal, spin), built by the
//! test itself so that no test depends on an earlier `cargo build --workspace`.
//!
//! [`dir`] runs the same nested cargo command as the root `build.rs` (same packages, profile
//! and `--target-dir <target>/bundled-plugins`), so when the `srlm` binary was built first the
//! plugins are already fresh and the command is a no-op; on a bare `cargo test -p CRATE` it
//! builds them. The folder is not the outer target's `release/`, whose lock `cargo test` holds
//! while tests run. Used by the root package's tests and, through `#[path]`, by
//! `srlm-pipeline`'s.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The bundled plugins' package names.
pub const PACKAGES: [&str; 3] = [
    "srlm-plugin-self-rewarding",
    "srlm-plugin-temporal",
    "srlm-plugin-spin",
];

/// Builds the bundled plugins (once per test binary) and returns the folder holding their
/// shared libraries: `<target>/bundled-plugins/<release|debug>`, where `<target>` is the target
/// folder this test binary was built into. `workspace_root` is the srlm checkout.
pub fn dir(workspace_root: &Path) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(workspace_root))
}

/// The file name of plugin library `stem` (e.g. `srlm_plugin_temporal`) on this platform.
pub fn lib_name(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn build(workspace_root: &Path) -> PathBuf {
    // This test binary is <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.ancestors().nth(2).expect("<target>/<profile>");
    let target = profile_dir.parent().expect("<target>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let plugin_target = target.join("bundled-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root).args(["build", "--quiet"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.arg("--target-dir")
        .arg(&plugin_target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .expect("running cargo to build the bundled plugins");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = plugin_target.join(if release { "release" } else { "debug" });
    for p in PACKAGES {
        let lib = dir.join(lib_name(&p.replace('-', "_")));
        assert!(lib.is_file(), "{} missing after {cmd:?}", lib.display());
    }
    dir
}
