//! The host side: find plugin libraries, load them with typed errors, validate options and
//! build strategies.
//!
//! Each file is loaded with `lib_header_from_path(p)?.init_root_module::<StrategyModRef>()`
//! (never abi_stable's cached `load_from_directory`), so several plugins can be inspected in
//! one process and every failure is reported against its own path. Libraries are never
//! unloaded: choose strategies at start-up.

use std::{
    env,
    path::{Path, PathBuf},
};

use abi_stable::{
    library::{lib_header_from_path, LibraryError, RootModuleError},
    std_types::{RStr, RVec},
};
use serde_json::{Map, Value};

use crate::{
    options::{parse_set_flags, validate_options, OptionsError},
    FfiPair, FfiPrompt, HostMut, IterationInfo, StrategyBox, StrategyError, StrategyModRef,
};

/// The environment variable listing extra plugin directories (colon-separated).
pub const PLUGIN_PATH_ENV: &str = "SRLM_PLUGIN_PATH";

/// Everything that can go wrong between a name or path and a running strategy.
///
/// Every message is one line and names the library's path (or, for an unknown name, the
/// names available and the directories searched).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No file at the path.
    #[error("{}: strategy plugin not found (no such file)", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but the dynamic loader refused it (not a shared library, wrong
    /// architecture, missing dependency).
    #[error("{}: cannot load as a shared library: {message}", path.display())]
    Open {
        /// The library.
        path: PathBuf,
        /// The dynamic loader's message.
        message: String,
    },
    /// A shared library without abi_stable's root module symbol.
    #[error("{}: not an srlm strategy plugin (it exports no abi_stable root module)", path.display())]
    NotAPlugin {
        /// The library.
        path: PathBuf,
    },
    /// Built for another major version of the strategy interface.
    #[error(
        "{}: strategy interface version mismatch: srlm uses interface {host}, the plugin was built for interface {plugin}; rebuild the plugin against srlm-strategy {host}",
        path.display()
    )]
    InterfaceVersion {
        /// The library.
        path: PathBuf,
        /// [`INTERFACE_VERSION`](crate::INTERFACE_VERSION) of this srlm.
        host: String,
        /// The version the plugin declares.
        plugin: String,
    },
    /// Same interface version but the types differ (abi_stable's layout check failed).
    #[error(
        "{}: type layout mismatch with strategy interface {version} (the plugin was built against a different srlm-strategy or abi_stable); rebuild it",
        path.display()
    )]
    LayoutMismatch {
        /// The library.
        path: PathBuf,
        /// [`INTERFACE_VERSION`](crate::INTERFACE_VERSION) of this srlm.
        version: String,
        /// abi_stable's full (multi-line) report.
        detail: String,
    },
    /// The plugin's options are invalid (schema check).
    #[error("{}: {error}", path.display())]
    Options {
        /// The library.
        path: PathBuf,
        /// What is wrong.
        error: OptionsError,
    },
    /// The plugin's constructor (or its option parser) rejected the options.
    #[error("{}: strategy `{name}` rejected its options: {message}", path.display())]
    Constructor {
        /// The library.
        path: PathBuf,
        /// The strategy's name.
        name: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin panicked; the panic was caught.
    #[error("{}: strategy `{name}` panicked in {during}: {message}", path.display())]
    Panicked {
        /// The library.
        path: PathBuf,
        /// The strategy's name (or `?` when it panicked before naming itself).
        name: String,
        /// What it was doing: `root module`, `new`, `run_iteration`, …
        during: &'static str,
        /// The panic message.
        message: String,
    },
    /// `run_iteration` returned an error.
    #[error("{}: strategy `{name}` failed: {error}", path.display())]
    Run {
        /// The library.
        path: PathBuf,
        /// The strategy's name.
        name: String,
        /// The plugin's error.
        error: StrategyError,
    },
    /// No plugin on the search path has this name.
    #[error(
        "unknown strategy `{name}`; available: {}; searched: {}",
        if available.is_empty() { "none".to_string() } else { available.join(", ") },
        searched.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    UnknownStrategy {
        /// The name asked for.
        name: String,
        /// The names found, sorted.
        available: Vec<String>,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// Any other abi_stable loading failure.
    #[error("{}: {message}", path.display())]
    Other {
        /// The library.
        path: PathBuf,
        /// What went wrong, on one line.
        message: String,
    },
}

impl PluginError {
    /// The library the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PluginError::NotFound { path }
            | PluginError::Open { path, .. }
            | PluginError::NotAPlugin { path }
            | PluginError::InterfaceVersion { path, .. }
            | PluginError::LayoutMismatch { path, .. }
            | PluginError::Options { path, .. }
            | PluginError::Constructor { path, .. }
            | PluginError::Panicked { path, .. }
            | PluginError::Run { path, .. }
            | PluginError::Other { path, .. } => Some(path),
            PluginError::UnknownStrategy { .. } => None,
        }
    }

    fn from_library(path: &Path, e: LibraryError) -> Self {
        let path = path.to_path_buf();
        match e {
            LibraryError::OpenError { err, .. } => PluginError::Open {
                path,
                message: one_line(&err.to_string()),
            },
            LibraryError::GetSymbolError { .. } => PluginError::NotAPlugin { path },
            LibraryError::IncompatibleVersionNumber {
                expected_version,
                actual_version,
                ..
            } => PluginError::InterfaceVersion {
                path,
                host: expected_version.to_string(),
                plugin: actual_version.to_string(),
            },
            LibraryError::AbiInstability(err) => PluginError::LayoutMismatch {
                path,
                version: crate::INTERFACE_VERSION.into(),
                detail: err.to_string(),
            },
            e @ (LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. }) => {
                PluginError::LayoutMismatch {
                    path,
                    version: crate::INTERFACE_VERSION.into(),
                    detail: e.to_string(),
                }
            }
            LibraryError::RootModule {
                err: RootModuleError::Unwound,
                ..
            } => PluginError::Panicked {
                path,
                name: "?".into(),
                during: "root module",
                message: "the root module constructor panicked".into(),
            },
            LibraryError::Many(mut list) if !list.is_empty() => {
                PluginError::from_library(&path, list.remove(0))
            }
            other => PluginError::Other {
                path,
                message: one_line(&other.to_string()),
            },
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A loaded plugin library: its root module and the path it came from.
#[derive(Clone)]
pub struct LoadedPlugin {
    path: PathBuf,
    module: StrategyModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.name())
            .field("version", &self.version())
            .finish()
    }
}

