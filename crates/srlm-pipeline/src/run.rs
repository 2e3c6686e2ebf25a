//! The iteration loop: M0 → M1 → … → Mn with a strategy plugin, the run folder ([`RunDir`]),
//! held-out evaluation and the per-iteration diagnostics of Wang et al. 2025 (arXiv
//! 2508.06026, Sec. 2): chosen/rejected score gap and hidden-state cosine similarity.
//!
//! [`run`] is what `srlm run` calls: it resolves the config (or reads it back on `--resume`),
//! the strategy plugin and its options, and drives [`run_with`] on the in-process candle
//! backend. [`run_with`] takes any [`Backend`] and any [`StrategyRunner`], which is how the
//! loop and resume are unit tested without model files or plugin libraries.
//!
//! Every file is written atomically. A resumed run replays the loop from the start; every
//! finished stage comes back from `cache/`, so a crash at any point loses only the stage that
//! was running. The folder is locked (`srlm.lock`, an OS lock the kernel drops with the
//! process) while a run uses it, and `cache/identity.json` records the config, plugin and
//! initial model the results were computed for: a resume with anything else is refused.

use crate::candle::CandleBackend;
use crate::config::{ConfigError, HiddenStates, RunConfig};
use crate::eval::{EvalError, EvalOptions, EvalRow};
use crate::host::{train, HostError, IterationRecord, RunHost};
use crate::judges::{build_judge, judge_settings, load_judge_models};
use crate::metrics::{
    DpoMeans, EvalMetrics, IterationMetrics, NotComputed, StrategyValue, TrainingMetrics,
};
use crate::ports::{Backend, BackendError, DpoRun, ModelRef, ResponseLogp};
use crate::prompts::{load_pool, split, PromptsError};
use crate::run_dir::RunDir;
use crate::store::{key_of, with_engine, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use srlm_core::progress::StageKind;
use srlm_core::{write_atomic, write_jsonl_atomic, JsonlError, PreferencePair, PromptRecord};
use srlm_judge::{Judge, JudgeError, JudgeSettings, JudgeSpec};
use srlm_strategy::abi_stable::std_types::RVec;
use srlm_strategy::{
    host_mut, FfiPair, FfiPrompt, HostMut, IterationInfo, LoadedPlugin, LoadedStrategy,
    PluginError, PluginSearch, StrategyBox, StrategyError,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` (its `config.json` wins over any given config).
    pub resume: bool,
    /// `--set key=value` strategy options (they override `strategy_options` of the config).
    pub set_flags: Vec<String>,
    /// Extra plugin search folders.
    pub plugin_dirs: Vec<PathBuf>,
    /// A cache folder shared with other runs (`--shared-cache`; see [`crate::store`]).
    pub shared_cache: Option<PathBuf>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: RunDir,
    /// Held-out score of M0, M1, …, Mn (0–5; none when the eval judge scored nothing).
    pub eval_scores: Vec<Option<f64>>,
    /// Pairs kept per iteration.
    pub pairs: Vec<usize>,
    /// Prompts per iteration.
    pub prompts_per_iteration: usize,
    /// Wall time of the run's stages (seconds; replayed stages count their original time).
    pub wall_seconds: f64,
    /// The metrics lines.
    pub metrics: Vec<IterationMetrics>,
}

/// The strategy plugin that ran, as `config.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The library it was loaded from.
    pub path: String,
}

/// `config.json`: the resolved config (strategy options with every default) and the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRun {
    /// The config.
    #[serde(flatten)]
    pub config: RunConfig,
    /// The plugin that ran.
    pub strategy_plugin: PluginRecord,
}

/// Errors of a run: one line each, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The prompt pool.
    #[error(transparent)]
    Prompts(#[from] PromptsError),
    /// The strategy plugin could not be loaded, configured or run.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The model backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The host's own work (training, memo store).
    #[error(transparent)]
    Host(#[from] HostError),
    /// Writing the run folder.
    #[error(transparent)]
    Io(#[from] JsonlError),
    /// A judge spec that cannot be built (unknown model, template, weights).
    #[error("judge `{spec}`: {error}")]
    Judge {
        /// The spec.
        spec: String,
        /// What is wrong.
        error: JudgeError,
    },
    /// The held-out evaluation (its cause shown in the message, not chained).
    #[error("evaluation: {0}")]
    Eval(EvalError),
    /// A run folder (`--resume`, `eval --run`) without a readable `config.json`.
    #[error("{}: {error} (is it a run folder?)", path.display())]
    NotARun {
        /// The config file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// `config.json` of the run folder does not parse.
    #[error("{}: {message}", path.display())]
    BadRunConfig {
        /// The config file.
        path: PathBuf,
        /// serde's message.
        message: String,
    },
    /// A new run's folder is not free (a file, a folder srlm did not write, not writable).
    #[error("--out {0}")]
    Output(#[from] srlm_core::output::OutputError),
    /// Another process runs in this folder.
    #[error("{}: the run folder is in use by another srlm process{}; wait for it to finish or stop it", .path.display(), .pid.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid written in the lock file by its holder.
        pid: Option<String>,
    },
    /// The run folder was computed for another config, plugin or model.
    #[error("{}: this run was computed for another {what}; refusing to mix results (differs: {differs}). Start a new run with --out, or restore what changed", .path.display())]
    Mismatch {
        /// The run folder.
        path: PathBuf,
        /// "config", "strategy plugin", "initial model".
        what: &'static str,
        /// What differs (dotted keys, or old → new).
        differs: String,
    },
    /// A new run asked for a folder that already holds one.
    #[error("{} already holds a run; pass --resume {} to continue it, or choose another --out", .0.display(), .0.display())]
    AlreadyARun(PathBuf),
    /// `eval --run`: a model name the run does not have.
    #[error("{}: no model `{name}` in this run (it has {available})", .run.display())]
    UnknownModel {
        /// The run folder.
        run: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has.
        available: String,
    },
    /// The plugin returned pairs the host cannot resolve.
    #[error("iteration {iteration}: {error}")]
    Pairs {
        /// The iteration.
        iteration: usize,
        /// What is wrong.
        error: StrategyError,
    },
}

impl From<EvalError> for RunError {
    fn from(e: EvalError) -> Self {
        RunError::Eval(e)
    }
}

/// A strategy the loop can drive: a plugin loaded from a library ([`LoadedStrategy`]), or one
/// built in-process from a plugin crate's root module ([`StrategyBox`], for tests).
pub trait StrategyRunner {
    /// Runs one iteration through `host` and returns the plugin's pairs.
    ///
    /// # Errors
    /// The plugin's error, or a panic turned into one.
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: &[FfiPrompt],
        host: HostMut<'_>,
    ) -> Result<Vec<FfiPair>, RunError>;
}

impl StrategyRunner for LoadedStrategy {
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: &[FfiPrompt],
        host: HostMut<'_>,
    ) -> Result<Vec<FfiPair>, RunError> {
        Ok(LoadedStrategy::run_iteration(self, ctx, prompts, host)?)
    }
}

impl StrategyRunner for StrategyBox {
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: &[FfiPrompt],
        host: HostMut<'_>,
    ) -> Result<Vec<FfiPair>, RunError> {
        let prompts: RVec<FfiPrompt> = prompts.to_vec().into();
        srlm_strategy::Strategy::run_iteration(self, ctx, prompts, host)
            .into_result()
            .map(RVec::into_vec)
            .map_err(|error| RunError::Pairs {
                iteration: ctx.iteration as usize,
                error,
            })
    }
}

/// The kind in a run folder's output marker (`srlm.json`).
pub const RUN_MARKER: &str = "run";

