//! The SDK for plugin authors: implement [`StrategyPlugin`], declare options with
//! [`options!`](crate::options), call [`export_strategy!`](crate::export_strategy), and write
//! the selection rule against an [`Iteration`] with ordinary Rust types. Everything a plugin
//! needs is in [`prelude`](crate::prelude).
//!
//! The SDK owns everything ABI-shaped: it parses the options JSON into the plugin's serde type,
//! publishes the type's JSON Schema (schemars), turns the host's FFI callbacks into methods
//! returning `Result<_, StrategyError>` with `String`s, `Vec`s and `Option`s, turns the
//! plugin's [`Pair`]s (sample ids only) into the ABI's [`FfiPair`]s, and runs every call into
//! the plugin inside `catch_unwind`, so a panic reaches the host as
//! [`StrategyError::Panicked`] instead of aborting the process.
//!
//! Design choice: a plugin names the samples of a pair and nothing else. The ABI record still
//! carries each side's source and score (interface 1.0 has them); the SDK fills them from
//! what it saw this iteration, and srlm's host ignores them and takes both from its own
//! records ([`FfiPair::to_preference_pair`]), so a plugin cannot misreport them.

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
use serde_json::Value;

use crate::{
    FfiJudgment, FfiPair, FfiPairSide, FfiPrompt, FfiSample, FfiSource, HostMut, IterationInfo,
    Strategy, StrategyBox, StrategyError, StrategyMod, StrategyModRef, Strategy_TO,
    INTERFACE_VERSION,
};

/// Which model a sample comes from: `Initial` (M0), `Current` (M_i), `Temporary(handle)` (a
/// model returned by [`Iteration::train_temporary`]), or `Reference` (the prompt's reference
/// answer; a pair side only, never sampled). The same type as [`srlm_core::ModelSource`].
pub use srlm_core::ModelSource as Source;

/// What a plugin implements: a name, a description, an options type and one method.
///
/// Declare `Options` with [`options!`](crate::options) (every option has a default, unknown
/// keys are errors), or use `()` for a strategy without options.
pub trait StrategyPlugin: Sized + Send + 'static {
    /// The name users type after `--strategy` (lowercase, `-` separated).
    const NAME: &'static str;
    /// One paragraph, citing the paper and section it implements.
    const DESCRIPTION: &'static str;
    /// The options object, parsed from JSON; `()` when the strategy takes none.
    type Options: DeserializeOwned + Serialize + JsonSchema;

    /// Builds the strategy from parsed options.
    ///
    /// # Errors
    /// [`StrategyError::InvalidOptions`] for values serde accepts but the strategy does not
    /// (e.g. `k = 0`).
    fn new(options: Self::Options) -> Result<Self, StrategyError>;

    /// Runs one iteration: sample, judge and train through `it`, and return the preference
    /// pairs to train M_{i+1} on.
    ///
    /// # Errors
    /// Host errors passed on (`?`), or the strategy's own.
    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError>;
}

/// Declares a plugin's options struct: every field with its default after `=`.
///
/// Expands to the struct with `#[derive(Serialize, Deserialize, JsonSchema)]` (through this
/// crate's re-exports, so the plugin needs no serde or schemars dependency),
/// `#[serde(default, deny_unknown_fields)]` and a `Default` impl built from the defaults. Doc
/// comments become the schema's descriptions (what `srlm plugins describe` shows), and field
/// attributes such as `#[schemars(range(min = 1))]` pass through. Other attributes on the
/// struct (e.g. `#[derive(Debug, Clone)]`) are kept.
///
/// ```
/// srlm_strategy::options! {
///     /// Options of `my-selector`.
///     #[derive(Debug, PartialEq)]
///     pub struct Options {
///         /// Samples per prompt (K).
///         #[schemars(range(min = 2))]
///         pub k: u32 = 4,
///         /// Smallest score gap worth a pair.
///         pub min_gap: f64 = 1.0,
///     }
/// }
/// let o: Options = srlm_strategy::sdk::parse_options(r#"{"k": 6}"#).unwrap();
/// assert_eq!(o, Options { k: 6, min_gap: 1.0 });
/// ```
///
/// The generated attributes name the crate as `srlm_strategy`: depend on it under that name.
/// For other serde types in the options (an enum, say), derive through the prelude and name
/// the crates the same way:
/// `#[derive(Serialize, Deserialize, JsonSchema)]`,
/// `#[serde(crate = "srlm_strategy::serde")]`, `#[schemars(crate = "srlm_strategy::schemars")]`.
#[macro_export]
macro_rules! options {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $fty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            $crate::serde::Serialize,
            $crate::serde::Deserialize,
            $crate::schemars::JsonSchema
        )]
        #[serde(crate = "srlm_strategy::serde", default, deny_unknown_fields)]
        #[schemars(crate = "srlm_strategy::schemars")]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $fty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                $name {
                    $( $field: $default, )*
                }
            }
        }
    };
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