impl LoadedPlugin {
    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The strategy's name (what `--strategy` takes).
    pub fn name(&self) -> &'static str {
        self.module.name().as_str()
    }
    /// The plugin's own version.
    pub fn version(&self) -> &'static str {
        self.module.version().as_str()
    }
    /// The plugin's description.
    pub fn description(&self) -> &'static str {
        self.module.description().as_str()
    }
    /// The strategy interface version the plugin was built for.
    pub fn interface_version(&self) -> &'static str {
        self.module.interface_version().as_str()
    }

    /// The JSON Schema of the plugin's options.
    ///
    /// # Errors
    /// [`PluginError::Other`] when the plugin publishes a schema that is not JSON.
    pub fn options_schema(&self) -> Result<Value, PluginError> {
        let text = (self.module.options_schema())();
        serde_json::from_str(text.as_str()).map_err(|e| PluginError::Other {
            path: self.path.clone(),
            message: format!("options schema is not JSON: {e}"),
        })
    }

    /// Validates `options` against the plugin's schema, then lets the plugin parse them and
    /// returns them with every default filled in (what `srlm plugins check` prints).
    ///
    /// # Errors
    /// [`PluginError::Options`] (unknown key, wrong type), [`PluginError::Constructor`] when
    /// the plugin's own parser rejects them, [`PluginError::Panicked`].
    pub fn resolve_options(&self, options: &Map<String, Value>) -> Result<Value, PluginError> {
        let schema = self.options_schema()?;
        validate_options(&schema, options).map_err(|error| PluginError::Options {
            path: self.path.clone(),
            error,
        })?;
        let json = Value::Object(options.clone()).to_string();
        let resolved = (self.module.resolve_options())(RStr::from_str(&json))
            .into_result()
            .map_err(|e| self.plugin_error("resolve_options", e))?;
        serde_json::from_str(resolved.as_str()).map_err(|e| PluginError::Other {
            path: self.path.clone(),
            message: format!("resolved options are not JSON: {e}"),
        })
    }

    /// Builds a strategy from an options object (normally the output of
    /// [`LoadedPlugin::resolve_options`]).
    ///
    /// # Errors
    /// [`PluginError::Constructor`] or [`PluginError::Panicked`].
    pub fn instantiate(&self, options: &Value) -> Result<LoadedStrategy, PluginError> {
        let json = options.to_string();
        let inner = (self.module.new())(RStr::from_str(&json))
            .into_result()
            .map_err(|e| self.plugin_error("new", e))?;
        Ok(LoadedStrategy {
            plugin: self.clone(),
            inner,
        })
    }

    fn plugin_error(&self, during: &'static str, e: StrategyError) -> PluginError {
        let (path, name) = (self.path.clone(), self.name().to_string());
        match e {
            StrategyError::Panicked(m) => PluginError::Panicked {
                path,
                name,
                during,
                message: m.into_string(),
            },
            StrategyError::InvalidOptions(m) => PluginError::Constructor {
                path,
                name,
                message: m.into_string(),
            },
            other => PluginError::Constructor {
                path,
                name,
                message: other.to_string(),
            },
        }
    }
}

