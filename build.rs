//! Builds the bundled strategy plugins (self-rewarding, temporal, spin) as shared libraries
//! when the `srlm` binary is built, so that `cargo run --release -- run` works on a fresh
//! clone: cargo builds only the binary's own dependencies for `cargo run`, never the cdylibs
//! of other workspace members. The plugins go to `<target>/bundled-plugins/<profile>/` (their
//! own target dir, so the nested cargo never waits on the outer one's lock) and the binary
//! learns that folder through `SRLM_BUNDLED_PLUGIN_DIR` at compile time. They are still loaded
//! dynamically, exactly like third-party plugins. `SRLM_SKIP_PLUGIN_BUILD=1` skips this.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    for p in [
        "plugins",
        "crates/srlm-strategy/src",
        "crates/srlm-core/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=SRLM_SKIP_PLUGIN_BUILD");
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let profile = env::var("PROFILE").unwrap_or_else(|_| "release".into());
    // OUT_DIR is <target>/<profile>/build/srlm-<hash>/out: four levels up is <target>.
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out
        .ancestors()
        .nth(4)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let plugin_target = target.join("bundled-plugins");
    let dir = plugin_target.join(if profile == "release" {
        "release"
    } else {
        "debug"
    });
    println!("cargo:rustc-env=SRLM_BUNDLED_PLUGIN_DIR={}", dir.display());
    if env::var_os("SRLM_SKIP_PLUGIN_BUILD").is_some_and(|v| v == "1") {
        return;
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "srlm-plugin-self-rewarding",
            "-p",
            "srlm-plugin-temporal",
            "-p",
            "srlm-plugin-spin",
        ])
        .arg("--target-dir")
        .arg(&plugin_target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .expect("running cargo to build the bundled plugins");
    if !status.success() {
        panic!("building the bundled strategy plugins failed ({status}); see the output above");
    }
}