/// Whether `O` takes no options: its schema is `null` (`()` or a unit struct).
fn takes_no_options<O: JsonSchema>() -> bool {
    let schema = schemars::schema_for!(O);
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// The JSON Schema of `S::Options`, pretty-printed. A strategy without options (`()`)
/// publishes an object schema without properties.
pub fn options_schema_of<S: StrategyPlugin>() -> String {
    let schema = if takes_no_options::<S::Options>() {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "NoOptions",
            "description": "This strategy takes no options.",
            "type": "object",
            "properties": {},
            "additionalProperties": false
        })
    } else {
        serde_json::to_value(schemars::schema_for!(S::Options)).unwrap_or(Value::Null)
    };
    serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".to_string())
}

/// Parses an options object (JSON text; empty means `{}`) into `O`. For `O = ()` the object
/// must be empty.
///
/// # Errors
/// [`StrategyError::InvalidOptions`] when the text is not a JSON object or serde rejects it
/// (unknown field, wrong type).
pub fn parse_options<O: DeserializeOwned + JsonSchema>(json: &str) -> Result<O, StrategyError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let value: Value =
        serde_json::from_str(json).map_err(|e| StrategyError::invalid_options(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(StrategyError::invalid_options(format!(
            "options must be a JSON object, got `{value}`"
        )));
    };
    let value = if takes_no_options::<O>() {
        if let Some(key) = map.keys().next() {
            return Err(StrategyError::invalid_options(format!(
                "unknown option `{key}`: this strategy takes no options"
            )));
        }
        Value::Null
    } else {
        Value::Object(map)
    };
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
        let mut value =
            serde_json::to_value(&options).map_err(|e| StrategyError::other(e.to_string()))?;
        if value.is_null() {
            value = Value::Object(Default::default());
        }
        Ok(RString::from(value.to_string()))
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
        host: HostMut<'_>,
    ) -> RResult<RVec<FfiPair>, StrategyError> {
        run_plugin(&mut self.0, ctx, &prompts, host)
            .map(RVec::from)
            .into()
    }
}

/// Runs one iteration of `strategy` against `host` as the exported library does: builds the
/// [`Iteration`], catches panics, and turns the returned [`Pair`]s into [`FfiPair`]s.
pub(crate) fn run_plugin<S: StrategyPlugin>(
    strategy: &mut S,
    info: IterationInfo,
    prompts: &[FfiPrompt],
    mut host: HostMut<'_>,
) -> Result<Vec<FfiPair>, StrategyError> {
    catch_panic(|| {
        let mut it = Iteration {
            info,
            prompts,
            host: &mut host,
            served: HashMap::new(),
            scores: HashMap::new(),
        };
        let pairs = strategy.run_iteration(&mut it)?;
        pairs.into_iter().map(|p| it.ffi_pair(p)).collect()
    })
}

