//! The ABI itself: the [`Strategy`] and [`Host`] traits (`#[sabi_trait]`) and the plugin's
//! root module [`StrategyMod`] / [`StrategyModRef`].
//!
//! Evolution rule (abi_stable's prefix types): new root-module fields and new trait methods
//! are only ever added after the current `#[sabi(last_prefix_field)]`, together with a minor
//! bump of [`INTERFACE_VERSION`]; anything else is a major bump.

// abi_stable's `#[sabi_trait]` expands to impls inside consts, which newer rustc lints.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::{RMut, VersionStrings},
    std_types::{RBox, RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::{FfiJudgment, FfiPair, FfiPrompt, FfiSample, FfiSource, IterationInfo, StrategyError};

/// The version of the strategy interface (semver). The loader refuses a plugin built for a
/// different major version with `PluginError::InterfaceVersion` (feature `host`),
/// which names both versions.
pub const INTERFACE_VERSION: &str = "1.0.0";

/// The callbacks srlm offers a plugin while it runs one iteration.
///
/// Every call is memoised by the real host on a content hash of its inputs, so a crashed
/// iteration replays finished work for free. Host implementations must not panic (a panic
/// cannot unwind across the boundary); they report failures as [`StrategyError::Host`].
#[sabi_trait]
pub trait Host {
    /// Samples `k` responses for each prompt id from `source` (Initial, Current or a
    /// Temporary handle), returned grouped by prompt in the order given.
    ///
    /// Errors: an unknown prompt id or handle, `FfiSource::Reference`, or a sampler failure.
    fn sample(
        &mut self,
        prompt_ids: RVec<RString>,
        source: FfiSource,
        k: u32,
    ) -> RResult<RVec<FfiSample>, StrategyError>;

    /// Judges samples (by [`FfiSample::id`]) with the run's judge, in the order given. A
    /// judgment's score is none when the judge gave no usable score.
    ///
    /// Errors: an unknown sample id, or a judge failure.
    fn judge(&mut self, sample_ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError>;

    /// Trains a temporary model by DPO from `source` on `pairs` (reference model = the
    /// source) and returns its handle, to sample from as `FfiSource::Temporary(handle)`.
    /// The model lives until the end of the iteration.
    ///
    /// Errors: a pair naming an unknown sample, or a training failure.
    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError>;

    /// Records a scalar metric for this iteration (e.g. `temporal/pairs_d1`); written to the
    /// run's `metrics.jsonl`. Never fails.
    #[sabi(last_prefix_field)]
    fn record_metric(&mut self, name: RStr<'_>, value: f64);
}

/// The host as a plugin receives it: a borrowed, type-erased [`Host`].
///
/// A host makes one from any `&mut H` where `H: Host` with
/// `Host_TO::from_ptr(&mut h, TD_Opaque)` (see [`host_mut`]).
pub type HostMut<'a> = Host_TO<'a, RMut<'a, ()>>;

/// Borrows any [`Host`] implementation as the [`HostMut`] passed to plugins.
pub fn host_mut<H: Host>(host: &mut H) -> HostMut<'_> {
    Host_TO::from_ptr(host, abi_stable::sabi_trait::TD_Opaque)
}

/// A pair-selection strategy: the object a plugin's constructor returns.
#[sabi_trait]
pub trait Strategy: Send {
    /// Runs one iteration on a chunk of prompts, driving `host` to sample, judge and train
    /// temporary models, and returns the preference pairs to train M_{i+1} on.
    ///
    /// Errors: whatever the plugin reports, a host error it passes on, or
    /// [`StrategyError::Panicked`] when the plugin panicked (SDK plugins catch panics).
    #[sabi(last_prefix_field)]
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: RVec<FfiPrompt>,
        host: HostMut<'_>,
    ) -> RResult<RVec<FfiPair>, StrategyError>;
}

/// A boxed, type-erased [`Strategy`] owned by the host.
pub type StrategyBox = Strategy_TO<'static, RBox<()>>;

/// The root module every strategy plugin exports (use
/// [`export_strategy!`](crate::export_strategy) rather than building one by hand).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
#[sabi(missing_field(panic))]
pub struct StrategyMod {
    /// [`INTERFACE_VERSION`] as the plugin saw it when it was built.
    pub interface_version: RStr<'static>,
    /// The strategy's name, as typed after `--strategy` (e.g. `temporal`).
    pub name: RStr<'static>,
    /// The plugin's own version (its crate version).
    pub version: RStr<'static>,
    /// One-paragraph description, citing the paper it implements.
    pub description: RStr<'static>,
    /// The JSON Schema of the options object (schemars).
    pub options_schema: extern "C" fn() -> RString,
    /// Parses an options object (JSON text) and returns it re-serialised with every default
    /// filled in, or the reason it was rejected.
    pub resolve_options: extern "C" fn(RStr<'_>) -> RResult<RString, StrategyError>,
    /// Builds the strategy from an options object (JSON text).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(RStr<'_>) -> RResult<StrategyBox, StrategyError>,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "srlm_strategy";
    const NAME: &'static str = "srlm strategy plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(INTERFACE_VERSION);
}
