//! Test plugin `test-abi-1.0`: a strategy written against interface 1.0 as srlm-strategy
//! 0.1.0 published it before the SDK rewrite. The ABI items below (`StrategyError`,
//! `FfiSource`, `IterationInfo`, `FfiPrompt`, `FfiSample`, `FfiJudgment`, `FfiPairSide`,
//! `FfiPair`, the `Host` and `Strategy` traits and the `StrategyMod` root module) are copied
//! verbatim from that version, docs removed; the strategy is Self-Rewarding's rule (best vs
//! worst of `k` samples of M_i, ties dropped) written the old way, on the raw host. It records
//! `abi_1_0/pairs` and notes each pair `abi-1.0`.

// abi_stable's `#[sabi_trait]` expands to impls inside consts, which newer rustc lints.
#![allow(non_local_definitions, missing_docs)]

use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::{RMut, VersionStrings},
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

// ---- Copied from srlm-strategy 0.1.0 (interface 1.0.0): src/error.rs ----

#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum StrategyError {
    InvalidOptions(RString),
    Host(RString),
    Panicked(RString),
    Other(RString),
}

// ---- src/ffi.rs ----

#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FfiSource {
    Initial,
    Current,
    Temporary(u32),
    Reference,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IterationInfo {
    pub iteration: u32,
    pub total_iterations: u32,
    pub seed: u64,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPrompt {
    pub id: RString,
    pub prompt: RString,
    pub reference: ROption<RString>,
    pub metadata_json: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiSample {
    pub id: RString,
    pub prompt_id: RString,
    pub source: FfiSource,
    pub text: RString,
    pub token_count: u32,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiJudgment {
    pub sample_id: RString,
    pub score: ROption<f64>,
    pub details_json: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPairSide {
    pub sample_id: RString,
    pub source: FfiSource,
    pub score: ROption<f64>,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPair {
    pub prompt_id: RString,
    pub chosen: FfiPairSide,
    pub rejected: FfiPairSide,
    pub note: RString,
}

// ---- src/abi.rs ----

pub const INTERFACE_VERSION: &str = "1.0.0";

#[sabi_trait]
pub trait Host {
    fn sample(
        &mut self,
        prompt_ids: RVec<RString>,
        source: FfiSource,
        k: u32,
    ) -> RResult<RVec<FfiSample>, StrategyError>;

    fn judge(&mut self, sample_ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError>;

    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError>;

    #[sabi(last_prefix_field)]
    fn record_metric(&mut self, name: RStr<'_>, value: f64);
}

pub type HostMut<'a> = Host_TO<'a, RMut<'a, ()>>;

#[sabi_trait]
pub trait Strategy: Send {
    #[sabi(last_prefix_field)]
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: RVec<FfiPrompt>,
        host: HostMut<'_>,
    ) -> RResult<RVec<FfiPair>, StrategyError>;
}

pub type StrategyBox = Strategy_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
#[sabi(missing_field(panic))]
pub struct StrategyMod {
    pub interface_version: RStr<'static>,
    pub name: RStr<'static>,
    pub version: RStr<'static>,
    pub description: RStr<'static>,
    pub options_schema: extern "C" fn() -> RString,
    pub resolve_options: extern "C" fn(RStr<'_>) -> RResult<RString, StrategyError>,
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(RStr<'_>) -> RResult<StrategyBox, StrategyError>,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "srlm_strategy";
    const NAME: &'static str = "srlm strategy plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(INTERFACE_VERSION);
}

// ---- The plugin, written against that interface ----

/// Samples per prompt (the only option, fixed: options must be `{}`).
const K: u32 = 2;

struct BestVsWorst;

impl Strategy for BestVsWorst {
    fn run_iteration(
        &mut self,
        _ctx: IterationInfo,
        prompts: RVec<FfiPrompt>,
        mut host: HostMut<'_>,
    ) -> RResult<RVec<FfiPair>, StrategyError> {
        let ids: RVec<RString> = prompts.iter().map(|p| p.id.clone()).collect();
        let samples = match host.sample(ids, FfiSource::Current, K).into_result() {
            Ok(s) => s,
            Err(e) => return RResult::RErr(e),
        };
        let sample_ids: RVec<RString> = samples.iter().map(|s| s.id.clone()).collect();
        let judgments = match host.judge(sample_ids).into_result() {
            Ok(j) => j,
            Err(e) => return RResult::RErr(e),
        };
        let mut pairs = RVec::new();
        for p in prompts.iter() {
            let mut scored: Vec<(&FfiSample, f64)> = Vec::new();
            for (s, j) in samples.iter().zip(judgments.iter()) {
                if s.prompt_id == p.id {
                    if let ROption::RSome(score) = j.score {
                        scored.push((s, score));
                    }
                }
            }
            let best = scored
                .iter()
                .fold(None, |acc: Option<&(&FfiSample, f64)>, x| match acc {
                    Some(a) if a.1 >= x.1 => Some(a),
                    _ => Some(x),
                });
            let worst = scored
                .iter()
                .fold(None, |acc: Option<&(&FfiSample, f64)>, x| match acc {
                    Some(a) if a.1 <= x.1 => Some(a),
                    _ => Some(x),
                });
            if let (Some(b), Some(w)) = (best, worst) {
                if b.1 > w.1 {
                    let side = |x: &(&FfiSample, f64)| FfiPairSide {
                        sample_id: x.0.id.clone(),
                        source: x.0.source,
                        score: ROption::RSome(x.1),
                    };
                    pairs.push(FfiPair {
                        prompt_id: p.id.clone(),
                        chosen: side(b),
                        rejected: side(w),
                        note: "abi-1.0".into(),
                    });
                }
            }
        }
        host.record_metric("abi_1_0/pairs".into(), pairs.len() as f64);
        RResult::ROk(pairs)
    }
}

extern "C" fn options_schema() -> RString {
    r#"{"type":"object","properties":{},"additionalProperties":false}"#.into()
}

extern "C" fn resolve_options(json: RStr<'_>) -> RResult<RString, StrategyError> {
    let text: String = json
        .as_str()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if text == "{}" || text.is_empty() {
        RResult::ROk("{}".into())
    } else {
        RResult::RErr(StrategyError::InvalidOptions(
            format!("test-abi-1.0 takes no options, got {text}").into(),
        ))
    }
}

extern "C" fn new(json: RStr<'_>) -> RResult<StrategyBox, StrategyError> {
    match resolve_options(json) {
        RResult::ROk(_) => RResult::ROk(Strategy_TO::from_value(BestVsWorst, TD_Opaque)),
        RResult::RErr(e) => RResult::RErr(e),
    }
}

#[export_root_module]
pub fn get_root_module() -> StrategyModRef {
    StrategyMod {
        interface_version: RStr::from_str(INTERFACE_VERSION),
        name: RStr::from_str("test-abi-1.0"),
        version: RStr::from_str("1.0.0"),
        description: RStr::from_str(
            "Compatibility test plugin built against strategy interface 1.0.",
        ),
        options_schema,
        resolve_options,
        new,
    }
    .leak_into_prefix()
}
