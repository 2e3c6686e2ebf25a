//! srlm's strategy plugin ABI (abi_stable), the SDK plugin authors build on, and the host-side
//! loader.
//!
//! A strategy plugin is a `cdylib` that exports one root module, [`StrategyModRef`]: its name,
//! version, description, interface version, the JSON Schema of its options and a constructor
//! taking the options as JSON. The constructor returns a [`Strategy`], whose one method,
//! [`Strategy::run_iteration`], runs one self-rewarding iteration by calling back into the
//! [`Host`] srlm passes in (sample, judge, train a temporary model, record a metric) and
//! returns preference pairs ([`FfiPair`]).
//!
//! | piece | for whom | where |
//! |---|---|---|
//! | [`prelude`]: [`sdk::StrategyPlugin`], [`sdk::Iteration`], [`sdk::Pair`], [`sdk::Source`], [`sdk::best_vs_worst`], [`options!`], [`export_strategy!`], serde/schemars derives | plugin authors | [`sdk`] |
//! | [`Strategy`], [`Host`], [`StrategyMod`], FFI records ([`FfiPrompt`], [`FfiSample`], [`FfiJudgment`], [`FfiPair`]) | both sides (plugins never name them) | the ABI |
//! | [`FfiPair::to_preference_pair`]: a plugin's pair resolved against the host's records | srlm (the host) | ffi |
//! | `load_plugin`, `PluginSearch`, `resolve_strategy`, `LoadedPlugin`, `PluginError` | srlm, feature `host` | loader |
//! | `parse_set_flags`, `validate_options`, `option_names`, `schema_defaults` | srlm (`--set key=value`), feature `host` | options |
//! | [`components::ComponentUse`]: how often each part of a strategy could act and did (`record_component`), [`components::SCORE_FLOOR`] / [`components::SCORE_CEILING`] | plugins write, srlm reads | [`components`] |
//! | [`testing::FakeHost`] | tests, in and out of tree | [`testing`] |
//!
//! A plugin depends on this crate alone and writes `use srlm_strategy::prelude::*;`. The
//! loader and the options validator are behind the `host` feature (off by default), so plugin
//! builds do not compile them; srlm's own crates enable it.
//!
//! **Architecture invariant: plugins never see tensors or files.** Everything that crosses
//! the boundary is FFI-safe data (`RString`, `RVec`, `ROption`, `#[derive(StableAbi)]`
//! records, free-form JSON as text), which the SDK turns into ordinary Rust types on the
//! plugin's side; models, judges, DPO and the run folder stay in the host, which memoises
//! every callback, so `srlm run --resume` works for any plugin. A plugin's pairs name samples;
//! their texts, sources and scores come from the host's own records.
//!
//! Design choice: the interface is versioned explicitly by [`INTERFACE_VERSION`] (the root
//! module's abi_stable version string) rather than by this crate's version, and the loader
//! turns every abi_stable loading failure into one typed, one-line `PluginError` that names
//! the library's path: file missing, not a plugin, interface version mismatch (both versions
//! named), layout mismatch, constructor error, panic. Libraries are never unloaded. abi_stable
//! also checks each type's package name and version, so this crate stays `srlm-strategy`
//! 0.1.x for as long as interface 1 lasts.

#![deny(missing_docs)]

mod abi;
pub mod components;
mod error;
mod ffi;
#[cfg(feature = "host")]
mod loader;
#[cfg(feature = "host")]
mod options;
pub mod sdk;
pub mod testing;

pub use abi::{
    host_mut, Host, HostMut, Host_TO, Strategy, StrategyBox, StrategyMod, StrategyModRef,
    Strategy_TO, INTERFACE_VERSION,
};
pub use error::StrategyError;
pub use ffi::{
    FfiJudgment, FfiPair, FfiPairSide, FfiPrompt, FfiSample, FfiSource, IterationInfo, PairError,
};
#[cfg(feature = "host")]
pub use loader::{
    load_plugin, looks_like_path, resolve_strategy, Discovered, LoadedPlugin, LoadedStrategy,
    PluginError, PluginSearch, ResolvedStrategy, PLUGIN_PATH_ENV,
};
#[cfg(feature = "host")]
pub use options::{option_names, parse_set_flags, schema_defaults, validate_options, OptionsError};

/// abi_stable, re-exported so plugins need no direct dependency on it.
pub use abi_stable;
/// schemars, re-exported for [`options!`] and the prelude's derives (`#[schemars(crate = "srlm_strategy::schemars")]`).
pub use schemars;
/// serde, re-exported for [`options!`] and the prelude's derives (`#[serde(crate = "srlm_strategy::serde")]`).
pub use serde;

// Lets `options!` (whose attributes name `srlm_strategy`) work inside this crate too.
extern crate self as srlm_strategy;

/// Everything a plugin needs: `use srlm_strategy::prelude::*;`.
///
/// The SDK types and helpers, [`StrategyError`], the [`options!`] and [`export_strategy!`]
/// macros, and the serde / schemars derive macros (`Serialize`, `Deserialize`,
/// `JsonSchema`). Types deriving them directly (rather than through [`options!`]) name the
/// re-exported crates: `#[serde(crate = "srlm_strategy::serde")]` and
/// `#[schemars(crate = "srlm_strategy::schemars")]`.
pub mod prelude {
    pub use crate::components::{SCORE_CEILING, SCORE_FLOOR};
    pub use crate::sdk::{
        best, best_vs_worst, worst, BestWorst, Groups, Iteration, Judgment, Pair, Prompt, Prompts,
        Sample, Scored, Side, Source, StrategyPlugin,
    };
    pub use crate::StrategyError;
    pub use crate::{export_strategy, options};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_macro_uses_abi_stables_symbol_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
