//! `cargo xtask`: developer tasks, run from anywhere in the workspace.
//!
//! - `cargo xtask fetch`: fetch the default model and the evaluation data into the cache
//!   (`$SRLM_CACHE`, else `~/.cache/srlm`) ahead of time; same code path as first use.
//! - `cargo xtask bench [--quick | --config FILE] [--seeds N]`: compare strategies (see
//!   `docs/benchmarks.md`, `docs/study.md`).
//! - `cargo xtask bench-engine`: the main job in-process vs on `llama-server`: wall time and
//!   peak memory of srlm and its servers (see `engine_bench.rs`).
//! - `cargo xtask bench-injection`: judge-injection variants scored by the self-judge with and
//!   without srlm's defence, in both judge modes (see `injection_bench.rs`).
//! - `cargo xtask tidy`: checks of the checkout that need no build (module docs, no path
//!   leaving the repository, docs code blocks pinned to files; see `tidy.rs`). Also run by
//!   `cargo test`, as a test of this crate.
//!
//! xtask keeps few dependencies: it drives the release `srlm` binary and `cargo bench`
//! rather than linking the model code itself.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

mod bench;
mod engine_bench;
mod injection_bench;
mod tidy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its command line on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Builds the release `srlm` binary and returns its path.
pub(crate) fn srlm_binary() -> Result<PathBuf> {
    run(Command::new(env!("CARGO")).args(["build", "--release", "--workspace"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("release").join("srlm"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch") => run(Command::new(srlm_binary()?).arg("fetch")),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-engine") => engine_bench::run(&args[1..]),
        Some("bench-injection") => injection_bench::run(&args[1..]),
        Some("tidy") => tidy::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <fetch | bench [--quick] | bench-engine [--config FILE] | bench-injection [--modes expected,sampled] [--responses N] [--judge SPEC] [--template FILE] | tidy>");
            bail!("unknown or missing task")
        }
    }
}
