//! [`FakeHost`]: a scripted [`Host`] for testing strategies without a model.
//!
//! Public so that plugin crates (in and out of this repository) and srlm's own crates can
//! unit-test selection rules with hand-made scores, ties and missing scores.
//! [`FakeHost::run`] runs a plugin for one iteration exactly as srlm does: through the SDK's
//! ABI adapter, then resolving the returned pairs against the host's own records with
//! [`FfiPair::to_preference_pair`].
//!
//! Each scripted sample has a score and, for length- or text-based selectors, a text and a
//! token count ([`FakeHost::script_samples`], [`FakeHost::respond_with`]); unset, they are the
//! fixed defaults of [`FakeHost::default_response`].

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RStr, RString, RVec};
use srlm_core::{Judgment, Sample};

pub use srlm_core::{PreferencePair, PromptRecord};

use crate::{
    host_mut,
    sdk::{Pair, Source, StrategyPlugin},
    FfiJudgment, FfiPair, FfiPrompt, FfiSample, FfiSource, Host, HostMut, IterationInfo,
    StrategyError,
};

/// A prompt record with just an id and a text.
pub fn prompt(id: &str, text: &str) -> PromptRecord {
    PromptRecord {
        id: id.into(),
        prompt: text.into(),
        reference: None,
        metadata: serde_json::Value::Null,
    }
}

/// A prompt record with a reference answer.
pub fn prompt_with_reference(id: &str, text: &str, reference: &str) -> PromptRecord {
    PromptRecord {
        reference: Some(reference.into()),
        ..prompt(id, text)
    }
}

/// One call the strategy made, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    /// `sample(prompt_ids, source, k)`.
    Sample {
        /// Prompt ids asked for.
        prompt_ids: Vec<String>,
        /// Model sampled.
        source: Source,
        /// Samples per prompt.
        k: u32,
    },
    /// `judge(sample_ids)`.
    Judge {
        /// Samples judged.
        sample_ids: Vec<String>,
    },
    /// `train_temporary(source, pairs)`.
    TrainTemporary {
        /// Model trained from.
        source: Source,
        /// Pairs trained on.
        pairs: Vec<Pair>,
    },
    /// `record_metric(name, value)`.
    RecordMetric {
        /// Metric name.
        name: String,
        /// Value.
        value: f64,
    },
}

/// A host that serves scripted samples and scores per (prompt, source) and records calls.
///
/// Sample `i` of prompt `p` from source `s` has id `"{p}/{s}/{i}"` (e.g. `p1/current/0`,
/// `p1/temporary:0/2`), source `s` (the real host, too, always serves the source asked for),
/// and the i-th scripted score. Its text and token count are the ones scripted with
/// [`FakeHost::script_samples`]; for samples scripted with [`FakeHost::script`] (scores
/// only) they come from the closure given to [`FakeHost::respond_with`], by default
/// [`FakeHost::default_response`]: text `"{s} answer {i} to {p}"`, 3 tokens.
/// `train_temporary` returns handles 0, 1, 2, … . Asking for more samples than scripted, an
/// unscripted (prompt, source), an unknown handle or an unknown sample id is a
/// [`StrategyError::Host`], so tests catch strategies that ask for the wrong thing.
///
/// ```
/// use srlm_strategy::{sdk::Source, testing::FakeHost};
/// let mut fake = FakeHost::new();
/// fake.script("p1", Source::Current, &[Some(4.0), None, Some(1.0)])
///     .script_samples("p2", Source::Current, [("Yes.", 2, Some(3.0)), ("Yes, because…", 9, Some(3.0))]);
/// let mut host = fake.host();
/// let samples = host.sample(vec!["p1".into(), "p2".into()].into(), Source::Current.into(), 2).unwrap();
/// assert_eq!(samples[1].id.as_str(), "p1/current/1");
/// assert_eq!((samples[1].text.as_str(), samples[1].token_count), ("current answer 1 to p1", 3));
/// assert_eq!((samples[3].text.as_str(), samples[3].token_count), ("Yes, because…", 9));
/// ```
pub struct FakeHost {
    scripts: HashMap<(String, Source), Vec<Scripted>>,
    respond: Box<Responder>,
    served: HashMap<String, (Sample, Option<f64>)>,
    judged: HashMap<String, Judgment>,
    calls: Vec<HostCall>,
    next_handle: u32,
    info: IterationInfo,
}