/// Reads the config of a run to resume, or checks that a new run's folder is free.
///
/// # Errors
/// [`RunError::NotARun`], [`RunError::BadRunConfig`], [`RunError::AlreadyARun`],
/// [`RunError::Output`] (a file or a folder srlm did not write at `out`, or not writable).
pub fn prepare_config(
    config: RunConfig,
    dir: &RunDir,
    resume: bool,
) -> Result<(RunConfig, Option<PluginRecord>), RunError> {
    let path = dir.config();
    // A folder in use is refused before any model, judge or server is started.
    RunLock::check_free(dir)?;
    if !resume {
        if path.exists() {
            return Err(RunError::AlreadyARun(dir.root().to_path_buf()));
        }
        if aborted_start(dir) {
            return Ok((config, None));
        }
        return match srlm_core::output::claim_dir(dir.root(), RUN_MARKER, false) {
            Ok(_) => Ok((config, None)),
            Err(srlm_core::output::OutputError::Exists { .. }) => {
                Err(RunError::AlreadyARun(dir.root().to_path_buf()))
            }
            Err(e) => Err(e.into()),
        };
    }
    let run = read_resolved(dir)?;
    Ok((run.config, Some(run.strategy_plugin)))
}

/// Whether `dir` holds only what a run writes before its `config.json` (the lock, the marker,
/// `cache/identity.json`): a start that stopped there, which a new run may take over.
fn aborted_start(dir: &RunDir) -> bool {
    let Ok(entries) = std::fs::read_dir(dir.root()) else {
        return false;
    };
    let mut any = false;
    for e in entries.flatten() {
        any = true;
        let name = e.file_name();
        let ok = match name.to_str() {
            Some("srlm.lock") | Some(srlm_core::output::MARKER) => true,
            Some("cache") => std::fs::read_dir(e.path())
                .is_ok_and(|c| c.flatten().all(|f| f.path() == dir.identity())),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    any && !dir.config().exists()
}

/// Reads a run folder's `config.json`.
fn read_resolved(dir: &RunDir) -> Result<ResolvedRun, RunError> {
    let path = dir.config();
    let text = std::fs::read_to_string(&path).map_err(|error| RunError::NotARun {
        path: path.clone(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| RunError::BadRunConfig {
        path,
        message: e.to_string(),
    })
}

/// The strategy options a run gives its plugin, before the plugin fills its defaults: the
/// config's `strategy_options`, then the `--set` flags, which override them key by key. The
/// plugin owns `k`: when its `schema` declares `k` without a default value and the user gave
/// none, the run's `sampling.k` fills it; a plugin that declares a default (`spin`: 1) keeps it.
///
/// # Errors
/// [`srlm_strategy::OptionsError`] for a malformed or repeated `--set` flag.
pub fn merge_strategy_options(
    config: &RunConfig,
    set_flags: &[String],
    schema: &serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, srlm_strategy::OptionsError> {
    let mut options = config.strategy_options.clone();
    options.extend(srlm_strategy::parse_set_flags(set_flags)?);
    if !options.contains_key("k") {
        if let Some(k) = schema.pointer("/properties/k") {
            if k.get("default").is_none_or(serde_json::Value::is_null) {
                options.insert("k".into(), json!(config.sampling.k));
            }
        }
    }
    Ok(options)
}

/// [`merge_strategy_options`], validated against the plugin's schema, with every default
/// filled in by the plugin.
///
/// # Errors
/// [`PluginError::Options`] for a malformed flag, an unknown key or a wrong type;
/// [`PluginError::Constructor`] when the plugin rejects the values.
pub fn strategy_options(
    config: &RunConfig,
    set_flags: &[String],
    plugin: &LoadedPlugin,
) -> Result<serde_json::Value, PluginError> {
    let schema = plugin.options_schema()?;
    let options = merge_strategy_options(config, set_flags, &schema).map_err(|error| {
        PluginError::Options {
            path: plugin.path().to_path_buf(),
            error,
        }
    })?;
    plugin.resolve_options(&options)
}

/// A run's strategy, built: what [`prepare_strategy`] returns.
pub struct PreparedStrategy {
    /// The plugin library `config.strategy` named.
    pub plugin: LoadedPlugin,
    /// The config with `strategy_options` complete (the plugin's defaults filled in).
    pub config: RunConfig,
    /// The strategy the plugin's constructor built from those options.
    pub strategy: LoadedStrategy,
}

/// What [`run`] does with its plugin before the first iteration, without a run folder (and so
/// what `srlm plugins check` runs): loads `config.strategy` from the search path
/// ([`PluginSearch::standard`] over `plugin_dirs`), resolves its options
/// ([`strategy_options`]: the config's, the `--set` flags, `k` from `sampling.k` when the
/// plugin declares `k` without a default), checks the config with them
/// ([`RunConfig::validate`]: K bounds), and builds the strategy with the plugin's
/// constructor.
///
/// # Errors
/// [`RunError::Plugin`]: a loading error, [`PluginError::Options`],
/// [`PluginError::Constructor`] (the plugin's `new` rejected the options) or
/// [`PluginError::Panicked`]; [`RunError::Config`] for a K out of bounds.
pub fn prepare_strategy(
    mut config: RunConfig,
    set_flags: &[String],
    plugin_dirs: &[PathBuf],
) -> Result<PreparedStrategy, RunError> {
    let plugin = PluginSearch::standard(plugin_dirs).load(&config.strategy)?;
    let options = strategy_options(&config, set_flags, &plugin)?;
    config.strategy_options = options.as_object().cloned().unwrap_or_default();
    config.validate()?;
    let strategy = plugin.instantiate(&options)?;
    Ok(PreparedStrategy {
        plugin,
        config,
        strategy,
    })
}

/// Runs (or resumes) a run with a strategy plugin found by name or path, on the in-process
/// candle backend.
///
/// # Errors
/// See [`RunError`].
pub fn run(config: RunConfig, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let dir = RunDir::new(&opts.out);
    if opts.resume {
        if let Some(summary) = finished_summary(&dir)? {
            srlm_core::progress::note(format!(
                "{} is already complete: nothing to resume",
                dir.root().display()
            ));
            return Ok(summary);
        }
    }
    let (config, _) = prepare_config(config, &dir, opts.resume)?;
    config.validate()?;
    // On resume the stored options are complete (k included), so this changes nothing.
    let PreparedStrategy {
        plugin,
        config,
        mut strategy,
    } = prepare_strategy(config, &opts.set_flags, &opts.plugin_dirs)?;
    let record = PluginRecord {
        name: plugin.name().to_string(),
        version: plugin.version().to_string(),
        path: plugin.path().display().to_string(),
    };
    let device = srlm_model::default_device();
    let frozen_base = config.frozen_base();
    let generator: Box<dyn Backend> = if config.engine.kind == srlm_engine::EngineKind::InProcess {
        Box::new(CandleBackend::with_frozen_base(device, frozen_base))
    } else {
        Box::new(crate::served::ServedBackend::new(
            config.engine.clone(),
            device,
            &dir.engine(),
            &config.model,
            frozen_base,
        )?)
    };
    let shared = opts
        .shared_cache
        .as_ref()
        .map(|d| d.join(crate::store::build_namespace()));
    if config.trainer.is_external() {
        let backend = crate::external::ExternalBackend::new(
            generator.as_ref(),
            config.trainer.clone(),
            &dir.cache(),
        )?;
        run_sharing(&config, &dir, &record, &mut strategy, &backend, shared)
    } else {
        run_sharing(
            &config,
            &dir,
            &record,
            &mut strategy,
            generator.as_ref(),
            shared,
        )
    }
}

/// How a run evaluated its models, for `srlm eval --run`: the same held-out prompts (the
/// run's seeded split, prompts too long for the context left out as the run left them out), the
/// same eval judge and settings, the same answer length.
#[derive(Debug, Clone)]
pub struct RunEvaluation {
    /// The run's resolved config.
    pub config: RunConfig,
    /// The held-out prompts, in the run's order.
    pub prompts: Vec<PromptRecord>,
    /// The eval judge (`eval.judge`, or the training judge when it says `same`).
    pub judge: JudgeSpec,
    /// The judge settings of the run (mode, samples, template).
    pub settings: JudgeSettings,
}

/// The run's prompt pool split with its seed: held-out prompts and one chunk per iteration.
fn config_split(config: &RunConfig) -> Result<crate::prompts::Split, RunError> {
    let pool = load_pool(&config.prompts.source)?;
    Ok(split(
        pool,
        config.seed,
        config.prompts.eval,
        config.prompts.per_iteration,
        config.iterations,
    )?)
}

/// The held-out prompt ids the run in `dir` answered (`eval/M0.jsonl`), sorted; `None` when
/// that file is missing.
pub fn answered_prompt_ids(dir: &RunDir) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.eval_answers(0)).ok()?;
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["prompt_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    Some(ids)
}

impl RunEvaluation {
    /// Reads the run in `dir` (its `config.json`) and recomputes its held-out split.
    ///
    /// # Errors
    /// [`RunError::NotARun`] / [`RunError::BadRunConfig`] for the folder, prompt-pool errors,
    /// [`RunError::Judge`] for the judge settings (a template file that is gone).
    pub fn of(dir: &RunDir) -> Result<Self, RunError> {
        let config = read_resolved(dir)?.config;
        let sp = config_split(&config)?;
        let judge = config.eval.judge.resolve(&config.judge.spec);
        let settings = judge_settings(&config.judge).map_err(|error| RunError::Judge {
            spec: config.judge.spec.to_string(),
            error,
        })?;
        // The run skipped held-out prompts that did not fit; its M0 answers name the rest.
        let prompts = match answered_prompt_ids(dir) {
            Some(ids) if !ids.is_empty() => sp
                .eval
                .into_iter()
                .filter(|p| ids.binary_search(&p.id).is_ok())
                .collect(),
            _ => sp.eval,
        };
        Ok(RunEvaluation {
            config,
            prompts,
            judge,
            settings,
        })
    }

    /// The model reference of `name` in the run: `M0` is the run's initial model, `M<i>`
    /// (1 ≤ i ≤ iterations) the checkpoint `iter_<i>/checkpoint`, `last` the newest one there.
    ///
    /// # Errors
    /// [`RunError::UnknownModel`] naming the models the run has.
    pub fn model(&self, dir: &RunDir, name: &str) -> Result<String, RunError> {
        let have: Vec<usize> = (1..=self.config.iterations)
            .filter(|&i| dir.iteration(i).checkpoint().is_dir())
            .collect();
        let index = match name {
            "last" => have.last().copied().unwrap_or(0),
            _ => name
                .strip_prefix(['M', 'm'])
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i == 0 || have.contains(&i))
                .ok_or_else(|| RunError::UnknownModel {
                    run: dir.root().to_path_buf(),
                    name: name.to_string(),
                    available: std::iter::once("M0".to_string())
                        .chain(have.iter().map(|i| format!("M{i}")))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
        };
        Ok(if index == 0 {
            self.config.model.clone()
        } else {
            dir.iteration(index).checkpoint().display().to_string()
        })
    }
}

/// The summary of the run in `dir` when it has finished every iteration, read from its files
/// without loading a model or a plugin: `metrics.jsonl` holds M0's line and one line per
/// iteration, `config.json` is the config `cache/identity.json` recorded, and the last
/// iteration's checkpoint is whole (its safetensors header matches its length). `None` for
/// anything else: a resume then continues the run, recomputes what is damaged and reports what
/// is wrong with the folder.
///
/// # Errors
/// [`RunError::Locked`] when another process uses the folder.
pub fn finished_summary(dir: &RunDir) -> Result<Option<RunSummary>, RunError> {
    RunLock::check_free(dir)?;
    Ok(finished(dir))
}

fn finished(dir: &RunDir) -> Option<RunSummary> {
    let resolved = read_resolved(dir).ok()?;
    let identity: RunIdentity =
        serde_json::from_str(&std::fs::read_to_string(dir.identity()).ok()?).ok()?;
    if serde_json::to_value(&resolved.config).ok()? != identity.config {
        return None;
    }
    let iterations = resolved.config.iterations;
    let recorded = crate::report::read_metrics(&dir.metrics()).ok()?;
    let metrics: Vec<IterationMetrics> = recorded
        .iterations
        .iter()
        .map(|m| m.metrics().clone())
        .collect();
    let complete = metrics.len() == iterations + 1
        && metrics
            .iter()
            .enumerate()
            .all(|(i, m)| m.iteration as usize == i)
        && (iterations == 0 || {
            let checkpoint = dir.iteration(iterations).checkpoint();
            let weights = srlm_model::checkpoint_weights(&checkpoint);
            checkpoint.is_dir() && (!weights.exists() || srlm_model::safetensors_complete(&weights))
        });
    if !complete {
        return None;
    }
    Some(RunSummary {
        run_dir: dir.clone(),
        eval_scores: metrics.iter().map(|m| m.eval.score).collect(),
        pairs: metrics[1..]
            .iter()
            .map(|m| m.training.as_ref().map_or(0, |t| t.pairs))
            .collect(),
        prompts_per_iteration: resolved.config.prompts.per_iteration,
        wall_seconds: metrics.iter().filter_map(|m| m.wall_seconds).sum(),
        metrics,
    })
}

/// Runs the loop in `dir` with a resolved config (strategy options complete), a strategy and
/// a backend. A folder with a `config.json` is resumed (its config must be `config`).
///
/// # Errors
/// See [`RunError`].
pub fn run_with(
    config: &RunConfig,
    dir: &RunDir,
    plugin: &PluginRecord,
    strategy: &mut dyn StrategyRunner,
    backend: &dyn Backend,
) -> Result<RunSummary, RunError> {
    run_sharing(config, dir, plugin, strategy, backend, None)
}

/// [`run_with`], with a cache folder shared with other runs ([`crate::store`]).
///
/// # Errors
/// See [`RunError`].
pub fn run_sharing(
    config: &RunConfig,
    dir: &RunDir,
    plugin: &PluginRecord,
    strategy: &mut dyn StrategyRunner,
    backend: &dyn Backend,
    shared_cache: Option<PathBuf>,
) -> Result<RunSummary, RunError> {
    let loop_ = Loop::start(config, dir, plugin, backend, shared_cache)?;
    loop_.iterate(strategy)
}

/// What a run folder's results were computed for (`cache/identity.json`): a resume must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunIdentity {
    /// The resolved config.
    config: serde_json::Value,
    /// The plugin's name and version.
    plugin: (String, String),
    /// The initial model's weights (SHA-256; empty for a model without a weights file).
    model_sha256: String,
}

/// Holds the run folder's lock (`srlm.lock`) until dropped; the OS releases it if the process
/// dies.
struct RunLock(#[allow(dead_code)] std::fs::File);

impl RunLock {
    /// Fails with [`RunError::Locked`] when another process holds `dir`'s lock (a run folder
    /// in use); nothing is created.
    fn check_free(dir: &RunDir) -> Result<(), RunError> {
        let path = dir.lock();
        let Ok(file) = std::fs::OpenOptions::new().read(true).open(&path) else {
            return Ok(());
        };
        match file.try_lock_shared() {
            Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Locked {
                pid: holder_pid(&path),
                path,
            }),
            _ => Ok(()),
        }
    }

    /// Locks `dir` (creating it), or says which process holds it.
    fn acquire(dir: &RunDir) -> Result<Self, RunError> {
        let path = dir.lock();
        let io = |error| {
            RunError::Io(srlm_core::JsonlError::Io {
                path: path.clone(),
                error,
            })
        };
        std::fs::create_dir_all(dir.root()).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = holder_pid(&path);
                return Err(RunError::Locked { path, pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        use std::io::Write;
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunLock(file))
    }
}

/// The pid the lock file names, when that process runs (the file keeps the last holder's pid;
/// another process, such as a tool, may hold the lock without writing one).
fn holder_pid(path: &Path) -> Option<String> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    srlm_core::output::process_alive(pid).then(|| pid.to_string())
}

/// The dotted keys where `a` and `b` differ (`sampling.temperature`, `prompts.eval`, …).
/// The dotted keys whose values differ between a recorded config `a` and the config `b` of
/// this resume, as `key: old → new`. A key `a` does not have (a setting added to srlm after the
/// run started) counts as equal when `b` gives it srlm's default value, so a run survives an
/// upgrade of srlm that adds settings.
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    fn walk(
        a: Option<&Value>,
        b: &Value,
        default: Option<&Value>,
        at: &str,
        out: &mut Vec<String>,
    ) {
        let Some(a) = a else {
            if default != Some(b) {
                out.push(format!("{at}: – → {b}"));
            }
            return;
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let key = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    let null = Value::Null;
                    walk(
                        x.get(k).or(y.get(k).is_none().then_some(&null)),
                        y.get(k).unwrap_or(&null),
                        default.and_then(|d| d.get(k)),
                        &key,
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{at}: {a} → {b}")),
            _ => {}
        }
    }
    let default = serde_json::to_value(RunConfig::default()).expect("config serialises");
    let mut out = Vec::new();
    walk(Some(a), b, Some(&default), "", &mut out);
    out
}

/// Checks the run folder's results were computed for `now` (writes `now` when the folder has
/// no record yet, i.e. a new run or one from before srlm kept it).
fn verify_identity(dir: &RunDir, now: &RunIdentity) -> Result<(), RunError> {
    let path = dir.identity();
    let Ok(text) = std::fs::read_to_string(&path) else {
        let text = serde_json::to_string_pretty(now).expect("identity serialises");
        return Ok(write_atomic(&path, text.as_bytes())?);
    };
    let then: RunIdentity = serde_json::from_str(&text).map_err(|e| RunError::BadRunConfig {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mismatch = |what, differs: String| RunError::Mismatch {
        path: dir.root().to_path_buf(),
        what,
        differs,
    };
    if then.model_sha256 != now.model_sha256 {
        return Err(mismatch(
            "initial model",
            format!(
                "weights sha256 {} → {}",
                short(&then.model_sha256),
                short(&now.model_sha256)
            ),
        ));
    }
    if then.plugin != now.plugin {
        return Err(mismatch(
            "strategy plugin",
            format!(
                "{} {} → {} {}",
                then.plugin.0, then.plugin.1, now.plugin.0, now.plugin.1
            ),
        ));
    }
    let keys = differing_keys(&then.config, &now.config);
    if !keys.is_empty() {
        return Err(mismatch("config", keys.join("; ")));
    }
    if then.config != now.config {
        // Settings added since, at their defaults: the record names them from now on.
        let text = serde_json::to_string_pretty(now).expect("identity serialises");
        write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

/// The first 12 hex digits of a digest (or `none`).
fn short(digest: &str) -> &str {
    if digest.is_empty() {
        "none"
    } else {
        &digest[..digest.len().min(12)]
    }
}

/// A run in progress.
struct Loop<'a> {
    config: &'a RunConfig,
    dir: &'a RunDir,
    backend: &'a dyn Backend,
    store: Store,
    eval_spec: JudgeSpec,
    judge_settings: JudgeSettings,
    initial: ModelRef,
    plugin_name: String,
    eval_prompts: Vec<PromptRecord>,
    /// Each out-of-distribution set's prompts (`eval.ood`), those that fit the context.
    ood_prompts: Vec<(crate::ood::OodSet, Vec<PromptRecord>)>,
    chunks: Vec<Vec<PromptRecord>>,
    /// Per chunk, the prompts skipped because they do not fit the context.
    skipped: Vec<usize>,
    /// Held for the run's lifetime.
    _lock: RunLock,
}

/// The prompts of `prompts` whose chat-rendered tokens plus `max_new_tokens` fit `model`'s
/// context, and how many did not (each named in a warning).
fn fitting(
    backend: &dyn Backend,
    model: &ModelRef,
    prompts: Vec<PromptRecord>,
    max_new_tokens: usize,
) -> Result<(Vec<PromptRecord>, usize), RunError> {
    let view = backend.judge_model(model)?;
    let judge_err = |error| RunError::Judge {
        spec: "prompt length check".into(),
        error,
    };
    let context = view.context_length();
    let mut kept = Vec::with_capacity(prompts.len());
    let mut skipped = 0;
    for p in prompts {
        let text = view.render_user_turn(&p.prompt).map_err(judge_err)?;
        let n = view.encode(&text).map_err(judge_err)?.len();
        if n + max_new_tokens > context {
            srlm_core::progress::note(format!(
                "skipping prompt `{}`: {n} tokens + {max_new_tokens} new exceed the context of {context}",
                p.id
            ));
            skipped += 1;
        } else {
            kept.push(p);
        }
    }
    Ok((kept, skipped))
}

impl<'a> Loop<'a> {
    /// Loads the prompts and models, checks the judges, writes `config.json` for a new run.
    fn start(
        config: &'a RunConfig,
        dir: &'a RunDir,
        plugin: &PluginRecord,
        backend: &'a dyn Backend,
        shared_cache: Option<PathBuf>,
    ) -> Result<Self, RunError> {
        let sp = config_split(config)?;
        srlm_core::progress::note(format!("loading model `{}`", config.model));
        let digest = backend.weights_digest(&config.model)?;
        // A bf16 base computes other numbers than the f32 weights: its samples, scores and
        // trained models are other memo entries. (An exact base computes the same numbers:
        // same key.)
        let mut m0_key = json!({"model": config.model, "sha256": digest});
        if config.frozen_base() == Some(srlm_model::FrozenBase::Bf16) {
            m0_key["base"] = json!("bf16");
        }
        let initial = ModelRef::new(key_of(&m0_key), config.model.clone());
        backend.load(&initial)?;
        let eval_spec = config.eval.judge.resolve(&config.judge.spec);
        for spec in [&config.judge.spec, &eval_spec] {
            load_judge_models(backend, spec)?;
        }
        let judge_settings = judge_settings(&config.judge).map_err(|error| RunError::Judge {
            spec: config.judge.spec.to_string(),
            error,
        })?;
        // Nothing is written before the judges are checked, so a typo leaves no run folder
        // behind; from here on the folder is this process's until it ends.
        for spec in [&config.judge.spec, &eval_spec] {
            build_judge(spec, &judge_settings, backend, &initial).map_err(|error| {
                RunError::Judge {
                    spec: spec.to_string(),
                    error,
                }
            })?;
        }
        // Prompts that cannot fit the context with their new tokens are skipped (named, and
        // counted in the metrics), so one long prompt never stops a run.
        let (eval_prompts, _) = fitting(backend, &initial, sp.eval, config.eval.max_new_tokens)?;
        let mut ood_prompts = Vec::new();
        for set in &config.eval.ood {
            let first: Vec<PromptRecord> = set
                .load()?
                .into_iter()
                .take(config.eval.ood_prompts)
                .collect();
            let (kept, _) = fitting(backend, &initial, first, set.max_new_tokens())?;
            ood_prompts.push((*set, kept));
        }
        let mut chunks = Vec::new();
        let mut skipped = Vec::new();
        for chunk in sp.chunks {
            let (kept, n) = fitting(backend, &initial, chunk, config.sampling.max_new_tokens)?;
            chunks.push(kept);
            skipped.push(n);
        }
        let lock = RunLock::acquire(dir)?;
        let identity = RunIdentity {
            config: serde_json::to_value(config).expect("config serialises"),
            plugin: (plugin.name.clone(), plugin.version.clone()),
            model_sha256: digest.clone(),
        };
        if dir.exists() {
            // A resume, or a second new run that raced into this folder: the results here must
            // have been computed for this config, plugin and model.
            if !dir.identity().exists() {
                // A folder from before srlm recorded identities (or a start that stopped before
                // it): its config.json as written, not as read back with today's defaults, must
                // equal this config (a key added since, such as `judge.neutralise_injections`,
                // changes every cache key, so the earlier results could not be reused anyway).
                let mut stored: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.config()).map_err(|error| RunError::NotARun {
                        path: dir.config(),
                        error,
                    })?,
                )
                .map_err(|e| RunError::BadRunConfig {
                    path: dir.config(),
                    message: e.to_string(),
                })?;
                let stored_plugin = stored
                    .as_object_mut()
                    .and_then(|o| o.remove("strategy_plugin"))
                    .unwrap_or_default();
                let mut keys = differing_keys(&stored, &identity.config);
                for (field, now) in [("name", &plugin.name), ("version", &plugin.version)] {
                    if stored_plugin[field].as_str() != Some(now.as_str()) {
                        keys.push(format!(
                            "strategy_plugin.{field}: {} → {now}",
                            stored_plugin[field]
                        ));
                    }
                }
                if !keys.is_empty() {
                    return Err(RunError::Mismatch {
                        path: dir.root().to_path_buf(),
                        what: "config",
                        differs: keys.join("; "),
                    });
                }
            }
            verify_identity(dir, &identity)?;
        }
        let this = Loop {
            _lock: lock,
            config,
            dir,
            backend,
            store: Store::new(dir.cache()).with_shared(shared_cache),
            eval_spec,
            judge_settings,
            initial,
            plugin_name: plugin.name.clone(),
            eval_prompts,
            ood_prompts,
            chunks,
            skipped,
        };
        if !dir.exists() {
            let resolved = ResolvedRun {
                config: config.clone(),
                strategy_plugin: plugin.clone(),
            };
            let text = serde_json::to_string_pretty(&resolved).expect("config serialises");
            // config.json last: it is what makes the folder a run (a start that stops before it
            // leaves a folder the next new run takes over).
            let record = serde_json::to_string_pretty(&identity).expect("identity serialises");
            write_atomic(&dir.identity(), record.as_bytes())?;
            srlm_core::output::write_marker(dir.root(), RUN_MARKER)?;
            write_atomic(&dir.config(), text.as_bytes())?;
        }
        Ok(this)
    }

    /// The judge `spec` names, with `current` as `self`.
    fn judge(&self, spec: &JudgeSpec, current: &ModelRef) -> Result<Box<dyn Judge + 'a>, RunError> {
        let judge_err = |error| RunError::Judge {
            spec: spec.to_string(),
            error,
        };
        build_judge(spec, &self.judge_settings, self.backend, current).map_err(judge_err)
    }

    /// Runs every iteration (finished ones come back from the cache).
    fn iterate(self, strategy: &mut dyn StrategyRunner) -> Result<RunSummary, RunError> {
        let t = Instant::now();
        let eval0 = self.evaluate(&self.initial, 0)?;
        let wall0 = self.remembered_wall("evalwall", &self.initial.id, t.elapsed().as_secs_f64());
        let mut metrics = vec![IterationMetrics {
            iteration: 0,
            eval: eval0,
            wall_seconds: Some(wall0),
            ..Default::default()
        }];
        self.write_metrics(&metrics)?;
        let mut current = self.initial.clone();
        let mut pairs_kept = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let it = i + 1;
            srlm_core::progress::note(format!(
                "iteration {it}/{}: {} prompts, strategy {}",
                self.config.iterations,
                chunk.len(),
                self.plugin_name
            ));
            let (mut line, pairs, next) = self.iteration(it, chunk, &current, strategy)?;
            if let Some(t) = line.training.as_mut() {
                t.prompts_skipped = self.skipped[i];
            }
            pairs_kept.push(pairs.len());
            metrics.push(line);
            self.write_metrics(&metrics)?;
            if current != self.initial && current.id != next.id {
                self.backend.release(&current);
            }
            current = next;
        }
        let wall_seconds = metrics.iter().filter_map(|m| m.wall_seconds).sum();
        Ok(RunSummary {
            run_dir: self.dir.clone(),
            eval_scores: metrics.iter().map(|m| m.eval.score).collect(),
            pairs: pairs_kept,
            prompts_per_iteration: self.config.prompts.per_iteration,
            wall_seconds,
            metrics,
        })
    }

    fn write_metrics(&self, metrics: &[IterationMetrics]) -> Result<(), RunError> {
        let lines: Vec<serde_json::Value> = metrics.iter().map(IterationMetrics::to_json).collect();
        Ok(write_jsonl_atomic(&self.dir.metrics(), &lines)?)
    }

    /// Wall time of a stage, remembered across resumes (the first measurement wins).
    fn remembered_wall(&self, kind: &str, id: &str, now: f64) -> f64 {
        let key = key_of(&json!([kind, id]));
        match self.store.get::<f64>(kind, &key) {
            Some(w) => w,
            None => {
                let _ = self.store.put(kind, &key, &now);
                now
            }
        }
    }

    /// Iteration `it`: from the cache when it finished before, else run.
    fn iteration(
        &self,
        it: usize,
        chunk: &[PromptRecord],
        current: &ModelRef,
        strategy: &mut dyn StrategyRunner,
    ) -> Result<(IterationMetrics, Vec<PreferencePair>, ModelRef), RunError> {
        let t = Instant::now();
        let checkpoint = self.dir.iteration(it).checkpoint();
        let key = key_of(&json!({
            "current": current.id, "prompts": chunk.iter().map(|p| &p.id).collect::<Vec<_>>(),
            "config": self.config, "iteration": it,
        }));
        type Cached = (IterationMetrics, Vec<PreferencePair>, String);
        if let (Some((line, pairs, next_id)), true) = (
            self.store.get::<Cached>("iteration", &key),
            checkpoint.is_dir(),
        ) {
            // The model as trained (f32, in the cache) when the run folder shows a bf16/f16
            // copy or M_i = M_{i-1}; the checkpoint otherwise (an f32 checkpoint is the same
            // file).
            let trained = self.store.path("model", &next_id, "");
            let next = if next_id == self.initial.id {
                self.initial.clone()
            } else if srlm_model::checkpoint_weights(&trained).is_file() {
                ModelRef::at_dir(next_id, &trained)
            } else {
                ModelRef::at_dir(next_id, &checkpoint)
            };
            match self.backend.load(&next) {
                Ok(()) => {
                    // The pairs file is restored if it was lost; it equals what the iteration
                    // wrote.
                    write_jsonl_atomic(&self.dir.iteration(it).pairs(), &pairs)?;
                    return Ok((line, pairs, next));
                }
                // A damaged checkpoint: the iteration is replayed (its samples, judgments and
                // model come back from the cache, or are computed again) and rewrites it.
                Err(e) => srlm_core::progress::note(format!(
                    "iteration {it}: model {} cannot be loaded ({e}); computing the \
                     iteration again",
                    next.location
                )),
            }
        }
        let (mut line, pairs, next, temporaries) =
            self.train_iteration(it, chunk, current, strategy)?;
        line.eval = self.evaluate(&next, it)?;
        line.wall_seconds = Some(t.elapsed().as_secs_f64());
        self.store
            .put("iteration", &key, &(&line, &pairs, &next.id))?;
        // The temporary models' weights (TSR's M_f) are not needed once the iteration is
        // recorded: a resume takes the iteration from the cache, and their samples stay there.
        for m in temporaries {
            let dir = Path::new(&m.location);
            if m != next && dir.is_dir() && srlm_core::output::is_within(dir, &self.dir.cache()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok((line, pairs, next))
    }

    /// Runs the plugin, writes the iteration's files, trains M_{i+1} = DPO(M_i, pairs).
    fn train_iteration(
        &self,
        it: usize,
        chunk: &[PromptRecord],
        current: &ModelRef,
        strategy: &mut dyn StrategyRunner,
    ) -> Result<
        (
            IterationMetrics,
            Vec<PreferencePair>,
            ModelRef,
            Vec<ModelRef>,
        ),
        RunError,
    > {
        let files = self.dir.iteration(it);
        let judge = self.judge(&self.config.judge.spec, current)?;
        let mut host = RunHost::new(
            self.backend,
            judge,
            &self.initial,
            current,
            self.config,
            chunk,
            &self.store,
            it,
        )
        .with_files(files.clone());
        let ctx = IterationInfo {
            iteration: it as u32,
            total_iterations: self.config.iterations as u32,
            seed: self.config.seed,
        };
        let prompts: Vec<FfiPrompt> = chunk.iter().map(FfiPrompt::from).collect();
        let ffi_pairs = strategy.run_iteration(ctx, &prompts, host_mut(&mut host))?;
        let pairs = host
            .resolve_pairs(&ffi_pairs, &self.plugin_name)
            .map_err(|error| RunError::Pairs {
                iteration: it,
                error,
            })?;
        let returned = pairs.len();
        let pairs = subsample(
            pairs,
            self.config.max_pairs_per_iteration,
            self.config.seed,
            it,
        );
        let record = host.into_record();
        write_jsonl_atomic(
            &files.samples(),
            &record.samples.values().collect::<Vec<_>>(),
        )?;
        write_jsonl_atomic(
            &files.judgments(),
            &record.judgments.values().collect::<Vec<_>>(),
        )?;
        write_jsonl_atomic(&files.pairs(), &pairs)?;
        for (n, run) in record.temporary_runs.iter().enumerate() {
            let v = serde_json::to_value(run).expect("summary serialises");
            let text = serde_json::to_string_pretty(&v).expect("json");
            write_atomic(&files.temporary_summary(n), text.as_bytes())?;
        }
        let (cosine, not_computed) = match self.hidden_states_skipped(current)? {
            None => (self.hidden_cosine(current, &pairs)?, Vec::new()),
            Some(reason) => {
                srlm_core::progress::note(format!(
                    "iteration {it}: hidden_cosine not computed: {reason}"
                ));
                let skipped = NotComputed {
                    metric: "hidden_cosine".into(),
                    reason,
                };
                (None, vec![skipped])
            }
        };

        // M_{i+1} = DPO(M_i, pairs), reference M_i.
        let (next, dpo) = if pairs.is_empty() {
            srlm_core::progress::note(format!(
                "iteration {it}: no pairs kept; M_{it} = M_{}",
                it - 1
            ));
            // The run folder is this run's (locked); an earlier save is replaced.
            let _ = std::fs::remove_dir_all(files.checkpoint());
            self.backend
                .save_checkpoint(current, &files.checkpoint(), self.config.save_dtype)?;
            (current.clone(), None)
        } else {
            let _ = std::fs::remove_dir_all(files.checkpoint());
            let (next, run) = train(
                self.backend,
                &self.store,
                self.config,
                current,
                &pairs,
                Some(&files.dpo_log()),
                Some(&files.trainer()),
            )?;
            self.backend
                .save_checkpoint(&next, &files.checkpoint(), self.config.save_dtype)?;
            (next, Some(run))
        };
        for m in &record.temporaries {
            if *m != next {
                self.backend.release(m);
            }
        }
        let mut training = training_metrics(
            chunk.len(),
            &pairs,
            cosine,
            not_computed,
            &record,
            dpo.as_ref(),
        );
        training.pairs_before_subsampling = (returned > pairs.len()).then_some(returned);
        if let Some(spec) = &self.config.diagnostics.second_judge {
            let (agreement, failures) = self.second_judge(spec, it, chunk, current, &record)?;
            training.judge_second_agreement = agreement;
            training.judge_second_parse_failure_rate = failures;
        }
        let line = IterationMetrics {
            iteration: it as u32,
            training: Some(training),
            strategy: record
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), StrategyValue(Some(*v))))
                .collect(),
            ..Default::default()
        };
        Ok((line, pairs, next, record.temporaries))
    }

    /// The second judge's pass over the iteration's samples (`diagnostics.second_judge`):
    /// Spearman's rank correlation with the run judge's scores over the samples both scored,
    /// and the second judge's fraction of samples without a score. Memoised.
    fn second_judge(
        &self,
        spec: &JudgeSpec,
        it: usize,
        chunk: &[PromptRecord],
        current: &ModelRef,
        record: &IterationRecord,
    ) -> Result<(Option<f64>, Option<f64>), RunError> {
        let prompts: std::collections::HashMap<&str, &PromptRecord> =
            chunk.iter().map(|p| (p.id.as_str(), p)).collect();
        let samples: Vec<&srlm_core::Sample> = record.samples.values().collect();
        if samples.is_empty() {
            return Ok((None, None));
        }
        // The host serves samples of the chunk's prompts only; any other is left out.
        let samples: Vec<&srlm_core::Sample> = samples
            .into_iter()
            .filter(|s| prompts.contains_key(s.prompt_id.as_str()))
            .collect();
        let items: Vec<srlm_judge::JudgeItem> = samples
            .iter()
            .map(|s| {
                let p = prompts[s.prompt_id.as_str()];
                srlm_judge::JudgeItem::new(p.prompt.clone(), s.text.clone())
                    .with_metadata(p.metadata.clone())
                    .with_origin(s.id.clone())
            })
            .collect();
        let key = key_of(&with_engine(
            json!({
                "second_judge": spec, "settings": self.config.judge, "judge_model": current.id,
                "items": items.iter().map(|i| json!([i.prompt, i.response, i.metadata])).collect::<Vec<_>>(),
            }),
            self.backend.engine_id(),
        ));
        let scores: Vec<Option<f64>> = match self.store.get("second_judge", &key) {
            Some(v) => v,
            None => {
                let judge = self.judge(spec, current)?;
                let stage = srlm_core::progress::stage(
                    StageKind::Judging,
                    format!("iteration {it}: second judge `{spec}`"),
                    items.len() as u64,
                    "responses",
                );
                let mut v = Vec::with_capacity(items.len());
                for part in items.chunks(16) {
                    let verdicts = judge.judge_batch(part).map_err(|error| RunError::Judge {
                        spec: spec.to_string(),
                        error,
                    })?;
                    v.extend(verdicts.into_iter().map(|v| v.score));
                    stage.advance(part.len() as u64);
                }
                self.store.put("second_judge", &key, &v)?;
                v
            }
        };
        let (first, second): (Vec<f64>, Vec<f64>) = samples
            .iter()
            .zip(&scores)
            .filter_map(|(s, b)| Some((record.judgments.get(&s.id)?.score?, (*b)?)))
            .unzip();
        let failures = scores.iter().filter(|s| s.is_none()).count() as f64 / scores.len() as f64;
        Ok((crate::stats::spearman(&first, &second), Some(failures)))
    }

    /// Why the hidden-state diagnostic is not computed for `model`, if it is not
    /// (`diagnostics.hidden_states`: `off`; `auto` with a server engine and a model whose f32
    /// weights exceed half of the available memory).
    fn hidden_states_skipped(&self, model: &ModelRef) -> Result<Option<String>, RunError> {
        let setting = self.config.diagnostics.hidden_states;
        let on_server = self.config.engine.kind != srlm_engine::EngineKind::InProcess;
        match setting {
            HiddenStates::On => Ok(None),
            HiddenStates::Off => Ok(Some("diagnostics.hidden_states = \"off\"".into())),
            HiddenStates::Auto if !on_server => Ok(None),
            HiddenStates::Auto => {
                let Ok(text) = srlm_model::ModelText::load(&model.location) else {
                    return Ok(None); // the diagnostic's own load reports what is wrong
                };
                let need = text.config.num_parameters() as f64 * 4.0;
                Ok(available_memory_bytes().and_then(|avail| {
                    (need > avail / 2.0).then(|| {
                        format!(
                            "M_i in f32 needs {:.1} GB, more than half of the {:.1} GB available \
                             (diagnostics.hidden_states = \"on\" computes it anyway)",
                            need / 1e9,
                            avail / 1e9
                        )
                    })
                }))
            }
        }
    }

    /// Mean cosine similarity of the chosen and rejected responses' mean last-layer hidden
    /// states under `model` (unitless, in [-1, 1]); none without pairs. Memoised.
    fn hidden_cosine(
        &self,
        model: &ModelRef,
        pairs: &[PreferencePair],
    ) -> Result<Option<f64>, RunError> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let key = key_of(&json!({"model": model.id, "pairs": pairs}));
        if let Some(v) = self.store.get::<f64>("cosine", &key) {
            return Ok(Some(v));
        }
        let stage = srlm_core::progress::stage(
            StageKind::Diagnostics,
            "hidden states of chosen and rejected responses",
            pairs.len() as u64,
            "pairs",
        );
        let hidden = self.backend.pair_hidden_states(model, pairs)?;
        stage.advance(pairs.len() as u64);
        drop(stage);
        if hidden.is_empty() {
            return Ok(None);
        }
        let c = hidden
            .iter()
            .map(|(a, b)| srlm_model::cosine(a, b))
            .sum::<f64>()
            / hidden.len() as f64;
        self.store.put("cosine", &key, &c)?;
        Ok(Some(c))
    }

    /// Greedy answers of `model` (M_`index`) to the held-out prompts, scored by the eval judge
    /// ([`crate::eval::evaluate_model`]), with IFEval's own accuracies when the prompts are
    /// IFEval records; writes `eval/M<index>.jsonl`. Memoised (rows memoised before srlm kept
    /// IFEval's verdicts get them here, from the prompts and the answers).
    fn evaluate(&self, model: &ModelRef, index: usize) -> Result<EvalMetrics, RunError> {
        let prompts = &self.eval_prompts;
        if prompts.is_empty() {
            return Ok(EvalMetrics::default());
        }
        let opts = EvalOptions {
            max_new_tokens: self.config.eval.max_new_tokens,
            batch_size: 32,
            baseline: false,
            label: format!("evaluating M{index}"),
        };
        let key = key_of(&with_engine(
            json!({
                "model": model.id, "prompts": prompts, "max_new_tokens": opts.max_new_tokens,
                "judge": self.eval_spec, "judge_cfg": self.config.judge,
            }),
            self.backend.engine_id(),
        ));
        let mut rows: Vec<EvalRow> = match self.store.get("eval", &key) {
            Some(v) => v,
            None => {
                srlm_core::progress::note(format!(
                    "evaluating on {} held-out prompts",
                    prompts.len()
                ));
                let judge = self.judge(&self.eval_spec, model)?;
                let report = crate::eval::evaluate_model(
                    self.backend,
                    model,
                    prompts,
                    judge.as_ref(),
                    &opts,
                )?;
                self.store.put("eval", &key, &report.rows)?;
                report.rows
            }
        };
        crate::eval::add_ifeval_verdicts(&mut rows, prompts)?;
        write_jsonl_atomic(&self.dir.eval_answers(index), &rows)?;
        let scores: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
        let mut ood = crate::metrics::OodEvalMetrics::default();
        for (set, prompts) in &self.ood_prompts {
            let accuracy = self.evaluate_ood(model, index, *set, prompts)?;
            ood.set(*set, accuracy, prompts.len());
        }
        // M0 is scored in-process: under the memory rule of the hidden-state diagnostic.
        let perplexity_under_m0 = match self.hidden_states_skipped(&self.initial)? {
            None => self.perplexity_under_m0(&rows)?,
            Some(_) => None,
        };
        Ok(EvalMetrics {
            ood,
            perplexity_under_m0,
            score: mean(&scores),
            n: rows.len(),
            no_score_rate: Some((rows.len() - scores.len()) as f64 / rows.len() as f64),
            degenerate: srlm_judge::degeneration::degenerate_share(
                rows.iter().map(|r| r.response.as_str()),
            ),
            ifeval: crate::eval::ifeval_accuracy(&rows).as_ref().into(),
        })
    }
}

impl Loop<'_> {
    /// The perplexity of held-out answers under M0 ([`crate::eval::perplexity`]); none
    /// without answers. Memoised by M0's identity and the (prompt, answer) texts.
    fn perplexity_under_m0(&self, rows: &[EvalRow]) -> Result<Option<f64>, RunError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let exchanges: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.prompt.as_str(), r.response.as_str()))
            .collect();
        let key = key_of(&json!({"m0": self.initial.id, "exchanges": exchanges}));
        let logps: Vec<ResponseLogp> = match self.store.get("m0_logps", &key) {
            Some(v) => v,
            None => {
                let stage = srlm_core::progress::stage(
                    StageKind::Diagnostics,
                    "held-out answers' log-probs under M0",
                    rows.len() as u64,
                    "answers",
                );
                self.backend.load(&self.initial)?;
                let logps = self
                    .backend
                    .response_logps(&self.initial, &exchanges)
                    .map_err(|e| match e {
                        BackendError::Prompt { index, message } => {
                            RunError::Backend(BackendError::Prompt {
                                index,
                                message: format!(
                                    "held-out prompt `{}`: {message}",
                                    rows[index].prompt_id
                                ),
                            })
                        }
                        e => RunError::Backend(e),
                    })?;
                stage.advance(rows.len() as u64);
                self.store.put("m0_logps", &key, &logps)?;
                logps
            }
        };
        Ok(crate::eval::perplexity(&logps))
    }

    /// Greedy answers of `model` (M_`index`) to an out-of-distribution set, scored by the
    /// `answer` judge; writes `eval/M<index>.<set>.jsonl` and returns the accuracy (fraction
    /// right; none without prompts). Memoised.
    fn evaluate_ood(
        &self,
        model: &ModelRef,
        index: usize,
        set: crate::ood::OodSet,
        prompts: &[PromptRecord],
    ) -> Result<Option<f64>, RunError> {
        if prompts.is_empty() {
            return Ok(None);
        }
        let opts = EvalOptions {
            max_new_tokens: set.max_new_tokens(),
            batch_size: 32,
            baseline: false,
            label: format!("evaluating M{index} on {}", set.name()),
        };
        let key = key_of(&with_engine(
            json!({
                "model": model.id, "ood": set, "prompts": prompts,
                "max_new_tokens": opts.max_new_tokens, "judge": "answer",
            }),
            self.backend.engine_id(),
        ));
        let rows: Vec<EvalRow> = match self.store.get("eval", &key) {
            Some(v) => v,
            None => {
                let judge = srlm_judge::AnswerJudge::new();
                let report =
                    crate::eval::evaluate_model(self.backend, model, prompts, &judge, &opts)?;
                self.store.put("eval", &key, &report.rows)?;
                report.rows
            }
        };
        write_jsonl_atomic(&self.dir.ood_answers(index, set.name()), &rows)?;
        let right = rows.iter().filter(|r| r.score == Some(5.0)).count();
        Ok(Some(right as f64 / rows.len() as f64))
    }
}