/// The host's callbacks, as the [`Iteration`] calls them (object-safe, so the iteration does
/// not carry the host's lifetime).
trait Calls {
    fn sample(
        &mut self,
        ids: RVec<RString>,
        source: FfiSource,
        k: u32,
    ) -> RResult<RVec<FfiSample>, StrategyError>;
    fn judge(&mut self, ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError>;
    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError>;
    fn record_metric(&mut self, name: &str, value: f64);
}

impl Calls for HostMut<'_> {
    fn sample(
        &mut self,
        ids: RVec<RString>,
        source: FfiSource,
        k: u32,
    ) -> RResult<RVec<FfiSample>, StrategyError> {
        crate::Host::sample(self, ids, source, k)
    }
    fn judge(&mut self, ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError> {
        crate::Host::judge(self, ids)
    }
    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError> {
        crate::Host::train_temporary(self, source, pairs)
    }
    fn record_metric(&mut self, name: &str, value: f64) {
        crate::Host::record_metric(self, RStr::from_str(name), value)
    }
}

/// One prompt of the iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prompt<'a> {
    raw: &'a FfiPrompt,
}

impl<'a> Prompt<'a> {
    /// The prompt's id, unique in its pool.
    pub fn id(&self) -> &'a str {
        self.raw.id.as_str()
    }
    /// The user turn as plain text.
    pub fn text(&self) -> &'a str {
        self.raw.prompt.as_str()
    }
    /// The reference answer, when the data has one (SPIN's chosen side).
    pub fn reference(&self) -> Option<&'a str> {
        self.raw
            .reference
            .as_ref()
            .map(|r| r.as_str())
            .into_option()
    }
    /// The record's other fields (`null` when none).
    pub fn metadata(&self) -> Value {
        serde_json::from_str(&self.raw.metadata_json)
            .unwrap_or_else(|_| Value::String(self.raw.metadata_json.to_string()))
    }
}

/// The prompts of an iteration, in order ([`Iteration::prompts`]).
#[derive(Debug, Clone)]
pub struct Prompts<'a>(std::slice::Iter<'a, FfiPrompt>);

impl<'a> Iterator for Prompts<'a> {
    type Item = Prompt<'a>;
    fn next(&mut self) -> Option<Prompt<'a>> {
        self.0.next().map(|raw| Prompt { raw })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Prompts<'_> {}

impl DoubleEndedIterator for Prompts<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|raw| Prompt { raw })
    }
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unique within the iteration (e.g. `p17/current/2`); what pairs and
    /// [`Iteration::judge`] name.
    pub id: String,
    /// The prompt it answers.
    pub prompt_id: String,
    /// The model that wrote it (always the source [`Iteration::sample`] was asked for).
    pub source: Source,
    /// The response text as the host decoded it, without the chat template's end-of-turn
    /// token.
    pub text: String,
    /// Tokens of the response as the host model's tokenizer counts them: the tokens the model
    /// generated, the end-of-turn token included when generation stopped on it; at most the
    /// run's `sampling.max_new_tokens`.
    pub token_count: u32,
}

/// A judge's verdict on one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgment {
    /// The sample judged.
    pub sample_id: String,
    /// Score on the 0–5 scale; `None` when the judge gave no usable score (never make such a
    /// sample chosen or rejected).
    pub score: Option<f64>,
    /// Judge-specific details (raw judge texts, per-constraint results).
    pub details: Value,
}

/// A sample with its judge score (`None` when the judge gave no usable score).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The sample.
    pub sample: Sample,
    /// Its score on the 0–5 scale.
    pub score: Option<f64>,
}

impl Scored {
    /// The sample's id.
    pub fn id(&self) -> &str {
        &self.sample.id
    }
}

/// Scored samples grouped by prompt, in the order the prompts were asked for
/// ([`Iteration::sample_and_judge`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    order: Vec<String>,
    groups: HashMap<String, Vec<Scored>>,
}

impl Groups {
    /// The group of `prompt_id`, in the host's sample order (empty when none).
    pub fn get(&self, prompt_id: &str) -> &[Scored] {
        self.groups
            .get(prompt_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every group, in the order the prompts were asked for.
    pub fn iter(&self) -> impl Iterator<Item = &[Scored]> + '_ {
        self.order.iter().map(|id| self.get(id))
    }

    /// The prompt ids, in the order they were asked for.
    pub fn prompt_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.order.iter().map(String::as_str)
    }

