//! [`FakeHost`]: a scripted [`Host`] for testing strategies without a model.
//!
//! Public so that plugin crates (in and out of this repository) and srlm's own crates can
//! unit-test selection rules with hand-made scores, ties and missing scores.

use std::collections::HashMap;

use abi_stable::std_types::{RResult, RStr, RString, RVec};

use crate::{host_mut, FfiJudgment, FfiPair, FfiSample, FfiSource, Host, HostMut, StrategyError};

/// One call the strategy made, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    /// `sample(prompt_ids, source, k)`.
    Sample {
        /// Prompt ids asked for.
        prompt_ids: Vec<String>,
        /// Model sampled.
        source: FfiSource,
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
        source: FfiSource,
        /// Pairs trained on.
        pairs: Vec<FfiPair>,
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
/// `p1/temporary:0/2`), text `"{s} answer {i} to {p}"` and the i-th scripted score.
/// `train_temporary` returns handles 0, 1, 2, … . Asking for more samples than scripted, an
/// unscripted (prompt, source), an unknown handle or an unknown sample id is a
/// [`StrategyError::Host`], so tests catch strategies that ask for the wrong thing.
///
/// ```
/// use srlm_strategy::{testing::FakeHost, FfiSource};
/// let mut fake = FakeHost::new();
/// fake.script("p1", FfiSource::Current, &[Some(4.0), None, Some(1.0)]);
/// let mut host = fake.host();
/// let samples = host.sample(vec!["p1".into()].into(), FfiSource::Current, 3).unwrap();
/// assert_eq!(samples[1].id.as_str(), "p1/current/1");
/// ```
#[derive(Debug, Default)]
pub struct FakeHost {
    scripts: HashMap<(String, FfiSource), Vec<Option<f64>>>,
    scores: HashMap<String, Option<f64>>,
    calls: Vec<HostCall>,
    next_handle: u32,
}

impl FakeHost {
    /// An empty host: nothing scripted, no calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts the scores of the samples `source` gives for `prompt_id` (one entry per
    /// sample; `None` = the judge gave no usable score).
    pub fn script(
        &mut self,
        prompt_id: &str,
        source: FfiSource,
        scores: &[Option<f64>],
    ) -> &mut Self {
        self.scripts
            .insert((prompt_id.to_string(), source), scores.to_vec());
        self
    }

    /// Borrows this host as the [`HostMut`] a strategy receives.
    pub fn host(&mut self) -> HostMut<'_> {
        host_mut(self)
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

    /// The pairs of each `train_temporary` call, in order.
    pub fn trained(&self) -> Vec<&[FfiPair]> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                HostCall::TrainTemporary { pairs, .. } => Some(pairs.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// The id the fake gives sample `i` of `prompt_id` from `source`.
    pub fn sample_id(prompt_id: &str, source: FfiSource, i: usize) -> String {
        format!("{prompt_id}/{source}/{i}")
    }

    fn sample_inner(
        &mut self,
        prompt_ids: &[RString],
        source: FfiSource,
        k: u32,
    ) -> Result<Vec<FfiSample>, StrategyError> {
        match source {
            FfiSource::Reference => {
                return Err(StrategyError::host(
                    "cannot sample from the reference answers",
                ))
            }
            FfiSource::Temporary(h) if h >= self.next_handle => {
                return Err(StrategyError::host(format!(
                    "unknown temporary model handle {h}"
                )))
            }
            _ => {}
        }
        let mut out = Vec::new();
        for p in prompt_ids {
            let key = (p.to_string(), source);
            let scores = self.scripts.get(&key).ok_or_else(|| {
                StrategyError::host(format!("fake host: nothing scripted for ({p}, {source})"))
            })?;
            if scores.len() < k as usize {
                return Err(StrategyError::host(format!(
                    "fake host: {} samples scripted for ({p}, {source}), {k} asked",
                    scores.len()
                )));
            }
            for (i, score) in scores.iter().take(k as usize).enumerate() {
                let id = Self::sample_id(p, source, i);
                self.scores.insert(id.clone(), *score);
                out.push(FfiSample {
                    id: id.into(),
                    prompt_id: p.clone(),
                    source,
                    text: format!("{source} answer {i} to {p}").into(),
                    token_count: 3,
                });
            }
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
            source,
            k,
        });
        self.sample_inner(&prompt_ids, source, k)
            .map(RVec::from)
            .into()
    }

    fn judge(&mut self, sample_ids: RVec<RString>) -> RResult<RVec<FfiJudgment>, StrategyError> {
        self.calls.push(HostCall::Judge {
            sample_ids: sample_ids.iter().map(|s| s.to_string()).collect(),
        });
        let mut out = RVec::new();
        for id in sample_ids {
            let Some(score) = self.scores.get(id.as_str()) else {
                return RResult::RErr(StrategyError::host(format!("unknown sample id `{id}`")));
            };
            out.push(FfiJudgment {
                sample_id: id,
                score: (*score).into(),
                details_json: "{}".into(),
            });
        }
        RResult::ROk(out)
    }

    fn train_temporary(
        &mut self,
        source: FfiSource,
        pairs: RVec<FfiPair>,
    ) -> RResult<u32, StrategyError> {
        self.calls.push(HostCall::TrainTemporary {
            source,
            pairs: pairs.into_vec(),
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

    #[test]
    fn serves_scripts_and_records_calls() {
        let mut fake = FakeHost::new();
        fake.script("p1", FfiSource::Current, &[Some(4.0), None]);
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
}
