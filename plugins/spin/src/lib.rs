//! Strategy plugin `spin`: Self-Play Fine-Tuning (Chen et al. 2024, arXiv 2401.01335, Sec. 4),
//! the SPIN baseline of Wang et al. 2025 (arXiv 2508.06026, Sec. 4).
//!
//! Per prompt: chosen = the reference answer the prompt record carries (the SFT target),
//! rejected = a response of the current model M_i (the first of the `k` sampled). Prompts
//! without a reference are skipped and counted. SPIN needs no judge; with `judge = true` the
//! samples are judged, the first *scored* one is the rejected (unscored samples are never
//! picked) and its score travels with the pair for the diagnostics.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_strategy::{
    sdk::{record_metric, sample_and_judge, Scored, StrategyPlugin},
    FfiPair, FfiPairSide, FfiPrompt, FfiSource, HostMut, IterationInfo, StrategyError,
};

/// Options of `spin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Responses sampled per prompt; the first (scored, with `judge`) is the rejected.
    #[schemars(range(min = 1))]
    pub k: u32,
    /// Judge the samples: record the rejected side's score and skip unscored samples.
    pub judge: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { k: 1, judge: false }
    }
}

/// The SPIN pair selector.
#[derive(Debug)]
pub struct Spin {
    options: Options,
}

impl StrategyPlugin for Spin {
    const NAME: &'static str = "spin";
    const DESCRIPTION: &'static str = "SPIN (Chen et al. 2024, arXiv 2401.01335, Sec. 4): \
        chosen = the prompt's reference answer, rejected = a response sampled from M_i; \
        prompts without a reference answer are skipped.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        if options.k < 1 {
            return Err(StrategyError::invalid_options("k must be at least 1"));
        }
        Ok(Spin { options })
    }

    fn run_iteration(
        &mut self,
        _ctx: &IterationInfo,
        prompts: &[FfiPrompt],
        host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError> {
        let with_ref: Vec<_> = prompts.iter().filter(|p| p.reference.is_some()).collect();
        let no_reference = prompts.len() - with_ref.len();
        let ids: Vec<_> = with_ref.iter().map(|p| p.id.clone()).collect();
        let groups = if self.options.judge {
            sample_and_judge(host, &ids, FfiSource::Current, self.options.k)?
        } else {
            let mut groups = std::collections::HashMap::<String, Vec<Scored>>::new();
            if !ids.is_empty() {
                let samples = host
                    .sample(ids.clone().into(), FfiSource::Current, self.options.k)
                    .into_result()?;
                for s in samples {
                    groups
                        .entry(s.prompt_id.to_string())
                        .or_default()
                        .push(Scored {
                            sample: s,
                            score: None,
                        });
                }
            }
            groups
        };
        let (mut pairs, mut unscored) = (Vec::new(), 0u32);
        for p in with_ref {
            let group = groups
                .get(p.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let rejected = if self.options.judge {
                group.iter().find(|s| s.score.is_some())
            } else {
                group.first()
            };
            let Some(rejected) = rejected else {
                unscored += 1;
                continue;
            };
            pairs.push(FfiPair {
                prompt_id: p.id.clone(),
                chosen: FfiPairSide {
                    sample_id: format!("{}/reference", p.id).into(),
                    source: FfiSource::Reference,
                    score: None.into(),
                },
                rejected: rejected.side(),
                note: "".into(),
            });
        }
        record_metric(host, "spin/pairs", pairs.len() as f64);
        record_metric(host, "spin/skipped_no_reference", no_reference as f64);
        record_metric(host, "spin/skipped_unscored", f64::from(unscored));
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(Spin);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::testing::{FakeHost, HostCall};

    const CTX: IterationInfo = IterationInfo {
        iteration: 0,
        total_iterations: 2,
        seed: 1,
    };

    fn prompts() -> Vec<FfiPrompt> {
        vec![
            FfiPrompt::new("a", "q").with_reference("gold a"),
            FfiPrompt::new("b", "q"),
            FfiPrompt::new("c", "q").with_reference("gold c"),
        ]
    }

    #[test]
    fn reference_vs_first_sample_without_judge() {
        let mut fake = FakeHost::new();
        fake.script("a", FfiSource::Current, &[None, Some(5.0)]);
        fake.script("c", FfiSource::Current, &[Some(1.0)]);
        let mut s = Spin::new(Options::default()).unwrap();
        let pairs = s.run_iteration(&CTX, &prompts(), &mut fake.host()).unwrap();
        let got: Vec<_> = pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.as_str(),
                    p.chosen.source,
                    p.rejected.sample_id.as_str(),
                    p.rejected.score.into_option(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", FfiSource::Reference, "a/current/0", None),
                ("c", FfiSource::Reference, "c/current/0", None)
            ]
        );
        assert_eq!(pairs[0].chosen.sample_id.as_str(), "a/reference");
        // Only prompts with a reference are sampled, one sample each, nothing judged.
        assert_eq!(
            fake.calls()[0],
            HostCall::Sample {
                prompt_ids: vec!["a".into(), "c".into()],
                source: FfiSource::Current,
                k: 1
            }
        );
        assert!(!fake
            .calls()
            .iter()
            .any(|c| matches!(c, HostCall::Judge { .. })));
        assert_eq!(fake.metric("spin/skipped_no_reference"), Some(1.0));
        assert_eq!(fake.metric("spin/pairs"), Some(2.0));
    }

    #[test]
    fn with_judge_unscored_samples_are_never_rejected() {
        let mut fake = FakeHost::new();
        fake.script("a", FfiSource::Current, &[None, Some(2.0)]);
        fake.script("c", FfiSource::Current, &[None, None]);
        let mut s = Spin::new(Options { k: 2, judge: true }).unwrap();
        let pairs = s.run_iteration(&CTX, &prompts(), &mut fake.host()).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].rejected.sample_id.as_str(), "a/current/1");
        assert_eq!(pairs[0].rejected.score.into_option(), Some(2.0));
        assert_eq!(fake.metric("spin/skipped_unscored"), Some(1.0));
    }
}
