//! `cargo xtask bench`: strategy comparison (built with the pipeline).

use anyhow::Result;

/// Runs the benchmark task.
pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!(
        "the strategy comparison needs `srlm run` (not built yet); micro-benchmarks: cargo bench"
    )
}
