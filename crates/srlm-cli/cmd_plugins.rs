//! `srlm plugins`: list, describe and check strategy plugins.
//!
//! Plugins are found by name on the search path (`--plugin-dir`, then `SRLM_PLUGIN_PATH`,
//! then the directory of the `srlm` executable) or loaded from a path. `check` goes through
//! [`srlm_pipeline::run::prepare_strategy`], what `srlm run --strategy … --set …` does before
//! its first iteration (options resolved, `k` from `sampling.k`, the strategy constructed), so
//! both report the same one-line errors.

use std::path::PathBuf;

use anyhow::Context as _;
use srlm_pipeline::config::RunConfig;
use srlm_strategy::{option_names, PluginSearch};

/// Where to look for plugins, besides `SRLM_PLUGIN_PATH` and the executable's directory.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SearchArgs {
    /// Extra directory to search for plugin libraries (repeatable; searched first).
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
}

/// The `plugins` subcommands.
#[derive(clap::Subcommand)]
pub enum PluginsCommand {
    /// List the plugins found on the search path (name, version, description, path).
    List {
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Show a plugin's description and the JSON Schema of its options.
    Describe {
        /// A strategy name (e.g. `temporal`) or the path of a plugin library.
        strategy: String,
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Load a plugin, validate options against its schema, construct the strategy with them
    /// (as `srlm run` does) and print the resolved options.
    Check {
        /// A strategy name (e.g. `temporal`) or the path of a plugin library.
        strategy: String,
        /// An option, `key=value` (repeatable); the value is JSON if it parses, else a string.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The run config whose `[strategy_options]` and `sampling.k` apply, as with
        /// `srlm run --config` (default: the built-in default config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, as with `srlm run -c` (e.g. `-c sampling.k=6`). Repeatable.
        #[arg(short = 'c', long = "config-set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        #[command(flatten)]
        search: SearchArgs,
    },
}

/// Runs the subcommand.
pub fn run(cmd: PluginsCommand) -> anyhow::Result<()> {
    let with_bundled = |s: SearchArgs| SearchArgs {
        plugin_dirs: crate::bundled::plugin_dirs(s.plugin_dirs),
    };
    let cmd = match cmd {
        PluginsCommand::List { search } => PluginsCommand::List {
            search: with_bundled(search),
        },
        PluginsCommand::Describe { strategy, search } => PluginsCommand::Describe {
            strategy,
            search: with_bundled(search),
        },
        PluginsCommand::Check {
            strategy,
            set,
            config,
            overrides,
            search,
        } => PluginsCommand::Check {
            strategy,
            set,
            config,
            overrides,
            search: with_bundled(search),
        },
    };
    match cmd {
        PluginsCommand::List { search } => list(&search),
        PluginsCommand::Describe { strategy, search } => describe(&strategy, &search),
        PluginsCommand::Check {
            strategy,
            set,
            config,
            overrides,
            search,
        } => check(strategy, &set, config, &overrides, &search),
    }
}

/// `srlm plugins check`: what `srlm run --config … -c … --strategy … --set …` does with its
/// plugin before the first iteration (load, options, `k` from `sampling.k`, K bounds, the
/// plugin's constructor), then the resolved options on stdout.
fn check(
    strategy: String,
    set: &[String],
    config: Option<PathBuf>,
    overrides: &[String],
    search: &SearchArgs,
) -> anyhow::Result<()> {
    let mut config = match &config {
        Some(p) => RunConfig::from_toml_file(p)?,
        None => RunConfig::default(),
    };
    config.strategy = strategy;
    let config = config.with_overrides(overrides)?;
    let prepared = srlm_pipeline::run::prepare_strategy(config, set, &search.plugin_dirs)?;
    out!(
        "{}",
        serde_json::to_string_pretty(&prepared.config.strategy_options)?
    );
    Ok(())
}

fn list(search: &SearchArgs) -> anyhow::Result<()> {
    let search = PluginSearch::standard(&search.plugin_dirs);
    let found = search.discover();
    if found.plugins.is_empty() {
        let dirs: Vec<String> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        out!("no strategy plugins found (searched: {})", dirs.join(", "));
    }
    let width = found
        .plugins
        .iter()
        .map(|p| p.name().len())
        .max()
        .unwrap_or(0)
        .max(4);
    let vwidth = found
        .plugins
        .iter()
        .map(|p| p.version().len())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut seen = Vec::new();
    for p in &found.plugins {
        let shadowed = if seen.contains(&p.name()) {
            " (shadowed)"
        } else {
            ""
        };
        seen.push(p.name());
        out!(
            "{:width$}  {:vwidth$}  {}{shadowed}",
            p.name(),
            p.version(),
            p.path().display()
        );
        out!("{:width$}  {}", "", first_sentence(p.description()));
    }
    for e in &found.errors {
        eprintln!("warning: {e}");
    }
    Ok(())
}

fn first_sentence(s: &str) -> &str {
    s.split_once(": ").map_or(s, |(head, _)| head)
}

fn describe(strategy: &str, search: &SearchArgs) -> anyhow::Result<()> {
    let plugin = PluginSearch::standard(&search.plugin_dirs).load(strategy)?;
    let schema = plugin.options_schema()?;
    out!("{} {}", plugin.name(), plugin.version());
    out!("path: {}", plugin.path().display());
    out!("interface: {}", plugin.interface_version());
    out!();
    out!("{}", plugin.description());
    out!();
    out!("options:");
    for name in option_names(&schema) {
        let prop = &schema["properties"][&name];
        let ty = match &prop["type"] {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Array(ts) => ts
                .iter()
                .filter_map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            _ => "any".to_string(),
        };
        let default = prop
            .get("default")
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        let doc = prop
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("");
        out!("  {name}: {ty}{default}");
        if !doc.is_empty() {
            out!("      {}", doc.replace('\n', " "));
        }
    }
    out!();
    out!("options schema (JSON Schema):");
    out!(
        "{}",
        serde_json::to_string_pretty(&schema).context("printing the options schema")?
    );
    Ok(())
}