/// The closure of [`FakeHost::respond_with`]: (prompt id, source, index) → (text, token count).
type Responder = dyn Fn(&str, Source, usize) -> (String, u32) + Send + Sync;

/// One scripted sample: its text and token count when given, and its score.
#[derive(Debug, Clone, PartialEq)]
struct Scripted {
    response: Option<(String, u32)>,
    score: Option<f64>,
}

impl fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeHost")
            .field("scripts", &self.scripts)
            .field("served", &self.served)
            .field("judged", &self.judged)
            .field("calls", &self.calls)
            .field("next_handle", &self.next_handle)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            scripts: HashMap::new(),
            respond: Box::new(FakeHost::default_response),
            served: HashMap::new(),
            judged: HashMap::new(),
            calls: Vec::new(),
            next_handle: 0,
            info: IterationInfo {
                iteration: 0,
                total_iterations: 1,
                seed: 0,
            },
        }
    }
}

impl FakeHost {
    /// An empty host: nothing scripted, no calls; [`FakeHost::run`] runs iteration 0 of 1
    /// with seed 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts the scores of the samples `source` gives for `prompt_id` (one entry per
    /// sample; `None` = the judge gave no usable score).
    /// Each sample's text and token count come from [`FakeHost::respond_with`]'s closure
    /// ([`FakeHost::default_response`] unless set).
    pub fn script(&mut self, prompt_id: &str, source: Source, scores: &[Option<f64>]) -> &mut Self {
        let scripted = scores
            .iter()
            .map(|&score| Scripted {
                response: None,
                score,
            })
            .collect();
        self.scripts
            .insert((prompt_id.to_string(), source), scripted);
        self
    }

    /// Scripts the samples `source` gives for `prompt_id`, one `(text, token_count, score)`
    /// per sample, in order: what [`Sample::text`](crate::sdk::Sample::text),
    /// [`Sample::token_count`](crate::sdk::Sample::token_count) and the judge's score will be
    /// (`None` = no usable score). The real host's token count is the number of tokens the
    /// model generated, as its tokenizer counts them; here it is whatever the test says.
    pub fn script_samples<T: Into<String>>(
        &mut self,
        prompt_id: &str,
        source: Source,
        samples: impl IntoIterator<Item = (T, u32, Option<f64>)>,
    ) -> &mut Self {
        let scripted = samples
            .into_iter()
            .map(|(text, tokens, score)| Scripted {
                response: Some((text.into(), tokens)),
                score,
            })
            .collect();
        self.scripts
            .insert((prompt_id.to_string(), source), scripted);
        self
    }

    /// Sets the text and token count of every sample scripted with [`FakeHost::script`]
    /// (scores only), computed from (prompt id, source, index in its group); e.g. a text
    /// whose length grows with the index. Samples scripted with
    /// [`FakeHost::script_samples`] keep their own. A panic in `respond` becomes a
    /// [`StrategyError::Host`].
    pub fn respond_with(
        &mut self,
        respond: impl Fn(&str, Source, usize) -> (String, u32) + Send + Sync + 'static,
    ) -> &mut Self {
        self.respond = Box::new(respond);
        self
    }

    /// The text and token count of sample `i` of `prompt_id` from `source` when nothing else
    /// is scripted: `"{source} answer {i} to {prompt_id}"` and 3 tokens.
    pub fn default_response(prompt_id: &str, source: Source, i: usize) -> (String, u32) {
        (format!("{source} answer {i} to {prompt_id}"), 3)
    }

    /// Sets the iteration [`FakeHost::run`] reports (number, total, seed).
    pub fn iteration(&mut self, number: u32, total: u32, seed: u64) -> &mut Self {
        self.info = IterationInfo {
            iteration: number,
            total_iterations: total,
            seed,
        };
        self
    }