    /// How many prompts.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no prompts.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// One side of a [`Pair`]: a sample (by id) or the prompt's reference answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Side {
    /// A sample served this iteration, by [`Sample::id`].
    Sample(String),
    /// The prompt's reference answer (SPIN's chosen side).
    Reference,
}

impl Side {
    /// The sample id, for a sample side.
    pub fn sample_id(&self) -> Option<&str> {
        match self {
            Side::Sample(id) => Some(id),
            Side::Reference => None,
        }
    }
}

impl From<&str> for Side {
    fn from(id: &str) -> Self {
        Side::Sample(id.to_string())
    }
}
impl From<String> for Side {
    fn from(id: String) -> Self {
        Side::Sample(id)
    }
}
impl From<&String> for Side {
    fn from(id: &String) -> Self {
        Side::Sample(id.clone())
    }
}
impl From<&Sample> for Side {
    fn from(s: &Sample) -> Self {
        Side::Sample(s.id.clone())
    }
}
impl From<&Scored> for Side {
    fn from(s: &Scored) -> Self {
        Side::Sample(s.sample.id.clone())
    }
}

/// A preference pair as a plugin returns it: the prompt, which sample is chosen and which
/// rejected, and a free-form note. Texts, scores and sources are the host's business.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The prompt both sides answer.
    pub prompt_id: String,
    /// The preferred response.
    pub chosen: Side,
    /// The dispreferred response.
    pub rejected: Side,
    /// A note kept with the pair's provenance (e.g. `anchored`); empty by default.
    pub note: String,
}

impl Pair {
    /// The pair `chosen` over `rejected` for `prompt_id`; each side is a sample id (`&str`,
    /// `String`, `&Sample`, `&Scored`) or [`Side::Reference`].
    pub fn new(
        prompt_id: impl Into<String>,
        chosen: impl Into<Side>,
        rejected: impl Into<Side>,
    ) -> Pair {
        Pair {
            prompt_id: prompt_id.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
            note: String::new(),
        }
    }

    /// The same pair with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Pair {
        self.note = note.into();
        self
    }
}

/// The ABI record of a pair back as a [`Pair`] (what a host or test sees a plugin return; the
/// sides' claimed scores and sources are dropped).
impl From<&FfiPair> for Pair {
    fn from(p: &FfiPair) -> Pair {
        let side = |s: &FfiPairSide| match s.source {
            FfiSource::Reference => Side::Reference,
            _ => Side::Sample(s.sample_id.to_string()),
        };
        Pair {
            prompt_id: p.prompt_id.to_string(),
            chosen: side(&p.chosen),
            rejected: side(&p.rejected),
            note: p.note.to_string(),
        }
    }
}

/// One iteration as a plugin drives it: the prompts, where the run stands, and the host's
/// callbacks (sample, judge, train a temporary model, record a metric).
///
/// Every callback is memoised by srlm on a hash of its inputs, so a crashed iteration replays
/// finished work for free.
pub struct Iteration<'a> {
    info: IterationInfo,
    prompts: &'a [FfiPrompt],
    host: &'a mut (dyn Calls + 'a),
    /// Sample id → (prompt id, source) of every sample served.
    served: HashMap<String, (String, Source)>,
    /// Sample id → score of every sample judged.
    scores: HashMap<String, Option<f64>>,
}

impl<'a> Iteration<'a> {
    /// The 0-based iteration number i (the iteration turns M_i into M_{i+1}).
    pub fn number(&self) -> u32 {
        self.info.iteration
    }

    /// Total iterations planned for the run.
    pub fn total(&self) -> u32 {
        self.info.total_iterations
    }

    /// The run's seed (sampling is already seeded by srlm; use it for your own randomness so
    /// that the same seed gives the same pairs).
    pub fn seed(&self) -> u64 {
        self.info.seed
    }