/// A strategy built by a plugin, ready to run iterations.
pub struct LoadedStrategy {
    plugin: LoadedPlugin,
    inner: StrategyBox,
}

impl LoadedStrategy {
    /// The plugin it came from.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Runs one iteration (see [`Strategy::run_iteration`](crate::Strategy::run_iteration)).
    ///
    /// # Errors
    /// [`PluginError::Panicked`] when the plugin panicked, [`PluginError::Run`] for any error
    /// it returned (including host errors it passed on).
    pub fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: &[FfiPrompt],
        host: HostMut<'_>,
    ) -> Result<Vec<FfiPair>, PluginError> {
        let prompts: RVec<FfiPrompt> = prompts.to_vec().into();
        match self.inner.run_iteration(ctx, prompts, host).into_result() {
            Ok(pairs) => Ok(pairs.into_vec()),
            Err(StrategyError::Panicked(m)) => Err(PluginError::Panicked {
                path: self.plugin.path.clone(),
                name: self.plugin.name().to_string(),
                during: "run_iteration",
                message: m.into_string(),
            }),
            Err(error) => Err(PluginError::Run {
                path: self.plugin.path.clone(),
                name: self.plugin.name().to_string(),
                error,
            }),
        }
    }
}

/// Loads the plugin library at `path`.
///
/// # Errors
/// [`PluginError::NotFound`], [`PluginError::Open`], [`PluginError::NotAPlugin`],
/// [`PluginError::InterfaceVersion`] (names both versions), [`PluginError::LayoutMismatch`],
/// [`PluginError::Panicked`] (root module constructor), [`PluginError::Other`].
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, PluginError> {
    if !path.is_file() {
        return Err(PluginError::NotFound {
            path: path.to_path_buf(),
        });
    }
    // An absolute path keeps the dynamic loader from searching its own directories.
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let module = lib_header_from_path(&abs)
        .and_then(|h| h.init_root_module::<StrategyModRef>())
        .map_err(|e| PluginError::from_library(path, e))?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        module,
    })
}

/// Whether a `--strategy` argument names a file rather than a strategy name: it contains a
/// path separator or ends in a shared-library suffix.
pub fn looks_like_path(s: &str) -> bool {
    s.contains('/')
        || s.contains(std::path::MAIN_SEPARATOR)
        || [".so", ".dylib", ".dll"].iter().any(|ext| s.ends_with(ext))
}

/// Where plugins are looked up by name, in order.
#[derive(Debug, Clone, Default)]
pub struct PluginSearch {
    dirs: Vec<PathBuf>,
}

/// The result of scanning the search path.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Every plugin found, in search order (a name may appear twice; the first one wins).
    pub plugins: Vec<LoadedPlugin>,
    /// Libraries that look like plugins but failed to load (not-a-plugin files are skipped).
    pub errors: Vec<PluginError>,
}