    /// Borrows this host as the raw [`HostMut`] a strategy receives through the ABI (for
    /// loaded libraries: `LoadedStrategy::run_iteration`).
    pub fn host(&mut self) -> HostMut<'_> {
        host_mut(self)
    }

    /// Runs one iteration of `strategy` on `prompts` as srlm does (through the SDK's ABI
    /// adapter, panics caught) and resolves the pairs it returns against this host's records
    /// of what it served and judged, as srlm's host does: texts, scores and sources come from
    /// the host, never from the plugin.
    ///
    /// # Errors
    /// The strategy's error, or a [`StrategyError::Host`] naming a pair the host cannot
    /// resolve (unknown prompt or sample, a sample of another prompt, no reference answer).
    pub fn run<S: StrategyPlugin>(
        &mut self,
        strategy: &mut S,
        prompts: &[PromptRecord],
    ) -> Result<Vec<PreferencePair>, StrategyError> {
        let ffi: Vec<FfiPrompt> = prompts.iter().map(FfiPrompt::from).collect();
        let info = self.info;
        let pairs = crate::sdk::run_plugin(strategy, info, &ffi, self.host())?;
        self.resolve(&pairs, prompts, S::NAME)
    }

    /// Resolves pairs a strategy returned through the ABI as srlm's host does, against this
    /// host's records of what it served and judged
    /// ([`FfiPair::to_preference_pair`]): texts, scores and sources come from the host.
    ///
    /// # Errors
    /// A [`StrategyError::Host`] naming a pair the host cannot resolve (unknown prompt or
    /// sample, a sample of another prompt, the same response twice, no reference answer).
    pub fn resolve(
        &self,
        pairs: &[FfiPair],
        prompts: &[PromptRecord],
        strategy: &str,
    ) -> Result<Vec<PreferencePair>, StrategyError> {
        pairs
            .iter()
            .map(|p| {
                let prompt = prompts
                    .iter()
                    .find(|r| r.id == p.prompt_id.as_str())
                    .ok_or_else(|| {
                        StrategyError::host(format!("pair names unknown prompt `{}`", p.prompt_id))
                    })?;
                p.to_preference_pair(
                    prompt,
                    |id| self.served.get(id).map(|(s, _)| s),
                    |id| self.judged.get(id),
                    strategy,
                )
                .map_err(|e| StrategyError::host(e.to_string()))
            })
            .collect()
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }

    /// The last value recorded for metric `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.calls.iter().rev().find_map(|c| match c {
            HostCall::RecordMetric { name: n, value } if n == name => Some(*value),
            _ => None,
        })
    }

    /// The components the plugin recorded (`Iteration::record_component`), by name; the last
    /// record of each counts.
    pub fn components(&self) -> Vec<crate::components::ComponentUse> {
        let mut last: std::collections::BTreeMap<&str, f64> = Default::default();
        for c in &self.calls {
            if let HostCall::RecordMetric { name, value } = c {
                last.insert(name.as_str(), *value);
            }
        }
        crate::components::ComponentUse::from_metrics(last.into_iter().map(|(k, v)| (k, Some(v))))
    }

    /// The pairs of each `train_temporary` call, in order.
    pub fn trained(&self) -> Vec<&[Pair]> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                HostCall::TrainTemporary { pairs, .. } => Some(pairs.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// The id the fake gives sample `i` of `prompt_id` from `source`.
    pub fn sample_id(prompt_id: &str, source: Source, i: usize) -> String {
        format!("{prompt_id}/{source}/{i}")
    }

    fn sample_inner(
        &mut self,
        prompt_ids: &[RString],
        source: Source,
        k: u32,
    ) -> Result<Vec<FfiSample>, StrategyError> {
        match source {
            Source::Reference => {
                return Err(StrategyError::host(
                    "cannot sample from the reference answers",
                ))
            }
            Source::Temporary(h) if h >= self.next_handle => {
                return Err(StrategyError::host(format!(
                    "unknown temporary model handle {h}"
                )))
            }
            _ => {}
        }
        let mut served = Vec::new();
        for p in prompt_ids {
            let key = (p.to_string(), source);
            let scripts = self.scripts.get(&key).ok_or_else(|| {
                StrategyError::host(format!("fake host: nothing scripted for ({p}, {source})"))
            })?;
            if scripts.len() < k as usize {
                return Err(StrategyError::host(format!(
                    "fake host: {} samples scripted for ({p}, {source}), {k} asked",
                    scripts.len()
                )));
            }
            for (i, scripted) in scripts.iter().take(k as usize).enumerate() {
                let (text, token_count) = match &scripted.response {
                    Some(r) => r.clone(),
                    None => catch_unwind(AssertUnwindSafe(|| (self.respond)(p, source, i)))
                        .map_err(|_| {
                            StrategyError::host(format!(
                                "fake host: the respond_with closure panicked for ({p}, {source}, {i})"
                            ))
                        })?,
                };
                let sample = Sample {
                    id: Self::sample_id(p, source, i),
                    prompt_id: p.to_string(),
                    source,
                    text,
                    // The ABI's token count is the length of the generated ids.
                    token_ids: (1..=token_count).collect(),
                    logprob: 0.0,
                };
                served.push((sample, scripted.score));
            }
        }
        let mut out = Vec::with_capacity(served.len());
        for (sample, score) in served {
            out.push(FfiSample::from(&sample));
            self.served.insert(sample.id.clone(), (sample, score));
        }
        Ok(out)
    }
}

