//! Strategy plugin `spin`: Self-Play Fine-Tuning (Chen et al. 2024, arXiv 2401.01335, Sec. 4),
//! the SPIN baseline of Wang et al. 2025 (arXiv 2508.06026, Sec. 4).
//!
//! Per prompt: chosen = the reference answer the prompt record carries (the SFT target),
//! rejected = a response of the current model M_i (the first of the `k` sampled). Prompts
//! without a reference are skipped and counted. SPIN needs no judge; with `judge = true` the
//! samples are judged, the first *scored* one is the rejected (unscored samples are never
//! picked) and its score travels with the pair for the diagnostics.

use srlm_strategy::prelude::*;

options! {
    /// Options of `spin`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Options {
        /// Responses sampled per prompt; the first (scored, with `judge`) is the rejected.
        #[schemars(range(min = 1))]
        pub k: u32 = 1,
        /// Judge the samples: record the rejected side's score and skip unscored samples.
        pub judge: bool = false,
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

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        let with_ref: Vec<&str> = it
            .prompts()
            .filter(|p| p.reference().is_some())
            .map(|p| p.id())
            .collect();
        let no_reference = it.prompts().len() - with_ref.len();
        let k = self.options.k;
        // Per prompt, the candidates for the rejected side: the first one is taken.
        let rejected: Vec<Option<String>> = if self.options.judge {
            let groups = it.sample_and_judge(&with_ref, Source::Current, k)?;
            with_ref
                .iter()
                .map(|id| groups.get(id).iter().find(|s| s.score.is_some()))
                .map(|s| s.map(|s| s.sample.id.clone()))
                .collect()
        } else {
            let samples = it.sample(&with_ref, Source::Current, k)?;
            with_ref
                .iter()
                .map(|id| samples.iter().find(|s| s.prompt_id == *id))
                .map(|s| s.map(|s| s.id.clone()))
                .collect()
        };
        let (mut pairs, mut unscored) = (Vec::new(), 0u32);
        for (prompt_id, rejected) in with_ref.iter().zip(rejected) {
            match rejected {
                Some(rejected) => pairs.push(Pair::new(*prompt_id, Side::Reference, rejected)),
                None => unscored += 1,
            }
        }
        it.record_metric("spin/pairs", pairs.len() as f64);
        it.record_metric("spin/skipped_no_reference", no_reference as f64);
        it.record_metric("spin/skipped_unscored", f64::from(unscored));
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(Spin);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::testing::{prompt, prompt_with_reference, FakeHost, HostCall};

    fn prompts() -> Vec<srlm_strategy::testing::PromptRecord> {
        vec![
            prompt_with_reference("a", "q", "gold a"),
            prompt("b", "q"),
            prompt_with_reference("c", "q", "gold c"),
        ]
    }

    #[test]
    fn reference_vs_first_sample_without_judge() {
        let mut fake = FakeHost::new();
        fake.script("a", Source::Current, &[None, Some(5.0)]);
        fake.script("c", Source::Current, &[Some(1.0)]);
        let mut s = Spin::new(Options::default()).unwrap();
        let pairs = fake.run(&mut s, &prompts()).unwrap();
        let got: Vec<_> = pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.as_str(),
                    p.chosen.as_str(),
                    p.provenance.as_ref().unwrap().chosen_source,
                    p.rejected_sample_id.as_deref().unwrap(),
                    p.rejected_score,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "gold a", Source::Reference, "a/current/0", None),
                ("c", "gold c", Source::Reference, "c/current/0", None)
            ]
        );
        assert_eq!(pairs[0].chosen_sample_id, None);
        // Only prompts with a reference are sampled, one sample each, nothing judged.
        assert_eq!(
            fake.calls()[0],
            HostCall::Sample {
                prompt_ids: vec!["a".into(), "c".into()],
                source: Source::Current,
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
        fake.script("a", Source::Current, &[None, Some(2.0)]);
        fake.script("c", Source::Current, &[None, None]);
        let mut s = Spin::new(Options { k: 2, judge: true }).unwrap();
        let pairs = fake.run(&mut s, &prompts()).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].rejected_sample_id.as_deref(), Some("a/current/1"));
        assert_eq!(pairs[0].rejected_score, Some(2.0));
        assert_eq!(fake.metric("spin/skipped_unscored"), Some(1.0));
    }

    #[test]
    fn no_prompt_with_a_reference_asks_the_host_nothing() {
        let mut fake = FakeHost::new();
        let mut s = Spin::new(Options::default()).unwrap();
        let pairs = fake.run(&mut s, &[prompt("b", "q")]).unwrap();
        assert!(pairs.is_empty());
        assert!(fake
            .calls()
            .iter()
            .all(|c| matches!(c, HostCall::RecordMetric { .. })));
        assert_eq!(fake.metric("spin/skipped_no_reference"), Some(1.0));
    }

    #[test]
    fn k_is_declared_with_default_one() {
        let schema = srlm_strategy::sdk::options_schema_of::<Spin>();
        assert!(schema.contains("\"default\": 1"), "{schema}");
        let resolved = srlm_strategy::sdk::parse_options::<Options>("{}").unwrap();
        assert_eq!(resolved, Options { k: 1, judge: false });
    }
}