    /// The prompts of this iteration, in order.
    pub fn prompts(&self) -> Prompts<'a> {
        Prompts(self.prompts.iter())
    }

    /// The ids of [`Iteration::prompts`], in order.
    pub fn prompt_ids(&self) -> Vec<&'a str> {
        self.prompts.iter().map(|p| p.id.as_str()).collect()
    }

    /// Samples `k` responses for each prompt from `source` (`Initial`, `Current` or a
    /// temporary model), grouped by prompt in the order given. No prompts or `k = 0` asks the
    /// host nothing and returns nothing.
    ///
    /// # Errors
    /// The host's: an unknown prompt id or handle, `Source::Reference`, a sampler failure.
    pub fn sample(
        &mut self,
        prompt_ids: impl IntoIterator<Item = impl AsRef<str>>,
        source: Source,
        k: u32,
    ) -> Result<Vec<Sample>, StrategyError> {
        let ids: RVec<RString> = prompt_ids
            .into_iter()
            .map(|id| RString::from(id.as_ref()))
            .collect();
        if ids.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let samples = self.host.sample(ids, source.into(), k).into_result()?;
        Ok(samples
            .iter()
            .map(|s| {
                let sample = Sample {
                    id: s.id.to_string(),
                    prompt_id: s.prompt_id.to_string(),
                    source: s.source.into(),
                    text: s.text.to_string(),
                    token_count: s.token_count,
                };
                self.served
                    .insert(sample.id.clone(), (sample.prompt_id.clone(), sample.source));
                sample
            })
            .collect())
    }

    /// Judges samples by id with the run's judge, in the order given. No ids asks the host
    /// nothing.
    ///
    /// # Errors
    /// The host's: an unknown sample id, a judge failure.
    pub fn judge(
        &mut self,
        sample_ids: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Vec<Judgment>, StrategyError> {
        let ids: RVec<RString> = sample_ids
            .into_iter()
            .map(|id| RString::from(id.as_ref()))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.judge_ids(ids)
    }

    fn judge_ids(&mut self, ids: RVec<RString>) -> Result<Vec<Judgment>, StrategyError> {
        let judgments = self.host.judge(ids).into_result()?;
        Ok(judgments
            .iter()
            .map(|j| {
                let score = j.score.into_option().filter(|s| s.is_finite());
                self.scores.insert(j.sample_id.to_string(), score);
                Judgment {
                    sample_id: j.sample_id.to_string(),
                    score,
                    details: serde_json::from_str(&j.details_json)
                        .unwrap_or_else(|_| Value::String(j.details_json.to_string())),
                }
            })
            .collect())
    }

    /// Samples `k` responses per prompt from `source`, judges them all, and groups the scored
    /// samples by prompt ([`Groups`], each group in the host's sample order).
    ///
    /// # Errors
    /// The host's errors from sampling or judging.
    pub fn sample_and_judge(
        &mut self,
        prompt_ids: impl IntoIterator<Item = impl AsRef<str>>,
        source: Source,
        k: u32,
    ) -> Result<Groups, StrategyError> {
        let order: Vec<String> = prompt_ids
            .into_iter()
            .map(|id| id.as_ref().to_string())
            .collect();
        let mut groups = Groups {
            groups: HashMap::new(),
            order,
        };
        if groups.order.is_empty() || k == 0 {
            return Ok(groups);
        }
        let samples = self.sample(&groups.order, source, k)?;
        let judgments = self.judge_ids(samples.iter().map(|s| s.id.as_str().into()).collect())?;
        let scores: HashMap<&str, Option<f64>> = judgments
            .iter()
            .map(|j| (j.sample_id.as_str(), j.score))
            .collect();
        for sample in samples {
            let score = scores.get(sample.id.as_str()).copied().flatten();
            groups
                .groups
                .entry(sample.prompt_id.clone())
                .or_default()
                .push(Scored { sample, score });
        }
        Ok(groups)
    }

    /// Trains a temporary model by DPO from `source` on `pairs` (reference model = the
    /// source) and returns it as a source to sample from (`Source::Temporary(handle)`). It
    /// lives until the end of the iteration.
    ///
    /// # Errors
    /// A pair naming a sample this iteration never served, or the host's training error.
    pub fn train_temporary(
        &mut self,
        source: Source,
        pairs: &[Pair],
    ) -> Result<Source, StrategyError> {
        let pairs: RVec<FfiPair> = pairs
            .iter()
            .map(|p| self.ffi_pair(p.clone()))
            .collect::<Result<_, _>>()?;
        let handle = self
            .host
            .train_temporary(source.into(), pairs)
            .into_result()?;
        Ok(Source::Temporary(handle))
    }

    /// Records a scalar metric for this iteration (e.g. `temporal/pairs_d1`); srlm writes it
    /// to the run's `metrics.jsonl`.
    pub fn record_metric(&mut self, name: &str, value: f64) {
        self.host.record_metric(name, value);
    }

    /// Records how often a part of the strategy (named as its option is spelt, e.g.
    /// `anchored_rejection`) could have changed a pair in this iteration and how often it did,
    /// in prompts ([`crate::components::ComponentUse`]). srlm reports both per iteration and
    /// warns when a component never acted in a whole run. Record only the components that are
    /// switched on.
    pub fn record_component(&mut self, name: &str, could_act: u32, acted: u32) {
        let record = crate::components::ComponentUse {
            name: name.to_string(),
            could_act,
            acted,
        };
        for (key, value) in record.metrics() {
            self.host.record_metric(&key, value);
        }
    }

    /// The ABI record of `pair`: sides' sources and scores as this iteration served and
    /// judged them (srlm's host ignores them and uses its own records).
    fn ffi_pair(&self, pair: Pair) -> Result<FfiPair, StrategyError> {
        if !self.prompts.iter().any(|p| p.id.as_str() == pair.prompt_id) {
            return Err(StrategyError::other(format!(
                "a pair names prompt `{}`, which is not in this iteration",
                pair.prompt_id
            )));
        }
        let side = |s: &Side| -> Result<FfiPairSide, StrategyError> {
            match s {
                Side::Reference => Ok(FfiPairSide {
                    sample_id: format!("{}/reference", pair.prompt_id).into(),
                    source: FfiSource::Reference,
                    score: None.into(),
                }),
                Side::Sample(id) => match self.served.get(id) {
                    Some((prompt_id, source)) if *prompt_id == pair.prompt_id => Ok(FfiPairSide {
                        sample_id: id.as_str().into(),
                        source: (*source).into(),
                        score: self.scores.get(id).copied().flatten().into(),
                    }),
                    Some((prompt_id, _)) => Err(StrategyError::other(format!(
                        "a pair for prompt `{}` names sample `{id}`, which answers prompt `{prompt_id}`",
                        pair.prompt_id
                    ))),
                    None => Err(StrategyError::other(format!(
                        "a pair for prompt `{}` names sample `{id}`, which this iteration never sampled",
                        pair.prompt_id
                    ))),
                },
            }
        };
        Ok(FfiPair {
            prompt_id: pair.prompt_id.as_str().into(),
            chosen: side(&pair.chosen)?,
            rejected: side(&pair.rejected)?,
            note: pair.note.into(),
        })
    }
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

/// The best and the worst scored sample of a group ([`best_vs_worst`]); the best scores
/// strictly higher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestWorst<'a> {
    /// The highest-scored sample (the earliest among equals).
    pub best: &'a Scored,
    /// The lowest-scored sample (the earliest among equals).
    pub worst: &'a Scored,
}

