//! Shared helpers of srlm-strategy's integration tests: build the loader's test libraries and
//! the three plugins with a nested cargo, into a target directory of their own.
//!
//! `cargo test` holds the lock of its target directory while tests run, so the nested cargo
//! uses `<target>/srlm-strategy-tests` instead (dependencies are compiled once there; reruns
//! are no-ops). Built once per test binary.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The srlm workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The target directory this test binary was built into (`<target>/release/deps/<bin>`).
pub fn outer_target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Where the nested builds go.
pub fn test_target_dir() -> PathBuf {
    outer_target_dir().join("srlm-strategy-tests")
}

/// A `cargo` command for a nested build into [`test_target_dir`].
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("CARGO_TARGET_DIR", test_target_dir());
    cmd
}

fn run(mut cmd: Command) {
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the test libraries (the test-plugins workspace and the interface-1.0 plugin, a
/// workspace of its own) and the three plugins; returns the directory holding them.
pub fn built_libs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--release",
            "--quiet",
            "--workspace",
            "--manifest-path",
        ])
        .arg(root.join("crates/srlm-strategy/test-plugins/Cargo.toml"));
        run(cmd);
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(root.join("crates/srlm-strategy/test-plugins/abi-1.0/Cargo.toml"));
        run(cmd);
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .args([
                "-p",
                "srlm-plugin-self-rewarding",
                "-p",
                "srlm-plugin-temporal",
                "-p",
                "srlm-plugin-spin",
            ]);
        run(cmd);
        test_target_dir().join("release")
    })
}

/// The path of library `stem` (e.g. `srlm_plugin_temporal`) in [`built_libs`].
pub fn lib(stem: &str) -> PathBuf {
    built_libs().join(format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}
