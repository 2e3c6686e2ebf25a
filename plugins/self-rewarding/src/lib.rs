//! Strategy plugin `self-rewarding`: Self-Rewarding Language Models (Yuan et al. 2024,
//! arXiv 2401.10020, Sec. 2.3 "Instruction following training", AI Feedback Training).
//!
//! Per prompt: sample K responses from the current model M_i, let M_i judge each; chosen =
//! the highest score, rejected = the lowest; the prompt is dropped when the two scores are
//! equal. Unscored samples (the judge gave no usable score) are never picked.

use srlm_strategy::prelude::*;

options! {
    /// Options of `self-rewarding`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Options {
        /// Responses sampled per prompt (K, at least 2; Yuan et al. use 4). Unset: the run's
        /// `sampling.k` (`srlm run` fills it in; 4 elsewhere).
        #[schemars(range(min = 2))]
        pub k: Option<u32> = None,
    }
}

/// K when neither the options nor the run give one (Yuan et al. 2024).
const DEFAULT_K: u32 = 4;

/// The Self-Rewarding pair selector.
#[derive(Debug)]
pub struct SelfRewarding {
    options: Options,
}

impl StrategyPlugin for SelfRewarding {
    const NAME: &'static str = "self-rewarding";
    const DESCRIPTION: &'static str =
        "Self-Rewarding (Yuan et al. 2024, arXiv 2401.10020, Sec. 2.3): \
        sample K responses from M_i, M_i judges them; chosen = highest score, rejected = lowest; \
        a prompt whose two scores are equal is dropped.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        if options.k.unwrap_or(DEFAULT_K) < 2 {
            return Err(StrategyError::invalid_options("k must be at least 2"));
        }
        Ok(SelfRewarding { options })
    }

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        let k = self.options.k.unwrap_or(DEFAULT_K);
        let groups = it.sample_and_judge(it.prompt_ids(), Source::Current, k)?;
        let (mut pairs, mut ties, mut unscored) = (Vec::new(), 0u32, 0u32);
        for group in groups.iter() {
            if group.iter().filter(|s| s.score.is_some()).count() < 2 {
                unscored += 1;
            } else if let Some(bw) = best_vs_worst(group) {
                pairs.push(bw.pair());
            } else {
                ties += 1;
            }
        }
        it.record_metric("self_rewarding/pairs", pairs.len() as f64);
        it.record_metric("self_rewarding/dropped_ties", f64::from(ties));
        it.record_metric("self_rewarding/dropped_unscored", f64::from(unscored));
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(SelfRewarding);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::{
        sdk,
        testing::{prompt, FakeHost, HostCall, PreferencePair},
    };

    fn run(k: u32, script: &[(&str, &[Option<f64>])]) -> (Vec<PreferencePair>, FakeHost) {
        let mut fake = FakeHost::new();
        let prompts: Vec<_> = script.iter().map(|(id, _)| prompt(id, "q")).collect();
        for (id, scores) in script {
            fake.script(id, Source::Current, scores);
        }
        let mut s = SelfRewarding::new(Options { k: Some(k) }).unwrap();
        let pairs = fake.run(&mut s, &prompts).unwrap();
        (pairs, fake)
    }

    /// (prompt, chosen id, rejected id, chosen score, rejected score)
    type Row = (String, String, String, Option<f64>, Option<f64>);

    fn summary(pairs: &[PreferencePair]) -> Vec<Row> {
        pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.clone(),
                    p.chosen_sample_id.clone().unwrap(),
                    p.rejected_sample_id.clone().unwrap(),
                    p.chosen_score,
                    p.rejected_score,
                )
            })
            .collect()
    }

    #[test]
    fn highest_vs_lowest_ties_dropped_unscored_never_picked() {
        let (pairs, fake) = run(
            4,
            &[
                ("a", &[Some(2.0), Some(5.0), Some(1.0), Some(3.0)]),
                ("tie", &[Some(3.0), Some(3.0), Some(3.0), Some(3.0)]),
                ("none", &[None, None, Some(1.0), None]),
                ("gaps", &[None, Some(4.0), None, Some(0.0)]),
                ("dup", &[Some(4.0), Some(1.0), Some(4.0), Some(1.0)]),
            ],
        );
        assert_eq!(
            summary(&pairs),
            vec![
                (
                    "a".into(),
                    "a/current/1".into(),
                    "a/current/2".into(),
                    Some(5.0),
                    Some(1.0)
                ),
                (
                    "gaps".into(),
                    "gaps/current/1".into(),
                    "gaps/current/3".into(),
                    Some(4.0),
                    Some(0.0)
                ),
                (
                    "dup".into(),
                    "dup/current/0".into(),
                    "dup/current/1".into(),
                    Some(4.0),
                    Some(1.0)
                ),
            ]
        );
        assert!(pairs.iter().all(|p| {
            let prov = p.provenance.as_ref().unwrap();
            prov.chosen_source == Source::Current
                && prov.rejected_source == Source::Current
                && prov.note.is_empty()
        }));
        assert_eq!(fake.metric("self_rewarding/pairs"), Some(3.0));
        assert_eq!(fake.metric("self_rewarding/dropped_ties"), Some(1.0));
        assert_eq!(fake.metric("self_rewarding/dropped_unscored"), Some(1.0));
        assert_eq!(fake.trained().len(), 0);
    }

    #[test]
    fn samples_k_from_current_only() {
        let (_, fake) = run(2, &[("a", &[Some(1.0), Some(2.0), Some(9.0)])]);
        assert_eq!(
            fake.calls()[..2],
            [
                HostCall::Sample {
                    prompt_ids: vec!["a".into()],
                    source: Source::Current,
                    k: 2
                },
                HostCall::Judge {
                    sample_ids: vec!["a/current/0".into(), "a/current/1".into()]
                }
            ]
        );
        assert_eq!(fake.calls().len(), 5, "sample, judge, three metrics");
    }

    #[test]
    fn options_defaults_and_k_bound_through_the_abi() {
        let m = sdk::root_module::<SelfRewarding>("0.0.0");
        let resolved = (m.resolve_options())("{}".into()).unwrap();
        assert_eq!(resolved.as_str(), r#"{"k":null}"#, "k unset: the run's K");
        let err = sdk::instantiate::<SelfRewarding>(r#"{"k":1}"#)
            .err()
            .unwrap();
        assert_eq!(err, StrategyError::invalid_options("k must be at least 2"));
        let err = sdk::instantiate::<SelfRewarding>(r#"{"kk":3}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `kk`"), "{err}");
        let schema = sdk::options_schema_of::<SelfRewarding>();
        assert!(
            schema.contains("\"default\": null"),
            "k unset by default: {schema}"
        );
        assert!(schema.contains("\"minimum\": 2"), "{schema}");
    }
}