impl Host for FakeHost {
    fn sample(
        &mut self,
        prompt_ids: RVec<RString>,
        source: FfiSource,
        k: u32,
    ) -> RResult<RVec<FfiSample>, StrategyError> {
        self.calls.push(HostCall::Sample {
            prompt_ids: prompt_ids.iter().map(|s| s.to_string()).collect(),
            source: source.into(),
            k,
        });
        self.sample_inner(&prompt_ids, source.into(), k)
            .map(RVec::from)
            .into()
    }

    fn judge(&mut self, sample_ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError> {
        self.calls.push(HostCall::Judge {
            sample_ids: sample_ids.iter().map(|s| s.to_string()).collect(),
        });
        let mut out = RVec::new();
        for id in sample_ids {
            let Some((_, score)) = self.served.get(id.as_str()) else {
                return RResult::RErr(StrategyError::host(format!("unknown sample id `{id}`")));
            };
            let judgment = Judgment {
                sample_id: id.to_string(),
                score: *score,
                details: serde_json::json!({}),
            };
            out.push(FfiJudgment::from(&judgment));
            self.judged.insert(id.to_string(), judgment);
        }
        RResult::ROk(out)
    }

    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError> {
        self.calls.push(HostCall::TrainTemporary {
            source: source.into(),
            pairs: pairs.iter().map(Pair::from).collect(),
        });
        let h = self.next_handle;
        self.next_handle += 1;
        RResult::ROk(h)
    }

    fn record_metric(&mut self, name: RStr<'_>, value: f64) {
        self.calls.push(HostCall::RecordMetric {
            name: name.to_string(),
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::{best_vs_worst, Iteration, Side};

    #[test]
    fn serves_scripts_and_records_calls() {
        let mut fake = FakeHost::new();
        fake.script("p1", Source::Current, &[Some(4.0), None]);
        let mut host = fake.host();
        let s = host
            .sample(vec!["p1".into()].into(), FfiSource::Current, 2)
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text.as_str(), "current answer 0 to p1");
        let j = host
            .judge(s.iter().map(|s| s.id.clone()).collect())
            .unwrap();
        assert_eq!(j[0].score.into_option(), Some(4.0));
        assert_eq!(j[1].score.into_option(), None);
        assert!(host
            .sample(vec!["p1".into()].into(), FfiSource::Current, 3)
            .is_err());
        assert!(host
            .sample(vec!["p1".into()].into(), FfiSource::Temporary(0), 1)
            .is_err());
        assert_eq!(
            host.train_temporary(FfiSource::Current, RVec::new())
                .unwrap(),
            0
        );
        assert!(host.judge(vec!["nope".into()].into()).is_err());
        host.record_metric("m".into(), 2.5);
        drop(host);
        assert_eq!(fake.metric("m"), Some(2.5));
        assert_eq!(fake.trained().len(), 1);
        assert_eq!(fake.calls().len(), 7);
    }

    #[test]
    fn scripted_texts_and_token_counts() {
        let mut fake = FakeHost::new();
        fake.script_samples(
            "p1",
            Source::Current,
            [("short", 1, Some(2.0)), ("a longer one", 40, None)],
        )
        .script("p2", Source::Initial, &[Some(1.0), Some(1.5)]);
        let ids = |v: &[&str]| -> RVec<RString> { v.iter().map(|s| RString::from(*s)).collect() };
        let mut host = fake.host();
        let s = host.sample(ids(&["p1"]), FfiSource::Current, 2).unwrap();
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.text.as_str(), s.token_count, s.source))
            .collect();
        assert_eq!(
            got,
            [
                ("short", 1, FfiSource::Current),
                ("a longer one", 40, FfiSource::Current)
            ]
        );
        let j = host.judge(ids(&["p1/current/0", "p1/current/1"])).unwrap();
        assert_eq!(
            j.iter().map(|j| j.score.into_option()).collect::<Vec<_>>(),
            [Some(2.0), None]
        );
        let s = host.sample(ids(&["p2"]), FfiSource::Initial, 2).unwrap();
        assert_eq!(
            (s[1].text.as_str(), s[1].token_count),
            ("initial answer 1 to p2", 3)
        );
        drop(host);

        // A closure sets the samples scripted with scores only; tables keep theirs.
        fake.respond_with(|p, source, i| {
            (format!("{p} {source} {}", "x".repeat(i)), 10 + i as u32)
        });
        let mut host = fake.host();
        let s = host.sample(ids(&["p2", "p1"]), FfiSource::Initial, 2);
        assert!(s.is_err(), "p1 has no Initial script");
        let s = host.sample(ids(&["p2"]), FfiSource::Initial, 2).unwrap();
        let got: Vec<_> = s.iter().map(|s| (s.text.as_str(), s.token_count)).collect();
        assert_eq!(got, [("p2 initial ", 10), ("p2 initial x", 11)]);
        let s = host.sample(ids(&["p1"]), FfiSource::Current, 1).unwrap();
        assert_eq!((s[0].text.as_str(), s[0].token_count), ("short", 1));
        drop(host);

        // A panicking closure is a host error, not an abort.
        fake.respond_with(|_, _, _| panic!("respond_with test panic"));
        let e = fake
            .host()
            .sample(ids(&["p2"]), FfiSource::Initial, 1)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "host callback failed: fake host: the respond_with closure panicked for (p2, initial, 0)"
        );
    }