impl BestWorst<'_> {
    /// Best score minus worst score (always > 0).
    pub fn gap(&self) -> f64 {
        self.best.score.unwrap_or(f64::NAN) - self.worst.score.unwrap_or(f64::NAN)
    }

    /// The pair best (chosen) over worst (rejected).
    pub fn pair(&self) -> Pair {
        Pair::new(&self.best.sample.prompt_id, self.best, self.worst)
    }
}

/// Self-Rewarding's rule (Yuan et al. 2024, Sec. 2.3): the best and the worst scored sample of
/// a group; `None` when fewer than two are scored or the two scores are equal. Unscored
/// samples are never picked; ties go to the earliest sample.
pub fn best_vs_worst(group: &[Scored]) -> Option<BestWorst<'_>> {
    if group.iter().filter(|s| s.score.is_some()).count() < 2 {
        return None;
    }
    let (best, worst) = (best(group)?, worst(group)?);
    (best.score > worst.score).then_some(BestWorst { best, worst })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(id: &str, score: Option<f64>) -> Scored {
        Scored {
            sample: Sample {
                id: id.into(),
                prompt_id: "p".into(),
                source: Source::Current,
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
        assert_eq!(best(&items).unwrap().id(), "c");
        assert_eq!(worst(&items).unwrap().id(), "b");
        assert_eq!(best(&[scored("a", None)]), None);
        assert_eq!(worst(&[]), None);
        let bw = best_vs_worst(&items).unwrap();
        assert_eq!((bw.best.id(), bw.worst.id(), bw.gap()), ("c", "b", 2.0));
        assert_eq!(bw.pair(), Pair::new("p", "c", "b"));
    }

    #[test]
    fn best_vs_worst_needs_two_scored_and_a_gap() {
        assert_eq!(best_vs_worst(&[]), None);
        assert_eq!(
            best_vs_worst(&[scored("a", None), scored("b", Some(5.0))]),
            None
        );
        assert_eq!(
            best_vs_worst(&[scored("a", Some(3.0)), scored("b", Some(3.0))]),
            None
        );
        let g = [
            scored("a", None),
            scored("b", Some(1.0)),
            scored("c", Some(1.5)),
        ];
        let bw = best_vs_worst(&g).unwrap();
        assert_eq!((bw.best.id(), bw.worst.id()), ("c", "b"));
    }

    #[test]
    fn parse_options_requires_an_object() {
        crate::options! {
            #[derive(Debug, PartialEq)]
            struct O {
                k: u32 = 2,
            }
        }
        assert_eq!(parse_options::<O>(r#"{"k":3}"#), Ok(O { k: 3 }));
        assert_eq!(parse_options::<O>(""), Ok(O { k: 2 }));
        let e = parse_options::<O>("[1]").unwrap_err();
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
        let e = parse_options::<O>(r#"{"k":3,"x":1}"#).unwrap_err();
        assert!(
            matches!(e, StrategyError::InvalidOptions(ref m) if m.contains("unknown field `x`")),
            "{e}"
        );
    }

    struct NoOptions;
    impl StrategyPlugin for NoOptions {
        const NAME: &'static str = "no-options";
        const DESCRIPTION: &'static str = "Takes no options.";
        type Options = ();
        fn new((): ()) -> Result<Self, StrategyError> {
            Ok(NoOptions)
        }
        fn run_iteration(&mut self, _: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn unit_options_are_an_empty_object() {
        let schema: Value = serde_json::from_str(&options_schema_of::<NoOptions>()).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"], serde_json::json!({}));
        assert_eq!(parse_options::<()>("{}"), Ok(()));
        assert_eq!(parse_options::<()>(""), Ok(()));
        assert_eq!(
            parse_options::<()>(r#"{"k":1}"#),
            Err(StrategyError::invalid_options(
                "unknown option `k`: this strategy takes no options"
            ))
        );
        let m = root_module::<NoOptions>("0.0.0");
        assert_eq!((m.resolve_options())("{}".into()).unwrap().as_str(), "{}");
        assert!(instantiate::<NoOptions>("{}").is_ok());
    }

    #[test]
    fn catch_panic_keeps_the_message() {
        let r: Result<(), _> = catch_panic(|| panic!("boom {}", 7));
        assert_eq!(r, Err(StrategyError::Panicked("boom 7".into())));
        let r: Result<(), _> = catch_panic(|| panic!("static"));
        assert_eq!(r, Err(StrategyError::Panicked("static".into())));
    }
}
