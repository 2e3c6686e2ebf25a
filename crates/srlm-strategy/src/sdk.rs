//! The SDK for plugin authors: implement [`StrategyPlugin`], call
//! [`export_strategy!`](crate::export_strategy), and use the helpers here
//! ([`sample_and_judge`], [`best`], [`worst`]) to write the selection rule.
//!
//! The SDK owns everything ABI-shaped: it parses the options JSON into the plugin's serde type,
//! publishes the type's JSON Schema (schemars), and runs every call into the plugin inside
//! `catch_unwind`, so a panic reaches the host as [`StrategyError::Panicked`] instead of
//! aborting the process.

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    FfiPair, FfiPairSide, FfiPrompt, FfiSample, FfiSource, HostMut, IterationInfo, Strategy,
    StrategyBox, StrategyError, StrategyMod, StrategyModRef, Strategy_TO, INTERFACE_VERSION,
};

/// What a plugin implements: a name, a description, an options type and one method.
///
/// `Options` should be `#[serde(default, deny_unknown_fields)]` with a `Default` impl, so
/// every option has a default and a typo is an error.
pub trait StrategyPlugin: Sized + Send + 'static {
    /// The name users type after `--strategy` (lowercase, `-` separated).
    const NAME: &'static str;
    /// One paragraph, citing the paper and section it implements.
    const DESCRIPTION: &'static str;
    /// The options object, parsed from JSON.
    type Options: DeserializeOwned + Serialize + JsonSchema;

    /// Builds the strategy from parsed options.
    ///
    /// # Errors
    /// [`StrategyError::InvalidOptions`] for values serde accepts but the strategy does not
    /// (e.g. `k = 0`).
    fn new(options: Self::Options) -> Result<Self, StrategyError>;

    /// Runs one iteration (see [`Strategy::run_iteration`]).
    ///
    /// # Errors
    /// Host errors passed on, or the strategy's own.
    fn run_iteration(
        &mut self,
        ctx: &IterationInfo,
        prompts: &[FfiPrompt],
        host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError>;
}

/// Exports a [`StrategyPlugin`] as the library's abi_stable root module.
///
/// Use it once, at the root of a `cdylib` crate: `srlm_strategy::export_strategy!(MySelector);`.
/// The plugin's version is its crate version (`CARGO_PKG_VERSION`).
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __SRLM_STRATEGY_LIB_HEADER: $crate::__private::LibHeader = {
            extern "C" fn __srlm_erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__srlm_root_module)
            }
            fn __srlm_root_module() -> $crate::StrategyModRef {
                $crate::sdk::root_module::<$strategy>(env!("CARGO_PKG_VERSION"))
            }
            // SAFETY: the constructor returns the `StrategyModRef` the header is typed with.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::StrategyModRef>(
                    __srlm_erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Builds the root module of `S` (what [`export_strategy!`](crate::export_strategy) exports);
/// tests use it to drive a plugin through the ABI without loading a library.
pub fn root_module<S: StrategyPlugin>(version: &'static str) -> StrategyModRef {
    StrategyMod {
        interface_version: RStr::from_str(INTERFACE_VERSION),
        name: RStr::from_str(S::NAME),
        version: RStr::from_str(version),
        description: RStr::from_str(S::DESCRIPTION),
        options_schema: options_schema::<S>,
        resolve_options: resolve_options::<S>,
        new: new_strategy::<S>,
    }
    .leak_into_prefix()
}

/// The JSON Schema of `S::Options`, pretty-printed.
pub fn options_schema_of<S: StrategyPlugin>() -> String {
    let schema = schemars::schema_for!(S::Options);
    serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".to_string())
}

/// Parses an options object (JSON text; empty means `{}`) into `O`.
///
/// # Errors
/// [`StrategyError::InvalidOptions`] when the text is not a JSON object or serde rejects it
/// (unknown field, wrong type).
pub fn parse_options<O: DeserializeOwned>(json: &str) -> Result<O, StrategyError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| StrategyError::invalid_options(e.to_string()))?;
    if !value.is_object() {
        return Err(StrategyError::invalid_options(format!(
            "options must be a JSON object, got `{value}`"
        )));
    }
    serde_json::from_value(value).map_err(|e| StrategyError::invalid_options(e.to_string()))
}

/// Runs `f`, turning a panic into [`StrategyError::Panicked`] with the panic's message.
pub fn catch_panic<R>(f: impl FnOnce() -> Result<R, StrategyError>) -> Result<R, StrategyError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            Err(StrategyError::Panicked(msg.into()))
        }
    }
}

/// Builds `S` from options JSON and boxes it behind the ABI, exactly as the exported
/// constructor does (panics caught, options parsed by [`parse_options`]).
///
/// # Errors
/// [`StrategyError::InvalidOptions`] or [`StrategyError::Panicked`].
pub fn instantiate<S: StrategyPlugin>(options_json: &str) -> Result<StrategyBox, StrategyError> {
    catch_panic(|| {
        let options = parse_options::<S::Options>(options_json)?;
        let strategy = S::new(options)?;
        Ok(Strategy_TO::from_value(Guarded(strategy), TD_Opaque))
    })
}

extern "C" fn options_schema<S: StrategyPlugin>() -> RString {
    catch_panic(|| Ok(options_schema_of::<S>()))
        .unwrap_or_else(|_| "{}".to_string())
        .into()
}