/// At most `max` of `pairs`: a random subset (seeded by the run's seed and the iteration)
/// in the pairs' own order; all of them when `max` is unset or not exceeded.
fn subsample(
    pairs: Vec<PreferencePair>,
    max: Option<usize>,
    seed: u64,
    iteration: usize,
) -> Vec<PreferencePair> {
    use rand::seq::index::sample;
    use rand::SeedableRng;
    let Some(max) = max.filter(|&m| pairs.len() > m) else {
        return pairs;
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (iteration as u64).rotate_left(32));
    let keep: std::collections::HashSet<usize> =
        sample(&mut rng, pairs.len(), max).into_iter().collect();
    pairs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, p)| p)
        .collect()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The training part of an iteration's metrics line.
/// Fraction of `texts` with text that speaks to the grader (srlm-judge's
/// `injection::findings`); none for no texts.
fn share_speaking_to_grader<'t>(texts: impl Iterator<Item = &'t str>) -> Option<f64> {
    let (mut n, mut hits) = (0usize, 0usize);
    for t in texts {
        n += 1;
        hits += usize::from(!srlm_judge::injection::findings(t).is_empty());
    }
    (n > 0).then(|| hits as f64 / n as f64)
}

/// Among expected-mode judgments, the fraction with a digit missing from a server's top
/// log-probs; none without expected-mode judgments.
fn digits_missing_rate<'j>(
    judgments: impl Iterator<Item = &'j srlm_core::Judgment>,
) -> Option<f64> {
    let expected: Vec<&srlm_core::Judgment> = judgments
        .filter(|j| j.details.get("mode").and_then(|m| m.as_str()) == Some("expected"))
        .collect();
    (!expected.is_empty()).then(|| {
        let missing = expected
            .iter()
            .filter(|j| srlm_judge::digits_missing(&j.details) > 0)
            .count();
        missing as f64 / expected.len() as f64
    })
}