    /// A strategy that exercises every `Iteration` method.
    struct Probe {
        bad_pair: Option<Pair>,
    }

    impl StrategyPlugin for Probe {
        const NAME: &'static str = "probe";
        const DESCRIPTION: &'static str = "Test strategy.";
        type Options = ();
        fn new((): ()) -> Result<Self, StrategyError> {
            Ok(Probe { bad_pair: None })
        }
        fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
            assert_eq!((it.number(), it.total(), it.seed()), (2, 3, 9));
            let texts: Vec<&str> = it.prompts().map(|p| p.text()).collect();
            assert_eq!(texts, ["qa", "qb"]);
            let refs: Vec<Option<&str>> = it.prompts().map(|p| p.reference()).collect();
            assert_eq!(refs, [Some("gold a"), None]);
            assert!(it
                .sample(Vec::<String>::new(), Source::Current, 2)?
                .is_empty());
            let groups = it.sample_and_judge(it.prompt_ids(), Source::Current, 2)?;
            assert_eq!(groups.prompt_ids().collect::<Vec<_>>(), ["a", "b"]);
            let d1: Vec<Pair> = groups
                .iter()
                .filter_map(best_vs_worst)
                .map(|bw| bw.pair().with_note("d1"))
                .collect();
            let future = it.train_temporary(Source::Current, &d1)?;
            assert_eq!(future, Source::Temporary(0));
            let samples = it.sample(["a"], future, 1)?;
            assert_eq!(samples[0].text, "temporary:0 answer 0 to a");
            let j = it.judge(samples.iter().map(|s| s.id.as_str()))?;
            assert_eq!(j[0].score, Some(5.0));
            it.record_metric("probe/pairs", 2.0);
            if let Some(bad) = self.bad_pair.clone() {
                return Ok(vec![bad]);
            }
            Ok(vec![
                Pair::new("a", &samples[0], "a/current/1").with_note("future"),
                Pair::new("a", Side::Reference, "a/current/0"),
            ])
        }
    }

    fn probe_host() -> (FakeHost, Vec<PromptRecord>) {
        let mut fake = FakeHost::new();
        fake.iteration(2, 3, 9)
            .script("a", Source::Current, &[Some(4.0), Some(1.0)])
            .script("b", Source::Current, &[Some(2.0), Some(2.0)])
            .script("a", Source::Temporary(0), &[Some(5.0)]);
        let prompts = vec![
            prompt_with_reference("a", "qa", "gold a"),
            prompt("b", "qb"),
        ];
        (fake, prompts)
    }

    #[test]
    fn iteration_methods_and_host_side_resolution() {
        let (mut fake, prompts) = probe_host();
        let pairs = fake.run(&mut Probe { bad_pair: None }, &prompts).unwrap();
        assert_eq!(pairs.len(), 2);
        let p = &pairs[0];
        assert_eq!(
            (p.chosen.as_str(), p.rejected.as_str()),
            ("temporary:0 answer 0 to a", "current answer 1 to a")
        );
        assert_eq!((p.chosen_score, p.rejected_score), (Some(5.0), Some(1.0)));
        let prov = p.provenance.as_ref().unwrap();
        assert_eq!(
            (prov.chosen_source, prov.rejected_source, prov.note.as_str()),
            (Source::Temporary(0), Source::Current, "future")
        );
        assert_eq!(prov.strategy, "probe");
        let r = &pairs[1];
        assert_eq!(
            (r.chosen.as_str(), r.chosen_sample_id.as_deref()),
            ("gold a", None)
        );
        assert_eq!(r.rejected_score, Some(4.0));
        // Tied prompt b gave no d1 pair; the SDK filled the ABI record's scores for M_f.
        let trained = fake.trained();
        assert_eq!(
            trained,
            [&[Pair::new("a", "a/current/0", "a/current/1").with_note("d1")][..]]
        );
        assert_eq!(
            fake.calls()[..2],
            [
                HostCall::Sample {
                    prompt_ids: vec!["a".into(), "b".into()],
                    source: Source::Current,
                    k: 2
                },
                HostCall::Judge {
                    sample_ids: ["a/current/0", "a/current/1", "b/current/0", "b/current/1"]
                        .map(String::from)
                        .to_vec()
                }
            ]
        );
        assert_eq!(fake.metric("probe/pairs"), Some(2.0));
    }

    #[test]
    fn pairs_naming_unserved_samples_are_errors() {
        for (bad, want) in [
            (
                Pair::new("a", "a/current/7", "a/current/0"),
                "a pair for prompt `a` names sample `a/current/7`, which this iteration never sampled",
            ),
            (
                Pair::new("a", "b/current/0", "a/current/0"),
                "a pair for prompt `a` names sample `b/current/0`, which answers prompt `b`",
            ),
            (
                Pair::new("z", Side::Reference, "a/current/0"),
                "a pair names prompt `z`, which is not in this iteration",
            ),
        ] {
            let (mut fake, prompts) = probe_host();
            let e = fake
                .run(&mut Probe { bad_pair: Some(bad) }, &prompts)
                .unwrap_err();
            assert_eq!(e, StrategyError::other(want));
        }
        // The host refuses a reference side when the prompt has none.
        let (mut fake, prompts) = probe_host();
        let e = fake
            .run(
                &mut Probe {
                    bad_pair: Some(Pair::new("b", Side::Reference, "b/current/0")),
                },
                &prompts,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "host callback failed: pair for prompt `b` uses the reference answer, but the prompt has none"
        );
    }
}