extern "C" fn resolve_options<S: StrategyPlugin>(
    json: RStr<'_>,
) -> RResult<RString, StrategyError> {
    catch_panic(|| {
        let options = parse_options::<S::Options>(json.as_str())?;
        serde_json::to_string(&options)
            .map(RString::from)
            .map_err(|e| StrategyError::other(e.to_string()))
    })
    .into()
}

extern "C" fn new_strategy<S: StrategyPlugin>(
    json: RStr<'_>,
) -> RResult<StrategyBox, StrategyError> {
    instantiate::<S>(json.as_str()).into()
}

/// Wraps a plugin so every call into it catches panics.
struct Guarded<S>(S);

impl<S: StrategyPlugin> Strategy for Guarded<S> {
    fn run_iteration(
        &mut self,
        ctx: IterationInfo,
        prompts: RVec<FfiPrompt>,
        mut host: HostMut<'_>,
    ) -> RResult<RVec<FfiPair>, StrategyError> {
        catch_panic(|| {
            self.0
                .run_iteration(&ctx, &prompts, &mut host)
                .map(RVec::from)
        })
        .into()
    }
}

/// A sample with its judge score (none when the judge gave no usable score).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The sample.
    pub sample: FfiSample,
    /// Its score on the 0–5 scale.
    pub score: Option<f64>,
}

impl Scored {
    /// This sample as one side of a pair (id, source, score).
    pub fn side(&self) -> FfiPairSide {
        FfiPairSide {
            sample_id: self.sample.id.clone(),
            source: self.sample.source,
            score: self.score.into(),
        }
    }
}

/// Samples `k` responses per prompt from `source`, judges them all, and groups the scored
/// samples by prompt id (each group in the host's sample order).
///
/// # Errors
/// The host's errors from `sample` or `judge`.
pub fn sample_and_judge(
    host: &mut HostMut<'_>,
    prompt_ids: &[RString],
    source: FfiSource,
    k: u32,
) -> Result<HashMap<String, Vec<Scored>>, StrategyError> {
    let mut groups: HashMap<String, Vec<Scored>> = HashMap::new();
    if prompt_ids.is_empty() || k == 0 {
        return Ok(groups);
    }
    let samples = host
        .sample(prompt_ids.to_vec().into(), source, k)
        .into_result()?;
    let ids: RVec<RString> = samples.iter().map(|s| s.id.clone()).collect();
    let judgments = host.judge(ids).into_result()?;
    let scores: HashMap<&str, Option<f64>> = judgments
        .iter()
        .map(|j| {
            (
                j.sample_id.as_str(),
                j.score.into_option().filter(|s| s.is_finite()),
            )
        })
        .collect();
    for sample in samples.iter() {
        let score = scores.get(sample.id.as_str()).copied().flatten();
        groups
            .entry(sample.prompt_id.to_string())
            .or_default()
            .push(Scored {
                sample: sample.clone(),
                score,
            });
    }
    Ok(groups)
}

/// The highest-scored sample; unscored samples are ignored, ties go to the earliest.
pub fn best(items: &[Scored]) -> Option<&Scored> {
    items
        .iter()
        .filter(|s| s.score.is_some())
        .fold(None, |acc: Option<&Scored>, s| match acc {
            Some(a) if a.score >= s.score => Some(a),
            _ => Some(s),
        })
}

/// The lowest-scored sample; unscored samples are ignored, ties go to the earliest.
pub fn worst(items: &[Scored]) -> Option<&Scored> {
    items
        .iter()
        .filter(|s| s.score.is_some())
        .fold(None, |acc: Option<&Scored>, s| match acc {
            Some(a) if a.score <= s.score => Some(a),
            _ => Some(s),
        })
}

/// Records a metric on the host (shorthand for `host.record_metric(name.into(), value)`).
pub fn record_metric(host: &mut HostMut<'_>, name: &str, value: f64) {
    host.record_metric(name.into(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(id: &str, score: Option<f64>) -> Scored {
        Scored {
            sample: FfiSample {
                id: id.into(),
                prompt_id: "p".into(),
                source: FfiSource::Current,
                text: "t".into(),
                token_count: 1,
            },
            score,
        }
    }

    #[test]
    fn best_and_worst_skip_unscored_and_break_ties_by_order() {
        let items = [
            scored("a", None),
            scored("b", Some(2.0)),
            scored("c", Some(4.0)),
            scored("d", Some(4.0)),
            scored("e", Some(2.0)),
        ];
        assert_eq!(best(&items).unwrap().sample.id.as_str(), "c");
        assert_eq!(worst(&items).unwrap().sample.id.as_str(), "b");
        assert_eq!(best(&[scored("a", None)]), None);
        assert_eq!(worst(&[]), None);
    }

    #[test]
    fn parse_options_requires_an_object() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct O {
            k: u32,
        }
        assert_eq!(parse_options::<O>(r#"{"k":3}"#), Ok(O { k: 3 }));
        let e = parse_options::<O>("[1]").unwrap_err();
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
        let e = parse_options::<O>(r#"{"k":3,"x":1}"#).unwrap_err();
        assert!(
            matches!(e, StrategyError::InvalidOptions(ref m) if m.contains("unknown field `x`")),
            "{e}"
        );
    }

    #[test]
    fn catch_panic_keeps_the_message() {
        let r: Result<(), _> = catch_panic(|| panic!("boom {}", 7));
        assert_eq!(r, Err(StrategyError::Panicked("boom 7".into())));
        let r: Result<(), _> = catch_panic(|| panic!("static"));
        assert_eq!(r, Err(StrategyError::Panicked("static".into())));
    }
}
