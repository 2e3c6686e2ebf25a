//! `srlm run` (the main job: iterate a strategy plugin), `srlm eval` (score a model on held-out
//! prompts) and `srlm config schema` (the run config's JSON Schema).

use anyhow::Context;
use srlm_pipeline::config::RunConfig;
use srlm_pipeline::run::{run as run_pipeline, RunOptions};
use std::path::PathBuf;

/// Arguments of `srlm run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A TOML config (see configs/; schema: `srlm config schema`). Without one, the built-in
    /// default: SmolLM2-135M-Instruct, strategy `temporal`, 2 iterations on IFEval prompts, K=4,
    /// the `ifeval` rule judge.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any config key: `-c sampling.k=2 -c judge.spec=self -c dpo.beta=0.2` (values
    /// are TOML: numbers, booleans, "strings"; bare words are strings). Repeatable.
    #[arg(short = 'c', long = "config-set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Strategy plugin: a name (`temporal`, `self-rewarding`, `spin`) or a path to a library.
    #[arg(long)]
    strategy: Option<String>,
    /// Strategy option, validated against the plugin's schema: `--set anchored_rejection=false`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Extra folder to search for strategy plugins.
    #[arg(long)]
    plugin_dir: Vec<PathBuf>,
    /// A cache folder shared with other runs: samples, judgments and evaluations that another
    /// run already computed for the same model, prompts, settings and seed are read from it
    /// (and copied into this run's `cache/`), new ones written to it (`cargo xtask bench`
    /// gives its runs one).
    #[arg(long, value_name = "DIR")]
    shared_cache: Option<PathBuf>,
    /// Run folder (default: runs/<strategy>-<local date>_<time>, e.g.
    /// runs/temporal-2026-12-02_14-55-03).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder after a crash or Ctrl-C (finished stages are replayed
    /// from its cache; its config.json is used, so --config, -c, --strategy and --set are refused).
    #[arg(long, conflicts_with_all = ["out", "config", "strategy", "overrides", "set"])]
    resume: Option<PathBuf>,
    /// Print the plan (models, the server command for each, hand-over forms, in-process memory)
    /// and exit: nothing is started, trained or written.
    #[arg(long, conflicts_with = "resume")]
    dry_run: bool,
}

/// Arguments of `srlm config`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of the run config.
    Schema,
    /// Print the built-in default config as TOML.
    Default,
}

/// `srlm run`.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut config = match &a.config {
        Some(p) => RunConfig::from_toml_file(p)?,
        None => RunConfig::default(),
    };
    if let Some(s) = &a.strategy {
        config.strategy = s.clone();
    }
    let config = config.with_overrides(&a.overrides)?;
    let (out, resume) = match a.resume {
        Some(dir) => (dir, true),
        None => {
            let out = match a.out {
                Some(out) => out,
                None => default_run_dir(&config.strategy, &jiff::Zoned::now()),
            };
            (out, false)
        }
    };
    if a.dry_run {
        return crate::dry_run::print_plan(&config, &out);
    }
    let opts = RunOptions {
        out: out.clone(),
        resume,
        set_flags: a.set,
        plugin_dirs: crate::bundled::plugin_dirs(a.plugin_dir),
        shared_cache: a.shared_cache,
    };
    let started = std::time::Instant::now();
    crate::progress::install();
    let summary = run_pipeline(config, &opts)?;
    let report = srlm_pipeline::report::write_report(summary.run_dir.root())
        .context("writing the report")?;
    let fmt = |s: Option<f64>| s.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into());
    let scores: Vec<String> = summary
        .eval_scores
        .iter()
        .enumerate()
        .map(|(i, s)| format!("M{i} {}", fmt(*s)))
        .collect();
    out!("report: {}", report.display());
    out!("held-out score (0–5): {}", scores.join(" · "));
    out!(
        "pairs kept per iteration: {} (of {} prompts each)",
        summary
            .pairs
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        summary.prompts_per_iteration
    );
    for n in srlm_pipeline::report::never_acted(summary.metrics.iter()) {
        out!("warning: {n}");
    }
    out!(
        "wall time: {}",
        crate::progress::human_duration(std::time::Duration::from_secs_f64(summary.wall_seconds))
    );
    out!(
        "time in this process: {}",
        crate::progress::stage_times(started.elapsed())
    );
    Ok(())
}

/// `runs/<strategy>-<local date>_<time>`, with `-2`, `-3` … appended when that folder exists
/// (two runs started in the same second).
fn default_run_dir(strategy: &str, now: &jiff::Zoned) -> PathBuf {
    let name = std::path::Path::new(strategy)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = format!("runs/{name}-{}", now.strftime("%Y-%m-%d_%H-%M-%S"));
    let mut dir = PathBuf::from(&base);
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    dir
}

/// `srlm config …`.
pub fn config(c: ConfigCommand) -> anyhow::Result<()> {
    match c {
        ConfigCommand::Schema => out!(
            "{}",
            serde_json::to_string_pretty(&schemars::schema_for!(RunConfig))?
        ),
        ConfigCommand::Default => out!("{}", toml::to_string_pretty(&RunConfig::default())?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_folders_are_named_by_local_date_and_time() {
        let now: jiff::Zoned = "2026-12-02T14:55:03+01:00[+01:00]".parse().unwrap();
        assert_eq!(
            default_run_dir("temporal", &now),
            PathBuf::from("runs/temporal-2026-12-02_14-55-03")
        );
        // A plugin given as a path is named by its file stem.
        assert_eq!(
            default_run_dir("/opt/plugins/libmy_selector.so", &now),
            PathBuf::from("runs/libmy_selector-2026-12-02_14-55-03")
        );
    }
}