/// The memory the kernel says is available (`MemAvailable` of `/proc/meminfo`, bytes);
/// none where it cannot be read.
pub fn available_memory_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn training_metrics(
    prompts: usize,
    pairs: &[PreferencePair],
    hidden_cosine: Option<f64>,
    not_computed: Vec<NotComputed>,
    record: &IterationRecord,
    dpo: Option<&DpoRun>,
) -> TrainingMetrics {
    let chosen: Vec<f64> = pairs.iter().filter_map(|p| p.chosen_score).collect();
    let rejected: Vec<f64> = pairs.iter().filter_map(|p| p.rejected_score).collect();
    let (chosen_score, rejected_score) = (mean(&chosen), mean(&rejected));
    let scores: Vec<Option<f64>> = record.judgments.values().map(|j| j.score).collect();
    let scored: Vec<f64> = scores.iter().flatten().copied().collect();
    let m = |k: &str| dpo.and_then(|d| d.mean.get(k).copied().flatten());
    // The last epoch's means, and how the mean log-probs moved from the first epoch to the
    // last (the same pairs); none with a single epoch.
    let epochs = dpo.map(|d| d.epoch_means.as_slice()).unwrap_or_default();
    let (first, last) = match epochs {
        [first, .., last] => (Some(first), Some(last)),
        _ => (None, None),
    };
    let at = |e: Option<&std::collections::BTreeMap<String, Option<f64>>>, k: &str| {
        e.and_then(|e| e.get(k).copied().flatten())
    };
    let change = |k: &str| at(last, k).zip(at(first, k)).map(|(b, a)| b - a);
    let tokens = |ids: &Option<Vec<u32>>| ids.as_ref().map(|t| t.len() as f64);
    let chosen_lengths: Vec<f64> = pairs
        .iter()
        .filter_map(|p| tokens(&p.chosen_token_ids))
        .collect();
    let rejected_lengths: Vec<f64> = pairs
        .iter()
        .filter_map(|p| tokens(&p.rejected_token_ids))
        .collect();
    let sample_lengths: Vec<f64> = record
        .samples
        .values()
        .map(|s| s.token_ids.len() as f64)
        .collect();
    use srlm_judge::degeneration::degenerate_share;
    TrainingMetrics {
        prompts,
        prompts_skipped: 0,
        pairs_dropped_same_text: record.pairs_dropped_same_text,
        pairs: pairs.len(),
        pairs_before_subsampling: None,
        pairs_per_prompt: pairs.len() as f64 / prompts as f64,
        chosen_score,
        rejected_score,
        score_gap: chosen_score.zip(rejected_score).map(|(c, r)| c - r),
        hidden_cosine,
        not_computed,
        dpo: DpoMeans {
            loss: m("loss"),
            rewards_chosen: m("rewards/chosen"),
            rewards_rejected: m("rewards/rejected"),
            rewards_margins: m("rewards/margins"),
            rewards_accuracies: m("rewards/accuracies"),
            grad_norm: m("grad_norm"),
            steps: dpo.map(|d| d.steps),
            last_epoch_loss: at(last, "loss"),
            last_epoch_margins: at(last, "rewards/margins"),
            last_epoch_accuracies: at(last, "rewards/accuracies"),
            logps_chosen_change: change("logps/chosen"),
            logps_rejected_change: change("logps/rejected"),
        },
        judge_parse_failure_rate: (!scores.is_empty())
            .then(|| (scores.len() - scored.len()) as f64 / scores.len() as f64),
        judge_mean: mean(&scored),
        judge_digits_missing_rate: digits_missing_rate(record.judgments.values()),
        judge_second_agreement: None,
        judge_second_parse_failure_rate: None,
        hacking_samples: share_speaking_to_grader(record.samples.values().map(|s| s.text.as_str())),
        hacking_chosen: share_speaking_to_grader(pairs.iter().map(|p| p.chosen.as_str())),
        length_samples: mean(&sample_lengths),
        length_chosen: mean(&chosen_lengths),
        length_rejected: mean(&rejected_lengths),
        degenerate_samples: degenerate_share(record.samples.values().map(|s| s.text.as_str())),
        degenerate_chosen: degenerate_share(pairs.iter().map(|p| p.chosen.as_str())),
        tokens_sampled: record.compute.tokens_sampled,
        tokens_judged: record.compute.tokens_judged,
        tokens_trained: record.compute.tokens_trained + dpo.map_or(0, |d| d.tokens_trained),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsampling_keeps_a_seeded_subset_in_order() {
        let pairs: Vec<PreferencePair> = (0..10)
            .map(|i| PreferencePair::from_texts(format!("p{i}"), "", "a", "b"))
            .collect();
        let ids = |v: Vec<PreferencePair>| v.into_iter().map(|p| p.prompt_id).collect::<Vec<_>>();
        let a = ids(subsample(pairs.clone(), Some(4), 7, 1));
        assert_eq!(a.len(), 4);
        let mut sorted = a.clone();
        sorted.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        assert_eq!(a, sorted, "the strategy's order is kept");
        assert_eq!(a, ids(subsample(pairs.clone(), Some(4), 7, 1)), "seeded");
        assert_ne!(
            a,
            ids(subsample(pairs.clone(), Some(4), 7, 2)),
            "per iteration"
        );
        assert_eq!(ids(subsample(pairs.clone(), Some(10), 7, 1)).len(), 10);
        assert_eq!(ids(subsample(pairs, None, 7, 1)).len(), 10);
    }

    #[test]
    fn settings_added_since_a_run_started_do_not_block_its_resume_at_their_default() {
        let now = serde_json::to_value(RunConfig::default()).unwrap();
        let mut then = now.clone();
        then.as_object_mut().unwrap().remove("save_dtype");
        then["judge"]
            .as_object_mut()
            .unwrap()
            .remove("neutralise_injections");
        assert_eq!(differing_keys(&then, &now), Vec::<String>::new());
        // Not at its default: a difference, named.
        let mut changed = now.clone();
        changed["save_dtype"] = serde_json::json!("bf16");
        assert_eq!(
            differing_keys(&then, &changed),
            ["save_dtype: – → \"bf16\""]
        );
        // A key the run had and this config lacks, or a changed value: differences.
        let mut fewer = now.clone();
        fewer["sampling"]["temperature"] = serde_json::json!(0.2);
        fewer.as_object_mut().unwrap().remove("iterations");
        assert_eq!(
            differing_keys(&now, &fewer),
            ["iterations: 2 → null", "sampling.temperature: 0.7 → 0.2"]
        );
    }
}