impl PluginSearch {
    /// Searches exactly these directories, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        PluginSearch { dirs }
    }

    /// srlm's search path: `plugin_dirs` (from `--plugin-dir`), then each entry of
    /// `SRLM_PLUGIN_PATH`, then the directory of the running executable.
    pub fn standard(plugin_dirs: &[PathBuf]) -> Self {
        let mut dirs: Vec<PathBuf> = plugin_dirs.to_vec();
        if let Some(p) = env::var_os(PLUGIN_PATH_ENV) {
            dirs.extend(env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
        }
        if let Some(dir) = env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            dirs.push(dir);
        }
        let mut seen = Vec::new();
        dirs.retain(|d| {
            let fresh = !seen.contains(d);
            seen.push(d.clone());
            fresh
        });
        PluginSearch { dirs }
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The shared libraries in the search directories, in search order (sorted within a
    /// directory); missing directories are skipped.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().and_then(|e| e.to_str())
                            == Some(env::consts::DLL_EXTENSION)
                })
                .collect();
            files.sort();
            out.extend(files);
        }
        out
    }

    /// Loads every candidate library; not-a-plugin libraries are skipped silently, other
    /// failures are collected.
    pub fn discover(&self) -> Discovered {
        let mut found = Discovered::default();
        for path in self.candidates() {
            match load_plugin(&path) {
                Ok(p) => found.plugins.push(p),
                Err(PluginError::NotAPlugin { .. }) => {}
                Err(e) => found.errors.push(e),
            }
        }
        found
    }

    /// Finds the plugin called `name` (the first in search order).
    ///
    /// Loading a library runs its constructors, so only candidates are loaded: first the
    /// libraries named after the strategy (`libsrlm_plugin_<name>`, `lib<name>`, `-` as `_`),
    /// directory by directory; only when none of them is the plugin are the other libraries of
    /// the search path loaded to look for it (a third-party plugin in a file of another name),
    /// which also lists the names available when it is not found.
    ///
    /// # Errors
    /// [`PluginError::UnknownStrategy`] listing the names available; or, when a library
    /// named after the strategy (`libsrlm_plugin_<name>` or `lib<name>`) failed to load,
    /// that library's error.
    pub fn find(&self, name: &str) -> Result<LoadedPlugin, PluginError> {
        let stem = name.replace('-', "_");
        let expected_files = [
            format!(
                "{}srlm_plugin_{stem}{}",
                env::consts::DLL_PREFIX,
                env::consts::DLL_SUFFIX
            ),
            format!(
                "{}{stem}{}",
                env::consts::DLL_PREFIX,
                env::consts::DLL_SUFFIX
            ),
        ];
        let mut named_failure = None;
        for dir in &self.dirs {
            for file in &expected_files {
                let path = dir.join(file);
                if !path.is_file() {
                    continue;
                }
                match load_plugin(&path) {
                    Ok(p) if p.name() == name => return Ok(p),
                    Ok(_) | Err(PluginError::NotAPlugin { .. }) => {}
                    Err(e) => {
                        named_failure.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = named_failure {
            return Err(e);
        }
        let found = self.discover();
        if let Some(p) = found.plugins.iter().find(|p| p.name() == name) {
            return Ok(p.clone());
        }
        let mut available: Vec<String> =
            found.plugins.iter().map(|p| p.name().to_string()).collect();
        available.sort();
        available.dedup();
        Err(PluginError::UnknownStrategy {
            name: name.to_string(),
            available,
            searched: self.dirs.clone(),
        })
    }

    /// Loads `name_or_path`: a file when [`looks_like_path`], otherwise a name looked up with
    /// [`PluginSearch::find`].
    ///
    /// # Errors
    /// See [`load_plugin`] and [`PluginSearch::find`].
    pub fn load(&self, name_or_path: &str) -> Result<LoadedPlugin, PluginError> {
        if looks_like_path(name_or_path) {
            load_plugin(Path::new(name_or_path))
        } else {
            self.find(name_or_path)
        }
    }
}

/// A plugin with validated, fully resolved options: what `srlm run --strategy … --set …`
/// and `srlm plugins check` start from.
#[derive(Debug, Clone)]
pub struct ResolvedStrategy {
    /// The plugin.
    pub plugin: LoadedPlugin,
    /// Its options with every default filled in.
    pub options: Value,
}

impl ResolvedStrategy {
    /// Builds the strategy.
    ///
    /// # Errors
    /// See [`LoadedPlugin::instantiate`].
    pub fn instantiate(&self) -> Result<LoadedStrategy, PluginError> {
        self.plugin.instantiate(&self.options)
    }
}

/// Resolves `--strategy NAME|PATH` with `--set key=value` flags and `--plugin-dir`s: finds
/// and loads the plugin ([`PluginSearch::standard`]), parses the flags, validates them
/// against the plugin's schema and lets the plugin fill in defaults. Every srlm command that
/// takes a strategy goes through here, so all report the same errors.
///
/// # Errors
/// Every loading error of [`PluginSearch::load`]; [`PluginError::Options`] for a malformed
/// flag, an unknown key or a wrong type; [`PluginError::Constructor`] when the plugin's own
/// parser rejects the options.
pub fn resolve_strategy<S: AsRef<str>>(
    name_or_path: &str,
    set_flags: &[S],
    plugin_dirs: &[PathBuf],
) -> Result<ResolvedStrategy, PluginError> {
    let plugin = PluginSearch::standard(plugin_dirs).load(name_or_path)?;
    let flags = parse_set_flags(set_flags).map_err(|error| PluginError::Options {
        path: plugin.path().to_path_buf(),
        error,
    })?;
    let options = plugin.resolve_options(&flags)?;
    Ok(ResolvedStrategy { plugin, options })
}
