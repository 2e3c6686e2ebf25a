//! `srlm report` and `srlm compare`: re-render a run's `report.md` and plots, and compare
//! several runs in one table (what `cargo xtask bench` prints).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use srlm_pipeline::run_dir::RunDir;

/// Arguments of `srlm report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder (holds `config.json` and `metrics.jsonl`).
    pub run_dir: PathBuf,
}

/// Writes `RUN_DIR/report.md` and `RUN_DIR/plots/*.svg` and prints the report's path.
pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let path = srlm_pipeline::report::write_report(&a.run_dir)
        .with_context(|| format!("rendering the report of {}", a.run_dir.display()))?;
    out!("{}", path.display());
    Ok(())
}

/// Arguments of `srlm compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Run folders to compare (a shell glob such as `runs/bench/*` is fine: paths without a
    /// `metrics.jsonl`, like `comparison.md` or `plots`, are skipped with a note).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub run_dirs: Vec<PathBuf>,
    /// Where to write `comparison.md` and `plots/compare_*.svg`; without it only the table is
    /// printed.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier `comparison.md` (and its plots) in `--out`.
    #[arg(long)]
    pub overwrite: bool,
}

fn is_run_dir(p: &Path) -> bool {
    RunDir::new(p).metrics().is_file()
}

/// Prints the comparison table and, with `--out`, writes `comparison.md` and the plots.
pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let (runs, skipped): (Vec<PathBuf>, Vec<PathBuf>) =
        a.run_dirs.into_iter().partition(|p| is_run_dir(p));
    for p in &skipped {
        eprintln!("note: skipping {} (no metrics.jsonl)", p.display());
    }
    if runs.is_empty() {
        anyhow::bail!("none of the paths given is a run folder (with a metrics.jsonl)");
    }
    if let Some(out) = &a.out {
        srlm_core::output::claim_file(&out.join("comparison.md"), &[], a.overwrite)
            .map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    }
    let table = match &a.out {
        Some(out) => srlm_pipeline::compare::compare_runs(&runs, out)?,
        None => srlm_pipeline::compare::load_comparison(&runs)?.1,
    };
    for w in &table.warnings {
        eprintln!("warning: {w}");
    }
    crate::write_stdout(&table.to_string());
    if let Some(out) = &a.out {
        out!("\n{}", out.join("comparison.md").display());
    }
    Ok(())
}
