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
//! | [`Strategy`], [`Host`], [`StrategyMod`], FFI records ([`FfiPrompt`], [`FfiSample`], [`FfiJudgment`], [`FfiPair`]) | both sides | the ABI |
//! | [`sdk::StrategyPlugin`], [`export_strategy!`], [`sdk::sample_and_judge`], [`sdk::best`] / [`sdk::worst`] | plugin authors | [`sdk`] |
//! | [`load_plugin`], [`PluginSearch`], [`resolve_strategy`], [`LoadedPlugin`], [`PluginError`] | srlm (the host) | loader |
//! | [`parse_set_flags`], [`validate_options`] | srlm (`--set key=value`) | options |
//! | [`testing::FakeHost`] | tests, in and out of tree | [`testing`] |
//!
//! **Architecture invariant: plugins never see tensors or files.** Everything that crosses
//! the boundary is FFI-safe data (`RString`, `RVec`, `ROption`, `#[derive(StableAbi)]`
//! records, free-form JSON as text); models, judges, DPO and the run folder stay in the host,
//! which memoises every callback, so `srlm run --resume` works for any plugin.
//!
//! Design choice: the interface is versioned explicitly by [`INTERFACE_VERSION`] (the root
//! module's abi_stable version string) rather than by this crate's version, and the loader
//! turns every abi_stable loading failure into one typed, one-line [`PluginError`] that names
//! the library's path: file missing, not a plugin, interface version mismatch (both versions
//! named), layout mismatch, constructor error, panic. Libraries are never unloaded.

#![deny(missing_docs)]

mod abi;
mod error;
mod ffi;
mod loader;
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
pub use loader::{
    load_plugin, looks_like_path, resolve_strategy, Discovered, LoadedPlugin, LoadedStrategy,
    PluginError, PluginSearch, ResolvedStrategy, PLUGIN_PATH_ENV,
};
pub use options::{option_names, parse_set_flags, schema_defaults, validate_options, OptionsError};

/// abi_stable, re-exported so plugins need no direct dependency on it.
pub use abi_stable;

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
